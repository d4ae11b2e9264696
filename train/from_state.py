"""A run's last-epoch training weights (not the EMA average that train.py evaluates and saves) as a checkpoint, so
the two can be compared on validation: early in a fine-tune that adds a class, the EMA still carries much of the
starting model (decay 0.998 keeps 0.998 ** steps of it), whose new head row is zero.

  python train/from_state.py runs/neutral7.safetensors --out runs/neutral7_raw.safetensors
  python train/promote.py runs/neutral7_raw.safetensors --name fernet     # chosen on validation like any run

The spec (classes, training data and arguments, history) is the run's; `metrics` gains `weights: last epoch`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from fer_core.checkpoints import load_checkpoint, save_checkpoint


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a checkpoint of train/train.py with its <run>.state.pt beside it")
    p.add_argument("--out", required=True, help="the checkpoint to write")
    args = p.parse_args(argv)
    state_path = Path(args.run).with_suffix(".state.pt")
    if not state_path.is_file():
        raise SystemExit(f"{state_path} is not there: the run's resumable state holds the last epoch's weights")
    model, spec = load_checkpoint(args.run)
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    epoch = int(state["epoch"]) + 1
    spec = spec.with_updates(metrics={**spec.metrics, "weights": f"last epoch ({epoch}), not the EMA"})
    save_checkpoint(model.float(), spec, args.out, dtype=getattr(torch, spec.args.get("save_dtype", "float32")))
    print(f"wrote {args.out}: the training weights of epoch {epoch}")
    return Path(args.out)


if __name__ == "__main__":
    main()
