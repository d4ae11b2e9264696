"""The one per-face row: what the CLI's CSV, the Batch page's table, the Explain page's download and the video
timeline say of a face, with the same names. Each adds its own columns around these (a file path, a frame)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .faces import FaceBox
from .labels import EMOTIONS, class_list

BOX_COLUMNS = ["x", "y", "w", "h", "face_score"]  # the detector's box in the photo's pixels, and its score
PROB_COLUMNS = [*EMOTIONS, "prediction", "confidence"]  # a six-class model's; prob_columns(classes) in general


def prob_columns(classes: Sequence[str] = EMOTIONS) -> list[str]:
    """One column per class of the model (the six emotions, then `neutral` where it has it), the prediction and
    its probability: a six-class model's columns are PROB_COLUMNS exactly."""
    return [*classes, "prediction", "confidence"]


def box_fields(box: FaceBox | None) -> dict:
    """x, y, w, h and the detector's score (3 decimals; empty for a detector that gives none, Haar); {} for a face
    scored whole (no box)."""
    if box is None:
        return {}
    score = float(box.score)
    return {"x": box.x, "y": box.y, "w": box.w, "h": box.h, "face_score": round(score, 3) if math.isfinite(score) else ""}


def prob_fields(probs: np.ndarray, classes: Sequence[str] | None = None) -> dict:
    """One column per class (its calibrated probability), the prediction and its probability; the classes are the
    six emotions, and neutral for seven probabilities, unless given."""
    classes = class_list(len(probs)) if classes is None else classes
    k = int(np.argmax(probs))
    return {**{c: float(p) for c, p in zip(classes, probs)}, "prediction": classes[k], "confidence": float(probs[k])}


def face_row(index: int, box: FaceBox | None, probs: np.ndarray, classes: Sequence[str] | None = None, *,
             notes: Sequence[str] = ()) -> dict:
    """face (1-based), the box fields, the probability fields and note (the face notes' labels, comma-separated)."""
    return {"face": index + 1, **box_fields(box), **prob_fields(probs, classes), "note": ", ".join(notes)}
