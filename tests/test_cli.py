import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_core.__main__ import main
from fer_core.labels import EMOTIONS
from fer_core.scoring import noted_faces


def _read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_score_folder_with_bad_file_and_zip(tmp_path, astronaut, random_checkpoint, capsys):
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    Image.fromarray(astronaut).save(folder / "a_first.png")
    (folder / "b_broken.jpg").write_bytes(b"this is not a jpeg")
    Image.fromarray(astronaut[::2, ::2]).save(folder / "nested" / "c_small.jpg")
    Image.fromarray(np.full((100, 100, 3), 128, np.uint8)).save(folder / "d_blank.png")
    Image.fromarray(np.ascontiguousarray(np.rot90(astronaut))).save(folder / "e_turned.png")  # EXIF orientation lost
    zpath = tmp_path / "more.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(folder / "a_first.png", "../../evil/a.png")
        zf.writestr("broken.png", b"\x89PNG truncated")
        zf.writestr("notes.txt", "hello")
        zf.writestr("__MACOSX/._a.png", b"junk")
        buf = io.BytesIO()
        Image.fromarray(astronaut).save(buf, format="HEIF", quality=80)
        zf.writestr("IMG_0042.HEIC", buf.getvalue())  # an iPhone photo in a zip
    out = tmp_path / "scores.csv"
    # 1: some inputs failed (their rows say why); the others were scored
    assert main(["score", str(folder), str(zpath), "--model", str(random_checkpoint), "-o", str(out)]) == 1
    rows = _read(out)
    header = list(rows[0].keys())
    assert header[:7] == ["filepath", "face", "x", "y", "w", "h", "face_score"]
    assert header[7:13] == list(EMOTIONS) and "prediction" in header and "error" in header
    by_name = {r["filepath"].rsplit("/", 1)[-1]: r for r in rows}
    good = by_name["a_first.png"]
    assert good["error"] == "" and good["prediction"] in EMOTIONS and 0.6 <= float(good["face_score"]) <= 1
    assert abs(sum(float(good[c]) for c in EMOTIONS) - 1) < 1e-4
    assert header[-3:] == ["crop_px", "note", "error"] and float(good["crop_px"]) > 50  # the astronaut's face, ~98 px
    assert good["note"] == ("unsure" if float(good["confidence"]) < 0.5 else "")
    assert by_name["e_turned.png"]["note"].startswith("turned photo") and int(by_name["e_turned.png"]["y"]) > 200
    assert by_name["b_broken.jpg"]["error"] and by_name["b_broken.jpg"]["happiness"] == ""
    assert by_name["c_small.jpg"]["error"] == ""  # the file after the bad one was still scored
    assert by_name["d_blank.png"]["error"].startswith("no face found")
    assert by_name["a.png"]["error"] == "" and by_name["broken.png"]["error"]
    assert "not an image" in by_name["notes.txt"]["error"]
    assert not any("MACOSX" in r["filepath"] for r in rows)
    assert by_name["IMG_0042.HEIC"]["error"] == "" and by_name["IMG_0042.HEIC"]["prediction"] == good["prediction"]
    said = capsys.readouterr().err
    assert "1 file(s) with no face found" in said and "--whole-if-no-face" in said  # d_blank.png: how to score crops
    assert f"faces noted: {noted_faces(rows)} (see the note column)" in said and "1 turned photo" in said  # e_turned.png


def test_score_whole_image_batches(tmp_path, astronaut, random_checkpoint):
    folder = tmp_path / "crops"
    folder.mkdir()
    for i in range(70):  # more than one batch of 64
        Image.fromarray(np.roll(astronaut[50:250, 150:300], i, axis=1)).save(folder / f"{i:03d}.jpg")
    out = tmp_path / "s.csv"
    assert main(["score", str(folder), "--whole-image", "--model", str(random_checkpoint), "-o", str(out)]) == 0
    rows = _read(out)
    assert len(rows) == 70 and "x" not in rows[0]
    assert all(r["prediction"] in EMOTIONS for r in rows)


def test_score_whole_if_no_face(tmp_path, astronaut, random_checkpoint):
    """A folder of crops, one the detector cannot see (a blank): with --whole-if-no-face it is scored whole,
    its note says so and the photo with a face is scored as before (a detected box, no such note)."""
    from fer_core.scoring import WHOLE_FALLBACK

    folder = tmp_path / "crops"
    folder.mkdir()
    Image.fromarray(astronaut).save(folder / "a_face.png")
    Image.fromarray(np.full((90, 70, 3), 128, np.uint8)).save(folder / "b_blank.png")
    plain, fallback = tmp_path / "plain.csv", tmp_path / "fallback.csv"
    assert main(["score", str(folder), "--model", str(random_checkpoint), "-o", str(plain)]) == 1  # b_blank: no face
    assert main(["score", str(folder), "--whole-if-no-face", "--model", str(random_checkpoint), "-o",
                 str(fallback)]) == 0
    before, after = _read(plain), _read(fallback)
    assert before[1]["error"].startswith("no face found") and before[1]["prediction"] == ""
    assert after[1]["error"] == "" and after[1]["prediction"] in EMOTIONS and after[1]["x"] == ""
    assert after[1]["note"].startswith(WHOLE_FALLBACK) and float(after[1]["crop_px"]) == 90
    assert after[0] == before[0] and WHOLE_FALLBACK not in after[0]["note"]


def test_score_batched_equals_single(astronaut, predictor):
    faces = [astronaut[50 + i:250, 150:300] for i in range(5)]
    batched = predictor.predict(faces)
    single = np.concatenate([predictor.predict([f]) for f in faces])
    assert np.allclose(batched, single, atol=1e-5)


def test_models_command(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "gimefive" in out and "resnet34" in out


def test_explain_command(tmp_path, astronaut, random_checkpoint, capsys):
    img = tmp_path / "astro.png"
    Image.fromarray(astronaut).save(img)
    out = tmp_path / "out"
    assert main(["explain", str(img), "--model", str(random_checkpoint), "--methods", "gradcam,cam,occlusion",
                 "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"astro_face1_gradcam.png", "astro_face1_cam.png", "astro_face1_occlusion.png",
            "astro_face1_grid.png", "astro.json", "astro_labelled.png"} <= names
    assert Image.open(out / "astro_labelled.png").size == (640, 640)  # the 512-px photo, enlarged for its label
    import json

    rep = json.loads((out / "astro.json").read_text())
    face = rep["faces"][0]
    assert set(face["scores"]) == {"gradcam", "cam", "occlusion"}
    assert 0 <= face["scores"]["gradcam"]["deletion_auc"] <= 1
    assert 80 < face["crop_px"] < 110  # her face in the 512-px photo
    tiny = tmp_path / "tiny.png"
    Image.fromarray(astronaut).resize((77, 77), Image.BILINEAR).save(tiny)
    capsys.readouterr()
    assert main(["explain", str(tiny), "--model", str(random_checkpoint), "--methods", "cam", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "face 1: A small face: 1" in err and "px across in the photo. Below 24 px" in err  # ~14 px


def test_explain_bad_image_exits_cleanly(tmp_path, random_checkpoint, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    assert main(["explain", str(bad), "--model", str(random_checkpoint), "--out", str(tmp_path / "o")]) == 2
    assert "empty" in capsys.readouterr().err


def test_precision_options_agree(astronaut, random_checkpoint, monkeypatch):
    from fer_core.device import resolve_precision
    from fer_core.runtime import load_predictor

    p32 = load_predictor(random_checkpoint, precision="float32")
    p16 = load_predictor(random_checkpoint, precision="bfloat16")
    assert (p32.precision, p16.precision) == ("float32", "bfloat16")
    faces = [astronaut[60:220, 140:300], astronaut[::2, ::2], astronaut[100:200, 50:400]]
    a, b = p32.predict(faces), p16.predict(faces)
    np.testing.assert_allclose(a.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(b.sum(1), 1, atol=1e-5)
    assert np.abs(a - b).max() < 0.02  # bfloat16 autocast changes probabilities only slightly
    monkeypatch.setenv("FER_PRECISION", "float32")
    assert resolve_precision() == "float32" and resolve_precision("bfloat16") == "bfloat16"
    monkeypatch.setenv("FER_PRECISION", "half")
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        resolve_precision()


def test_cpu_summary_names_the_widest_vector_extension():
    from fer_core.device import cpu_summary

    epyc = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 fma\n"
    assert cpu_summary(epyc) == "AMD EPYC (AVX2)"
    assert cpu_summary(epyc.replace("avx2", "avx2 avx512f avx512_bf16")) == "AMD EPYC (AVX-512 BF16)"
    assert cpu_summary("model name : Old\nflags : sse2\n") == "Old (no AVX2)"
    assert isinstance(cpu_summary(), str)


def test_noted_faces_counts_each_note_most_first():
    rows = [{"note": "small face, unsure"}, {"note": ""}, {"note": "unsure"}, {"error": "unreadable"},
            {"note": "side view, unsure"}]
    assert noted_faces(rows) == "3 unsure, 1 small face, 1 side view" and noted_faces(rows[1:2]) == ""


def test_face_notes():
    from fer_core.faces import FaceBox
    from fer_core.notes import face_notes

    assert face_notes(200.0, 0.9) == []
    assert face_notes(20.0, 0.9) == ["small face"]
    assert face_notes(200.0, 0.3) == ["unsure"]
    assert face_notes(20.0, 0.49) == ["small face", "unsure"]
    turned = FaceBox(0, 0, 40, 40, turn=1)
    assert face_notes(20.0, 0.49, cut_off=True, box=turned) == ["small face", "cut-off face", "turned photo", "unsure"]
    assert face_notes(200.0, 0.9, box=FaceBox(0, 0, 40, 40)) == []


def _photos(folder, astronaut, n):
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        Image.fromarray(np.ascontiguousarray(np.roll(astronaut, 7 * k, axis=1))).save(folder / f"p{k:02d}.png")
    (folder / "p99_broken.jpg").write_bytes(b"not a jpeg")
    return folder


@pytest.mark.parametrize("argv, why", [
    (["score", "{photos}", "-o", "{tmp}"], "the name must end with .csv"),
    (["score", "{photos}", "-o", "{file}/x.csv"], "a file of that name is in the way"),
    (["explain", "{photo}", "--out", "{file}"], "is a file"),
    (["video", "{photo}", "--csv", "{tmp}"], "the name must end with .csv"),
    (["score", "{photos}", "--resume"], "--resume continues the file given with --output"),
    (["score", "{photos}", "--shard", "2/2"], "expected i/N with 0 <= i < N"),
    (["score", "{photos}", "--shard", "half"], "expected i/N with 0 <= i < N"),
])
def test_bad_output_paths_stop_at_once_with_one_line(tmp_path, astronaut, random_checkpoint, capsys, argv, why):
    photos = _photos(tmp_path / "photos", astronaut, 1)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    fill = {"photos": str(photos), "tmp": str(tmp_path), "file": str(blocker), "photo": str(photos / "p00.png")}
    code = main([a.format(**fill) for a in argv] + ["--model", str(random_checkpoint)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:") and why in err[0], err


def test_output_folders_are_created(tmp_path, astronaut, random_checkpoint):
    photos = _photos(tmp_path / "photos", astronaut, 1)
    out = tmp_path / "new" / "deeper" / "scores.csv"
    assert main(["score", str(photos), "-o", str(out), "--model", str(random_checkpoint)]) == 1  # p99_broken.jpg
    assert len(_read(out)) == 2


def test_a_killed_score_run_leaves_a_valid_csv_that_resume_completes(tmp_path, astronaut, random_checkpoint):
    """A `score` subprocess killed mid-run leaves whole rows; --resume scores the rest, and the result equals an
    uninterrupted run's rows."""
    import os
    import signal
    import subprocess
    import sys
    import time

    photos = _photos(tmp_path / "photos", astronaut, 12)
    full = tmp_path / "full.csv"
    assert main(["score", str(photos), "-o", str(full), "--model", str(random_checkpoint), "--batch-size", "1"]) == 1
    out = tmp_path / "out" / "scores.csv"
    cmd = [sys.executable, "-m", "fer_core", "score", str(photos), "-o", str(out), "--model", str(random_checkpoint),
           "--batch-size", "1"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not out.is_file() or len(out.read_text().splitlines()) < 4):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = _read(out)  # a valid CSV: every row has every column
    assert 3 <= len(partial) < len(_read(full))
    assert all(None not in r.values() for r in partial)
    with open(out, "a") as fh:  # as if killed in the middle of writing a row
        fh.write(f"{photos / 'p11.png'},1,12,3")
    assert main(["score", str(photos), "-o", str(out), "--model", str(random_checkpoint), "--resume",
                 "--batch-size", "1"]) == 1
    assert _read(out) == _read(full)


def test_resume_refuses_a_file_with_other_columns(tmp_path, astronaut, random_checkpoint, capsys):
    photos = _photos(tmp_path / "photos", astronaut, 1)
    out = tmp_path / "scores.csv"
    out.write_text("a,b\n1,2\n")
    assert main(["score", str(photos), "-o", str(out), "--resume", "--model", str(random_checkpoint)]) == 2
    assert "columns differ" in capsys.readouterr().err and out.read_text() == "a,b\n1,2\n"


def test_score_streams_rows_before_the_run_ends(astronaut, predictor):
    from fer_core.scoring import ImageItem, iter_scores

    items = [ImageItem(f"p{k}", astronaut) for k in range(3)] + [ImageItem("bad", None, "no such file or folder")]
    parts = list(iter_scores(items, predictor, batch_size=1))
    assert len(parts) >= 3 and [r["filepath"] for p in parts for r in p] == ["p0", "p1", "p2", "bad"]


def test_shards_joined_in_order_are_the_unsharded_csv(tmp_path, astronaut, random_checkpoint):
    """--shard i/N: three job-array copies over 5 files (4 photos, 1 broken) score contiguous blocks; their CSVs,
    joined in shard order with the headers dropped, equal the unsharded CSV byte for byte."""
    from fer_core.scoring import shard_of

    photos = _photos(tmp_path / "photos", astronaut, 4)
    whole = tmp_path / "all.csv"
    assert main(["score", str(photos), "-o", str(whole), "--model", str(random_checkpoint)]) == 1  # the broken one
    parts = []
    for k in range(3):
        out = tmp_path / f"part{k}.csv"
        code = main(["score", str(photos), "-o", str(out), "--shard", f"{k}/3", "--model", str(random_checkpoint)])
        assert code == (1 if k == 2 else 0)  # the broken file is in the last shard
        parts.append(out.read_text().splitlines(keepends=True))
    assert [len(p) - 1 for p in parts] == [1, 2, 2]  # files 0 | 1-2 | 3-4, one row each
    assert parts[0][0] + "".join(line for p in parts for line in p[1:]) == whole.read_text()
    assert [len(shard_of(list(range(10)), k, 4)) for k in range(4)] == [2, 3, 2, 3]
    assert sum((shard_of(list(range(10)), k, 4) for k in range(4)), []) == list(range(10))
