"""The app's own path on test faces shown at other sizes: does the detector find the face, and does the
crop it makes score as well as the benchmark's crop?

  python bench/detection.py                        # 400 RAF-DB and 400 FER2013 test faces
  python bench/detection.py --sides 48 960 --sample 0 --data raf-db
  python bench/detection.py --sides 256 640 --noise 25     # a grainy photo: Gaussian noise after resizing
  python bench/detection.py --sides 256 960 --context 0.5  # a face with surroundings, not a pre-cropped one
  python bench/detection.py --sides 224 960 --tight 0.7    # a face cropped tighter than the benchmark's
  python bench/detection.py --sides 64 --sample 0 --whole-if-no-face   # `score --whole-if-no-face` on the crops
  python bench/detection.py --sides 224 --context 0.5 --plain --turn 1   # turned a quarter anticlockwise, no EXIF
  python bench/detection.py --split val --sides 256 --context 0.5 --plain --sample 1000 --model runs/X.safetensors
                                                   # the same on the model's validation faces (to choose by)
  python bench/detection.py --sides 256 --context 0.5 --plain --sample 0 --by-pose   # frontal faces vs side views

Each test face (a tight crop) is resized so its longer side is N px — a thumbnail, a phone photo of a
face, a close-up selfie — then goes through `find_faces` (detector, margin, alignment) and the default
predictor, as an upload does. "whole" is the benchmark's path (`--whole-image`, no detector). A face the
detector misses counts as wrong in "accuracy (all)" (with `--whole-if-no-face`, it is scored as the whole
image instead); the ECE is of the calibrated probabilities the app shows for the faces found; "eyes apart" is
the median distance between the eyes in the crop the model sees, as a share of its side (RAF-DB's own crops:
~0.45, FER2013's: ~0.37). This says nothing about faces
in crowded scenes; it catches the size range where a detector stops seeing a face that fills the frame.

With `--context F` each test crop is first mirrored outwards by F of its side on every side
(reflection padding), so the face no longer fills the frame, as in a photo of a person: a proxy for
how our crop frames a face that has surroundings (the mirrored surroundings are not real ones, and hold mirrored
faces, some upside down); with `--plain` the border is the crop's mean colour instead (one face on a plain ground).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch


from fer_core.evaluation import sample_indices
from robustness import _noise
from fer_core.data import datasets_root, load_labelled_folder
from fer_core.faces import SIDE_VIEW, head_turn
from fer_core.framing import central, in_a_photo
from fer_core.pipeline import find_faces
from fer_core.runtime import DEFAULT_CHECKPOINT, load_predictor
from fer_core.metrics import expected_calibration_error

ROOT = Path(__file__).resolve().parent.parent


def resized(img: np.ndarray, side: int, noise: float = 0.0, seed: int = 0, context: float = 0.0,
            tight: float = 1.0, turn: int = 0, plain: bool = False) -> np.ndarray:
    """fer_core.framing.in_a_photo, then Gaussian sensor noise of sigma `noise` (seeded)."""
    out = in_a_photo(img, side, context=context, plain=plain, tight=tight, turn=turn)
    return _noise(out, np.random.default_rng(seed), noise) if noise else out


def split_faces(ds: str, sample: int, val: tuple | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """A fixed, seeded sample of a test split's faces (RGB uint8) and labels, or, given `val` (validation_faces),
    of the model's validation faces from the training folder `ds` (its train.py split)."""
    if val is None:
        folder = load_labelled_folder(datasets_root() / ds / "test")
        keep = sample_indices(len(folder), sample)
        return ([cv2.cvtColor(cv2.imread(str(folder.paths[i])), cv2.COLOR_BGR2RGB) for i in keep],
                np.array([folder.labels[i] for i in keep]))
    x, y, va, sources, spec = val
    mine = va[[Path(s).parent.name == ds for s in sources]]
    if not len(mine):
        raise SystemExit(f"{spec.arch} was not trained on {ds}: its validation faces come from "
                         f"{sorted(set(sources))}")
    mine = mine[sample_indices(len(mine), sample)]
    return [f.permute(1, 2, 0).numpy().copy() for f in x[mine]], y[mine].numpy()


def validation_faces(spec) -> tuple:
    """A model's training folders decoded once, its validation indices, each one's folder and the spec (split_faces'
    `val`)."""
    from fer_core.evaluation import training_splits

    sources: list[str] = []
    x, y, _, va = training_splits(spec, sources)
    return x, y, va, sources, spec


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=DEFAULT_CHECKPOINT, help="checkpoint name or path")
    p.add_argument("--data", nargs="+", default=["raf-db", "fer2013"], help="test sets under ../shared/datasets")
    p.add_argument("--sides", nargs="+", type=int, default=[48, 256, 600, 960, 1600],
                   help="longer side, in px, the face crop is resized to before detection")
    p.add_argument("--noise", type=float, default=0.0, help="sigma of Gaussian noise added after resizing (0-255)")
    p.add_argument("--context", type=float, default=0.0,
                   help="mirror each crop outwards by this share of its side first (a face with surroundings)")
    p.add_argument("--plain", action="store_true",
                   help="--context's border is the crop's mean colour, not mirrored (one face, on a plain ground)")
    p.add_argument("--tight", type=float, default=1.0,
                   help="keep only this central share of each crop's side first (a face cropped tighter than the "
                        "benchmark's); the whole-image row is the benchmark's crop")
    p.add_argument("--turn", type=int, default=0, choices=range(4),
                   help="turn each picture this many quarter turns anticlockwise last (a photo whose EXIF orientation "
                        "was lost); the whole-image row is the benchmark's upright crop")
    p.add_argument("--whole-if-no-face", action="store_true",
                   help="score a face the detector misses as the whole image (`score --whole-if-no-face`) in "
                        "'accuracy (all)' instead of counting it wrong")
    p.add_argument("--split", default="test", choices=["test", "val"],
                   help="the test splits, or the model's own validation faces (its train.py split, per training "
                        "folder: where a framing rule may be chosen)")
    p.add_argument("--by-pose", action="store_true",
                   help="also split the faces found by head turn: frontal ones and side views "
                        "(fer_core.faces.SIDE_VIEW)")
    p.add_argument("--sample", type=int, default=400, help="a fixed, seeded sample of N images per set (0 = all)")
    p.add_argument("--detector", default="auto", help="auto, yunet or haar")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--no-face-check", action="store_true",
                   help="take every box the detector scores min_score or more, as before the check that turns away "
                        "boxes that are not faces (fer_core.faces.CHECK_BELOW, FACE_CHECK): what the check costs")
    return p


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    if getattr(args, "no_face_check", False):
        import fer_core.faces

        fer_core.faces.CHECK_BELOW = 0.0  # every box passes plausible_face
    predictor = load_predictor(args.model)
    results: dict = {}
    val = validation_faces(predictor.spec) if args.split == "val" else None  # both folders decoded once
    for ds in args.data:
        images, labels = split_faces(ds, args.sample, val)
        noise = f", noise sigma {args.noise:g}" if args.noise else ""
        context = f", context {args.context:g}{' plain' if args.plain else ''}" if args.context else ""
        context += f", central {args.tight:g} of each crop" if args.tight < 1 else ""
        context += ", misses scored whole" if args.whole_if_no_face else ""
        context += f", turned {90 * args.turn}° anticlockwise" if args.turn else ""
        print(f"\n{ds} {args.split}, {len(labels)} faces, {args.model}, detector {args.detector}{noise}{context}")
        print("| face size | found | accuracy of found | accuracy (all) | ECE of found (calibrated) | eyes apart | "
              "detection ms/image |")
        print("|---|---|---|---|---|---|---|")
        for side in [None, *args.sides]:
            crops, ys, eyes, seconds, whole_crops, whole_ys, turns = [], [], [], 0.0, [], [], []
            for n, (img, y) in enumerate(zip(images, labels)):
                img = img if side is None else resized(img, side, args.noise, seed=n, context=args.context,
                                                       tight=args.tight, turn=args.turn,
                                                       plain=args.plain)
                t = time.perf_counter()
                found = find_faces(img, whole_image=side is None, detector=args.detector)
                seconds += time.perf_counter() - t
                if found:
                    box, crop = central(found, img.shape) if side else found[0]
                    crops.append(crop.face)
                    turns.append(head_turn(box.landmarks) if box is not None and box.landmarks is not None else np.nan)
                    if not crop.from_template:
                        eyes.append(crop.eyes_apart)
                    ys.append(y)
                elif args.whole_if_no_face:  # as `score --whole-if-no-face` does
                    whole_crops.append(find_faces(img, whole_image=True)[0][1].face)
                    whole_ys.append(y)
            probs = predictor.predict(crops) if crops else np.zeros((0, len(predictor.classes)))
            right = probs.argmax(1) == np.array(ys, dtype=int)
            rescued = int((predictor.predict(whole_crops).argmax(1) == np.array(whole_ys)).sum()) if whole_crops else 0
            row = {"found": len(ys) / len(labels), "accuracy_found": float(right.mean()) if len(ys) else 0.0,
                   "accuracy_all": float(right.sum() + rescued) / len(labels), "ms": 1000 * seconds / len(labels),
                   "ece_found": expected_calibration_error(probs, ys) if len(ys) else float("nan"),
                   "eyes_apart": float(np.median(eyes)) if eyes else float("nan")}
            if args.by_pose and side is not None:
                row["by_pose"] = by_pose(np.array(turns), right, probs)
            results[(ds, side)] = row
            name = "whole image (benchmark path)" if side is None else f"{side} px"
            apart = f"{row['eyes_apart']:.2f}" if eyes else "—"
            print(f"| {name} | {100 * row['found']:.1f}% | {100 * row['accuracy_found']:.1f} | "
                  f"{100 * row['accuracy_all']:.1f} | {100 * row['ece_found']:.1f}% | {apart} | {row['ms']:.1f} |",
                  flush=True)
            for name, part in row.get("by_pose", {}).items():
                print(f"|   {name}: {part['share']:.1%} of the faces found | | {100 * part['accuracy']:.1f} | | "
                      f"mean confidence {100 * part['confidence']:.1f}% | | |", flush=True)
    return results


def by_pose(turns: np.ndarray, right: np.ndarray, probs: np.ndarray) -> dict:
    """The faces found, split by how far the head is turned (fer_core.faces.head_turn, SIDE_VIEW): share,
    accuracy and mean top probability of each part (faces without landmarks in neither)."""
    out = {}
    for name, part in ((f"frontal (head turn < {SIDE_VIEW:g})", turns < SIDE_VIEW),
                       (f"side view (head turn >= {SIDE_VIEW:g})", turns >= SIDE_VIEW)):
        if part.any():
            out[name] = {"share": float(part.mean()), "accuracy": float(right[part].mean()),
                         "confidence": float(probs[part].max(1).mean())}
    return out


if __name__ == "__main__":
    main(get_args_parser().parse_args())
