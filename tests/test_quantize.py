"""Int8 CPU predictions rebuilt from a checkpoint's stored activation ranges (fer_core.quantize)."""
from pathlib import Path

import numpy as np
import pytest
import torch

from fer_core.checkpoints import load_checkpoint, read_spec, update_spec
from fer_core.runtime import Predictor
from fer_core.quantize import calibrate_int8, int8_for_inference, int8_supported
from tests.test_data import make_folder

pytestmark = pytest.mark.skipif(not int8_supported(), reason="no x86 int8 engine in this torch build")


def _faces(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (40 + 7 * (i % 5), 64, 3), dtype=np.uint8) for i in range(n)]


@pytest.fixture(scope="module")
def calibrated(random_checkpoint, tmp_path_factory) -> Path:
    """The random checkpoint with int8 ranges measured on random faces, written by update_spec."""
    path = tmp_path_factory.mktemp("int8") / "q.safetensors"
    path.write_bytes(random_checkpoint.read_bytes())
    model, spec = load_checkpoint(path)
    eager = Predictor(model, spec, precision="float32")
    batches = [eager.inputs(_faces(32, seed)) for seed in range(3)]
    update_spec(path, int8=calibrate_int8(model, batches))
    return path


def test_calibration_travels_in_the_spec_and_keeps_the_weights(random_checkpoint, calibrated):
    spec = read_spec(calibrated)
    assert spec.int8["engine"] == "x86" and len(spec.int8["activations"]) >= 10
    assert all(s > 0 and 0 <= z <= 255 for s, z in spec.int8["activations"].values())
    a, _ = load_checkpoint(random_checkpoint)
    b, _ = load_checkpoint(calibrated)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_int8_predictions_follow_float32(calibrated):
    model, spec = load_checkpoint(calibrated)
    int8 = Predictor(model, spec, precision="int8")
    f32 = Predictor(*load_checkpoint(calibrated), precision="float32")
    assert (int8.precision, int8.runtime) == ("int8", "torchscript")
    assert (f32.precision, f32.runtime) == ("float32", "eager")
    faces = _faces(24, seed=7)
    z8, z32 = int8.logits(faces).numpy(), f32.logits(faces).numpy()
    # quantization noise, not a different model: 5% of the logits' spread (measured: under 1%)
    assert np.abs(z8 - z32).max() < 0.05 * (z32.max() - z32.min())
    assert np.corrcoef(z8.ravel(), z32.ravel())[0, 1] > 0.99
    assert not np.array_equal(z8, z32)  # it really ran the int8 copy
    np.testing.assert_allclose(int8.predict(faces).sum(1), 1, atol=1e-5)
    # a face scores the same alone or in a batch (static ranges: no batch statistics)
    np.testing.assert_allclose(int8.logits(faces[:1]).numpy(), z8[:1], atol=1e-5)


def test_auto_precision_picks_int8_only_when_asked_or_measured(calibrated, random_checkpoint):
    assert Predictor(*load_checkpoint(calibrated), frozen=True, precision="auto").precision in ("int8", "bfloat16")
    assert Predictor(*load_checkpoint(calibrated), frozen=True, precision="float32").precision == "float32"
    assert Predictor(*load_checkpoint(calibrated), frozen=None, precision="float32").precision == "float32"
    assert Predictor(*load_checkpoint(calibrated)).runtime == "eager"  # the library default: no build cost
    with pytest.raises(ValueError, match="no int8 calibration"):
        Predictor(*load_checkpoint(random_checkpoint), precision="int8")


def test_auto_precision_considers_int8_where_bf16_is_native(calibrated, monkeypatch):
    import fer_core.device

    monkeypatch.setattr(fer_core.device, "bf16_supported", lambda device: True)
    faces = _faces(3)
    z8 = Predictor(*load_checkpoint(calibrated), precision="int8").logits(faces).numpy()
    fast = Predictor(*load_checkpoint(calibrated), frozen=True, precision="auto")
    assert (fast.precision, fast.runtime) == ("int8", "torchscript")
    np.testing.assert_allclose(fast.logits(faces).numpy(), z8, atol=1e-5)  # the int8 copy, not under autocast
    eager = Predictor(*load_checkpoint(calibrated), precision="auto")  # frozen=False: no build cost
    assert (eager.precision, eager.runtime) == ("bfloat16", "eager")
    measured = Predictor(*load_checkpoint(calibrated), frozen=None, precision="auto")
    assert measured.precision == "int8" and measured.predict(faces).shape == (3, 6)  # taken without timing it


def test_the_int8_copy_divides_by_its_own_temperature(calibrated, tmp_path):
    path = tmp_path / "t.safetensors"
    path.write_bytes(calibrated.read_bytes())
    spec = read_spec(path)
    t = spec.temperature
    update_spec(path, int8={**spec.int8, "temperature": t + 1.5, "temperature_gray": t + 0.5})
    faces = _faces(4)  # random colour faces
    int8 = Predictor(*load_checkpoint(path), precision="int8")
    f32 = Predictor(*load_checkpoint(path), precision="float32")
    assert int8.temperatures == (t + 1.5, t + 0.5) and f32.temperatures == (t, t)
    z = int8.logits(faces)
    np.testing.assert_allclose(int8.predict(faces), torch.softmax(z / (t + 1.5), 1).numpy(), atol=1e-6)
    # a calibration written before int8 temperatures existed falls back to the float32 ones
    update_spec(path, int8={k: v for k, v in spec.int8.items() if not k.startswith("temperature")})
    assert Predictor(*load_checkpoint(path), precision="int8").temperatures == (t, t)


def test_a_calibration_for_another_model_is_refused(calibrated, caplog):
    model, spec = load_checkpoint(calibrated)
    ranges = dict(spec.int8["activations"])
    ranges.pop(next(iter(ranges)))
    x = torch.zeros(2, 3, 64, 64)
    assert int8_for_inference(model, x, {"engine": "x86", "activations": ranges}) is None
    assert "does not match" in caplog.text
    assert int8_for_inference(model, x, {}) is None


def test_quantize_script_calibrates_a_trained_run(tmp_path, monkeypatch):
    import promote
    import quantize
    import train as train_script

    monkeypatch.setenv("FER_CACHE", str(tmp_path / "cache"))
    data = make_folder(tmp_path / "train", n_per_class=4)
    out = tmp_path / "m.safetensors"
    train_script.main(train_script.get_args_parser().parse_args(
        ["--arch", "fernet", "--data", str(data), "--epochs", "1", "--batch-size", "8", "--out", str(out),
         "--val-fraction", "0.25", "--tta-flip"]))
    update_spec(out, temperature_gray=0.0)  # as written before black-and-white temperatures
    report = quantize.main(quantize.get_args_parser().parse_args([str(out), "--samples", "12", "--batch-size", "4"]))
    assert report["samples"] == 12 and 0 <= report["val_agreement"] <= 1
    assert read_spec(out).int8["val_accuracy_int8"] == report["val_accuracy_int8"]
    int8 = Predictor(*load_checkpoint(out), precision="int8")
    assert int8.predict(_faces(2)).shape == (2, 6)
    # fitted on the int8 copy's validation logits (too few faces of either kind here: one temperature for both)
    assert int8.temperatures == (report["temperature"], report["temperature_gray"]) and report["temperature"] > 0
    assert read_spec(out).temperature_gray > 0  # the float32 model's own, refitted
    # promoting a run calibrates the copy in checkpoints/ (stored as float16, so measured anew)
    monkeypatch.setattr(promote, "CHECKPOINT_DIR", tmp_path / "checkpoints")
    assert promote.main(promote.get_args_parser().parse_args([str(out)])) is True
    promoted = read_spec(tmp_path / "checkpoints" / "m.safetensors").int8
    assert promoted["samples"] == 18 and promoted["activations"].keys() == report["activations"].keys()


def test_occlusion_runs_the_prediction_module(calibrated):
    """Occlusion (forward-only) explains the int8 copy that predicted; gradient methods keep the eager model."""
    from fer_core.explainers import explain

    pred = Predictor(*load_checkpoint(calibrated), precision="int8")
    scorer = pred.scorer()
    assert scorer is pred.prediction_model() and scorer is not pred.model
    x = pred.input_tensor(_faces(1)[0])
    calls = []

    def counting(batch):
        calls.append(len(batch))
        return scorer(batch)

    # a class whose score some window lowers (a random model's map may be all zero for another)
    target = next(t for t in range(6) if explain(pred.model, x, t, "occlusion").max() > 0)
    eager = explain(pred.model, x, target, "occlusion")
    # the forward path computes the same map when it is handed the eager model itself
    np.testing.assert_allclose(explain(pred.model, x, target, "occlusion", forward=pred.model), eager, atol=1e-5)
    fast = explain(pred.model, x, target, "occlusion", forward=counting)
    assert sum(calls) == 1 + 15 * 15  # the input, then one image per window position (8x8, stride 4, 64 px)
    assert fast.shape == (64, 64) and 0 <= fast.min() and fast.max() <= 1
    # how closely int8 maps follow float32 ones is measured on the trained models (bench/explain.py): this
    # random model's logits differ by ~0.01, a few int8 steps, so only the plumbing is tested here
    calls.clear()
    explain(pred.model, x, 0, "gradcam", forward=counting)
    assert not calls  # hooks and gradients need the eager model


def test_scorer_is_the_eager_model_under_bf16_autocast_when_that_predicts(random_checkpoint, monkeypatch):
    import fer_core.runtime

    f32 = Predictor(*load_checkpoint(random_checkpoint), precision="float32")
    assert f32.scorer() is f32.model  # the library default predicts with the eager float32 model itself
    monkeypatch.setattr(fer_core.runtime, "resolve_precision", lambda requested, device: "bfloat16")
    pred = Predictor(*load_checkpoint(random_checkpoint), precision="bfloat16")
    scorer = pred.scorer()
    assert scorer.model is pred.model
    assert scorer(torch.zeros(2, 3, 64, 64)).dtype == torch.float32


def test_int8_teachers_for_distillation(calibrated, random_checkpoint, tmp_path):
    """train.py --teacher-int8: a calibrated teacher runs as its int8 copy (close to float32 at the distillation
    temperature), an uncalibrated one stays float; a short distilled run trains with them."""
    import train as train_script
    from fer_core.models import create_model

    spec = read_spec(calibrated)
    ens = train_script.load_teacher([str(calibrated), str(random_checkpoint)], spec, int8=True)
    assert isinstance(ens.members[0], torch.jit.ScriptModule) and not isinstance(ens.members[1], torch.jit.ScriptModule)
    ref = train_script.load_teacher([str(calibrated)], spec)
    quant = train_script.load_teacher([str(calibrated)], spec, int8=True)
    x = Predictor(*load_checkpoint(calibrated), precision="float32").inputs(_faces(16, seed=5))
    torch.manual_seed(1)
    other = train_script.Ensemble([create_model("fernet").eval()])
    with torch.no_grad():
        a, b, c = ref(x), quant(x), other(x)
    assert (a - b).abs().max() < 0.1 * (a - c).abs().max()  # the same network's logits, not another one's

    data = make_folder(tmp_path / "train", n_per_class=4)
    out = tmp_path / "s.safetensors"
    train_script.main(train_script.get_args_parser().parse_args(
        ["--data", str(data), "--batch-size", "8", "--val-fraction", "0.25", "--epochs", "1", "--arch", "fernet",
         "--out", str(out), "--teacher", str(calibrated), "--teacher-int8", "--bf16", "on"]))
    assert read_spec(out).args["teacher_int8"] is True


def test_the_int8_duo_runs_without_the_quantized_cat_warning():
    """fernet_duo's int8 copy joins its branches with a quantized cat; torch's warning on every call is hidden
    (its cost was measured: docs/decisions.md), and nothing else is."""
    import warnings

    from fer_core.models import fernet_duo

    model = fernet_duo(width=8).eval()
    x = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        q = int8_for_inference(model, x[:2], calibrate_int8(model, [x]))
    assert q is not None
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():  # the filters in force, fer_core's first
        q(x[:2])
        warnings.warn("a warning that is not hidden", UserWarning)
    messages = [str(w.message) for w in caught]
    assert not any("cat operator" in m for m in messages) and "a warning that is not hidden" in messages


def test_the_cli_and_library_score_with_the_copy_the_app_predicts_with(calibrated, astronaut, tmp_path):
    """`python -m fer_core score`, `load_predictor()` and the Batch page must give the same numbers: all run the int8
    copy of a calibrated checkpoint (the CLI and library once ran the eager model: another class for 0.2% of faces)."""
    import csv

    from PIL import Image

    from fer_core.__main__ import main
    from fer_core.runtime import load_predictor
    from fer_core.labels import EMOTIONS
    from fer_core.scoring import iter_inputs, score_items

    img = tmp_path / "face.png"
    Image.fromarray(astronaut).save(img)
    out = tmp_path / "scores.csv"
    assert main(["score", str(img), "--model", str(calibrated), "-o", str(out)]) == 0
    with open(out, newline="") as fh:
        cli = np.array([[float(r[c]) for c in EMOTIONS] for r in csv.DictReader(fh)])

    def scored(predictor):
        return np.array([[r[c] for c in EMOTIONS] for r in score_items(iter_inputs([img]), predictor)])

    app = Predictor(*load_checkpoint(calibrated), frozen=True)  # ui.get_predictor's pick where int8 is fastest
    assert app.precision == "int8" and len(cli) == 1
    assert load_predictor(calibrated).precision == "int8"  # the library's default too
    np.testing.assert_allclose(cli, scored(app), atol=1e-6)
    assert np.abs(cli - scored(Predictor(*load_checkpoint(calibrated), precision="float32"))).max() > 1e-4


def test_building_leaves_torch_fx_stack_traces_as_they_were(calibrated, monkeypatch):
    """The build switches FX's stack-trace recording off for itself only (a process-wide torch setting)."""
    import torch.fx.config

    for before in (False, True):
        monkeypatch.setattr(torch.fx.config, "do_not_emit_stack_traces", before)
        assert Predictor(*load_checkpoint(calibrated), precision="int8").prediction_model() is not None
        assert torch.fx.config.do_not_emit_stack_traces is before
