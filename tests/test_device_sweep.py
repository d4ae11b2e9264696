"""train/device_sweep.py: the packed data round-trips, the epoch plan fits the budget, and a tiny sweep
(CPU, a few images) probes, trains, fine-tunes and returns its checkpoints and logs."""
from __future__ import annotations

import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, datasets_or_skip

sys.path.insert(0, str(ROOT / "train"))

import device_sweep  # noqa: E402


def test_plan_epochs_fits_the_budget():
    plan = device_sweep.plan_epochs([10.0, 20.0], 300.0, max_epochs=80, finetune_epochs=8, margin=1.0)
    assert plan == [22, 7]  # 300 s at 10 s / epoch = 30 epochs, less the 8 of the fine-tune; 15 - 8
    assert device_sweep.plan_epochs([10.0], 100_000.0, max_epochs=80) == [80]
    assert device_sweep.plan_epochs([10.0], 5.0, max_epochs=80, finetune_epochs=8) == [1]  # never zero


@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory) -> Path:
    datasets_or_skip()
    return device_sweep.pack(tmp_path_factory.mktemp("pack") / "data.npz", limit=24)


def test_pack_round_trips_names_labels_and_pixels(tiny_pack, tmp_path):
    from fer_core.data import datasets_root, load_labelled_folder, load_uint8

    device_sweep.unpack(tiny_pack, tmp_path)
    for name, _, _ in device_sweep.SPLITS:
        back = load_labelled_folder(tmp_path / name / "train")
        orig = load_labelled_folder(datasets_root() / name / "train")
        assert [p.name for p in back.paths] == [p.name for p in orig.paths[:24]]
        assert np.array_equal(np.asarray(back.labels), np.asarray(orig.labels[:24]))
        xb, _ = load_uint8(back, 64, cache=False)
        xo, _ = load_uint8(orig, 64)
        assert float((xb.float() - xo[:24].float()).abs().mean()) < 2.0  # JPEG q90-95: ~0.5 grey levels


def test_pack_at_a_lower_quality_is_smaller_and_still_close(tiny_pack, tmp_path):
    from fer_core.data import datasets_root, load_labelled_folder, load_uint8

    small = device_sweep.pack(tmp_path / "small.npz", limit=24, quality=60)
    assert small.stat().st_size < tiny_pack.stat().st_size
    device_sweep.unpack(small, tmp_path / "ds")
    back = load_labelled_folder(tmp_path / "ds" / "raf-db" / "train")
    xb, _ = load_uint8(back, 64, cache=False)
    xo, _ = load_uint8(load_labelled_folder(datasets_root() / "raf-db" / "train"), 64)
    assert float((xb.float() - xo[:24].float()).abs().mean()) < 5.0


def test_unpack_refuses_odd_names(tmp_path):
    blobs = {}
    for name, _, _ in device_sweep.SPLITS:
        blobs[f"{name}/bytes"] = np.frombuffer(b"xx", dtype=np.uint8)
        blobs[f"{name}/offsets"] = np.array([0, 2])
        blobs[f"{name}/names"] = np.frombuffer(b"../evil.jpg", dtype=np.uint8)
        blobs[f"{name}/csv"] = np.frombuffer(b"image,label\n", dtype=np.uint8)
    np.savez(tmp_path / "bad.npz", **blobs)
    with pytest.raises(SystemExit, match="odd file name"):
        device_sweep.unpack(tmp_path / "bad.npz", tmp_path / "out")
    assert not (tmp_path / "evil.jpg").exists()


def _tiny_sweep(pack: Path, tmp_path: Path, *args: str) -> tuple[int, Path]:
    """device_sweep run on the CPU with a width-8 fernet; `args`: the configs and sweep options."""
    out = tmp_path / "out"
    rc = device_sweep.main([
        "run", "--data", str(pack), "--out", str(out), "--work", str(tmp_path / "work"), "--budget", "120",
        "--device", "cpu", "--threads", "1",
        "--common", "--arch fernet --width 8 --data raf-db fer2013 --batch-size 8 --split-seed 0", *args,
    ])
    return rc, out


def test_a_tiny_sweep_trains_fine_tunes_and_returns_everything(tiny_pack, tmp_path):
    rc, out = _tiny_sweep(tiny_pack, tmp_path, "--max-epochs", "1", "--config", "a", "--seed 1",
                          "--finetune", "--schedule cosine --lr 0.01", "--finetune-epochs", "1")
    assert rc == 0
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["fernet_a.safetensors", "fernet_a_ft.safetensors"]
    from fer_core.checkpoints import load_checkpoint

    _, spec = load_checkpoint(out / "fernet_a_ft.safetensors")
    assert spec.args["init"].endswith("fernet_a.safetensors") and spec.args["lr"] == 0.01
    with tarfile.open(out / "logs.tar.gz") as tf:
        assert {"probe_a_probe.log", "run_a_run.log", "run_a_ft_run.log"} <= set(tf.getnames())


def test_fixed_epochs_skip_the_probe(tiny_pack, tmp_path):
    rc, out = _tiny_sweep(tiny_pack, tmp_path, "--epochs", "2", "--config", "b", "--seed 2")
    assert rc == 0
    from fer_core.checkpoints import load_checkpoint

    _, spec = load_checkpoint(out / "fernet_b.safetensors")
    assert spec.args["epochs"] == 2 and len(spec.history) == 2
    with tarfile.open(out / "logs.tar.gz") as tf:
        assert set(tf.getnames()) == {"run_b_run.log"}  # no probe ran
