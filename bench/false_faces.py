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


from fer_core.examples import hand_picture
from fer_core.faces import CHECK_BELOW, FACE_CHECK, detect_faces, face_geometry
from fer_core.framing import in_a_photo, nearest_centre

ROOT = Path(__file__).resolve().parent.parent

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


def rule_table(neg: list[dict], pos: list[dict], n_pos_pictures: int) -> None:
    """Each candidate rule: the negatives' boxes it keeps and the positives' faces it loses (of those found at the
    table's --min-score)."""
    def keeps(r: dict, min_score: float, check_below: float, bounds: dict) -> bool:
        if r["score"] < min_score:
            return False
        return r["score"] >= check_below or all(lo <= r[k] <= hi for k, (lo, hi) in bounds.items())

    print(f"\n| rule | negative boxes kept (of {len(neg)}) | positive faces lost (of {len(pos)} found; "
          f"{n_pos_pictures} pictures) |")
    print("|---|---|---|")
    rules = [(f"score >= {m}", m, 0.0) for m in (0.6, 0.7, 0.8)]
    rules += [(f"score >= 0.6, geometry checked below {g}", 0.6, g) for g in (0.7, 0.75, 0.8, 0.85, 1.01)]
    for name, m, g in rules:
        kept = sum(keeps(r, m, g, FACE_CHECK) for r in neg)
        lost = sum(not keeps(r, m, g, FACE_CHECK) for r in pos)
        print(f"| {name} | {kept} | {lost} ({100 * lost / max(len(pos), 1):.2f}%) |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", default="val", choices=["val", "test"])
    p.add_argument("--per-set", type=int, default=1000, help="faces per dataset (a fixed, seeded sample)")
    p.add_argument("--hands", type=int, default=120, help="code-drawn hand pictures")
    p.add_argument("--min-score", type=float, default=0.5, help="detections kept for the table")
    p.add_argument("--dump", default=None, help="also write every box's score and geometry to this JSON file")
    p.add_argument("--from-dump", default=None, help="print the tables from a --dump file instead of detecting")
    args = p.parse_args()
    import json

    if args.from_dump:
        data = json.loads(Path(args.from_dump).read_text())
        neg, pos, n_pos = data["negative"], data["positive"], data.get("pictures", len(data["positive"]))
    else:
        neg = [{"name": name, "score": b.score, **face_geometry(b)} for name, img in negatives(hands=args.hands)
               for b in detect_faces(img, min_score=args.min_score, check=False)]
        pictures = positives(args.split, args.per_set)
        pos = []
        for name, img in pictures:
            boxes = detect_faces(img, min_score=args.min_score, check=False)
            if boxes:
                pos.append({"name": name, "score": boxes[nearest_centre(boxes, img.shape)].score,
                            **face_geometry(boxes[nearest_centre(boxes, img.shape)])})
        n_pos = len(pictures)
        if args.dump:
            Path(args.dump).write_text(json.dumps({"negative": neg, "positive": pos, "pictures": n_pos}))
    print(f"negatives: {len(neg)} boxes scoring >= {args.min_score} in pictures with no face; positives: {len(pos)} "
          f"of {n_pos} faces ({args.split}) found at that score")
    print("\n| negative box | score | " + " | ".join(FACE_CHECK) + " | kept by the check |")
    print("|---|---|" + "---|" * len(FACE_CHECK) + "---|")
    for r in neg:
        kept = r["score"] >= CHECK_BELOW or all(lo <= r[k] <= hi for k, (lo, hi) in FACE_CHECK.items())
        print(f"| {r['name']} | {r['score']:.2f} | " + " | ".join(f"{r[k]:.2f}" for k in FACE_CHECK)
              + f" | {'yes' if kept and r['score'] >= 0.6 else 'no'} |")
    print("\nthe positives' geometry (1st / 5th / 50th / 95th / 99th percentile) against the check's bounds:")
    for k, (lo, hi) in FACE_CHECK.items():
        v = np.array([r[k] for r in pos])
        q = np.percentile(v, [1, 5, 50, 95, 99])
        print(f"  {k}: " + " / ".join(f"{x:.2f}" for x in q) + f"; bounds {lo} .. {hi}; outside: "
              f"{np.mean((v < lo) | (v > hi)):.2%}")
    rule_table(neg, pos, n_pos)


if __name__ == "__main__":
    main()
