"""A face crop set in a picture, and found and cropped again the way the app does: what `bench/detection.py`
measures the app's path with, and what `train/train.py --app-framed` trains on.

A dataset's crop has its own aligner's framing (RAF-DB's eyes ~0.45 of the side apart, FER2013's ~0.37); a face in a
photo gets our detector's box and crop. The default model's validation faces set in a plain frame (`python
bench/detection.py --split val --sides 256 --context 0.5 --plain --sample 1000`): RAF-DB 89.5 -> 88.0 on
the faces found (99.0%), FER2013 74.6 -> 73.9 (96.7% found). The detector's framing moves from face to face (its scale
0.66-1.36 of the dataset's, 5-95%; docs/decisions.md), and the model, trained on the datasets' framing with a
synthetic jitter, pays for it.
"""
from __future__ import annotations

import hashlib
import os

import cv2
import numpy as np
import torch

from .data import cache_dir
from .faces import MARGIN_COLOUR, MARGIN_GREY

CONTEXT = (0.25, 0.75)  # app_framed's range of surroundings, as a share of the crop's side per side
SIDES = (160, 640)  # and of the picture's longer side, px


def in_a_photo(img: np.ndarray, side: int, *, context: float = 0.0, plain: bool = False, tight: float = 1.0,
               turn: int = 0) -> np.ndarray:
    """A face crop as a picture: its central `tight` share kept (a tighter crop), `context` of its side added on
    every side (mirrored, or with `plain` the crop's mean colour: a face with surroundings), resized so its longer
    side is `side` px, then turned `turn` quarter turns anticlockwise (a photo whose EXIF orientation was lost)."""
    if tight < 1:  # the central share: forehead, chin and cheeks cut off
        h, w = img.shape[:2]
        ch, cw = max(1, round(tight * h)), max(1, round(tight * w))
        img = img[(h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw]
    if context:
        pad = round(context * max(img.shape[:2]))
        mean = [int(v) for v in img.reshape(-1, img.shape[2]).mean(0)]
        img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT if plain else cv2.BORDER_REFLECT_101,
                                 value=mean)
    s = side / max(img.shape[:2])
    out = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    return np.ascontiguousarray(np.rot90(out, turn)) if turn % 4 else out


def nearest_centre(boxes: list, shape: tuple) -> int:
    """The index of the box whose centre is nearest the picture's: the face that was set in it, not a mirrored copy
    in its surroundings."""
    h, w = shape[:2]
    return min(range(len(boxes)), key=lambda i: (boxes[i].x + boxes[i].w / 2 - w / 2) ** 2
               + (boxes[i].y + boxes[i].h / 2 - h / 2) ** 2)


def central(found: list, shape: tuple) -> tuple:
    """Of find_faces' (box, crop) pairs, the pair of the face nearest the picture's centre (nearest_centre)."""
    return found[nearest_centre([b for b, _ in found], shape)]


def _frame_chunk(faces: np.ndarray, draws: list[tuple[float, int, bool]], size: int) -> tuple[np.ndarray, int]:
    """app_framed's work on (N, S, S, 3) faces, each with its (context, side, plain) draw."""
    from .faces import crop_face, detect_faces
    from .preprocess import resize_face

    cv2.setNumThreads(1)
    out, found_n = faces.copy(), 0
    for j, (face, (context, side, plain)) in enumerate(zip(faces, draws)):
        picture = in_a_photo(face, side, context=context, plain=plain)
        # upright pictures: the app's looks at a turned copy (when no face scores 0.88) would only add time
        boxes = detect_faces(picture, turns=False)
        if boxes:
            out[j] = resize_face(crop_face(picture, boxes[nearest_centre(boxes, picture.shape)]).face, size)
            found_n += 1
    return out, found_n


def app_framed(x_u8: torch.Tensor, indices: np.ndarray, *, seed: int = 0, cache: bool = True,
               workers: int = 0, chunk: int = 500) -> tuple[torch.Tensor, int]:
    """Copies of the faces `x_u8[indices]` (uint8, (N, 3, S, S)) as the app would crop them from a photo: each set
    in a picture (in_a_photo: surroundings CONTEXT of its side, mirrored or plain, longer side SIDES px, drawn per
    face from `seed`), found by the detector and cropped, then resized to S. A face the detector misses keeps its own
    crop. Returns the copies (in `indices` order) and how many were found. `workers` processes (0: one per CPU) share
    the detections, `chunk` faces at a time (~30 ms a face on an idle core); the result is cached as .npz under FER_CACHE. The
    workers are spawned, so a script that calls this needs the usual `if __name__ == "__main__":` guard (train.py
    has it)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    size = x_u8.shape[-1]
    indices = np.asarray(indices)
    faces = x_u8[indices].permute(0, 2, 3, 1).contiguous().numpy()
    framing = f"{seed} {CONTEXT} {SIDES} {MARGIN_GREY} {MARGIN_COLOUR}"  # a new crop rule makes new copies
    key = hashlib.sha1(faces.tobytes() + framing.encode()).hexdigest()[:16]
    cache_file = cache_dir() / f"app_framed-{key}.npz"
    if cache and cache_file.is_file():
        with np.load(cache_file) as z:
            return torch.from_numpy(z["faces"]).permute(0, 3, 1, 2).contiguous(), int(z["found"])
    rng = np.random.default_rng(seed)  # every draw made here, so the copies do not depend on `workers`
    draws = [(float(rng.uniform(*CONTEXT)), int(rng.integers(SIDES[0], SIDES[1] + 1)), bool(rng.random() < 0.5))
             for _ in range(len(faces))]
    parts = [(faces[k:k + chunk], draws[k:k + chunk], size) for k in range(0, len(faces), chunk)]
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(parts) == 1:
        done = [_frame_chunk(*part) for part in parts]
    else:
        # spawned, not forked: a fork of a process whose OpenCV / OpenMP threads have run can hang (it did, in
        # train.py after decoding the datasets)
        with ProcessPoolExecutor(min(workers, len(parts)), mp_context=multiprocessing.get_context("spawn")) as pool:
            done = list(pool.map(_frame_chunk, *zip(*parts)))
    out = np.concatenate([d[0] for d in done]) if done else faces
    found_n = sum(d[1] for d in done)
    if cache:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache_file, faces=out, found=found_n)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous(), found_n
