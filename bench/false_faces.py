"""Faces that are not faces: what the detector boxes in pictures that hold none, and what a check of its score and
landmark geometry (fer_core.faces.face_geometry) rejects, against the real faces it must keep.

  python bench/false_faces.py                    # negatives, and the default model's validation faces in frames
  python bench/false_faces.py --split test       # the test faces instead (the final report, never to choose by)

Negatives, all made here: scikit-image's faceless pictures (a cat, coffee, coins, the Hubble deep field, a
motorcycle, text...) at three sizes and in seeded crops, code-drawn raised hands (fer_core.examples.hand_picture)
and noise and stripe textures. Positives: RAF-DB and FER2013 faces set in a 256-px picture (a plain or a mirrored
border of half the crop's side, as bench/detection.py --context 0.5), the box nearest the centre. Every detection
scoring at least --min-score is kept with its geometry, and each candidate rule is reported as the share of
negatives' boxes it rejects and of the positives' faces it loses.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

from fer_core.examples import hand_picture  # noqa: E402
from fer_core.faces import FACE_CHECK, detect_faces, face_geometry, plausible_face  # noqa: E402
from fer_core.framing import in_a_photo, nearest_centre  # noqa: E402

FACELESS = ("brick", "chelsea", "clock", "coffee", "coins", "colorwheel", "grass", "gravel", "hubble_deep_field",
            "immunohistochemistry", "logo", "moon", "page", "rocket", "text", "retina", "checkerboard",
            "stereo_motorcycle", "microaneurysms", "palisades_of_vogt")


def _rgb(a) -> np.ndarray:
    a = np.asarray(a[0] if isinstance(a, tuple) else a)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, 2)
    a = a[..., :3]
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        a = (255 * (a - a.min()) / (a.max() - a.min() + 1e-9)).astype(np.uint8)
    return np.ascontiguousarray(a)


def negatives(seed: int = 0, hands: int = 120) -> list[tuple[str, np.ndarray]]:
    """(name, picture) pairs that hold no face."""
    import cv2
    from skimage import data

    rng = np.random.default_rng(seed)
    out = []
    for name in FACELESS:
        try:
            img = _rgb(getattr(data, name)())
        except Exception:  # a picture this scikit-image build does not ship
            continue
        for side in (256, 640, 960):
            s = side / max(img.shape[:2])
            out.append((f"{name}@{side}", cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA
                                                     if s < 1 else cv2.INTER_CUBIC)))
        h, w = img.shape[:2]
        for k in range(4):  # seeded crops: a third to two thirds of the picture
            c = int(rng.uniform(0.33, 0.67) * min(h, w))
            y, x = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
            out.append((f"{name}-crop{k}", np.ascontiguousarray(img[y:y + c, x:x + c])))
    for k in range(hands):
        out.append((f"hand{k}", hand_picture(seed + k, size=int(rng.integers(240, 720)))))
    for k in range(20):
        noise = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
        out.append((f"noise{k}", cv2.GaussianBlur(noise, (0, 0), float(rng.uniform(0.5, 6)))))
        period = rng.uniform(6, 40)
        stripes = (127 + 120 * np.sin(np.arange(384) * 2 * np.pi / period))[None, :, None] * np.ones((384, 1, 3))
        out.append((f"stripes{k}", cv2.warpAffine(stripes.astype(np.uint8), cv2.getRotationMatrix2D(
            (192, 192), float(rng.uniform(0, 180)), 1.0), (384, 384), borderMode=cv2.BORDER_REFLECT)))
    return out


def positives(split: str, per_set: int) -> list[tuple[str, np.ndarray]]:
    """Faces of RAF-DB and FER2013 (the default model's validation faces, or the test split's), each set in a
    256-px picture with a plain and with a mirrored border."""
    from detection import split_faces, validation_faces

    from fer_core.runtime import load_predictor

    val = validation_faces(load_predictor(precision="float32").spec) if split == "val" else None
    out = []
    for ds in ("raf-db", "fer2013"):
        faces, _ = split_faces(ds, per_set, val)
        for n, face in enumerate(faces):
            out.append((f"{ds}{n}", in_a_photo(face, 256, context=0.5, plain=n % 2 == 0)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", default="val", choices=["val", "test"])
    p.add_argument("--per-set", type=int, default=1000, help="faces per dataset (a fixed, seeded sample)")
    p.add_argument("--hands", type=int, default=120, help="code-drawn hand pictures")
    p.add_argument("--min-score", type=float, default=0.5, help="detections kept for the table")
    p.add_argument("--dump", default=None, help="also write every box's score and geometry to this JSON file")
    args = p.parse_args()

    neg_rows = []
    for name, img in negatives(hands=args.hands):
        for box in detect_faces(img, min_score=args.min_score, check=False):
            neg_rows.append((name, box))
    pos_rows, missed = [], 0
    pos = positives(args.split, args.per_set)
    for name, img in pos:
        boxes = detect_faces(img, min_score=args.min_score, check=False)
        if not boxes:
            missed += 1
            continue
        pos_rows.append((name, boxes[nearest_centre(boxes, img.shape)]))
    if args.dump:
        import json

        Path(args.dump).write_text(json.dumps({kind: [{"name": n, "score": b.score, **face_geometry(b)}
                                                      for n, b in rows]
                                               for kind, rows in (("negative", neg_rows), ("positive", pos_rows))}))
    print(f"negatives: {len(negatives(hands=args.hands))} pictures with no face, {len(neg_rows)} boxes scoring "
          f">= {args.min_score}; positives: {len(pos)} faces ({args.split}), {missed} not found at that score")
    print("\n| negative box | score | " + " | ".join(FACE_CHECK) + " | kept by the check |")
    print("|---|---|" + "---|" * len(FACE_CHECK) + "---|")
    for name, box in neg_rows:
        g = face_geometry(box)
        print(f"| {name} | {box.score:.2f} | " + " | ".join(f"{g[k]:.2f}" for k in FACE_CHECK)
              + f" | {'yes' if plausible_face(box) else 'no'} |")
    print("\nthe positives' geometry (5th / 50th / 95th percentile) against the check's bounds:")
    geo = [face_geometry(b) for _, b in pos_rows]
    for k, (lo, hi) in FACE_CHECK.items():
        v = np.array([g[k] for g in geo])
        print(f"  {k}: {np.percentile(v, 5):.2f} / {np.percentile(v, 50):.2f} / {np.percentile(v, 95):.2f}; "
              f"bounds {lo} .. {hi}; outside: {np.mean((v < lo) | (v > hi)):.2%}")
    print("\n| rule | negative boxes kept (of %d) | positive faces lost (of %d found) |" % (len(neg_rows), len(pos_rows)))
    print("|---|---|---|")
    for min_score in (0.6, 0.7, 0.8):
        for check in (False, True):
            kept = sum(b.score >= min_score and (not check or plausible_face(b)) for _, b in neg_rows)
            lost = sum(not (b.score >= min_score and (not check or plausible_face(b))) for _, b in pos_rows)
            print(f"| score >= {min_score}{' + geometry' if check else ''} | {kept} | {lost} "
                  f"({100 * lost / max(len(pos_rows), 1):.2f}%) |")


if __name__ == "__main__":
    main()
