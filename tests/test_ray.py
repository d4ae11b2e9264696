"""`score --engine ray`: a local Ray (2 CPUs) gives the local engine's rows, bad files included; Parquet and a folder
written by Ray; the local engine never imports Ray. Skips where Ray is not installed (pip install 'ray[data]')."""
import csv
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_core.__main__ import main

ray = pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory, astronaut):
    folder = tmp_path_factory.mktemp("ray") / "photos"
    folder.mkdir()
    for k in range(3):
        Image.fromarray(np.ascontiguousarray(np.roll(astronaut, 9 * k, axis=1))).save(folder / f"p{k}.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    with zipfile.ZipFile(folder / "more.zip", "w") as zf:
        zf.write(folder / "p0.png", "../odd/a.png")
        zf.writestr("bad.png", b"\x89PNG truncated")
    return folder


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_ray_rows_equal_the_local_engine(local_ray, photos, random_checkpoint, tmp_path):
    local, on_ray = tmp_path / "local.csv", tmp_path / "ray.csv"
    model = str(random_checkpoint)
    # 1 on both engines: the broken and empty files' rows say why
    assert main(["score", str(photos), "-o", str(local), "--model", model]) == 1
    assert main(["score", str(photos), "-o", str(on_ray), "--model", model, "--engine", "ray", "--workers", "1"]) == 1
    a, b = _rows(local), _rows(on_ray)
    assert [r["filepath"] for r in a] == [r["filepath"] for r in b] and len(a) == 8
    for ra, rb in zip(a, b):
        for k, v in ra.items():
            if k in ("happiness", "surprise", "sadness", "anger", "disgust", "fear", "confidence") and v:
                assert abs(float(v) - float(rb[k])) < 1e-5, (ra["filepath"], k)
            else:
                assert v == rb[k], (ra["filepath"], k)
    assert sum(bool(r["error"]) for r in b) == 4  # broken, empty, notes.txt, the zip's bad member, named as locally


def test_ray_writes_parquet_and_a_folder(local_ray, photos, random_checkpoint, tmp_path):
    import pyarrow.parquet as pq

    model = str(random_checkpoint)
    out = tmp_path / "scores.parquet"
    assert main(["score", str(photos), "-o", str(out), "--model", model, "--engine", "ray", "--workers", "1"]) == 1
    table = pq.read_table(out)
    assert table.num_rows == 8 and table.column("face").type == "int64"
    folder = tmp_path / "parts"
    assert main(["score", str(photos), "-o", str(folder), "--model", model, "--engine", "ray", "--workers", "1"]) == 0
    rows = [r for f in sorted(folder.glob("*.csv")) for r in _rows(f)]
    assert len(rows) == 8 and {r["filepath"] for r in rows} == {r["filepath"] for r in table.to_pylist()}


def test_the_local_engine_never_imports_ray(photos, random_checkpoint, tmp_path):
    code = ("import sys; from fer_core.__main__ import main; "
            f"main(['score', {str(photos)!r}, '-o', {str(tmp_path / 'x.csv')!r}, '--model', "
            f"{str(random_checkpoint)!r}]); print('ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "False", done.stderr[-2000:]


def test_ray_only_options_need_the_ray_engine(photos, random_checkpoint, capsys):
    assert main(["score", str(photos), "--workers", "2", "--model", str(random_checkpoint)]) == 2
    assert main(["score", str(photos), "-o", "x.parquet", "--model", str(random_checkpoint)]) == 2
    err = capsys.readouterr().err
    assert "--address and --workers are for --engine ray" in err and "Parquet output is written by --engine ray" in err


def test_video_on_ray_is_the_whole_clips_timeline(local_ray, astronaut, random_checkpoint, tmp_path, capsys):
    """`video --engine ray`: the clip cut into 3 time segments on 2 workers, joined: the local run's timeline."""
    import json

    from tests.test_video import _same_rows, _timeline, make_clip

    clip = make_clip(tmp_path / "in.avi", astronaut, frames=14)
    model = ["--model", str(random_checkpoint), "--every", "2"]
    assert main(["video", str(clip), *model, "--csv", str(tmp_path / "local.csv")]) == 0
    capsys.readouterr()
    assert main(["video", str(clip), *model, "--csv", str(tmp_path / "ray.csv"), "--engine", "ray",
                 "--workers", "2", "--segments", "3"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["segments"] == 3 and summary["analysed_frames"] == 7 and summary["frames"] == 14
    assert [f["frames"] for f in summary["per_face"]] == [7]
    _same_rows(_timeline(tmp_path / "ray.csv"), _timeline(tmp_path / "local.csv"))
    (tmp_path / "bad.mp4").write_text("not a video")
    assert main(["video", str(tmp_path / "bad.mp4"), *model, "--engine", "ray"]) == 2
    assert "not a video" in capsys.readouterr().err
