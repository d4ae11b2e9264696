"""Face detection (libfacedetection CNN via `yuface`, OpenCV Haar as fallback), crop and alignment."""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import cv2
import numpy as np

DETECT_MAX_SIDE = 960  # yuface warns above this; larger photos are downscaled and boxes mapped back
CROP_MAX_SIDE = 224  # face crops (and their explanation maps) are at most this many pixels
DEFAULT_MARGIN = 0.05  # RAF-DB's aligned crops are about the detector box itself (measured)

# Where the five landmarks sit in a face crop when no detector landmarks exist (whole-image mode,
# Haar boxes): the mean yuface landmarks on 100 RAF-DB and 100 FER2013 test crops, averaged.
TEMPLATE_LANDMARKS = np.array(
    [[0.30, 0.35], [0.70, 0.35], [0.50, 0.58], [0.33, 0.75], [0.66, 0.75]], dtype=np.float32
)

_lock = threading.Lock()


@dataclass(frozen=True)
class FaceBox:
    """A detected face in image pixels. `landmarks`: 5 (x, y) points (eyes, nose tip, mouth corners)
    in the image's coordinates, or None when the detector gives none."""

    x: int
    y: int
    w: int
    h: int
    score: float = 1.0
    landmarks: tuple[tuple[float, float], ...] | None = None

    @property
    def area(self) -> int:
        return self.w * self.h

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.w, self.h)


def _yuface_available() -> bool:
    try:
        import yuface  # noqa: F401
    except ImportError:
        return False
    return True


def detect_faces(
    image: np.ndarray, *, min_score: float = 0.6, min_size: int = 12, detector: str = "auto"
) -> list[FaceBox]:
    """Every face in an RGB uint8 image (H, W, 3), largest first.

    `detector`: "yunet" (libfacedetection CNN from the `yuface` package: robust to pose and
    rotation), "haar" (OpenCV), or "auto" (yunet when installed). Big photos are downscaled to
    960 px for detection and the boxes mapped back.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA) \
        if scale < 1 else image
    use = detector
    if use == "auto":
        use = "yunet" if _yuface_available() else "haar"
    if use == "yunet":
        boxes = _detect_yunet(small, min_score)
    elif use == "haar":
        boxes = _detect_haar(small)
    else:
        raise ValueError(f"unknown detector {detector!r}; choose from auto, yunet, haar")
    out = []
    for b in boxes:
        x0, y0 = max(0.0, b.x / scale), max(0.0, b.y / scale)
        x1, y1 = min(float(w), (b.x + b.w) / scale), min(float(h), (b.y + b.h) / scale)
        if x1 - x0 < min_size or y1 - y0 < min_size:
            continue
        lm = tuple((px / scale, py / scale) for px, py in b.landmarks) if b.landmarks else None
        out.append(FaceBox(round(x0), round(y0), round(x1 - x0), round(y1 - y0), b.score, lm))
    return sorted(out, key=lambda f: f.area, reverse=True)


def _detect_yunet(image: np.ndarray, min_score: float) -> list[FaceBox]:
    import yuface

    bgr = np.ascontiguousarray(image[:, :, ::-1])
    if min(bgr.shape[:2]) < 32:  # the CNN needs some pixels; pad tiny images
        bgr = cv2.copyMakeBorder(bgr, 0, max(0, 32 - bgr.shape[0]), 0, max(0, 32 - bgr.shape[1]), cv2.BORDER_CONSTANT)
    with _lock:  # the C library keeps a shared buffer
        confs, boxes, lms = yuface.detect(bgr, conf=min_score)
    out = []
    for c, b, lm in zip(np.asarray(confs).reshape(-1), np.asarray(boxes).reshape(-1, 4), np.asarray(lms).reshape(-1, 10)):
        pts = tuple((float(lm[2 * i]), float(lm[2 * i + 1])) for i in range(5))
        out.append(FaceBox(int(b[0]), int(b[1]), int(b[2]), int(b[3]), float(c) / 100.0, pts))
    return out


_haar = None


def _detect_haar(image: np.ndarray) -> list[FaceBox]:
    global _haar
    if _haar is None:
        _haar = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
    found = _haar.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
    return [FaceBox(int(x), int(y), int(w), int(h), 1.0, None) for x, y, w, h in np.asarray(found).reshape(-1, 4)]


@dataclass(frozen=True)
class FaceCrop:
    """A square face crop and how it maps back: `matrix` (2x3) takes image -> crop pixels;
    `landmarks` are the 5 points in crop pixels (template positions when the detector had none)."""

    face: np.ndarray
    matrix: np.ndarray
    landmarks: np.ndarray
    from_template: bool


def crop_face(
    image: np.ndarray, box: FaceBox, *, margin: float = DEFAULT_MARGIN, align: bool = True,
    max_side: int = CROP_MAX_SIDE,
) -> FaceCrop:
    """Square crop around `box` grown by `margin` on each side, kept inside the image where it fits;
    with `align` and landmarks, rotated so the eyes are level."""
    h, w = image.shape[:2]
    side = max(box.w, box.h) * (1 + 2 * margin)
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    angle = 0.0
    if box.landmarks is not None:
        (lx, ly), (rx, ry) = box.landmarks[0], box.landmarks[1]
        if align:
            angle = math.degrees(math.atan2(ry - ly, rx - lx))
    if abs(angle) < 1.0:
        angle = 0.0
        side = min(side, float(max(w, h)))
        # slide the square back inside the image where it fits, rather than padding
        cx = min(max(cx, side / 2), w - side / 2) if side <= w else w / 2
        cy = min(max(cy, side / 2), h - side / 2) if side <= h else h / 2
    out = int(round(min(side, max_side)))
    out = max(out, 1)
    s = out / side
    rot = cv2.getRotationMatrix2D((cx, cy), angle, s)  # rotate about the centre and scale to `out`
    rot[0, 2] += out / 2 - cx
    rot[1, 2] += out / 2 - cy
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    face = cv2.warpAffine(image, rot, (out, out), flags=interp, borderMode=cv2.BORDER_REPLICATE)
    if box.landmarks is not None:
        pts = np.asarray(box.landmarks, dtype=np.float32)
        lm = pts @ rot[:, :2].T.astype(np.float32) + rot[:, 2].astype(np.float32)
        return FaceCrop(face, rot, lm, False)
    return FaceCrop(face, rot, TEMPLATE_LANDMARKS * out, True)


def whole_image_crop(image: np.ndarray, *, max_side: int = CROP_MAX_SIDE) -> FaceCrop:
    """Treat the whole image as one face (pre-cropped datasets): centre square, template landmarks."""
    h, w = image.shape[:2]
    return crop_face(image, FaceBox(0, 0, w, h), margin=0.0, align=False, max_side=max_side)
