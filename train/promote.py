"""Copy a trained run into checkpoints/ — only when it beats the committed one on validation.

  python train/promote.py runs/resnet18.safetensors            # -> checkpoints/resnet18.safetensors
  python train/promote.py runs/fernet_v2.safetensors --name fernet --dtype float16

The comparison is validation macro-F1 (never a test split): when the two share a validation split, both
re-scored on its original images (float32, train/quantize.py's validation_predictions), since a run trained
elsewhere may have recorded its number on re-encoded copies (a recorded tie, 0.73970 against 0.73966, was
0.7401 against 0.7382 re-scored); else the numbers train/train.py recorded.
A re-score also prints a paired bootstrap of the difference over the validation faces (its 95% interval; on
the 3,348 faces of the default's split about ±0.004 for a fine-tune of the committed network and ±0.008 for
its parent); with --margin M a run must be better by more than M to replace the committed
checkpoint (default 0: any gain). Weights are stored as float16 by default to keep checkpoints/ small (git
keeps every version). The promoted checkpoint is then calibrated for int8 CPU predictions
(train/quantize.py; --no-int8 skips).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch


from fer_core.checkpoints import CHECKPOINT_DIR, lineage_file, load_checkpoint, read_spec, save_checkpoint
from fer_core.metrics import paired_macro_f1_difference


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a checkpoint written by train/train.py")
    p.add_argument("--name", default=None, help="name in checkpoints/ (default: the run's file name)")
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"], help="stored weight dtype")
    p.add_argument("--force", action="store_true", help="replace even if not better on validation")
    p.add_argument("--recorded", action="store_true",
                   help="compare the numbers train.py recorded instead of re-scoring both runs on the validation images")
    p.add_argument("--margin", type=float, default=0.0,
                   help="replace only when the run's validation macro-F1 is higher by more than this")
    p.add_argument("--no-int8", action="store_true", help="do not calibrate the promoted checkpoint for int8")
    return p


def main(args: argparse.Namespace) -> bool:
    new_spec = read_spec(args.run)
    dest = CHECKPOINT_DIR / f"{args.name or Path(args.run).stem}.safetensors"
    new_f1 = new_spec.metrics.get("val_macro_f1")
    if new_f1 is None:
        raise SystemExit(f"{args.run} has no validation macro-F1; train it with train/train.py")
    if dest.is_file():
        from quantize import validation_key, validation_predictions  # train/ is on sys.path when run as a script

        old = read_spec(dest)
        old_f1 = old.metrics.get("val_macro_f1") or 0.0
        same_val = bool(new_spec.train_data) and validation_key(old) == validation_key(new_spec)
        print(f"committed {dest.name}: val macro-F1 {old_f1:.4f} as recorded; run: {new_f1:.4f} "
              f"({'same' if same_val else 'different'} validation split)")
        if "val_mean_macro_f1" in new_spec.metrics and not args.recorded:
            # a run chosen by its mean over training folders: both scored on each of the run's folders
            from quantize import group_scores_on_run_split

            g = group_scores_on_run_split(args.run, dest)
            for c, scores in g.items():
                print(f"  {Path(c).name}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
            new_f1, old_f1 = g[str(args.run)]["mean"], g[str(dest)]["mean"]
            print(f"mean validation macro-F1 over the run's folders: committed {old_f1:.4f}; run {new_f1:.4f}")
        elif same_val and not args.recorded:
            y, (new_pred, old_pred) = validation_predictions(args.run, dest)
            d = paired_macro_f1_difference(y, new_pred, old_pred)
            new_f1, old_f1 = d["macro_f1_a"], d["macro_f1_b"]
            print(f"re-scored on the original validation images (float32): committed {old_f1:.4f}; run {new_f1:.4f}; "
                  f"run - committed {d['difference']:+.4f} (paired bootstrap over the {d['n']} faces: 95% "
                  f"{d['ci95'][0]:+.4f} ... {d['ci95'][1]:+.4f}, run better in {d['a_better']:.0%} of resamples)")
        if new_f1 - old_f1 <= args.margin and not args.force:
            print("not better on validation" + (f" by more than {args.margin}" if args.margin else "")
                  + ": kept the committed checkpoint")
            return False
    model, spec = load_checkpoint(args.run)  # its spec holds its recorded lineage, if any (train/lineage.py)
    save_checkpoint(model, spec, dest, dtype=getattr(torch, args.dtype))
    lineage_file(dest).unlink(missing_ok=True)  # recorded for the run this one replaces
    print(f"wrote {dest} ({dest.stat().st_size / 1e6:.1f} MB, {args.dtype})")
    if not args.no_int8:
        from quantize import calibrate_checkpoint  # train/ is on sys.path when run as a script

        calibrate_checkpoint(dest)
    return True


if __name__ == "__main__":
    main(get_args_parser().parse_args())
