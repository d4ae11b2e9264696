"""A live camera stream, frame by frame: the Video page's tracking and smoothing on frames as they come, with the
last seconds of each face's probabilities kept for a rolling chart and the processed rate measured. The Live page
hands it the browser's frames (streamlit-webrtc, which drops frames that arrive while one is being processed, so a
slow machine skips frames instead of lagging). Nothing is stored but the last frame, in memory, for "freeze"."""
from __future__ import annotations

import threading
import time
from collections import deque

import cv2
import numpy as np

from .runtime import Predictor
from .video import Tracker, analyse_frame, annotate

LIVE_MAX_SIDE = 640  # frames are processed at most this large (a 640×480 webcam frame as it is)
OVERLAYS = ("none", "gradcam", "cam")


class LiveSession:
    """One camera stream's state; safe to feed from the stream's thread while a page reads it."""

    def __init__(self, predictor: Predictor, *, smooth: float = 0.6, overlay: str = "none", history_s: float = 20.0,
                 clock=time.monotonic) -> None:
        if overlay not in OVERLAYS:
            raise ValueError(f"unknown overlay {overlay!r}; choose from {', '.join(OVERLAYS)}")
        self.predictor, self.smooth, self.overlay, self.history_s = predictor, smooth, overlay, history_s
        self.tracker = Tracker(num_classes=len(predictor.classes))
        self.clock = clock
        self._lock = threading.Lock()
        self._history: deque = deque()  # (t, face id, probs)
        self._done: deque = deque()  # (t, seconds spent) of the frames processed in the last 5 s
        self.frames = 0
        self.last_frame: np.ndarray | None = None
        self.last_faces: list[tuple[int, str, float]] = []  # (face id, emotion, probability) of the last frame
        self.started = clock()

    def process(self, rgb: np.ndarray) -> np.ndarray:
        """One RGB uint8 frame in, the frame with every face's box, emotion and score bars (and the overlay) out."""
        t0 = self.clock()
        if max(rgb.shape[:2]) > LIVE_MAX_SIDE:
            s = LIVE_MAX_SIDE / max(rgb.shape[:2])
            rgb = cv2.resize(rgb, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        tracks = analyse_frame(rgb, self.predictor, self.tracker, self.smooth, self.overlay)
        out = annotate(rgb, tracks, classes=self.predictor.classes)
        now = self.clock()
        with self._lock:
            self.frames += 1
            self.last_frame = rgb
            self.last_faces = [(t.id, self.predictor.classes[int(np.argmax(t.probs))], float(np.max(t.probs))) for t in tracks]
            for t in tracks:
                self._history.append((now - self.started, t.id, t.probs.copy()))
            while self._history and self._history[0][0] < now - self.started - self.history_s:
                self._history.popleft()
            self._done.append((now, now - t0))
            while self._done and self._done[0][0] < now - 5.0:
                self._done.popleft()
        return out

    def history(self) -> list[dict]:
        """The last `history_s` seconds: one row per face and processed frame (t in seconds since the start)."""
        with self._lock:
            return [{"t": round(t, 2), "face": f"#{i}", **{e: float(p) for e, p in zip(self.predictor.classes, probs)}}
                    for t, i, probs in self._history]

    def stats(self) -> dict:
        """Processed frames per second over the last 5 s, the median processing time, the frames processed."""
        with self._lock:
            done = list(self._done)
            frames = self.frames
        span = done[-1][0] - done[0][0] if len(done) > 1 else 0.0
        return {"fps": (len(done) - 1) / span if span > 0 else 0.0,
                "ms": float(np.median([d for _, d in done]) * 1000) if done else 0.0, "frames": frames}
