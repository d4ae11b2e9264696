import csv

import cv2
import numpy as np
import pytest

from fer_core.__main__ import main
from fer_core.errors import UnreadableVideo
from fer_core.labels import EMOTIONS
from fer_core.video import TIMELINE_COLUMNS, analyze_video, dominant_segments, face_summary


def make_clip(path, astronaut, frames=10, size=(320, 240), fps=10, with_face=True, fourcc="MJPG"):
    w, h = size
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    face = cv2.resize(astronaut[:, :, ::-1], (h * 5 // 6, h))
    for i in range(frames):
        fr = np.full((h, w, 3), 170, np.uint8)
        if with_face:
            x = 5 + 4 * i
            fr[:, x:x + face.shape[1]] = face[:, : max(0, min(face.shape[1], w - x))]
        vw.write(fr)
    vw.release()
    return path


def test_cli_video_end_to_end(tmp_path, astronaut, random_checkpoint, capsys):
    import json

    clip = make_clip(tmp_path / "in.avi", astronaut, frames=12)
    out, tl = tmp_path / "out.mp4", tmp_path / "timeline.csv"
    assert main(["video", str(clip), "--model", str(random_checkpoint), "--out", str(out), "--csv", str(tl),
                 "--every", "2", "--overlay", "gradcam", "--smooth", "0.5"]) == 0
    printed = json.loads(capsys.readouterr().out)  # a summary: the per-frame rows are the CSV's, not the terminal's
    assert "rows" not in printed and [f["frames"] for f in printed["per_face"]] == [6]
    rows = list(csv.DictReader(open(tl)))
    assert list(rows[0]) == TIMELINE_COLUMNS
    assert [int(r["frame"]) for r in rows] == [0, 2, 4, 6, 8, 10]
    assert [float(r["time_s"]) for r in rows] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert {r["face"] for r in rows} == {"1"}  # tracked: one id throughout
    assert all(abs(sum(float(r[c]) for c in EMOTIONS) - 1) < 1e-4 for r in rows)
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    cap.release()


def test_high_resolution_is_downscaled(tmp_path, astronaut, predictor):
    clip = make_clip(tmp_path / "big.avi", astronaut, frames=3, size=(1280, 960))
    s = analyze_video(clip, predictor=predictor)
    assert s["size"] == [640, 480] and s["frames"] == 3


def test_a_phone_portrait_clip_is_read_upright(tmp_path, astronaut, predictor):
    """A phone stores a portrait clip as landscape frames with a rotation tag: OpenCV turns them upright, reports the
    upright size, and the face is found on every frame (a frame read sideways would be squashed into the reported
    size, or its face missed: video detection does not look at turned pictures)."""
    import subprocess

    import imageio_ffmpeg

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    portrait = np.ascontiguousarray(astronaut[:, 96:416, ::-1])  # BGR, 512 tall x 320 wide
    stored = np.ascontiguousarray(np.rot90(portrait, 1))  # the sensor's landscape frame: 320 tall x 512 wide
    plain, tagged = tmp_path / "plain.mp4", tmp_path / "tagged.mp4"
    enc = subprocess.run([ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", "512x320",
                          "-r", "10", "-i", "-", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(plain)],
                         input=stored.tobytes() * 4)
    assert enc.returncode == 0
    tag = subprocess.run([ffmpeg, "-y", "-loglevel", "error", "-display_rotation", "-90", "-i", str(plain), "-c",
                          "copy", str(tagged)])
    assert tag.returncode == 0
    s = analyze_video(tagged, predictor=predictor)
    assert s["size"] == [320, 512] and s["frames"] == 4 and s["faces"] == 1 and s["rows_count"] == 4
    sideways = analyze_video(plain, predictor=predictor)  # the same frames untagged: the face lies sideways, missed
    assert sideways["size"] == [512, 320] and sideways["rows_count"] == 0


def test_no_faces(tmp_path, astronaut, predictor):
    s = analyze_video(make_clip(tmp_path / "empty.avi", astronaut, frames=4, with_face=False), predictor=predictor)
    assert s["frames"] == 4 and s["rows"] == [] and s["faces"] == 0


def test_bad_videos(tmp_path, astronaut, predictor):
    txt = tmp_path / "notes.mp4"
    txt.write_text("not a video at all")
    with pytest.raises(UnreadableVideo):
        analyze_video(txt, predictor=predictor)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(UnreadableVideo, match="empty"):
        analyze_video(empty, predictor=predictor)
    long = make_clip(tmp_path / "long.avi", astronaut, frames=30, fps=10)
    with pytest.raises(UnreadableVideo, match="limit is 2 s"):
        analyze_video(long, predictor=predictor, max_duration_s=2)


def test_truncated_video_keeps_decodable_frames(tmp_path, astronaut, predictor):
    clip = make_clip(tmp_path / "t.avi", astronaut, frames=20)
    data = clip.read_bytes()
    clip.write_bytes(data[: len(data) // 2])
    try:
        s = analyze_video(clip, predictor=predictor)
    except UnreadableVideo:
        return  # also acceptable: refused with a message rather than a crash or a hang
    assert 0 < s["frames"] < 20


def test_dominant_segments():
    rows = [{"face": 1, "time_s": t, "prediction": p} for t, p in
            [(0.0, "happiness"), (0.1, "happiness"), (0.2, "surprise"), (0.3, "happiness")]]
    segs = dominant_segments(rows, 1)
    assert [(s["emotion"], s["frames"]) for s in segs] == [("happiness", 2), ("surprise", 1), ("happiness", 1)]


def test_annotation_puts_the_tag_and_score_bars_inside_the_frame():
    from fer_core.faces import FaceBox
    from fer_core.video import _COLORS, Track, annotate

    frame = np.full((240, 320, 3), 128, np.uint8)
    probs = np.array([0.02, 0.02, 0.02, 0.02, 0.02, 0.9])
    out = annotate(frame, [Track(1, FaceBox(250, 0, 60, 70), probs)])  # a face in the top-right corner
    color = np.all(out == np.array(_COLORS[0], np.uint8), axis=2)
    left = color[:, :244]  # the panel has no room on the right, so it stands left of the box
    rows = np.flatnonzero(left.any(axis=1))
    assert rows.size, "no score bars beside the face"
    bars = [left[r].sum() for r in rows]
    assert max(bars) >= 50 and min(bars) <= 5  # fear's bar at 0.9 of its length, the others a sliver
    assert rows[np.argmax(bars)] > rows[0] + 50  # fear, the sixth row, is the long one
    assert color[2:14, 250:310].mean() > 0.5  # the tag sits inside the box's top edge, on the track's colour


def test_face_summary_by_hand():
    def row(face, t, pred, p):
        return {"face": face, "time_s": t, "prediction": pred, **dict(zip(EMOTIONS, p))}

    happy, sad = [0.7, 0.1, 0.1, 0.05, 0.03, 0.02], [0.1, 0.1, 0.6, 0.1, 0.05, 0.05]
    rows = [row(1, 0.0, "happiness", happy), row(2, 0.0, "sadness", sad), row(1, 0.5, "happiness", happy),
            row(1, 1.0, "sadness", sad)]
    one, two = face_summary(rows)
    assert [one[k] for k in ("face", "first_s", "last_s", "frames", "most_often")] == [1, 0.0, 1.0, 3, "happiness"]
    assert one["happiness_share"] == pytest.approx(2 / 3) and one["sadness_share"] == pytest.approx(1 / 3)
    assert one["happiness_mean"] == pytest.approx((0.7 * 2 + 0.1) / 3) and one["fear_share"] == 0
    assert (two["frames"], two["most_often"], two["sadness_mean"]) == (1, "sadness", 0.6)
    assert face_summary([]) == []


def _timeline(path):
    return list(csv.DictReader(open(path)))


def _same_rows(a, b):
    assert [(r["frame"], r["face"], r["x"], r["y"], r["w"], r["h"]) for r in a] == \
        [(r["frame"], r["face"], r["x"], r["y"], r["w"], r["h"]) for r in b]
    for ra, rb in zip(a, b):
        assert all(abs(float(ra[c]) - float(rb[c])) < 1e-5 for c in EMOTIONS)


def test_segment_borders_fall_on_analysed_frames():
    from fer_core.video import segment_frames

    for n, count, every in [(12, 3, 2), (101, 4, 3), (5, 5, 1), (7, 3, 1)]:
        spans = [segment_frames(n, k, count, every) for k in range(count)]
        assert spans[0][0] == 0 and spans[-1][1] is None  # the last runs to the end
        assert all(first % every == 0 for first, _ in spans)
        assert all(spans[k][1] == spans[k + 1][0] for k in range(count - 1))  # contiguous, no frame twice
    with pytest.raises(ValueError):
        segment_frames(10, 3, 3)


def test_shards_joined_equal_the_whole_clip(tmp_path, astronaut, random_checkpoint, capsys):
    """`video --shard k/3` for k = 0, 1, 2, then `join`: the whole clip's timeline, frame for frame, the face keeping
    its id across both borders."""
    clip = make_clip(tmp_path / "in.avi", astronaut, frames=14)
    model = ["--model", str(random_checkpoint)]
    assert main(["video", str(clip), *model, "--every", "2", "--csv", str(tmp_path / "whole.csv")]) == 0
    for k in (2, 0, 1):
        assert main(["video", str(clip), *model, "--every", "2", "--shard", f"{k}/3",
                     "--csv", str(tmp_path / f"part{k}.csv")]) == 0
    capsys.readouterr()
    parts = [_timeline(tmp_path / f"part{k}.csv") for k in range(3)]
    assert [p[0]["frame"] for p in parts] == ["0", "4", "8"] and all(p[0]["face"] == "1" for p in parts)
    assert main(["join", *(str(tmp_path / f"part{k}.csv") for k in (1, 2, 0)), "-o", str(tmp_path / "j.csv")]) == 0
    assert "from 3 segment(s)" in capsys.readouterr().err
    whole = _timeline(tmp_path / "whole.csv")
    assert len(whole) == 7
    _same_rows(_timeline(tmp_path / "j.csv"), whole)


def test_join_follows_the_trackers_rule():
    from fer_core.video import join_timelines

    def row(frame, face, x, y=0):
        return {"frame": frame, "face": face, "x": x, "y": y, "w": 50, "h": 50, "face_score": 0.9}

    a = [row(0, 1, 0), row(0, 2, 300), row(1, 1, 2), row(1, 2, 302)]
    b = [row(4, 1, 304), row(4, 2, 5), row(5, 3, 600)]  # the faces come back in the other order, and a new one
    c = [row(20, 1, 6)]  # 16 frames after face 1 was last seen: beyond the tracker's reach, a new face
    joined = join_timelines([a, b, c])
    assert [(r["frame"], r["face"]) for r in joined] == [(0, 1), (0, 2), (1, 1), (1, 2), (4, 1), (4, 2), (5, 3),
                                                        (20, 4)]
    assert [r["x"] for r in joined if r["frame"] == 4] == [5, 304]  # face 1 is the one at x=5, sorted by id
    assert [r["face"] for r in join_timelines([a, c], every=4)] == [1, 2, 1, 2, 1]  # 19 frames, reach 24 at every 4


def test_video_options_that_do_not_go_together(tmp_path, astronaut, random_checkpoint, capsys):
    clip = make_clip(tmp_path / "in.avi", astronaut, frames=4)
    model = ["--model", str(random_checkpoint)]
    for extra in (["--shard", "3/3"], ["--engine", "ray", "--out", str(tmp_path / "o.mp4")], ["--workers", "2"],
                  ["--every", "0"], ["--smooth", "1"]):
        try:
            code = main(["video", str(clip), *model, *extra])
        except SystemExit as exc:  # argparse's own check (--every 0): one line, exit 2
            code = exc.code
        assert code == 2, extra
        err = capsys.readouterr().err
        assert "error: " in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    scores = tmp_path / "scores.csv"
    scores.write_text("filepath,face\nx.jpg,1\n")
    assert main(["join", str(scores), "-o", str(tmp_path / "j.csv")]) == 2
    assert "not a timeline CSV" in capsys.readouterr().err
