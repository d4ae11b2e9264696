"""Record, after the fact, which run a checkpoint was fine-tuned from, so its model card shows every stage.

  python train/lineage.py fernet runs/gpu6/fernet_s3.safetensors   # -> checkpoints/fernet.lineage.json

train/train.py --init keeps the parent's arguments, metrics and curves in the new checkpoint; a checkpoint made
by an older train.py records only its own epochs.
This writes the parent's record (its own lineage, then it) to a small JSON file beside the checkpoint instead of
rewriting the checkpoint, whose weights git would then keep twice; fer_core.checkpoints.read_spec reads it back for
that run only (a later run promoted over it does not inherit it). The parent must be the file the fine-tune's
--init named (same file name as the parent's --out).
"""
from __future__ import annotations

import argparse
from pathlib import Path


from fer_core.checkpoints import read_spec, record_lineage, resolve_checkpoint


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="the fine-tune (a name in checkpoints/ or a path)")
    p.add_argument("parent", help="the checkpoint of the run it was fine-tuned from")
    args = p.parse_args(argv)
    side = record_lineage(args.checkpoint, args.parent)
    stages = read_spec(resolve_checkpoint(args.checkpoint)).runs()
    print(f"wrote {side}: {len(stages)} stages, " + " + ".join(f"{len(s['history'])} epochs" for s in stages))
    return side


if __name__ == "__main__":
    main()
