"""The live view's frame processing without a browser: boxes, labels, the rolling history, the processed rate."""
import numpy as np
import pytest

from fer_core.labels import EMOTIONS
from fer_core.live import LIVE_MAX_SIDE, LiveSession


def _frame(astronaut, shift=0):
    """A 640×480 webcam-like frame with the astronaut's face in it."""
    import cv2

    frame = np.full((480, 640, 3), 90, np.uint8)
    face = cv2.resize(astronaut[:300, 100:400], (300, 300))
    frame[90:390, 170 + shift:470 + shift] = face
    return frame


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_frames_get_boxes_labels_history_and_a_rate(astronaut, predictor):
    clock = Clock()
    live = LiveSession(predictor, smooth=0.5, clock=clock, history_s=1.0)
    for k in range(6):
        clock.t = 0.1 * k  # one frame every 100 ms, each processed at once
        out = live.process(_frame(astronaut, shift=2 * k))
    assert out.shape == (480, 640, 3) and not np.array_equal(out, _frame(astronaut, 10))  # drawn on
    assert [i for i, _, _ in live.last_faces] == [1]  # one face, tracked as #1 through every frame
    assert live.last_faces[0][1] in EMOTIONS and 0 < live.last_faces[0][2] <= 1
    rows = live.history()
    assert len(rows) == 6 and {r["face"] for r in rows} == {"#1"} and all(abs(sum(r[e] for e in EMOTIONS) - 1) < 1e-4
                                                                          for r in rows)
    assert live.stats()["fps"] == pytest.approx(10.0) and live.stats()["frames"] == 6
    clock.t = 2.0
    live.process(np.full((480, 640, 3), 90, np.uint8))  # the face gone: the history keeps only the last second
    assert live.history() == [] and live.last_faces == []


def test_big_frames_are_processed_at_the_live_size_and_overlays_are_checked(astronaut, predictor):
    import cv2

    live = LiveSession(predictor, overlay="cam")
    out = live.process(cv2.resize(_frame(astronaut), (1280, 960)))
    assert max(out.shape[:2]) == LIVE_MAX_SIDE and live.last_faces
    assert live.tracker.tracks[0].cam is not None  # the CAM overlay was made for the face
    with pytest.raises(ValueError, match="unknown overlay 'occlusion'"):
        LiveSession(predictor, overlay="occlusion")
