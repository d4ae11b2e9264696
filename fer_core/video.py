"""Video: frames in -> per-frame, per-face emotions (tracked, optionally smoothed) -> annotated
video + timeline CSV."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from .errors import UnreadableVideo, UsageError
from .faces import FaceBox, crop_face, detect_faces, iou
from .runtime import Predictor
from .io import CsvSink
from .rows import BOX_COLUMNS, PROB_COLUMNS, box_fields, prob_columns, prob_fields
from .labels import CLASSES_7, EMOTIONS, NEUTRAL
from .overlay import FONT as _FONT
from .overlay import box_label, heatmap

MAX_DURATION_S = 120.0  # the app refuses longer clips (it is interactive); the CLI takes any length
MAX_FRAMES = 20_000  # the app's cap on decoded frames (a header may under-report a clip's length)
ANALYSIS_MAX_SIDE = 640  # frames are downscaled to this for analysis and for the output video
DETECT_MAX_SIDE = 320  # face detection runs on a copy at most this large (measured: 640 px costs 2x)
TIMELINE_COLUMNS = ["frame", "time_s", "face", *BOX_COLUMNS, *PROB_COLUMNS]  # a six-class model's timeline


def timeline_columns(classes: Sequence[str] = EMOTIONS) -> list[str]:
    """The timeline CSV's columns for a model with these classes (the smoothed probabilities)."""
    return ["frame", "time_s", "face", *BOX_COLUMNS, *prob_columns(classes)]


@dataclass
class Track:
    id: int
    box: FaceBox
    probs: np.ndarray
    missed: int = 0
    cam: np.ndarray | None = None
    history: list = field(default_factory=list)


class Tracker:
    """Greedy IoU matching: a face keeps its id while its box overlaps its last one."""

    def __init__(self, min_iou: float = 0.25, max_missed: int = 5, num_classes: int = len(EMOTIONS)) -> None:
        self.num_classes = num_classes
        self.tracks: list[Track] = []
        self.next_id = 1
        self.min_iou = min_iou
        self.max_missed = max_missed

    def update(self, boxes: list[FaceBox]) -> list[tuple[Track, FaceBox]]:
        pairs = sorted(
            ((iou(t.box, b), ti, bi) for ti, t in enumerate(self.tracks) for bi, b in enumerate(boxes)), reverse=True
        )
        used_t, used_b, matched = set(), set(), []
        for score, ti, bi in pairs:
            if score < self.min_iou or ti in used_t or bi in used_b:
                continue
            used_t.add(ti)
            used_b.add(bi)
            matched.append((self.tracks[ti], boxes[bi]))
        for bi, b in enumerate(boxes):
            if bi not in used_b:
                t = Track(self.next_id, b, np.zeros(self.num_classes, np.float32))
                self.next_id += 1
                self.tracks.append(t)
                matched.append((t, b))
        live = {id(t) for t, _ in matched}
        for t in self.tracks:
            t.missed = 0 if id(t) in live else t.missed + 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        for t, b in matched:
            t.box = b
        return sorted(matched, key=lambda tb: tb[0].id)


def open_video(path: str | os.PathLike, *, max_duration_s: float | None = MAX_DURATION_S
               ) -> tuple[cv2.VideoCapture, float, int, int, int]:
    """Open and sanity-check a video: (capture, fps, frame count, width, height); max_duration_s None: any length."""
    p = Path(path)
    if not p.is_file() or p.stat().st_size == 0:
        raise UnreadableVideo(f"{p.name} is missing or empty")
    cap = cv2.VideoCapture(str(p))
    if not cap.isOpened():
        raise UnreadableVideo(f"{p.name} is not a video OpenCV can decode")
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    if not np.isfinite(fps) or fps <= 0 or fps > 240:
        fps = 25.0
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    ok, frame = cap.read()
    if not ok or frame is None:
        cap.release()
        raise UnreadableVideo(f"{p.name} has no decodable frames (not a video, or truncated at the start)")
    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
    if max_duration_s is not None and n > 0 and n / fps > max_duration_s:
        cap.release()
        raise UnreadableVideo(
            f"{p.name} is {n / fps:.0f} s long; the limit is {max_duration_s:.0f} s — trim it first"
        )
    return cap, fps, n, w, h


class VideoWriter:
    """H.264 mp4 through imageio-ffmpeg's bundled ffmpeg (plays in browsers); OpenCV mp4v otherwise. The encoder
    starts with the first frame, so a video with no frame written leaves no file and no encoder message."""

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int]) -> None:
        self.path, self.fps, self.size = path, fps, size
        self.codec = "h264"
        self._gen = self._cv = None

    def _open(self) -> None:
        w, h = self.size
        try:
            import imageio_ffmpeg

            self._gen = imageio_ffmpeg.write_frames(
                str(self.path), (w, h), fps=self.fps, codec="libx264", pix_fmt_in="rgb24", pix_fmt_out="yuv420p",
                macro_block_size=2, output_params=["-preset", "veryfast", "-crf", "23"],
                ffmpeg_log_level="error",
            )
            self._gen.send(None)
        except (ImportError, RuntimeError, OSError):
            self.codec = "mp4v"
            self._gen = None
            self._cv = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))

    def write(self, rgb: np.ndarray) -> None:
        if self._gen is None and self._cv is None:
            self._open()
        if self._gen is not None:
            self._gen.send(np.ascontiguousarray(rgb))
        else:
            self._cv.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self._gen is not None:
            self._gen.close()
        elif self._cv is not None:
            self._cv.release()
        self._gen = self._cv = None


_COLORS = [(255, 200, 0), (0, 200, 255), (255, 80, 160), (120, 255, 120), (200, 120, 255)]


_ROW, _NAME_W, _BAR_W = 14, 56, 70  # the score panel: row height, class-name column, bar length (px)
_PANEL_W = _NAME_W + _BAR_W + 12


def _score_panel(out: np.ndarray, probs: np.ndarray, b, color, classes: Sequence[str] = EMOTIONS) -> None:
    """A row per class (class name, bar) on a dark panel beside the face: right of it when it fits, else left,
    kept inside the frame."""
    H, W = out.shape[:2]
    ph = _ROW * len(classes) + 4
    if ph > H or _PANEL_W > W:
        return
    x0 = b.x + b.w + 6 if b.x + b.w + 6 + _PANEL_W <= W else max(0, b.x - 6 - _PANEL_W)
    y0 = min(max(0, b.y), H - ph)
    cv2.rectangle(out, (x0, y0), (x0 + _PANEL_W, y0 + ph), (30, 30, 30), -1)
    for i, (name, p) in enumerate(zip(classes, probs)):
        y = y0 + 2 + i * _ROW
        cv2.putText(out, name, (x0 + 4, y + 10), _FONT, 0.35, (235, 235, 235), 1, cv2.LINE_AA)
        bx = x0 + 8 + _NAME_W
        cv2.rectangle(out, (bx, y + 2), (bx + _BAR_W, y + _ROW - 2), (70, 70, 70), -1)
        cv2.rectangle(out, (bx, y + 2), (bx + int(round(_BAR_W * float(p))), y + _ROW - 2), color, -1)


def annotate(frame: np.ndarray, tracks: list[Track], *, alpha: float = 0.45,
             classes: Sequence[str] = EMOTIONS) -> np.ndarray:
    """Boxes, ids, the top class and a score bar per class beside each face (plus a Grad-CAM overlay
    inside the box when the track carries one)."""
    out = frame.copy()
    H, W = out.shape[:2]
    for t in tracks:
        b = t.box
        color = _COLORS[(t.id - 1) % len(_COLORS)]
        if t.cam is not None:
            x0, y0, x1, y1 = max(0, b.x), max(0, b.y), min(W, b.x + b.w), min(H, b.y + b.h)
            if x1 > x0 and y1 > y0:
                hm = heatmap(cv2.resize(t.cam, (x1 - x0, y1 - y0)))
                out[y0:y1, x0:x1] = ((1 - alpha) * out[y0:y1, x0:x1] + alpha * hm).astype(np.uint8)
        cv2.rectangle(out, (b.x, b.y), (b.x + b.w, b.y + b.h), color, 2)
        k = int(np.argmax(t.probs))
        _score_panel(out, t.probs, b, color, classes)
        box_label(out, f"#{t.id} {classes[k]} {t.probs[k]:.0%}", b, color)  # over a neighbour's panel, not under
    return out


def check_options(every: int, smooth: float) -> None:
    """UsageError (a ValueError) for an `every` below 1 or a `smooth` outside [0, 1): the CLI's exit 2, one line."""
    if every < 1:
        raise UsageError("--every must be 1 or more")
    if not 0 <= smooth < 1:
        raise UsageError("--smooth must be in [0, 1)")


def analyze_video(
    path: str | os.PathLike,
    *,
    predictor: Predictor,
    out_video: str | os.PathLike | None = None,
    out_csv: str | os.PathLike | None = None,
    every: int = 1,
    overlay: str = "none",
    smooth: float = 0.0,
    max_side: int = ANALYSIS_MAX_SIDE,
    max_duration_s: float | None = MAX_DURATION_S,
    max_frames: int | None = MAX_FRAMES,
    segment: tuple[int, int] = (0, 1),
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Analyse every `every`-th frame; returns a summary with the timeline rows under "rows".

    `smooth` in [0, 1): exponential smoothing of each face's probabilities over analysed frames.
    Frames are downscaled to `max_side`. Raises UnreadableVideo for files that cannot be decoded or
    break the limits (None: no limit); a video truncated midway yields the frames before the damage.

    `segment` = (k, N): only the k-th of N time segments (`segment_frames`), its frames decoded from the start and
    skipped up to the segment; frame numbers and times stay the clip's, face ids start at 1 in each segment and
    `join_timelines` joins the segments' rows into the whole clip's timeline. The annotated video holds the
    segment's frames.
    """
    check_options(every, smooth)
    k, count = segment
    if not 0 <= k < count:
        raise ValueError(f"segment {k} of {count}: expected 0 <= k < N")
    if overlay not in ("none", "gradcam"):
        raise ValueError(f"unknown overlay {overlay!r}; choose from none, gradcam")
    cap, fps, n_reported, w, h = open_video(path, max_duration_s=max_duration_s)
    if count > 1 and n_reported <= 0:
        cap.release()
        raise UnreadableVideo(f"{Path(path).name} does not say how many frames it has, so it cannot be cut into "
                              "segments; analyse it whole")
    first, stop = segment_frames(n_reported, k, count, every) if count > 1 else (0, None)
    scale = min(1.0, max_side / max(w, h))
    size = (max(2, int(w * scale) // 2 * 2), max(2, int(h * scale) // 2 * 2))
    # the annotated video is written beside its name and renamed when it is whole: an interrupted run leaves no
    # broken file; the timeline goes to its CSV as each frame is analysed, so an interrupted run keeps its rows
    partial = Path(out_video).with_name(f".{Path(out_video).stem}.partial{Path(out_video).suffix}") if out_video else None
    writer = VideoWriter(partial, fps, size) if out_video else None
    sink = CsvSink(out_csv, timeline_columns(predictor.classes)) if out_csv else None
    finished = False
    tracker = Tracker(num_classes=len(predictor.classes))
    rows: list[dict] = []
    shown: list[Track] = []
    frame_idx, analysed, t_analysis = 0, 0, 0.0
    total = n_reported if n_reported > 0 else 0
    cap_frames = max_frames if max_frames is not None else float("inf")
    if max_duration_s is not None:
        cap_frames = min(cap_frames, int(max_duration_s * fps) + 1)
    if stop is not None:
        cap_frames = min(cap_frames, stop)
    try:
        # a header may under-report its length, so the frame cap also bounds the decode time
        while frame_idx < cap_frames:
            if frame_idx < first:  # before this segment: decoded (seeking is not frame-exact in every codec), skipped
                if not cap.grab():
                    break
                frame_idx += 1
                continue
            ok, bgr = cap.read()
            if not ok or bgr is None:
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if rgb.shape[1::-1] != size:
                rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            if frame_idx % every == 0:
                t0 = time.perf_counter()
                shown = analyse_frame(rgb, predictor, tracker, smooth, overlay)
                t_analysis += time.perf_counter() - t0
                analysed += 1
                for t in shown:
                    rows.append({"frame": frame_idx, "time_s": round(frame_idx / fps, 3), "face": t.id,
                                 **box_fields(t.box), **prob_fields(t.probs, predictor.classes)})
                if sink is not None and shown:
                    sink.write(rows[-len(shown):])
            if writer is not None:
                writer.write(annotate(rgb, shown, classes=predictor.classes))
            frame_idx += 1
            if progress:
                progress(frame_idx - first, max((stop or total) - first, frame_idx - first))
        finished = frame_idx > first
    finally:
        cap.release()
        if sink is not None:
            sink.close()
        if writer is not None:
            try:
                writer.close()
            finally:
                if finished:
                    os.replace(partial, out_video)
                else:
                    partial.unlink(missing_ok=True)
    if frame_idx == 0 and (stop is None or stop > first):  # a segment with no analysed frame is empty, not broken
        raise UnreadableVideo(f"{Path(path).name} has no decodable frames")
    summary = {"segment": {"index": k, "count": count, "first_frame": first, "stop_frame": frame_idx}} if count > 1 else {}
    return {
        **summary, "frames": max(0, frame_idx - first), "frames_reported": n_reported, "analysed_frames": analysed, "fps": fps,
        "size": list(size), "faces": len({r["face"] for r in rows}), "rows_count": len(rows),
        "analysis_fps": analysed / t_analysis if t_analysis > 0 else 0.0,
        "truncated": bool(n_reported and frame_idx < (stop or n_reported) - 1),
        "codec": writer.codec if writer else None, "rows": rows,
    }


def analyse_frame(rgb: np.ndarray, predictor: Predictor, tracker: Tracker, smooth: float = 0.0,
                  overlay: str = "none") -> list[Track]:
    """One frame's faces found (on a copy at most DETECT_MAX_SIDE), matched to `tracker`'s tracks, classified and
    smoothed (`smooth`), with a Grad-CAM or CAM map per face when `overlay` asks: the tracks seen in this frame.
    The Video and Live pages' per-frame step."""
    scale = min(1.0, DETECT_MAX_SIDE / max(rgb.shape[:2]))
    small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else rgb
    boxes = []
    for b in detect_faces(small, turns=False):  # a turned video would be turned on every frame: 4x the detection
        lm = tuple((x / scale, y / scale) for x, y in b.landmarks) if b.landmarks else None
        boxes.append(FaceBox(round(b.x / scale), round(b.y / scale), round(b.w / scale), round(b.h / scale), b.score, lm))
    matched = tracker.update(boxes)
    if not matched:
        return []
    crops = [crop_face(rgb, b, align=False) for _, b in matched]
    probs = predictor.predict([c.face for c in crops])
    for (t, _), p, c in zip(matched, probs, crops):
        fresh = not t.probs.any()
        t.probs = p if (fresh or smooth == 0) else smooth * t.probs + (1 - smooth) * p
        if overlay in ("gradcam", "cam"):
            from .explainers import explain

            t.cam = explain(predictor.model, predictor.input_tensor(c.face), int(np.argmax(t.probs)), overlay)
        else:
            t.cam = None
    return [t for t, _ in matched]


def segment_frames(n_frames: int, k: int, count: int, every: int = 1) -> tuple[int, int | None]:
    """The frames [first, stop) of time segment k of `count` in a clip of `n_frames`: borders fall on analysed frames
    (multiples of `every`), so the segments analyse the very frames the whole clip's run does; the last segment's
    stop is None (to the end, even where a header under-reports the length)."""
    if not 0 <= k < count:
        raise ValueError(f"segment {k} of {count}: expected 0 <= k < N")
    slots = -(-max(n_frames, 1) // every)  # analysed frames in the clip
    first = k * slots // count * every
    return first, (None if k == count - 1 else (k + 1) * slots // count * every)


class TimelineJoiner:
    """One timeline from the timelines of consecutive segments (each numbering its faces from 1), a segment at a
    time (`add` returns its rows renumbered), so a long run writes each segment as soon as it and those before it
    are done.

    A face of a later segment takes the id of a face of the segments before it when the tracker would have kept
    that face's track alive up to there: it was seen at most `max_missed` + 1 analysed frames before the new face's
    first frame, and their boxes overlap by IoU >= `min_iou` (the best overlaps first, one to one) — the tracker's
    own rule, so a face seen across a border keeps its id. Other faces get the next free ids in order of first
    appearance. What is not joined: where --smooth is used, the smoothing restarts at each border.
    """

    def __init__(self, *, every: int = 1, min_iou: float = 0.25, max_missed: int = 5) -> None:
        self.reach = (max_missed + 1) * every
        self.min_iou = min_iou
        self.last: dict[int, dict] = {}  # global id -> its latest row
        self.next_id = 1

    def add(self, rows: list[dict]) -> list[dict]:
        rows = sorted(rows, key=lambda r: (int(r["frame"]), int(r["face"])))
        firsts: dict[int, dict] = {}
        for r in rows:
            firsts.setdefault(int(r["face"]), r)
        mapping: dict[int, int] = {}
        if rows and self.last:
            start = int(rows[0]["frame"])
            pairs = sorted(
                ((iou(_box(g_row), _box(r)), gid, lid) for lid, r in firsts.items()
                 if int(r["frame"]) - start < self.reach
                 for gid, g_row in self.last.items() if 0 < int(r["frame"]) - int(g_row["frame"]) <= self.reach),
                key=lambda t: (-t[0], t[1], t[2]))
            for score, gid, lid in pairs:
                if score >= self.min_iou and gid not in mapping.values() and lid not in mapping:
                    mapping[lid] = gid
        for lid in sorted(firsts):  # local ids are in order of creation
            if lid not in mapping:
                mapping[lid] = self.next_id
                self.next_id += 1
        out = sorted(({**r, "face": mapping[int(r["face"])]} for r in rows), key=lambda r: (int(r["frame"]), r["face"]))
        for row in out:  # each frame's faces by id, as the tracker writes them
            self.last[row["face"]] = row
        return out


def join_timelines(parts: list[list[dict]], *, every: int = 1, min_iou: float = 0.25, max_missed: int = 5
                   ) -> list[dict]:
    """The rows of consecutive segments' timelines as one timeline (see TimelineJoiner)."""
    joiner = TimelineJoiner(every=every, min_iou=min_iou, max_missed=max_missed)
    return [row for rows in parts for row in joiner.add(rows)]


def _box(row: dict) -> FaceBox:
    return FaceBox(int(float(row["x"])), int(float(row["y"])), int(float(row["w"])), int(float(row["h"])),
                   float(row.get("face_score") or 0))


def dominant_segments(rows: list[dict], face: int) -> list[dict]:
    """Consecutive runs of the same predicted emotion for one face: start, end (s) and emotion."""
    segs: list[dict] = []
    for r in (r for r in rows if r["face"] == face):
        if segs and segs[-1]["emotion"] == r["prediction"]:
            segs[-1]["end_s"] = r["time_s"]
            segs[-1]["frames"] += 1
        else:
            segs.append({"emotion": r["prediction"], "start_s": r["time_s"], "end_s": r["time_s"], "frames": 1})
    return segs


def face_summary(rows: list[dict], classes: Sequence[str] | None = None) -> list[dict]:
    """Per tracked face over the clip: when it was seen (first/last s), in how many analysed frames, its most
    frequent prediction, each class's share of those frames as the prediction and its mean probability (the
    classes: `classes`, else the six emotions and `neutral` where the rows have it)."""
    if classes is None:
        classes = CLASSES_7 if any(NEUTRAL in r for r in rows) else EMOTIONS
    out = []
    for face in sorted({r["face"] for r in rows}):
        mine = [r for r in rows if r["face"] == face]
        top = [sum(r["prediction"] == e for r in mine) / len(mine) for e in classes]
        out.append({"face": face, "first_s": mine[0]["time_s"], "last_s": mine[-1]["time_s"], "frames": len(mine),
                    "most_often": classes[int(np.argmax(top))],
                    **{f"{e}_share": v for e, v in zip(classes, top)},
                    **{f"{e}_mean": float(np.mean([r[e] for r in mine])) for e in classes}})
    return out
