"""Is checkpoint A really better than B? A paired comparison on the same test faces.

  python bench/compare.py fernet old/fernet.safetensors                 # RAF-DB test and FER2013 test
  python bench/compare.py fernet vgg16 --data raf-db --n-boot 5000

Each checkpoint runs as the app and train/evaluate.py run it (the same precision, int8 copy and flip
averaging); the difference in accuracy comes with a paired bootstrap over the faces (standard error, 95%
interval) and the share of faces the two answer differently. A test split is for reporting only: never
choose a checkpoint by this (train/promote.py compares validation macro-F1).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch


from fer_core.evaluation import app_logits
from fer_core.checkpoints import resolve_checkpoint
from fer_core.data import datasets_root, load_labelled_folder, load_uint8
from fer_core.runtime import load_predictor
from fer_core.metrics import paired_difference

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", help="checkpoint name or path")
    p.add_argument("b", help="checkpoint name or path")
    p.add_argument("--data", nargs="+", default=["raf-db", "fer2013"], help="test sets under ../shared/datasets")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    preds = [load_predictor(resolve_checkpoint(m), frozen=None) for m in (args.a, args.b)]
    out = {}
    print(f"A = {args.a} ({preds[0].precision}), B = {args.b} ({preds[1].precision})")
    print("| set | faces | A acc | B acc | A − B | paired SE | 95% interval | answered differently |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.data:
        x, y = load_uint8(load_labelled_folder(datasets_root() / name / "test"), 64)
        r = paired_difference(*((app_logits(pr, x).argmax(1) == y).numpy() for pr in preds), n_boot=args.n_boot)
        out[name] = r
        lo, hi = r["ci95"]
        print(f"| {name} | {r['n']} | {100 * r['accuracy_a']:.2f} | {100 * r['accuracy_b']:.2f} | "
              f"{100 * r['difference']:+.2f} | {100 * r['standard_error']:.2f} | {100 * lo:+.2f} … {100 * hi:+.2f} | "
              f"{100 * r['discordant']:.1f}% |", flush=True)
    return out


if __name__ == "__main__":
    main()
