"""Facial-region breakdown of an explanation map.

Regions come from a documented geometric template around five landmarks (eye centres, nose tip,
mouth corners) in the face crop: the detector's own landmarks (libfacedetection via `yuface`), or,
when there are none (Haar boxes, whole-image mode), their mean position on RAF-DB/FER2013 crops.
With d = the distance between the eyes:
- eyes & brows: from 0.45·d outside each eye, from 0.6·d above to 0.25·d below the eye line;
- nose: 0.35·d either side of the nose tip, from 0.25·d below the eye line to 0.15·d below the tip;
- mouth: 0.25·d outside the mouth corners, from 0.3·d above to 0.35·d below the mouth line;
- rest: everything else in the crop (cheeks, forehead, jaw, hair, background).
"""
from __future__ import annotations

import numpy as np

REGIONS = ("eyes & brows", "nose", "mouth", "rest")


def region_masks(size: int, landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """Disjoint boolean masks (size, size) for REGIONS from 5 landmarks in crop pixels."""
    le, re, nose, ml, mr = np.asarray(landmarks, dtype=np.float64)
    d = max(float(np.hypot(*(re - le))), 1.0)
    eye_y = (le[1] + re[1]) / 2
    mouth_y = (ml[1] + mr[1]) / 2
    yy, xx = np.mgrid[0:size, 0:size] + 0.5

    def box(x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
        return (xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1)

    mouth = box(min(ml[0], mr[0]) - 0.25 * d, max(ml[0], mr[0]) + 0.25 * d, mouth_y - 0.3 * d, mouth_y + 0.35 * d)
    nose_m = box(nose[0] - 0.35 * d, nose[0] + 0.35 * d, eye_y + 0.25 * d, nose[1] + 0.15 * d) & ~mouth
    eyes = box(min(le[0], re[0]) - 0.45 * d, max(le[0], re[0]) + 0.45 * d, eye_y - 0.6 * d, eye_y + 0.25 * d)
    eyes &= ~(mouth | nose_m)
    rest = ~(eyes | nose_m | mouth)
    return {"eyes & brows": eyes, "nose": nose_m, "mouth": mouth, "rest": rest}


def region_shares(cam: np.ndarray, landmarks: np.ndarray) -> dict[str, float]:
    """Share (0..1, summing to 1) of the map's mass on each region; all zero for an empty map."""
    masks = region_masks(cam.shape[0], landmarks)
    total = float(cam.sum())
    if total <= 0:
        return {k: 0.0 for k in REGIONS}
    return {k: float(cam[m].sum() / total) for k, m in masks.items()}


def region_sentence(shares: dict[str, float], target: str) -> str:
    """'62% of the evidence for *surprise* is on the eyes & brows' for the largest named region."""
    named = {k: v for k, v in shares.items() if k != "rest"}
    if not named or max(named.values()) <= 0:
        return f"the map for {target} is empty"
    k = max(named, key=named.get)
    return f"{named[k]:.0%} of the evidence for {target} is on the {k}"
