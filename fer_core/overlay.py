"""Heatmap overlays and side-by-side grids (OpenCV only; no matplotlib)."""
from __future__ import annotations

import cv2
import numpy as np

COLORMAPS = {"jet": cv2.COLORMAP_JET, "turbo": cv2.COLORMAP_TURBO, "inferno": cv2.COLORMAP_INFERNO,
             "viridis": cv2.COLORMAP_VIRIDIS, "hot": cv2.COLORMAP_HOT}


def heatmap(cam: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """float (h, w) in [0, 1] -> RGB uint8 (h, w, 3)."""
    if colormap not in COLORMAPS:
        raise ValueError(f"unknown colormap {colormap!r}; choose from {', '.join(COLORMAPS)}")
    u8 = (np.clip(cam, 0, 1) * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(u8, COLORMAPS[colormap]), cv2.COLOR_BGR2RGB)


def overlay(face: np.ndarray, cam: np.ndarray, *, alpha: float = 0.5, colormap: str = "jet") -> np.ndarray:
    """Blend the heatmap of `cam` over an RGB uint8 face of the same size."""
    if cam.shape[:2] != face.shape[:2]:
        cam = cv2.resize(cam, (face.shape[1], face.shape[0]), interpolation=cv2.INTER_LINEAR)
    blend = (1 - alpha) * face.astype(np.float32) + alpha * heatmap(cam, colormap).astype(np.float32)
    return blend.clip(0, 255).astype(np.uint8)


_ASCII = str.maketrans({"·": "|", "×": "x", "—": "-", "–": "-", "…": "...", "’": "'"})


def ascii_text(text: str) -> str:
    """What OpenCV's Hershey fonts can draw: common punctuation spelled in ASCII, any other character as '?'."""
    return text.translate(_ASCII).encode("ascii", "replace").decode("ascii")


def _label(img: np.ndarray, text: str, height: int = 22) -> np.ndarray:
    text = ascii_text(text)
    bar = np.full((height, img.shape[1], 3), 255, dtype=np.uint8)
    scale = 0.45
    while scale > 0.25 and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > img.shape[1] - 4:
        scale -= 0.05
    cv2.putText(bar, text, (3, height - 7), cv2.FONT_HERSHEY_SIMPLEX, scale, (20, 20, 20), 1, cv2.LINE_AA)
    return np.vstack([bar, img])


def grid(face: np.ndarray, maps: dict[str, np.ndarray], *, titles: dict[str, str] | None = None,
         alpha: float = 0.5, colormap: str = "jet", tile: int = 160, header: str = "") -> np.ndarray:
    """One row: the face, then each map over it, each titled; RGB uint8."""
    titles = titles or {}
    tiles = [_label(cv2.resize(face, (tile, tile)), "face")]
    for name, cam in maps.items():
        ov = overlay(cv2.resize(face, (tile, tile)), cv2.resize(cam, (tile, tile)), alpha=alpha, colormap=colormap)
        tiles.append(_label(ov, titles.get(name, name)))
    gap = np.full((tiles[0].shape[0], 4, 3), 255, dtype=np.uint8)
    row = np.hstack([t for pair in zip(tiles, [gap] * len(tiles)) for t in pair][:-1])
    return _label(row, header, 26) if header else row


BOX_COLOR, PICKED_COLOR = (255, 200, 0), (230, 30, 30)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def box_label(out: np.ndarray, text: str, b, color, *, ink=(0, 0, 0), scale: float = 0.45, thick: int = 1) -> None:
    """`text` in `ink` on a filled box of `color`, in place, at the top-left of face box `b`: above it, or just
    inside its top edge when there is no room above; moved left when it would leave the image on the right."""
    (tw, th), _ = cv2.getTextSize(text, FONT, scale, thick)
    x = min(max(0, b.x), max(0, out.shape[1] - tw - 4))
    y = b.y - 2 if b.y - th - 6 >= 0 else b.y + th + 6
    cv2.rectangle(out, (x, y - th - 5), (x + tw + 4, y), color, -1)
    cv2.putText(out, text, (x + 2, y - 3), FONT, scale, ink, thick, cv2.LINE_AA)


def _fitted(image: np.ndarray, min_side: int, max_side: int) -> tuple[np.ndarray, float]:
    """A copy of `image` enlarged to `min_side` or shrunk to `max_side` (0: no limit) on its longer side, and the
    factor."""
    side = max(image.shape[:2])
    f = min_side / side if side < min_side else max_side / side if 0 < max_side < side else 1.0
    if f == 1:
        return image.copy(), f
    return cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_LINEAR if f > 1 else cv2.INTER_AREA), f


def _scaled(box, f: float):
    """A face box (FaceBox) in an image resized by `f`."""
    return box if f == 1 else type(box)(round(box.x * f), round(box.y * f), round(box.w * f), round(box.h * f))


def draw_boxes(image: np.ndarray, boxes, labels: list[str] | None = None, picked: int | None = None,
               min_side: int = 0, max_side: int = 0) -> np.ndarray:
    """Numbered boxes on a copy of an RGB uint8 image; box `picked` (an index) drawn in another colour. An image
    whose longer side is under `min_side` is enlarged first, so the labels stay small beside a small face, and
    one over `max_side` (if given) shrunk, so a 48 MP phone photo is not sent to a browser whole."""
    out, f = _fitted(image, min_side, max_side)
    boxes = [_scaled(b, f) for b in boxes]
    thick = max(2, round(max(out.shape[:2]) / 400))
    for i, b in enumerate(boxes):
        color = PICKED_COLOR if i == picked else BOX_COLOR
        cv2.rectangle(out, (b.x, b.y), (b.x + b.w, b.y + b.h), color, thick)
        box_label(out, labels[i] if labels else str(i + 1), b, color,
                  ink=(255, 255, 255) if i == picked else (0, 0, 0), scale=max(0.5, thick / 3), thick=thick)
    return out


def labelled_photo(image: np.ndarray, faces, *, min_side: int = 640, max_side: int = 2400) -> np.ndarray:
    """A copy of an RGB uint8 photo with every face's box, number, emotion and confidence ("2 anger 87%"), to keep or
    share. `faces`: analysed faces (`index`, `box`, `prediction`, `confidence`, as FaceResult has); one without a box
    (whole-image mode) is not drawn. The photo is enlarged to `min_side` or shrunk to `max_side` on its longer side;
    each label is sized to its own face (at most 1.6 times the box's width), so a crowd's labels overlap little."""
    out, f = _fitted(image, min_side, max_side)
    top = max(0.5, max(out.shape[:2]) / 1200)  # the largest label scale, as a face filling the photo would get
    for r in faces:
        if r.box is None:
            continue
        b = _scaled(r.box, f)
        text = ascii_text(f"{r.index + 1} {r.prediction} {r.confidence:.0%}")
        width1 = cv2.getTextSize(text, FONT, 1.0, 1)[0][0]
        scale = float(np.clip(1.6 * b.w / width1, 0.35, top))
        thick = max(1, round(scale * 1.6))
        cv2.rectangle(out, (b.x, b.y), (b.x + b.w, b.y + b.h), BOX_COLOR, max(2, round(scale * 2.5)))
        box_label(out, text, b, BOX_COLOR, scale=scale, thick=thick)
    return out


def outline_regions(rgb: np.ndarray, landmarks, color=(255, 255, 255)) -> np.ndarray:
    """A copy of an RGB uint8 image with the facial regions of `fer_core.regions` (eyes & brows, nose, mouth)
    outlined, from five landmarks in the image's pixels."""
    from .regions import region_masks

    out = rgb.copy()
    for name, mask in region_masks(rgb.shape[0], np.asarray(landmarks)).items():
        if name == "rest":
            continue
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, color, max(1, rgb.shape[0] // 120), cv2.LINE_AA)
    return out
