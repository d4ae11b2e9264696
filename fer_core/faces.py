"""Face detection (libfacedetection CNN via `yuface`, OpenCV Haar as fallback), crop and alignment."""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .preprocess import grayscale_mask

DETECT_MAX_SIDE = 960  # yuface warns above this; larger photos are downscaled and boxes mapped back
DETECT_MIN_SIDE = 256  # smaller images (thumbnails, 48-px crops) are upscaled to this for detection
COARSE_SIDE = 256  # yuface's second look, for faces that fill a large image (see detect_faces)
NOISY_SIGMA = 2.0  # and its last look, smoothed, when it found nothing (noise hides faces from it)
NOISY_MIN_SCORE = 0.7
# and then, still when nothing was found, on a copy framed by a plain border of this share of its side: a face
# cropped tighter than the benchmarks' (forehead and chin cut off) fills the frame past what the CNN finds
TIGHT_PAD = 0.25
# A picture turned a quarter or upside down (a phone photo whose EXIF orientation was lost): when no face in it
# scores TURN_BELOW, yuface also looks at it turned the three other ways, and a face that scores TURN_AT there is
# taken (over a less confident upright twin). The CNN finds many turned faces as they are, but (small and soft ones
# above all) with landmarks in upright order wherever the eyes are, so the crop is not turned back and the answer is
# wrong; it scores them lower (validation faces on a plain ground: median 0.90 upright, 0.74 turned). Chosen on 1,200
# validation faces with a plain border at 224 px (docs/decisions.md): accuracy upright 74.0 -> 74.1,
# turned a quarter / upside down 3-9 -> 68; it looks again for a quarter of upright ones (0.85: 13%, upside down
# 66). A face seen only turned needs TURN_AT too: at 0.8, 5 of 275 faceless pictures and crops got a face.
TURN_BELOW, TURN_AT = 0.88, 0.85
CROP_MAX_SIDE = 224  # face crops (and their explanation maps) are at most this many pixels
# How a face is framed for the model: a square of (1 + 2 margin) times the detector's box. yuface's box is ~2.65 eye
# distances wide on a face it sees whole (FER2013 faces whose box is not cut by the image edge: 2.71; scikit-image's
# astronaut: 2.60), so 0.94 of the box puts the eyes ~0.40 of the crop apart, where the default model scores best on
# both training sets' faces re-framed together (0.37-0.40; `bench/framing.py`); the old 5% margin gave ~0.34 in
# photos (`bench/detection.py --context 0.5`: 2-3 points lost on RAF-DB faces). The model learned colour faces from
# RAF-DB, whose crops are tighter (eyes 0.45 apart), and black-and-white ones mostly from FER2013 (0.37), so a colour
# face gets a tighter square: on the validation split's RAF-DB faces in 4 new random frames
# (docs/decisions.md) 0.87 of the box scored +1.0 point on colour faces over 0.94 (95% of a bootstrap over
# faces +0.2 ... +1.8), while FER2013's faces lost 0.2-0.5 at 0.87.
MARGIN_GREY, MARGIN_COLOUR = -0.03, -0.065
# A box that nearly fills the image is a face someone already cropped (a dataset's aligned face, a
# close-up): its own framing is kept. From FILL_FROM to FILL_TO of the image's shorter side the crop
# grows from the margin's square to that whole side.
FILL_FROM, FILL_TO = 0.7, 0.9
# A face whose crop was narrower than this in the photo has lost detail the model uses: test faces
# shrunk to 32 / 24 / 16 / 12 px lose about 1 / 3 / 11 / 24 points on RAF-DB
# (`python bench/robustness.py --face-sizes 12 16 20 24 32 48`; the README has the table). The app says so.
SMALL_FACE_PX = 24
# A picture narrower than this rarely shows the detector a face: test crops resized whole to 12 / 16 px were found
# 13 / 96% (RAF-DB) and 3 / 77% (FER2013) of the time (`python bench/detection.py --sides 12 16 24 32`).
FINDABLE_PX = 16
# A face cropped tighter than any training face (forehead and chin cut off) leaves the eyes more than EYES_MAX of
# the crop apart (RAF-DB's crops: ~0.45, FER2013's ~0.37); such a crop is widened until they are EYES_TO apart, in
# a frame of the picture's mean colour. On the validation split (docs/decisions.md),
# faces cut to their central 70% / 78% / 85% at 224 px, FER2013 part / RAF-DB part accuracy, not widened ->
# widened: 64.4 / 80.5 -> 64.6 / 82.1, 69.7 / 86.7 -> 69.5 / 86.3, 71.4 / 88.1 -> 71.3 / 87.9. From 0.50 it helped
# the tightest more (83.5) and cost the others up to 0.8.
EYES_MAX, EYES_TO = 0.56, 0.47
# A head turned to the side puts the nose tip off the eyes' midpoint (`head_turn`: 0 for a frontal face, in eye
# distances). Faces past SIDE_VIEW on the validation split, set in a plain 256-px frame and cut to 0.94 of the box
# (docs/decisions.md): 6% of RAF-DB's and 12% of FER2013's, right 76% / 65% of the time against 89% /
# 73% for the others; `python bench/detection.py --by-pose` measures it.
SIDE_VIEW = 0.2

# Where the five landmarks sit in a face crop when no detector landmarks exist (whole-image mode,
# Haar boxes): the mean yuface landmarks on 100 RAF-DB and 100 FER2013 test crops, averaged.
TEMPLATE_LANDMARKS = np.array(
    [[0.30, 0.35], [0.70, 0.35], [0.50, 0.58], [0.33, 0.75], [0.66, 0.75]], dtype=np.float32
)

# The check that turns away boxes that are not faces (a raised hand, a pattern): a box the detector scores below
# CHECK_BELOW must have its five landmarks, in eye distances in a frame turned so the eyes are level (face_geometry),
# within these bounds. Chosen on validation faces and faceless pictures with `python bench/false_faces.py`
# (docs/faces.md): confident boxes are faces whatever their landmarks say (a turned or cut-off face's are odd).
CHECK_BELOW = 0.7
FACE_CHECK = {
    "eyes_box": (0.2, 0.75),  # the eyes' distance as a share of the box's width
    "nose_x": (-0.3, 1.3),  # the nose tip along the eye line, 0 at the first eye, 1 at the second
    "nose_y": (0.15, 0.85),  # the nose tip below the eye line
    "mouth_y": (0.5, 1.9),  # the mouth's middle below the eye line
    "mouth_w": (0.35, 1.6),  # the mouth's width
}

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
    turn: int = 0  # quarter turns (anticlockwise) of the picture it was found in; 0: upright (detect_faces' turns)

    @property
    def area(self) -> int:
        return self.w * self.h

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.w, self.h)


def face_geometry(box: FaceBox) -> dict[str, float]:
    """The box's five landmarks measured in eye distances, in a frame turned so the eyes are level (FACE_CHECK
    names each number); {} for a box without landmarks."""
    if box.landmarks is None:
        return {}
    pts = np.asarray(box.landmarks, dtype=np.float64)
    e0, e1 = pts[0], pts[1]
    d = float(np.hypot(*(e1 - e0)))
    if d <= 0:
        return {k: float("nan") for k in FACE_CHECK}
    ux = (e1 - e0) / d  # along the eye line
    uy = np.array([-ux[1], ux[0]])  # across it, downwards in the picture for an upright face
    local = (pts - e0) @ np.stack([ux, uy]).T / d
    mouth = (local[3] + local[4]) / 2
    return {"eyes_box": d / max(box.w, 1), "nose_x": float(local[2, 0]), "nose_y": float(local[2, 1]),
            "mouth_y": float(mouth[1]), "mouth_w": float(np.hypot(*(local[4] - local[3])))}


def plausible_face(box: FaceBox) -> bool:
    """Whether a box is taken for a face: it scores CHECK_BELOW or more, or its landmarks sit as a face's do
    (FACE_CHECK); a box without landmarks (the Haar detector's) passes."""
    if box.score >= CHECK_BELOW:
        return True
    geometry = face_geometry(box)
    return not geometry or all(lo <= geometry[k] <= hi for k, (lo, hi) in FACE_CHECK.items())


def _yuface_available() -> bool:
    try:
        import yuface  # noqa: F401
    except ImportError:
        return False
    return True


def detect_faces(
    image: np.ndarray, *, min_score: float = 0.6, min_size: int = 12, detector: str = "auto", turns: bool = True,
    check: bool = True,
) -> list[FaceBox]:
    """Every face in an RGB uint8 image (H, W, 3), the most confident first (the face a page shows first).
    With `check`, boxes whose landmarks do not sit as a face's do are left out (plausible_face).

    `detector`: "yunet" (libfacedetection CNN from the `yuface` package: robust to pose and
    rotation), "haar" (OpenCV), or "auto" (yunet when installed). Big photos are downscaled to
    960 px for detection, small ones upscaled to 256 px, and the boxes mapped back. The CNN misses
    most faces that fill a large image (a close-up selfie, a face crop at photo resolution: 38% of
    RAF-DB test faces found at 960 px, 7% of FER2013's; `bench/detection.py`), so it also looks at a
    256-px copy; a face found at both sizes keeps its more confident box. Sensor noise hides faces
    from it too (a 256-px face with noise sigma 25: 84% of RAF-DB test faces found, 58% of FER2013's),
    so when nothing was found it tries once more on a smoothed 256-px copy, and then on a 256-px frame holding
    a smaller copy inside a border of the image's mean colour, for a face cropped tighter than a benchmark's
    (`bench/detection.py --tight 0.7`: test faces with 15% cut from each side). With `turns`, a picture in which
    no face scores TURN_BELOW is also looked at turned a quarter either way and upside down: a face found so (at
    TURN_AT) has its box and landmarks mapped back, so its crop (aligned on the eyes) comes out upright.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    use = detector
    if use == "auto":
        use = "yunet" if _yuface_available() else "haar"
    if use not in ("yunet", "haar"):
        raise ValueError(f"unknown detector {detector!r}; choose from auto, yunet, haar")
    scale, small = 1.0, image  # a big photo's 960-px copy: the first look's, and the turned looks' (12 MP: 1 s less)
    if max(h, w) > DETECT_MAX_SIDE:
        scale = DETECT_MAX_SIDE / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    out = _detect_all_looks(image, use, min_score, min_size, first=small if scale < 1 else None)
    if use == "yunet" and turns and max((f.score for f in out), default=0.0) < TURN_BELOW:
        for k in (1, 2, 3):
            turned = _detect_all_looks(np.ascontiguousarray(np.rot90(small, k)), use, max(min_score, TURN_AT), min_size)
            for f in turned:
                out = _with_face(out, _unturned(f, k, small.shape[1], small.shape[0], scale), out)
    if check:
        out = [f for f in out if plausible_face(f)]
    # Haar boxes have no score (NaN): they sort by size
    return sorted(out, key=lambda f: (f.score if math.isfinite(f.score) else -1.0, f.area), reverse=True)


def _unturned(box: FaceBox, k: int, w: int, h: int, scale: float = 1.0) -> FaceBox:
    """A box found in np.rot90(image, k) (k quarter turns anticlockwise) of a w x h image, in the pixels of that
    image shown `scale` times its size (the photo it was downscaled from)."""
    def back(x: float, y: float) -> tuple[float, float]:
        x, y = ((w - y, x), (w - x, h - y), (y, h - x))[k - 1]
        return x / scale, y / scale

    (x0, y0), (x1, y1) = back(box.x, box.y), back(box.x + box.w, box.y + box.h)
    lm = tuple(back(x, y) for x, y in box.landmarks) if box.landmarks else None
    return FaceBox(round(min(x0, x1)), round(min(y0, y1)), round(abs(x1 - x0)), round(abs(y1 - y0)), box.score, lm, k)


def _detect_all_looks(image: np.ndarray, use: str, min_score: float, min_size: int,
                      first: np.ndarray | None = None) -> list[FaceBox]:
    """detect_faces' looks at one upright picture (its docstring says which), the boxes in the picture's pixels.
    `first`: the first look's copy (the picture at DETECT_MAX_SIDE) where the caller has made it already."""
    h, w = image.shape[:2]
    side = max(h, w)
    # (scale, smoothing sigma, border as a share of the side); the last two only when nothing was found
    passes = [(min(DETECT_MAX_SIDE, max(DETECT_MIN_SIDE, side)) / side, 0.0, 0.0)]
    if use == "yunet":
        if side * passes[0][0] > 1.25 * COARSE_SIDE:  # not for video's 320-px frames
            passes.append((COARSE_SIDE / side, 0.0, 0.0))
        passes.append((COARSE_SIDE / side, NOISY_SIGMA, 0.0))  # a grainy photo
        passes.append((COARSE_SIDE / side / (1 + 2 * TIGHT_PAD), 0.0, TIGHT_PAD))  # a tight crop, framed
    out: list[FaceBox] = []
    for n, (scale, sigma, border) in enumerate(passes):
        if (sigma or border) and out:
            break
        earlier = list(out)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        if n == 0 and first is not None:
            resized = first
        else:
            resized = image if scale == 1 else cv2.resize(
                image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        if sigma:
            resized = cv2.GaussianBlur(resized, (0, 0), sigma)
        pad = round(border * max(size))
        if pad:  # the mean colour, not a mirror: mirrored borders made faces of 2 more of 100 non-face thumbnails
            mean = [int(v) for v in resized.reshape(-1, 3).mean(0)]
            resized = cv2.copyMakeBorder(resized, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=mean)
        if use == "haar":
            boxes = _detect_haar(resized)
        else:  # the smoothed look asks for more confidence: at 0.6 it took scikit-image's cat for a face
            boxes = _detect_yunet(resized, max(min_score, NOISY_MIN_SCORE) if sigma else min_score)
        for b in boxes:
            cx, cy = (b.x + b.w / 2 - pad) / scale, (b.y + b.h / 2 - pad) / scale
            if not (0 <= cx < w and 0 <= cy < h):  # a "face" centred in the border
                continue
            x0, y0 = max(0.0, (b.x - pad) / scale), max(0.0, (b.y - pad) / scale)
            x1, y1 = min(float(w), (b.x + b.w - pad) / scale), min(float(h), (b.y + b.h - pad) / scale)
            if x1 - x0 < min_size or y1 - y0 < min_size:
                continue
            lm = tuple(((px - pad) / scale, (py - pad) / scale) for px, py in b.landmarks) if b.landmarks else None
            box = FaceBox(round(x0), round(y0), round(x1 - x0), round(y1 - y0), b.score, lm)
            out = _with_face(out, box, earlier)
    return out


def _with_face(out: list[FaceBox], box: FaceBox, among: list[FaceBox]) -> list[FaceBox]:
    """`out` with `box` added, unless a face of `among` that it overlaps (IoU > 0.4: the same face, found by another
    look) is at least as confident; the twins it beats leave `out`."""
    twins = [f for f in among if iou(box, f) > 0.4]
    if twins and max(f.score for f in twins) >= box.score:
        return out
    return [f for f in out if all(f is not t for t in twins)] + [box]


def iou(a: FaceBox, b: FaceBox) -> float:
    """Intersection over union (one face found at two scales scores ~0.7-0.9)."""
    iw = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    ih = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / max(1, a.area + b.area - inter)


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
    # the cascade gives no confidence: NaN, written as an empty face_score, never a made-up 1.0
    return [FaceBox(int(x), int(y), int(w), int(h), float("nan"), None) for x, y, w, h in np.asarray(found).reshape(-1, 4)]


@dataclass(frozen=True)
class FaceCrop:
    """A square face crop and how it maps back: `matrix` (2x3) takes image -> crop pixels;
    `landmarks` are the 5 points in crop pixels (template positions when the detector had none)."""

    face: np.ndarray
    matrix: np.ndarray
    landmarks: np.ndarray
    from_template: bool
    widened: bool = False  # cropped too tight and framed (EYES_MAX): a "cut-off face"

    @property
    def source_side(self) -> float:
        """The crop's side in the photo's pixels: how much detail the face had (see SMALL_FACE_PX)."""
        return float(self.face.shape[1] / math.hypot(self.matrix[0, 0], self.matrix[1, 0]))

    @property
    def eyes_apart(self) -> float:
        """Distance between the eyes as a share of the crop's side (how tightly the face is framed)."""
        return eyes_apart(self.landmarks, self.face.shape[1])


def head_turn(landmarks) -> float:
    """How far the head is turned to the side: the nose tip's distance from the eyes' midpoint along the line
    through the eyes, in eye distances (five landmarks: eyes, nose tip, mouth corners). About 0 for a frontal
    face, either way; a face in profile, where both eyes are still found, 0.3 and more."""
    eyes = np.asarray(landmarks[:2], dtype=np.float64)
    along = eyes[1] - eyes[0]
    d2 = float(along @ along)
    return abs(float((np.asarray(landmarks[2], dtype=np.float64) - eyes.mean(0)) @ along)) / d2 if d2 else 0.0


def eyes_apart(landmarks, side: float) -> float:
    """Distance between the first two of five landmarks (the eyes) as a share of `side`."""
    (lx, ly), (rx, ry) = landmarks[0], landmarks[1]
    return float(math.hypot(rx - lx, ry - ly)) / side


def face_margin(image: np.ndarray, box: FaceBox) -> float:
    """crop_face's margin for this face: MARGIN_COLOUR, or MARGIN_GREY where the box holds a black-and-white
    picture (preprocess.grayscale_mask, the test that picks the predictor's temperature)."""
    patch = image[max(box.y, 0):max(box.y + box.h, 0), max(box.x, 0):max(box.x + box.w, 0)]
    if not patch.size or patch.ndim < 3:
        return MARGIN_GREY
    grey = grayscale_mask(torch.from_numpy(np.ascontiguousarray(patch)).permute(2, 0, 1)[None])[0]
    return MARGIN_GREY if grey else MARGIN_COLOUR


def crop_face(
    image: np.ndarray, box: FaceBox, *, margin: float | None = None, align: bool = True,
    max_side: int = CROP_MAX_SIDE,
) -> FaceCrop:
    """Square crop around `box` grown by `margin` on each side (shrunk where negative; None: face_margin), kept
    inside the image where it fits; with `align` and landmarks, rotated so the eyes are level. A box that nearly
    fills the image keeps the image's framing (FILL_FROM, FILL_TO), unless that puts the eyes more than
    EYES_MAX of the crop apart (EYES_TO)."""
    if margin is None:
        margin = face_margin(image, box)
    h, w = image.shape[:2]
    box_side, short = max(box.w, box.h), min(h, w)
    side = box_side * (1 + 2 * margin)
    fill = min(max((box_side / short - FILL_FROM) / (FILL_TO - FILL_FROM), 0.0), 1.0)
    side = max(side, side + fill * (short - side))
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    angle, widened = 0.0, False
    if box.landmarks is not None:
        (lx, ly), (rx, ry) = box.landmarks[0], box.landmarks[1]
        if align:
            angle = math.degrees(math.atan2(ry - ly, rx - lx))
        eyes = eyes_apart(box.landmarks, 1.0)
        if eyes > EYES_MAX * side:  # a face cropped too tight for the model: show it some border
            side, widened = eyes / EYES_TO, True
    if abs(angle) < 1.0:
        angle = 0.0
        side = side if widened else min(side, float(max(w, h)))
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
    if widened:  # a plain frame of the picture's mean colour (a mirrored one scored alike but showed four eyes)
        mean = [float(v) for v in image.reshape(-1, image.shape[2]).mean(0)]
        face = cv2.warpAffine(image, rot, (out, out), flags=interp, borderMode=cv2.BORDER_CONSTANT, borderValue=mean)
    else:
        face = cv2.warpAffine(image, rot, (out, out), flags=interp, borderMode=cv2.BORDER_REPLICATE)
    if box.landmarks is not None:
        pts = np.asarray(box.landmarks, dtype=np.float32)
        lm = pts @ rot[:, :2].T.astype(np.float32) + rot[:, 2].astype(np.float32)
        return FaceCrop(face, rot, lm, False, widened)
    return FaceCrop(face, rot, TEMPLATE_LANDMARKS * out, True)


def whole_image_crop(image: np.ndarray, *, max_side: int = CROP_MAX_SIDE) -> FaceCrop:
    """Treat the whole image as one face (pre-cropped datasets): all of it, made square by repeating its edge
    pixels (on non-square validation faces as good as a mean-colour or mirrored border, and better than cutting a
    centre square or stretching, except where the extra length is background), template landmarks."""
    h, w = image.shape[:2]
    return crop_face(image, FaceBox(0, 0, w, h), margin=0.0, align=False, max_side=max_side)
