"""Frames per second analysed at 640x480, with and without the Grad-CAM overlay.

  python bench/video.py [--model fernet] [--frames 60]
The clip is made here from scikit-image's astronaut (two faces moving across a 640x480 frame).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch


from fer_core.examples import astronaut
from fer_core.runtime import DEFAULT_CHECKPOINT, load_predictor
from fer_core.video import analyze_video


def make_clip(path: Path, frames: int) -> None:
    face = cv2.resize(astronaut()[20:300, 120:330, ::-1], (160, 210))
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (640, 480))
    for i in range(frames):
        fr = np.full((480, 640, 3), 170, np.uint8)
        fr[60:270, 20 + 3 * i % 200:180 + 3 * i % 200] = face
        fr[250:460, 420 - 2 * i % 150:580 - 2 * i % 150] = cv2.flip(face, 1)
        vw.write(fr)
    vw.release()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_CHECKPOINT)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pred = load_predictor(args.model)
    pred.predict([np.zeros((64, 64, 3), np.uint8)])  # its prediction copy built, as in the app's long-lived process
    with tempfile.TemporaryDirectory() as d:
        clip = Path(d) / "clip.avi"
        make_clip(clip, args.frames)
        for overlay in ("none", "gradcam"):
            s = analyze_video(clip, predictor=pred, overlay=overlay, out_video=Path(d) / "out.mp4")
            print(f"overlay={overlay:8s} {s['analysed_frames']} frames at {s['size'][0]}x{s['size'][1]}, "
                  f"{s['rows_count']} face rows: {s['analysis_fps']:.1f} analysed frames/s (goal >= 15 without overlay)")


if __name__ == "__main__":
    main()
