"""Accuracy under the corruptions that users' photos bring (phones, webcams, our own detector's boxes).

  python bench/robustness.py                          # the default model and resnet18 on RAF-DB test
  python bench/robustness.py --models fernet --data raf-db fer2013 --sample 1000
  python bench/robustness.py --models fernet --data raf-db fer2013 --face-sizes 12 16 20 24 32   # small faces

Each test face (already a 64x64 crop) is corrupted deterministically (seeded per image), then goes
through the same path as evaluation: the checkpoint's preprocessing, precision and flip averaging.
This is a proxy for faces from other sources, not a replacement: it shows which models lean on
the benchmark's clean, aligned, colour crops.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch


from fer_core.evaluation import sample_indices
from fer_core.data import datasets_root, load_labelled_folder, load_uint8
from fer_core.runtime import DEFAULT_CHECKPOINT, load_predictor
from fer_core.metrics import classification_report
from fer_core.training import predict_logits

ROOT = Path(__file__).resolve().parent.parent

Corruption = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _affine(img: np.ndarray, angle: float, scale: float, dx: float, dy: float,
            border: int = cv2.BORDER_REPLICATE) -> np.ndarray:
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m[:, 2] += (dx * w, dy * h)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=border)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]


def _low_res(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    small = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _gray(img: np.ndarray) -> np.ndarray:
    g = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
    return np.repeat(g[..., None], 3, axis=2)


def _gain(img: np.ndarray, gain: float, gamma: float = 1.0) -> np.ndarray:
    x = (img.astype(np.float32) / 255.0) ** gamma * gain
    return (x.clip(0, 1) * 255).round().astype(np.uint8)


def _noise(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    return (img.astype(np.float32) + rng.normal(0, sigma, img.shape)).clip(0, 255).round().astype(np.uint8)


def _off_centre(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # a detector box 12% off in a random direction and 15% larger or smaller
    a = rng.uniform(0, 2 * np.pi)
    return _affine(img, 0.0, float(rng.choice([1 / 1.15, 1.15])), 0.12 * np.cos(a), 0.12 * np.sin(a))


CORRUPTIONS: dict[str, Corruption] = {
    "clean": lambda im, rng: im,
    "off-centre box (±12%, ×/÷1.15)": _off_centre,
    "rotation ±20°": lambda im, rng: _affine(im, float(rng.choice([-20, 20])), 1.0, 0, 0),
    "JPEG quality 15": lambda im, rng: _jpeg(im, 15),
    "Gaussian blur σ 1.5": lambda im, rng: cv2.GaussianBlur(im, (0, 0), 1.5),
    "low resolution (24 px)": lambda im, rng: _low_res(im, 24),
    "grayscale": lambda im, rng: _gray(im),
    "dark (×0.4, γ 1.5)": lambda im, rng: _gain(im, 0.4, 1.5),
    "sensor noise σ 12": lambda im, rng: _noise(im, rng, 12.0),
}


def face_size_corruptions(sizes) -> dict[str, Corruption]:
    """A face that was `s` pixels wide in the photo: shrunk to s px, then enlarged back as the crop is."""
    return {"clean": CORRUPTIONS["clean"], **{f"face {s} px": (lambda im, rng, s=s: _low_res(im, s)) for s in sizes}}


def corrupt_batch(x_u8: torch.Tensor, fn: Corruption, seed: int = 0) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> the same shape, each image corrupted with its own seeded generator."""
    imgs = x_u8.permute(0, 2, 3, 1).numpy()
    out = np.stack([fn(np.ascontiguousarray(im), np.random.default_rng([seed, i])) for i, im in enumerate(imgs)])
    return torch.from_numpy(np.ascontiguousarray(out)).permute(0, 3, 1, 2).contiguous()


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=[DEFAULT_CHECKPOINT, "resnet18"], help="checkpoint names or paths")
    p.add_argument("--data", nargs="+", default=["raf-db"], help="test sets under ../shared/datasets")
    p.add_argument("--sample", type=int, default=0, help="a fixed, seeded sample of N images per set (0 = all)")
    p.add_argument("--face-sizes", type=int, nargs="+", default=None, metavar="PX",
                   help="instead of the corruptions: each face shrunk to these widths in pixels, then enlarged")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    return p


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    predictors = {m: load_predictor(m) for m in args.models}
    corruptions = face_size_corruptions(args.face_sizes) if args.face_sizes else CORRUPTIONS
    results: dict = {}
    for ds in args.data:
        x, y = load_uint8(load_labelled_folder(datasets_root() / ds / "test"), 64)
        keep = sample_indices(len(y), args.sample)
        x, y = x[keep], y[keep].numpy()
        print(f"\n{ds} test, {len(y)} images: accuracy % (macro-F1)")
        print("| corruption | " + " | ".join(args.models) + " |")
        print("|---|" + "---|" * len(args.models))
        for name, fn in corruptions.items():
            xc = corrupt_batch(x, fn)
            cells = []
            for m, pred in predictors.items():
                spec = pred.spec
                z = predict_logits(pred.model, xc, spec=spec, tta_flip=spec.tta_flip,
                                   bf16=pred.precision == "bfloat16")
                rep = classification_report(y, z.argmax(1).numpy())
                results[(ds, name, m)] = rep
                cells.append(f"{100 * rep['accuracy']:.1f} ({rep['macro_f1']:.3f})")
            print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
        means = [np.mean([results[(ds, c, m)]["accuracy"] for c in corruptions if c != "clean"]) for m in predictors]
        print("| **mean of the corruptions** | " + " | ".join(f"**{100 * v:.1f}**" for v in means) + " |")
    return results


if __name__ == "__main__":
    main(get_args_parser().parse_args())
