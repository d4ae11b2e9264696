"""Per-face latency at batch size 1 (preprocessing included, median after warm-up) of each way the
predictor can run a checkpoint: eager PyTorch, the TorchScript-frozen float32 copy and, for a checkpoint
calibrated by train/quantize.py, the int8 copy, with and without the checkpoint's flip averaging.
Run it with nothing else busy on the machine.

  python bench/latency.py [--models fernet resnet18] [--repeats 200] [--threads 2]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch


from fer_core.evaluation import latency_ms
from fer_core.checkpoints import load_checkpoint
from fer_core.device import cpu_summary
from fer_core.runtime import DEFAULT_CHECKPOINT, Predictor

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=[DEFAULT_CHECKPOINT], help="checkpoint names or paths")
    ap.add_argument("--repeats", type=int, default=200, help="timed predictions per setting")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{cpu_summary()}, {args.threads} threads, batch 1, median of {args.repeats}")
    print("| model | flip averaging | eager float32 ms/face | frozen float32 ms/face | int8 ms/face | fastest vs eager |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        model, spec = load_checkpoint(name)
        for tta in sorted({spec.tta_flip, False}, reverse=True):
            s = spec.with_updates(tta_flip=tta)
            ms = {}
            for precision, frozen in (("float32", False), ("float32", True), ("int8", True)):
                if precision == "int8" and not s.int8:
                    continue
                pred = Predictor(model, s, name, precision=precision, frozen=frozen)
                ms[(pred.precision, pred.runtime)] = latency_ms(pred, repeats=args.repeats)
            eager = ms[("float32", "eager")]
            cells = [ms.get(k, float("nan")) for k in (("float32", "torchscript"), ("int8", "torchscript"))]
            print(f"| {name} | {'yes' if tta else 'no'} | {eager:.2f} | " + " | ".join(f"{v:.2f}" for v in cells)
                  + f" | {eager / min(ms.values()):.2f}x |")


if __name__ == "__main__":
    main()
