"""Does a seven-class model say "neutral" for what a face shows, or for where the picture came from?

  python bench/shortcuts.py                       # the default model
  python bench/shortcuts.py --models fernet runs/other.safetensors

The neutral faces of the training data carry three shortcuts (the datasets' README): FER+ neutral faces are all
grey, the AffectNet-HQ/FFHQ neutral faces were stored at 48 px (blurrier), and most colour neutral faces come from
one webcam collection of one population. Two measurements:

1. `affectnet-hq/val` (1,799 in-the-wild faces, none neutral), through the app's detector and crop, read three ways:
   in colour, in greyscale, and from the picture shrunk to 48 px and scaled back (the blur of the 48-px faces). A
   model that learned "grey means neutral" or "blurry means neutral" calls many more of the grey or 48-px copies
   neutral than of the colour ones. Also the accuracy over the six emotions each way.
2. `neutral-pool/val` through the detector: neutral recall per source (FFHQ, AffectNet, webcam) and the webcam
   collection's other classes (does the population or the framing decide?).
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np
import torch

from fer_core.data import _detector_crop, datasets_root, load_labelled_folder, load_uint8
from fer_core.evaluation import app_logits
from fer_core.io import read_image
from fer_core.labels import CLASSES_7, EMOTIONS
from fer_core.metrics import classification_report
from fer_core.preprocess import grey_uint8
from fer_core.runtime import DEFAULT_CHECKPOINT, load_predictor

NEUTRAL = len(EMOTIONS)


def low_resolution_copies(folder, size: int, side: int = 48) -> torch.Tensor:
    """Each image shrunk to `side` px (area) and scaled back up (bicubic, as the 48-px faces were), then found and
    cropped by the app's detector at the model's input `size`."""
    out = np.empty((len(folder.paths), size, size, 3), np.uint8)
    for i, p in enumerate(folder.paths):
        img = read_image(p)
        h, w = img.shape[:2]
        small = cv2.resize(img, (max(1, w * side // max(h, w)), max(1, h * side // max(h, w))),
                           interpolation=cv2.INTER_AREA)
        out[i] = _detector_crop(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), size)[0]
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def views_table(predictor) -> list[str]:
    folder = load_labelled_folder(datasets_root() / "affectnet-hq" / "val")
    size = predictor.spec.input_size
    colour, y = load_uint8(folder, size, crop="detector")
    views = {"colour": colour, "greyscale": grey_uint8(colour), "48 px": low_resolution_copies(folder, size)}
    lines = []
    for view, x in views.items():
        logits = app_logits(predictor, x)
        neutral = float((logits.argmax(1) == NEUTRAL).float().mean()) if logits.shape[1] > NEUTRAL else 0.0
        six = classification_report(y.numpy(), logits[:, :NEUTRAL].argmax(1).numpy(), NEUTRAL)
        lines.append(f"| {predictor.name} | {view} | {len(y)} | {100 * neutral:.1f} | {100 * six['accuracy']:.1f} | "
                     f"{six['macro_f1']:.3f} |")
    return lines


def pool_table(predictor) -> list[str]:
    folder = load_labelled_folder(datasets_root() / "neutral-pool" / "val")
    x, y = load_uint8(folder, predictor.spec.input_size, crop="detector")
    pred = app_logits(predictor, x).argmax(1).numpy()
    y = y.numpy()
    source = np.array(["webcam" if p.name.startswith("webcam") else "ffhq" if p.name.startswith("ffhq")
                       else "affectnet" for p in folder.paths])
    lines = []
    for src in ("ffhq", "affectnet", "webcam"):
        for c in range(len(CLASSES_7)):
            m = (source == src) & (y == c)
            if m.any():
                lines.append(f"| {predictor.name} | {src} | {CLASSES_7[c]} | {int(m.sum())} | "
                             f"{100 * float((pred[m] == c).mean()):.1f} | {100 * float((pred[m] == NEUTRAL).mean()):.1f} |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=[DEFAULT_CHECKPOINT], help="checkpoint names or paths")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    views = ["| model | affectnet-hq val read as | faces | called neutral % | accuracy over the six % | "
             "macro-F1 over the six |", "|---|---|---|---|---|---|"]
    pool = ["| model | neutral-pool val source | class | faces | recall % | called neutral % |",
            "|---|---|---|---|---|---|"]
    for name in args.models:
        predictor = load_predictor(name, frozen=None)  # as the app runs it
        views += views_table(predictor)
        pool += pool_table(predictor)
    print("\n".join(views))
    print()
    print("\n".join(pool))


if __name__ == "__main__":
    main()
