"""Hyperparameter grid like the GiMeFive paper's (learning rate, batch size, dropout, epochs, early
stopping patience); every run is a train.py run; writes a table of validation results.

  python train/sweep.py --arch baseline --lr 0.01 0.001 --batch-size 32 64 --dropout 0.2 0.5 \\
      --epochs 10 --patience 3 --out runs/sweep
Selection is by validation macro-F1 (never the test split).
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
from pathlib import Path


import train as train_script


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="baseline", help="architecture from the registry")
    p.add_argument("--data", nargs="+", default=["raf-db"], help="training folders (as train.py)")
    p.add_argument("--lr", type=float, nargs="+", default=[0.01, 0.001], help="learning rates")
    p.add_argument("--batch-size", type=int, nargs="+", default=[64], help="batch sizes")
    p.add_argument("--dropout", type=float, nargs="+", default=[0.2], help="dropout rates")
    p.add_argument("--epochs", type=int, nargs="+", default=[10], help="epoch budgets")
    p.add_argument("--patience", type=int, nargs="+", default=[0], help="early-stopping patience (0 = off)")
    p.add_argument("--optimizer", default="adamw", choices=["sgd", "adamw"], help="optimizer")
    p.add_argument("--out", default="runs/sweep", help="folder for checkpoints and the table")
    p.add_argument("--extra", default="", help="further train.py arguments, quoted, e.g. '--limit 500'")
    return p


def main(args: argparse.Namespace) -> list[dict]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    grid = itertools.product(args.lr, args.batch_size, args.dropout, args.epochs, args.patience)
    for lr, bs, dp, ep, pat in grid:
        name = f"{args.arch}_lr{lr:g}_bs{bs}_do{dp:g}_ep{ep}_pat{pat}"
        argv = ["--arch", args.arch, "--data", *args.data, "--lr", str(lr), "--batch-size", str(bs),
                "--dropout", str(dp), "--epochs", str(ep), "--patience", str(pat), "--optimizer", args.optimizer,
                "--out", str(out / f"{name}.safetensors"), *args.extra.split()]
        metrics = train_script.main(train_script.get_args_parser().parse_args(argv))
        rows.append({"run": name, "lr": lr, "batch_size": bs, "dropout": dp, "epochs": ep, "patience": pat,
                     "best_epoch": metrics.get("best_epoch"), "val_accuracy": metrics.get("val_accuracy"),
                     "val_macro_f1": metrics.get("val_macro_f1")})
    rows.sort(key=lambda r: -(r["val_macro_f1"] or 0))
    with open(out / "sweep.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = ["| run | val acc | val macro-F1 | best epoch |", "|---|---|---|---|"]
    lines += [f"| {r['run']} | {r['val_accuracy']:.4f} | {r['val_macro_f1']:.4f} | {r['best_epoch']} |" for r in rows]
    (out / "sweep.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    (out / "sweep.json").write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main(get_args_parser().parse_args())
