import json

import pytest
import torch

from fer_core.checkpoints import ModelSpec, load_checkpoint, read_spec, save_checkpoint
from fer_core.errors import CheckpointError
from fer_core.models import create_model


def _roundtrip(tmp_path, arch, dtype=None):
    torch.manual_seed(1)
    model = create_model(arch).eval()
    spec = ModelSpec(arch=arch, metrics={"val_accuracy": 0.5}, args={"lr": 0.1})
    path = save_checkpoint(model, spec, tmp_path / f"{arch}.safetensors", dtype=dtype)
    loaded, spec2 = load_checkpoint(path)
    x = torch.randn(3, 3, 64, 64)
    with torch.inference_mode():
        return model(x), loaded(x), spec, spec2


@pytest.mark.parametrize("arch", ["fernet", "baseline", "cnn_se_residual"])
def test_roundtrip_exact(tmp_path, arch):
    a, b, spec, spec2 = _roundtrip(tmp_path, arch)
    assert torch.equal(a, b)
    assert spec2 == spec


def test_roundtrip_float16_is_close(tmp_path):
    a, b, _, _ = _roundtrip(tmp_path, "fernet", dtype=torch.float16)
    assert torch.allclose(a, b, atol=2e-2)


def test_corrupt_file_rejected(tmp_path):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError):
        load_checkpoint(p)
    p.write_bytes(b"")
    with pytest.raises(CheckpointError):
        load_checkpoint(p)


def test_truncated_file_rejected(tmp_path):
    path = save_checkpoint(create_model("fernet"), ModelSpec(arch="fernet"), tmp_path / "t.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_wrong_architecture_rejected(tmp_path):
    path = save_checkpoint(create_model("baseline"), ModelSpec(arch="cnn_se"), tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="does not match architecture 'cnn_se'"):
        load_checkpoint(path)


def test_missing_keys_rejected(tmp_path):
    from safetensors.torch import save_file

    state = {k: v for k, v in create_model("fernet").state_dict().items() if not k.startswith("net.fc")}
    p = tmp_path / "m.safetensors"
    save_file(state, str(p), metadata={"spec": ModelSpec(arch="fernet").to_json()})
    with pytest.raises(CheckpointError, match="missing keys"):
        load_checkpoint(p)


def test_no_spec_rejected(tmp_path):
    from safetensors.torch import save_file

    p = tmp_path / "n.safetensors"
    save_file(create_model("fernet").state_dict(), str(p))
    with pytest.raises(CheckpointError, match="no model spec"):
        read_spec(p)


def test_unknown_name(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint("definitely-not-a-checkpoint")


def test_spec_json_roundtrip():
    spec = ModelSpec(arch="fernet", history=({"epoch": 1, "val_accuracy": 0.5},), tta_flip=True)
    assert ModelSpec.from_json(spec.to_json()) == spec
    assert json.loads(spec.to_json())["classes"][0] == "happiness"


def test_frozen_predictions_match_eager(random_checkpoint):
    """Float32 CPU predictions may run a TorchScript-frozen copy; it must give the eager model's
    probabilities for any batch size; off by default, the faster of the two with frozen=None."""
    import numpy as np

    from fer_core.runtime import Predictor

    rng = np.random.default_rng(0)
    faces = [rng.integers(0, 255, (40 + 9 * i, 70, 3), dtype=np.uint8) for i in range(5)]
    frozen = Predictor(*load_checkpoint(random_checkpoint), precision="float32", frozen=True)
    assert frozen.runtime == "torchscript"
    assert Predictor(*load_checkpoint(random_checkpoint), precision="float32", frozen=None).runtime in (
        "torchscript", "eager")
    eager = Predictor(*load_checkpoint(random_checkpoint), precision="float32")
    assert eager.runtime == "eager"
    for batch in (faces[:1], faces):
        np.testing.assert_allclose(frozen.predict(batch), eager.predict(batch), atol=1e-5)


def test_lineage_recorded_after_the_fact(tmp_path):
    """A fine-tune saved without its parent's record gets it from a file beside it (train/lineage.py), read back
    for that run only: a later run saved over the checkpoint does not inherit it, and a parent whose --out is not
    the fine-tune's --init is refused."""
    from fer_core.checkpoints import lineage_file, record_lineage

    model = create_model("baseline")
    history = ({"epoch": 1, "val_macro_f1": 0.3}, {"epoch": 2, "val_macro_f1": 0.4})
    parent = save_checkpoint(model, ModelSpec(arch="baseline", args={"out": "/tmp/x/p.safetensors", "seed": 1},
                                              history=history), tmp_path / "p.safetensors")
    child_spec = ModelSpec(arch="baseline", args={"init": "/tmp/x/p.safetensors", "seed": 2}, git_commit="abc",
                           metrics={"val_macro_f1": 0.5}, history=({"epoch": 1, "val_macro_f1": 0.5},))
    child = save_checkpoint(model, child_spec, tmp_path / "c.safetensors")
    assert read_spec(child).lineage == ()
    side = record_lineage(child, parent)
    assert side == lineage_file(child) == tmp_path / "c.lineage.json"
    spec = read_spec(child)
    assert [s["args"]["seed"] for s in spec.runs()] == [1, 2]
    assert [r["total_epoch"] for r in spec.stages()] == [1, 2, 3]
    _, loaded = load_checkpoint(child)
    assert loaded.lineage == spec.lineage
    with pytest.raises(CheckpointError, match="already records"):
        record_lineage(child, parent)
    other = child_spec.with_updates(args={**child_spec.args, "seed": 3})  # another run promoted over the file
    save_checkpoint(model, other, child)
    assert read_spec(child).lineage == ()
    stranger = save_checkpoint(model, ModelSpec(arch="baseline", args={"out": "/tmp/y/q.safetensors"}),
                               tmp_path / "q.safetensors")
    twin = save_checkpoint(model, child_spec, tmp_path / "d.safetensors")
    with pytest.raises(CheckpointError, match="was fine-tuned from /tmp/x/p.safetensors"):
        record_lineage(twin, stranger)
    with pytest.raises(CheckpointError, match="not fine-tuned"):
        record_lineage(parent, parent)
