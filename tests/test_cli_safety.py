"""The command line cannot hurt its user: each slip a person makes at a shell, run as a subprocess, must end with the
documented exit code, at most one line on stderr for a usage mistake, no traceback, and every input file's bytes as
they were."""
import csv
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_video import make_clip

ROOT = Path(__file__).resolve().parent.parent


def fer(*argv, env=None, cwd=None, stdin_pipe_to=None):
    """Run `python -m fer_core ARGV...`; returns (exit code, stdout, stderr lines)."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "FER_WARM_UP": "0", **(env or {})}
    full_env.pop("FER_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "fer_core", *map(os.fsdecode, argv)], env=full_env, cwd=cwd,
                          capture_output=True, timeout=300)
    err = proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err, err
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), [ln for ln in err.splitlines() if ln.strip()]


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def usage_error(code, err, *words):
    assert code == 2, (code, err)
    assert len(err) == 1 and "error" in err[0], err
    for w in words:
        assert w in err[0], err


@pytest.fixture()
def photos(tmp_path, astronaut):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        Image.fromarray(astronaut).save(folder / name)
    return folder


@pytest.fixture()
def model(random_checkpoint):
    return str(random_checkpoint)


def read(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_no_output_replaces_an_input(tmp_path, photos, astronaut, model):
    a, b = photos / "a.jpg", photos / "b.jpg"
    clip = make_clip(tmp_path / "clip.mp4", astronaut, frames=4, fourcc="mp4v")
    before = {p: digest(p) for p in (a, b, clip)}
    usage_error(*fer("score", a, "-o", a, "--model", model)[::2], "is an input")
    usage_error(*fer("score", "-o", a, b, "--model", model)[::2], ".csv")  # the glob slip: fer score -o *.jpg
    usage_error(*fer("video", clip, "--out", clip, "--model", model)[::2], "is an input")
    usage_error(*fer("video", clip, "--csv", clip, "--model", model)[::2], "is an input")
    usage_error(*fer("video", clip, "--out", tmp_path / "x.mp4", "--csv", tmp_path / "x.mp4", "--model", model)[::2])
    timeline = tmp_path / "t.csv"
    timeline.write_text("frame\n")
    usage_error(*fer("join", timeline, "-o", timeline)[::2], "is an input")
    assert {p: digest(p) for p in (a, b, clip)} == before and timeline.read_text() == "frame\n"


def test_resume_never_loses_a_row(tmp_path, photos, model):
    out = tmp_path / "r.csv"
    assert fer("score", photos / "a.jpg", photos / "b.jpg", "-o", out, "--model", model)[0] == 0
    first = read(out)
    code, _, err = fer("score", photos / "c.jpg", "-o", out, "--model", model, "--resume")
    assert code == 0
    rows = read(out)
    assert [r["filepath"] for r in rows] == [r["filepath"] for r in first] + [str(photos / "c.jpg")]
    assert rows[:len(first)] == first  # b.jpg's rows kept: it is not being scored again
    assert any("0 of 1 file(s) already in it" in line for line in err), err
    # the last file re-scored when it is among the inputs (its rows may have been cut off)
    code, _, err = fer("score", photos, "-o", out, "--model", model, "--resume")
    assert code == 0 and any("c.jpg scored again" in line for line in err), err
    assert sorted(r["filepath"] for r in read(out)) == sorted(str(photos / n) for n in ("a.jpg", "b.jpg", "c.jpg"))


def test_resume_refuses_rows_of_another_model_or_mode(tmp_path, photos, model):
    import torch

    from fer_core.checkpoints import ModelSpec, save_checkpoint
    from fer_core.models import create_model

    out = tmp_path / "r.csv"
    assert fer("score", photos / "a.jpg", "-o", out, "--model", model)[0] == 0
    other = tmp_path / "other.safetensors"
    torch.manual_seed(1)
    save_checkpoint(create_model("fernet").eval(), ModelSpec(arch="fernet"), other)
    kept = out.read_bytes()
    usage_error(*fer("score", photos, "-o", out, "--model", other, "--resume")[::2], "resume with the same options")
    usage_error(*fer("score", photos, "-o", out, "--model", model, "--resume", "--detector", "haar")[::2], "detector")
    assert out.read_bytes() == kept


@pytest.mark.parametrize("argv, env, words", [
    (["score", "{a}", "--batch-size", "-1"], {}, ["--batch-size"]),
    (["score", "{a}", "--batch-size", "0"], {}, ["--batch-size"]),
    (["explain", "{a}", "--out", "{tmp}/o", "--target", "joy"], {}, ["happiness", "fear"]),
    (["explain", "{a}", "--out", "{tmp}/o", "--target", "3"], {}, ["choose from"]),
    (["explain", "{a}", "--out", "{tmp}/o", "--layer", "nolayer"], {}, ["layer4"]),
    (["explain", "{a}", "--out", "{tmp}/o", "--alpha", "7"], {}, ["--alpha"]),
    (["score", "{a}"], {"FER_PRECISION": "fp16"}, ["FER_PRECISION", "float32"]),
    (["score", "{a}", "-o", "{tmp}/" + "x" * 300 + ".csv"], {}, ["bytes"]),
    (["video", "{clip}", "--out", "{tmp}/ann"], {}, [".mp4"]),
    (["video", "{clip}", "--every", "0"], {}, ["--every"]),
    (["video", "{clip}", "--smooth", "2"], {}, ["--smooth"]),
    (["score", "{tmp}/nope1.jpg", "{tmp}/nope2"], {}, ["nope1.jpg", "does not exist"]),
    (["score", "{a}", "--shard", "3/2"], {}, ["--shard"]),
])
def test_every_option_is_checked_before_work(tmp_path, photos, astronaut, model, argv, env, words):
    clip = make_clip(tmp_path / "clip.mp4", astronaut, frames=3, fourcc="mp4v")
    fill = {"a": str(photos / "a.jpg"), "tmp": str(tmp_path), "clip": str(clip)}
    code, _, err = fer(*[x.format(**fill) for x in argv], "--model", model, env=env)
    usage_error(code, err, *words)
    assert not (tmp_path / "o").exists()  # refused before any work


def test_a_closed_pipe_ends_quietly(photos, model):
    proc = subprocess.run(f"'{sys.executable}' -m fer_core score '{photos}' --model '{model}' | head -c 10",
                          shell=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert b"Traceback" not in proc.stderr and b"BrokenPipe" not in proc.stderr, proc.stderr


def test_one_bad_file_never_stops_the_run(tmp_path, astronaut, model):
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(astronaut).save(folder / "a.jpg")
    odd = os.fsencode(folder) + b"/b_bad\xffname.jpg"  # a Latin-1 name from an old disk: not UTF-8
    Image.fromarray(astronaut).save(odd.decode("utf-8", "surrogateescape"), format="JPEG")
    Image.new("L", (60_000, 2)).save(folder / "c_wide.png")  # past OpenCV's SHRT_MAX
    Image.fromarray(astronaut).save(folder / "d.jfif", format="JPEG")
    Image.fromarray(astronaut).save(folder / "e.jpe", format="JPEG")
    os.symlink(folder / "gone.jpg", folder / "f_link.jpg")  # a broken link
    out = tmp_path / "s.csv"
    code, _, err = fer("score", folder, "-o", out, "--model", model)
    assert code == 1  # some inputs failed
    out.read_bytes().decode("utf-8")  # valid UTF-8
    rows = {Path(r["filepath"]).name: r for r in read(out)}
    assert rows["a.jpg"]["error"] == "" and rows["d.jfif"]["error"] == "" and rows["e.jpe"]["error"] == ""
    assert rows["b_bad\\xffname.jpg"]["error"] == ""  # escaped, recoverable
    assert "60000" in rows["c_wide.png"]["error"] and "broken link" in rows["f_link.jpg"]["error"]
    # --resume on the same folder finds every row and finishes
    code, _, err = fer("score", folder, "-o", out, "--model", model, "--resume")
    assert code == 1 and len(read(out)) == len(rows), err


def test_exit_codes_say_what_happened(tmp_path, photos, model):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = fer("score", empty, "--model", model)
    assert code == 1 and any("nothing to score" in line for line in err)
    assert fer("score", photos, "-o", tmp_path / "s.csv", "--model", model)[0] == 0


def test_join_checks_its_parts(tmp_path, astronaut, model):
    clip = make_clip(tmp_path / "clip.avi", astronaut, frames=8)
    parts = [tmp_path / f"seg{k}.csv" for k in range(2)]
    for k, part in enumerate(parts):
        assert fer("video", clip, "--csv", part, "--shard", f"{k}/2", "--model", model)[0] == 0
    assert fer("join", *parts, "-o", tmp_path / "all.csv")[0] == 0
    usage_error(*fer("join", parts[0], parts[0], "-o", tmp_path / "x.csv")[::2], "twice")
    whole = tmp_path / "whole.csv"
    assert fer("video", clip, "--csv", whole, "--model", model)[0] == 0
    usage_error(*fer("join", whole, parts[1], "-o", tmp_path / "x.csv")[::2], "overlap")
    cut = tmp_path / "cut.csv"
    text = parts[1].read_text()
    cut.write_text(text[:text.rindex(",", 0, len(text) - 40)] + "\n")  # a part whose last line was cut off
    usage_error(*fer("join", parts[0], cut, "-o", tmp_path / "x.csv")[::2], "incomplete row")


def test_an_empty_video_shard_is_an_empty_timeline(tmp_path, astronaut, model):
    clip = make_clip(tmp_path / "c.avi", astronaut, frames=5)  # frames 0 and 3 analysed: shard 0 of 4 has none
    codes = [fer("video", clip, "--shard", f"{k}/4", "--every", "3", "--csv", tmp_path / f"s{k}.csv",
                 "--model", model)[0] for k in range(4)]
    assert codes == [0, 0, 0, 0]
    assert sum(len(read(tmp_path / f"s{k}.csv")) for k in range(4)) == 2


def test_haar_boxes_carry_no_made_up_score(tmp_path, photos, model):
    out = tmp_path / "h.csv"
    assert fer("score", photos / "a.jpg", "--detector", "haar", "-o", out, "--model", model)[0] == 0
    rows = read(out)
    assert rows and all(r["face_score"] == "" and r["x"] != "" for r in rows)


def test_models_lists_the_good_checkpoints_and_names_the_bad(tmp_path, random_checkpoint):
    import shutil

    folder = tmp_path / "ckpts"
    folder.mkdir()
    shutil.copy(random_checkpoint, folder / "good.safetensors")
    (folder / "junk.safetensors").write_bytes(np.random.default_rng(0).bytes(100))
    code, out, err = fer("models", env={"FER_CHECKPOINTS": str(folder)})
    assert code == 1 and "good" in out and "junk" in out and "not readable" in out


def test_explain_keeps_every_face(astronaut, predictor):
    """The library keeps MAX_FACES by default; max_faces=None (what `fer explain` asks) keeps them all."""
    from fer_core.pipeline import MAX_FACES, analyze

    tiles = np.concatenate([astronaut[:256, 96:352]] * 2, axis=1)
    assert len(analyze(tiles, predictor=predictor, max_faces=1)) == 1 <= MAX_FACES
    assert len(analyze(tiles, predictor=predictor, max_faces=None)) == 2
