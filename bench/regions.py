"""Where a model looks, per emotion: each explanation map's share on the eyes & brows, the nose, the mouth and the
rest of the crop (`fer_core.regions`), averaged over the test faces of each emotion that the model gets right, and
the mean map of each emotion. RAF-DB's crops are aligned (the eyes at about the same place in every crop), so its
mean maps line up; each face's regions come from its own landmarks (yuface's, found on the crop enlarged to 256 px;
the template's where it finds none). Faces are scored whole, as `train/evaluate.py` scores them, and the maps
explain the prediction with the app's default options.

  python bench/regions.py                                   # RAF-DB test, every face: the Model card's file
  python bench/regions.py --sample 300 --out regions_sample.json    # a quick look
  python bench/regions.py --model vgg16 --data fer2013 # another checkpoint or test set (added to the file)

Writes (adds to) a JSON file, `checkpoints/regions.json` by default, keyed by checkpoint name then test set: the
Model card page shows it.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch


from fer_core.evaluation import sample_indices
from fer_core.checkpoints import CHECKPOINT_DIR
from fer_core.data import datasets_root, load_labelled_folder
from fer_core.explainers import unsupported_reason
from fer_core.faces import detect_faces
from fer_core.framing import nearest_centre
from fer_core.pipeline import analyze, explain_face
from fer_core.runtime import DEFAULT_CHECKPOINT, load_predictor
from fer_core.io import read_image
from fer_core.regions import REGIONS, region_shares

ROOT = Path(__file__).resolve().parent.parent

DETECT_SIDE = 256
MAP_SIDE = 32  # the mean maps are stored at this size


def crop_landmarks(face: np.ndarray) -> np.ndarray | None:
    """yuface's five landmarks of a face crop, in the crop's pixels (found on a DETECT_SIDE-px copy), or None."""
    s = DETECT_SIDE / max(face.shape[:2])
    big = cv2.resize(face, None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC)
    boxes = [b for b in detect_faces(big, turns=False) if b.landmarks is not None]
    if not boxes:
        return None
    return np.asarray(boxes[nearest_centre(boxes, big.shape)].landmarks, dtype=np.float32) / s


def where_it_looks(predictor, faces: list[np.ndarray], labels: np.ndarray, methods: list[str],
                   options: dict | None = None) -> dict:
    """The per-emotion summary of `faces` (RGB uint8 crops, scored whole) with true `labels` (class indices):
    counts, each method's mean region shares and mean map (MAP_SIDE px) over the faces the model gets right, each
    region's mean share of the crop (`area`: what a map spread evenly would give it), and the mean landmarks (in a
    crop of the faces' side) of the faces where yuface found them."""
    classes = predictor.classes
    methods = [m for m in methods if unsupported_reason(predictor.model, m) is None]
    shares = {m: {c: [] for c in classes} for m in methods}
    maps = {m: {c: [] for c in classes} for m in methods}
    right = {c: 0 for c in classes}
    total = {c: 0 for c in classes}
    found: list[np.ndarray] = []
    areas: list[list[float]] = []  # each region's share of the crop: what a map spread evenly would give it
    side = faces[0].shape[0] if faces else 64
    for face, y in zip(faces, labels):
        c = classes[int(y)]
        total[c] += 1
        r = analyze(face, predictor=predictor, whole_image=True)[0]
        if r.prediction != c:
            continue
        right[c] += 1
        lm = crop_landmarks(face)
        if lm is not None:
            lm = lm * (r.face.shape[0] / face.shape[0])  # the crop is the face at most CROP_MAX_SIDE px
            found.append(lm / r.face.shape[0] * side)
            r = replace(r, landmarks=lm)
        areas.append([region_shares(np.ones(r.face.shape[:2], np.float32), r.landmarks)[k] for k in REGIONS])
        done = explain_face(predictor, r, methods, method_options=options)
        for m, cam in done.maps.items():
            shares[m][c].append([region_shares(cam, r.landmarks)[k] for k in REGIONS])
            maps[m][c].append(cv2.resize(cam, (MAP_SIDE, MAP_SIDE), interpolation=cv2.INTER_AREA))
    return {
        "classes": list(classes), "regions": list(REGIONS), "methods": methods, "faces": int(len(faces)),
        "total": total, "right": right, "landmarks_found": len(found),
        "landmarks": np.mean(found, 0, dtype=np.float64).round(2).tolist() if found else None, "side": int(side),
        "area": dict(zip(REGIONS, np.mean(areas, 0, dtype=np.float64).round(4).tolist())) if areas else None,
        "shares": {m: {c: dict(zip(REGIONS, np.mean(v, 0, dtype=np.float64).round(4).tolist())) if v else None
                       for c, v in per.items()} for m, per in shares.items()},
        # float64 before rounding: a float32 0.008 is written 0.00800000037997961
        "mean_maps": {m: {c: np.mean(v, 0, dtype=np.float64).round(3).tolist() if v else None for c, v in per.items()}
                      for m, per in maps.items()},
    }


def write_compact(path: Path, doc: dict) -> None:
    """JSON with one line per innermost list of numbers (a mean map's row), not one line per number: a fifth of
    the size in git."""
    text = json.dumps(doc, indent=1)
    text = re.sub(r"\[\s*([-+0-9.eE,\s]+?)\s*\]", lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]",
                  text)
    path.write_text(text + "\n")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_CHECKPOINT, help="checkpoint name or path")
    ap.add_argument("--data", default="raf-db", help="a test set under ../shared/datasets, or NAME=FOLDER")
    ap.add_argument("--sample", type=int, default=0, help="a fixed, seeded sample of N test faces (0 = all)")
    ap.add_argument("--methods", default="gradcam,cam,occlusion", help="comma-separated")
    ap.add_argument("--out", default=str(CHECKPOINT_DIR / "regions.json"), help="JSON file to write or add to")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    name, _, folder = args.data.partition("=")
    data = load_labelled_folder(Path(folder) if folder else datasets_root() / name / "test")
    keep = sample_indices(len(data), args.sample)
    predictor = load_predictor(args.model)
    t = time.perf_counter()
    out = where_it_looks(predictor, [read_image(data.paths[i]) for i in keep], np.array(data.labels)[keep],
                         [m for m in args.methods.split(",") if m],
                         {"occlusion": {"window": 8, "stride": 4}})  # the app's defaults
    out["command"] = "python bench/regions.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out["seconds"] = round(time.perf_counter() - t, 1)
    path = Path(args.out)
    doc = json.loads(path.read_text()) if path.is_file() else {}
    doc.setdefault(predictor.name, {})[name] = out
    write_compact(path, doc)
    print(f"{predictor.name} on {name} test: {out['faces']} faces, {sum(out['right'].values())} right, landmarks found "
          f"on {out['landmarks_found']}; {out['seconds']:.0f} s; wrote {path}")
    for m in out["methods"]:
        print(f"\n{m}: share of the map on each region, faces classified right")
        print("| emotion | right / all | " + " | ".join(REGIONS) + " |")
        print("|---|---|" + "---|" * len(REGIONS))
        for c in out["classes"]:
            s = out["shares"][m][c]
            cells = " | ".join(f"{100 * s[k]:.0f}%" for k in REGIONS) if s else " | ".join("—" for _ in REGIONS)
            print(f"| {c} | {out['right'][c]} / {out['total'][c]} | {cells} |")
        if out["area"]:
            print("| (a map spread evenly) | | " + " | ".join(f"{100 * out['area'][k]:.0f}%" for k in REGIONS) + " |")
    return out


if __name__ == "__main__":
    main()
