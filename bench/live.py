"""The live view's processing rate at 640×480 (fer_core.live.LiveSession.process, as the Live page calls it per
frame): frames per second with no overlay and with Grad-CAM / CAM on the faces, one and three faces in view.

  python bench/live.py [--frames 60] [--threads 2]
"""
from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import torch

from fer_core.examples import astronaut, group_photo
from fer_core.live import LiveSession
from fer_core.runtime import DEFAULT_CHECKPOINT, load_predictor


def frames(kind: str, n: int) -> list[np.ndarray]:
    """n webcam-like 640×480 frames, the face(s) drifting a pixel a frame."""
    base = np.full((480, 640, 3), 90, np.uint8)
    if kind == "one face":
        base[90:390, 170:470] = cv2.resize(astronaut()[:300, 100:400], (300, 300))
    else:
        g = group_photo()
        base[:] = cv2.resize(g, (640, 480))
    return [np.ascontiguousarray(np.roll(base, k % 20, axis=1)) for k in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_CHECKPOINT)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    predictor = load_predictor(args.model)
    print(f"model {args.model} ({predictor.precision}, {predictor.runtime}); {args.threads} threads; 640x480 frames")
    print("| faces | overlay | frames/s | ms per frame (median) |\n|---|---|---|---|")
    for kind in ("one face", "three faces"):
        clip = frames(kind, args.frames)
        for overlay in ("none", "gradcam", "cam"):
            live = LiveSession(predictor, overlay=overlay)
            for f in clip[:5]:  # warm-up: first runs, the int8 copy built
                live.process(f)
            times = []
            for f in clip:
                t0 = time.perf_counter()
                live.process(f)
                times.append(time.perf_counter() - t0)
            print(f"| {kind} | {overlay} | {len(times) / sum(times):.1f} | {1000 * np.median(times):.1f} |")


if __name__ == "__main__":
    main()
