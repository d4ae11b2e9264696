"""ONNX export and the ONNX Runtime prediction path, on the small test checkpoint (offline, fast)."""
import numpy as np
import pytest
import torch

from fer_core.errors import CheckpointError


@pytest.fixture(scope="module")
def exported(tmp_path_factory, random_checkpoint):
    from fer_core.onnx_runtime import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_onnx(random_checkpoint, out)
    return out


def test_export_round_trip_and_metadata(exported, random_checkpoint):
    from fer_core.checkpoints import load_checkpoint
    from fer_core.onnx_runtime import OnnxModule, read_onnx

    session, spec, precision = read_onnx(exported)
    model, own = load_checkpoint(random_checkpoint)
    assert precision == "float32" and spec == own  # classes, input size, mean/std, temperatures: all of the spec
    x = torch.randn(5, 3, 64, 64, generator=torch.Generator().manual_seed(0))  # any batch size (dynamic)
    with torch.no_grad():
        assert torch.allclose(OnnxModule(session)(x), model.float().eval()(x), atol=1e-4)


def test_onnx_runtime_predicts_as_torch(exported, random_checkpoint, astronaut, monkeypatch):
    """The same probabilities as the eager float32 model, to 1e-3, through the Predictor (FER_RUNTIME=onnx)."""
    from fer_core.checkpoints import load_checkpoint
    from fer_core.runtime import Predictor

    model, spec = load_checkpoint(random_checkpoint)
    faces = [np.ascontiguousarray(np.roll(astronaut[:256, 96:352], 9 * k, axis=1)) for k in range(6)]
    torch_probs = Predictor(model, spec, precision="float32", frozen=False).predict(faces)
    monkeypatch.setenv("FER_ONNX_MODEL", str(exported))
    onnx = Predictor(model, spec, precision="float32", runtime="onnx")
    assert onnx.runtime == "onnx" and onnx.precision == "float32"
    assert np.abs(onnx.predict(faces) - torch_probs).max() < 1e-3


def test_int8_export_predicts(tmp_path, random_checkpoint, astronaut):
    from fer_core.onnx_runtime import OnnxModule, export_onnx, read_onnx

    faces = torch.from_numpy(np.stack([np.roll(astronaut[:64, :64], k, axis=0) for k in range(16)])).permute(0, 3, 1, 2)
    out = export_onnx(random_checkpoint, tmp_path / "tiny8.onnx", int8=True, calibration=faces.contiguous())
    session, spec, precision = read_onnx(out)
    assert precision == "int8" and len(spec.classes) == 6
    assert OnnxModule(session)(torch.zeros(3, 3, 64, 64)).shape == (3, 6)


def test_bad_onnx_files_get_a_clear_error(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from fer_core.onnx_runtime import read_onnx

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(CheckpointError, match="not an ONNX model"):
        read_onnx(junk)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(foreign))
    with pytest.raises(CheckpointError, match="not one fer_core exported"):
        read_onnx(foreign)


def test_cli_export(tmp_path, random_checkpoint):
    from fer_core.__main__ import main
    from fer_core.onnx_runtime import read_onnx

    out = tmp_path / "m.onnx"
    assert main(["export", str(random_checkpoint), "--onnx", str(out)]) == 0
    assert read_onnx(out)[2] == "float32"
    assert main(["export", str(random_checkpoint), "--onnx", str(tmp_path / "m.txt")]) == 2
