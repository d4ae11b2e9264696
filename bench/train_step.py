"""Where a training step's time goes: augmentation alone, the optimisation step alone (forward, backward,
SGD, EMA), and both as `train.py` runs them, in ms per batch on random 64-px images.

  python bench/train_step.py [--device cpu|cuda] [--arch fernet] [--width 32 48] [--batch-size 128]
                             [--steps 20] [--sam 0.05] [--threads 2] [--compile off reduce-overhead]

The same code as training (`fer_core.training.train_one_epoch`, `BatchAugment` with train.py's defaults
plus --rotation 15 --lowres 0.1); on a GPU the images live on the device, as `--augment-on device`.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


from fer_core.checkpoints import ModelSpec
from fer_core.device import bf16_supported, pick_device
from fer_core.labels import EMOTIONS
from fer_core.models import create_model
from fer_core.preprocess import AugmentOptions, BatchAugment
from fer_core.training import build_optimizer, compiled, ema_of, train_one_epoch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(arch: str, width: int | None, *, device: torch.device, batch_size: int, steps: int,
            sam: float, compile_mode: str = "off") -> dict:
    torch.manual_seed(0)
    kw = {"width": width} if width else {}
    model = create_model(arch, **kw).to(device).to(memory_format=torch.channels_last)
    spec = ModelSpec(arch=arch, classes=EMOTIONS, input_size=64, model_kwargs=kw)
    n = batch_size * steps
    x_u8 = torch.randint(0, 256, (n, 3, 64, 64), dtype=torch.uint8, device=device)
    y = torch.randint(0, len(EMOTIONS), (n,))
    aug = BatchAugment(AugmentOptions(rotation=15.0, lowres=0.1), 64)
    opt = build_optimizer(model, "sgd", 0.01, 5e-4)
    ema = ema_of(model, 0.998)
    bf16 = bf16_supported(device)
    common = dict(spec=spec, optimizer=opt, scheduler=None, criterion=torch.nn.CrossEntropyLoss(),
                  batch_size=batch_size, device=device, bf16=bf16, ema=ema, sam_rho=sam)
    if compile_mode != "off":
        common["forward"] = compiled(model, compile_mode)
    idx = np.arange(n)
    warm = np.arange(min(3, steps) * batch_size)  # the warm-up reads the images the timed steps use
    t = time.perf_counter()
    train_one_epoch(model, x_u8, y, warm, augment=aug, **common)  # warm-up (kernels, allocator, compiling)
    _sync(device)
    out = {"arch": arch, "width": width, "batch_size": batch_size, "steps": steps, "sam": sam,
           "compile": compile_mode, "device": str(device), "bf16": bf16, "warmup_s": time.perf_counter() - t}
    _sync(device)
    t = time.perf_counter()
    for b in range(steps):
        aug(x_u8[b * batch_size:(b + 1) * batch_size])
    _sync(device)
    out["augment_ms"] = (time.perf_counter() - t) / steps * 1e3
    for name, a in (("step_ms", None), ("both_ms", aug)):
        _sync(device)
        t = time.perf_counter()
        train_one_epoch(model, x_u8, y, idx, augment=a, **common)
        _sync(device)
        out[name] = (time.perf_counter() - t) / steps * 1e3
    out["epoch_s_at_38k"] = out["both_ms"] * (38_000 // batch_size) / 1e3  # raf-db:2 + fer2013 per epoch
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--arch", default="fernet")
    p.add_argument("--width", type=int, nargs="+", default=[0], help="model widths (0 = the model's own)")
    p.add_argument("--batch-size", type=int, nargs="+", default=[128])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--sam", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--compile", nargs="+", default=["off"], choices=["off", "default", "reduce-overhead"],
                   help="torch.compile modes of the training forward to time")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    for mode in args.compile:
        for width in args.width:
            for bs in args.batch_size:
                r = measure(args.arch, width or None, device=device, batch_size=bs, steps=args.steps, sam=args.sam,
                            compile_mode=mode)
                print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()}), flush=True)


if __name__ == "__main__":
    main()
