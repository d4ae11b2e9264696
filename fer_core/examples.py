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


def hand_picture(seed: int = 0, size: int = 480) -> np.ndarray:
    """A picture with no face in it: a raised open hand (palm, four fingers and a thumb in a skin tone, with
    shading and creases) on a wall, drawn by code from `seed` (its tone, pose, size and place, the wall's colour).
    What a face detector should not call a face; RGB (size, size, 3)."""
    import cv2

    rng = np.random.default_rng(seed)
    wall = rng.integers(60, 230, 3)
    ramp = np.linspace(0.8, 1.1, size)[:, None, None]
    img = np.clip(np.ones((size, size, 3)) * wall * ramp, 0, 255).astype(np.uint8)
    light = rng.uniform(90, 240)  # skin from dark to light: red highest, then green, then blue
    tone = light * np.array([1.0, rng.uniform(0.68, 0.82), rng.uniform(0.52, 0.7)])
    s = rng.uniform(0.45, 0.8) * size / 2  # the hand's half-height
    cx, cy = rng.uniform(0.35, 0.65) * size, rng.uniform(0.45, 0.65) * size
    mask = np.zeros((size, size), np.uint8)
    cv2.ellipse(mask, (int(cx), int(cy + 0.25 * s)), (int(0.42 * s), int(0.45 * s)), 0, 0, 360, 255, -1)  # palm
    for k, (dx, length) in enumerate([(-0.3, 0.75), (-0.1, 0.85), (0.1, 0.8), (0.28, 0.62)]):  # fingers
        spread = rng.uniform(-8, 8) + (k - 1.5) * rng.uniform(2, 7)
        x0, y0 = cx + dx * s, cy - 0.05 * s
        a = np.radians(spread)
        x1, y1 = x0 + np.sin(a) * length * s, y0 - np.cos(a) * length * s
        cv2.line(mask, (int(x0), int(y0)), (int(x1), int(y1)), 255, max(2, int(0.17 * s)))
        cv2.circle(mask, (int(x1), int(y1)), max(1, int(0.085 * s)), 255, -1)
    side = rng.choice([-1, 1])  # the thumb, left or right
    cv2.line(mask, (int(cx + side * 0.35 * s), int(cy + 0.4 * s)), (int(cx + side * 0.75 * s), int(cy - 0.05 * s)),
             255, max(2, int(0.18 * s)))
    angle = rng.uniform(-25, 25)
    rot = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    mask = cv2.warpAffine(mask, rot, (size, size))
    shade = cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), 0.08 * s)  # rounder at the middle
    hand = np.clip(tone * (0.7 + 0.35 * shade[..., None]), 0, 255)
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), 1.5)[..., None]
    out = img * (1 - alpha) + hand * alpha
    creases = np.zeros((size, size), np.uint8)  # palm lines and knuckle folds: dark strokes
    for _ in range(3):
        y = cy + rng.uniform(0.0, 0.45) * s
        cv2.ellipse(creases, (int(cx), int(y)), (int(0.3 * s), int(0.08 * s)), rng.uniform(-20, 20), 200, 340, 255,
                    max(1, int(0.02 * s)))
    creases = cv2.warpAffine(creases, rot, (size, size))
    out = out * (1 - 0.3 * (creases[..., None] / 255) * alpha)
    return np.clip(out, 0, 255).astype(np.uint8)
