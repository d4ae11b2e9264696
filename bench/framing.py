"""How tightly should a face be framed for the model? Accuracy on the validation faces re-framed so that the
eyes are a given share of the crop apart.

  python bench/framing.py                                 # the default model, eyes 0.34-0.46 of the crop apart
  python bench/framing.py --model vgg16 --eyes 0.36 0.40 0.44

The two training sets frame faces differently: RAF-DB's aligned crops put the eyes ~0.45 of the crop apart,
FER2013's ~0.37 (yuface's landmarks), and our own crop of a face in a photo puts them wherever the crop rule
says (`fer_core.faces.MARGIN_COLOUR`, `MARGIN_GREY`). Each validation face of the checkpoint's own split (never the test
split: this chooses a setting) is zoomed about its centre so that its eyes, found by the detector on a
256-px copy, end up E of the side apart; what the zoom leaves empty is filled by reflection. It then goes
through the predictor as an upload's crop does. The reflected border is not a real surrounding, so read the
rows against each other.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch


from fer_core.evaluation import training_splits
from robustness import _affine
from fer_core.faces import detect_faces, eyes_apart
from fer_core.runtime import DEFAULT_CHECKPOINT, load_predictor
from fer_core.metrics import classification_report

ROOT = Path(__file__).resolve().parent.parent

DETECT_SIDE = 256


def eye_share(face: np.ndarray) -> float | None:
    """Distance between the eyes as a share of the crop's side (yuface on a 256-px copy), None if not found."""
    big = cv2.resize(face, (DETECT_SIDE, DETECT_SIDE), interpolation=cv2.INTER_CUBIC)
    found = [f for f in detect_faces(big) if f.landmarks is not None]
    return eyes_apart(found[0].landmarks, DETECT_SIDE) if found else None


def reframed(face: np.ndarray, zoom: float) -> np.ndarray:
    """The face zoomed about its centre, the emptied border filled by reflection."""
    return _affine(face, 0.0, zoom, 0.0, 0.0, border=cv2.BORDER_REFLECT_101)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=DEFAULT_CHECKPOINT, help="checkpoint name or path")
    p.add_argument("--eyes", nargs="+", type=float, default=[0.34, 0.37, 0.40, 0.43, 0.46],
                   help="distance between the eyes, as a share of the crop's side, to re-frame every face to")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    return p


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    predictor = load_predictor(args.model)
    sources: list[str] = []
    x_u8, y, _, val_idx = training_splits(predictor.spec, sources)
    faces = [np.ascontiguousarray(x_u8[i].permute(1, 2, 0).numpy()) for i in val_idx]
    labels = y[torch.from_numpy(val_idx)].numpy()
    names = sorted(set(sources))
    src = np.array(sources)
    shares = [eye_share(f) for f in faces]
    native = {}
    for name in names:
        found = [s for s, n in zip(shares, sources) if n == name and s is not None]
        native[name] = float(np.median(found))
        print(f"{name}: {len(found)} of {int((src == name).sum())} validation faces' eyes found, "
              f"median {native[name]:.3f} of the crop apart")
    own = np.array([s if s is not None else native[n] for s, n in zip(shares, sources)])
    print(f"\n{args.model}, validation split; accuracy / macro-F1 per training set")
    print("| eyes apart | " + " | ".join(names) + " | mean accuracy |")
    print("|---|" + "---|" * (len(names) + 1))
    results = {}
    for e in args.eyes:
        pred = predictor.predict([reframed(f, e / s) for f, s in zip(faces, own)]).argmax(1)
        reps = {n: classification_report(labels[src == n], pred[src == n]) for n in names}
        results[e] = reps
        mean = float(np.mean([r["accuracy"] for r in reps.values()]))
        print(f"| {e:.2f} | " + " | ".join(f"{100 * r['accuracy']:.2f} / {r['macro_f1']:.3f}" for r in reps.values())
              + f" | {100 * mean:.2f} |", flush=True)
    return results


if __name__ == "__main__":
    main(get_args_parser().parse_args())
