"""Why the plain-CNN zoo members start slowly: each block's paths at initialisation, the convolutions' gradients, and
a memorisation test, for a model as registered and with one thing changed at a time.

  python bench/slow_start.py                                   # cnn_se, cnn_se_residual, resnet18
  python bench/slow_start.py --arch baseline cnn_se_residual --steps 60

On RAF-DB training faces (decoded at 64 px, as train/train.py reads them):
- per block of a PlainCNN, the output std of the main 3x3 path (after BN and squeeze-and-excitation) and of the 1x1
  projection shortcut, on 128 faces in training mode;
- the median over convolutions of |grad| / |weight| after one cross-entropy backward pass on those faces;
- the loss after 1/20/40/60 AdamW steps (lr 1e-3, weight decay 0.05, batches of 64, bf16 autocast where the CPU has
  it) on 256 faces without augmentation: how fast the model can memorise them.
Variants: as registered; `nodrop` (dropout 0); `zero_shortcut` (each shortcut's BN scale 0: the block starts as its
plain counterpart); `he_head` (He initialisation of the MLP head's two hidden layers).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn as nn

from fer_core.data import datasets_root, load_labelled_folder, load_uint8
from fer_core.device import bf16_supported
from fer_core.models import create_model

VARIANTS = ("registered", "nodrop", "zero_shortcut", "he_head")


def build(arch: str, variant: str) -> nn.Module:
    torch.manual_seed(0)
    model = create_model(arch, **({"dropout": 0.0} if variant == "nodrop" else {}))
    for block in getattr(model, "blocks", []):
        if variant == "zero_shortcut" and block.shortcut is not None:
            nn.init.zeros_(block.shortcut[1].weight)
    if variant == "he_head":
        for layer in list(model.head)[:-1]:
            if isinstance(layer, nn.Linear):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)
    return model


def applies(arch: str, variant: str) -> bool:
    model = create_model(arch)
    if variant == "zero_shortcut":
        return any(getattr(b, "shortcut", None) is not None for b in getattr(model, "blocks", []))
    if variant == "he_head":
        return hasattr(model, "head")
    return True


def block_stats(model: nn.Module, x: torch.Tensor) -> list[str]:
    out, h = [], x
    for i, b in enumerate(model.blocks):
        main = b.se(b.bn(b.conv(h)))
        short = b.shortcut(h) if b.shortcut is not None else None
        out.append(f"block{i + 1} main {main.std():.2f}" + (f" shortcut {short.std():.2f}" if short is not None else ""))
        h = b.drop(b.pool(b.act(main + short if short is not None else main)))
    return out


def grad_ratio(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    nn.functional.cross_entropy(model(x), y).backward()
    return float(np.median([p.grad.norm().item() / p.norm().item() for p in model.parameters() if p.dim() == 4]))


def memorise(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> list[float]:
    opt = torch.optim.AdamW(model.parameters(), 1e-3, weight_decay=0.05)
    losses = []
    for step in range(steps):
        j = torch.arange(step % 4 * 64, step % 4 * 64 + 64)
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16_supported(torch.device("cpu"))):
            loss = nn.functional.cross_entropy(model(x[j]), y[j])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", nargs="+", default=["cnn_se", "cnn_se_residual", "resnet18"])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    folder = load_labelled_folder(datasets_root() / "raf-db" / "train")
    x_u8, labels = load_uint8(folder, 64)
    idx = np.sort(np.random.default_rng(0).choice(len(labels), 256, replace=False))
    x = (x_u8[torch.from_numpy(idx)].float() / 255 - 0.5) / 0.5
    x = x.permute(0, 3, 1, 2) if x.shape[-1] == 3 else x
    y = torch.as_tensor(labels)[torch.from_numpy(idx)].long()
    for arch in args.arch:
        for variant in args.variants:
            if not applies(arch, variant):
                continue
            t0 = time.perf_counter()
            model = build(arch, variant).train()
            stats = block_stats(model, x[:128]) if hasattr(model, "blocks") else []
            ratio = grad_ratio(model, x[:128], y[:128])
            losses = memorise(build(arch, variant).train(), x, y, args.steps)
            marks = [losses[i] for i in (0, 19, 39, 59) if i < len(losses)]
            print(f"{arch:16s} {variant:14s} conv |grad|/|w| median {ratio:.1e}; memorising 256 faces, loss at steps "
                  f"1/20/40/60: {' / '.join(f'{v:.3f}' for v in marks)} ({time.perf_counter() - t0:.0f} s)")
            if stats and variant == "registered":
                print("    at initialisation: " + "; ".join(stats))


if __name__ == "__main__":
    main()
