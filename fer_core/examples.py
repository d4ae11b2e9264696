"""Built-in example pictures: never dataset images; made from what a dependency ships."""
from __future__ import annotations

import numpy as np


def astronaut() -> np.ndarray:
    """scikit-image's astronaut (Eileen Collins, public domain, NASA): one smiling face, RGB (512, 512, 3)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def group_photo() -> np.ndarray:
    """Three faces at different sizes and tilts, made from the astronaut crop, on a plain wall."""
    import cv2

    face = astronaut()[30:230, 140:310]
    canvas = np.full((360, 720, 3), (214, 204, 190), dtype=np.uint8)
    for (x, y, scale, angle, flip) in [(30, 60, 1.25, 0, False), (300, 90, 0.95, 12, True), (520, 120, 0.75, -8, False)]:
        f = cv2.flip(face, 1) if flip else face
        f = cv2.resize(f, (int(f.shape[1] * scale), int(f.shape[0] * scale)))
        m = cv2.getRotationMatrix2D((f.shape[1] / 2, f.shape[0] / 2), angle, 1.0)
        f = cv2.warpAffine(f, m, (f.shape[1], f.shape[0]), borderMode=cv2.BORDER_REPLICATE)
        h, w = f.shape[:2]
        h, w = min(h, canvas.shape[0] - y), min(w, canvas.shape[1] - x)
        canvas[y:y + h, x:x + w] = f[:h, :w]
    return canvas


def no_face() -> np.ndarray:
    """A picture with no face in it (scikit-image's coffee cup)."""
    from skimage import data

    return np.ascontiguousarray(data.coffee())


EXAMPLES = {"Astronaut (one face)": astronaut, "Group of three (made from the astronaut)": group_photo,
            "Coffee (no face)": no_face}
