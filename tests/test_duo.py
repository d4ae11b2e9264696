"""fernet_duo: two fernet networks read by one GAP + linear head (train/duo.py joins two checkpoints)."""

import numpy as np
import pytest
import torch

from fer_core.checkpoints import load_checkpoint
from fer_core.explainers import explain
from fer_core.models import count_parameters, create_model
from tests.test_data import make_folder



def _pair():
    torch.manual_seed(0)
    return create_model("fernet").eval(), create_model("fernet").eval()


def test_joined_duo_computes_the_weighted_mean_of_logits():
    from duo import join

    a, b = _pair()
    duo = join(a, b, 0.7, num_classes=6, width=32)
    assert count_parameters(duo) == count_parameters(a) + count_parameters(b) - 6  # one shared bias
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(duo(x), 0.7 * a(x) + 0.3 * b(x), atol=1e-5, rtol=1e-5)
        assert duo.forward_features(x).shape == (3, 512, 4, 4)
    with pytest.raises(ValueError, match="weight"):
        join(a, b, 1.5, num_classes=6, width=32)


def test_duo_explains_both_branches_as_one_map():
    from duo import join

    a, b = _pair()
    duo = join(a, b, 0.5, num_classes=6, width=32)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    for target in (0, 4):
        cam = explain(duo, x, target, "cam")
        assert np.allclose(cam, explain(duo, x, target, "gradcam", layer="layer4"), atol=1e-4)
    # the CAM of the duo is the class-weighted sum of the branches' maps: it differs from either alone
    assert not np.allclose(explain(duo, x, 4, "cam"), explain(a, x, 4, "cam"), atol=1e-3)
    for layer in duo.explain_layers():
        cam = explain(duo, x, 1, "gradcam", layer=layer)
        assert cam.shape == (64, 64) and np.isfinite(cam).all()


def test_duo_script_joins_two_runs(tmp_path, monkeypatch):
    import duo as duo_script
    import train as train_script

    from fer_core.runtime import Predictor

    monkeypatch.setenv("FER_CACHE", str(tmp_path / "cache"))
    data = make_folder(tmp_path / "train", n_per_class=6)
    base = ["--data", str(data), "--batch-size", "8", "--val-fraction", "0.25", "--epochs", "1"]
    runs = []
    # b: another init seed on a's validation split; d: another seed and therefore another split
    for name, arch, extra in (("a", "fernet", []), ("b", "fernet", ["--seed", "1", "--split-seed", "0"]),
                              ("c", "baseline", []), ("d", "fernet", ["--seed", "1"])):
        runs.append(tmp_path / f"{name}.safetensors")
        train_script.main(train_script.get_args_parser().parse_args(base + ["--arch", arch, "--out", str(runs[-1])] + extra))
    out = tmp_path / "duo.safetensors"
    spec = duo_script.main(duo_script.get_args_parser().parse_args([str(runs[0]), str(runs[1]), "--out", str(out)]))
    model, loaded = load_checkpoint(out)
    assert loaded.arch == "fernet_duo" == spec.arch and loaded.args["weight"] in (0.3, 0.4, 0.5, 0.6, 0.7)
    assert loaded.temperature > 0 and {"val_macro_f1", "val_ece_after", "members"} <= set(loaded.metrics)
    assert loaded.metrics["members"][1]["args"]["seed"] == 1  # the members' train.py arguments travel along
    assert loaded.train_data and loaded.args["val_fraction"] == 0.25 and loaded.args["seed"] == 0
    (source, by_source), = loaded.metrics["val_by_source"].items()  # one training folder: all of validation
    assert source.endswith("train") and by_source["accuracy"] == pytest.approx(loaded.metrics["val_accuracy"])
    probs = Predictor(model, loaded, precision="float32").predict([np.zeros((48, 48, 3), np.uint8)])
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    with pytest.raises(SystemExit, match="fernet"):
        duo_script.main(duo_script.get_args_parser().parse_args([str(runs[0]), str(runs[2]), "--out", str(out)]))
    with pytest.raises(SystemExit, match="--split-seed 0"):
        duo_script.main(duo_script.get_args_parser().parse_args([str(runs[0]), str(runs[3]), "--out", str(out)]))


def test_sanity_check_randomises_both_branches():
    from duo import join

    from fer_core.faithfulness import randomised_copy

    a, b = _pair()
    duo = join(a, b, 0.5, num_classes=6, width=32)
    rnd = randomised_copy(duo)
    for branch in ("a", "b"):
        new, old = getattr(rnd, branch).net, getattr(duo, branch).net
        assert not torch.equal(new.layer4[1].conv2.weight, old.layer4[1].conv2.weight)
        assert torch.equal(new.layer3[1].conv2.weight, old.layer3[1].conv2.weight)
    assert not torch.equal(rnd.fc.weight, duo.fc.weight)


def test_duo_of_two_widths(tmp_path):
    """A default-width fernet joined with a wider one (train.py --width): same weighted mean, CAM still
    exact, and the checkpoint rebuilds it from its model arguments."""
    from duo import join

    from fer_core.checkpoints import ModelSpec, save_checkpoint

    torch.manual_seed(0)
    a, b = create_model("fernet").eval(), create_model("fernet", width=40).eval()
    duo = join(a, b, 0.6, num_classes=6, width=32, width_b=40)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(duo(x), 0.6 * a(x) + 0.4 * b(x), atol=1e-5, rtol=1e-5)
        assert duo.forward_features(x).shape == (2, 256 + 320, 4, 4)
    cam = explain(duo, x[:1], 2, "cam")
    assert np.allclose(cam, explain(duo, x[:1], 2, "gradcam", layer="layer4"), atol=1e-4)
    path = tmp_path / "mixed.safetensors"
    save_checkpoint(duo, ModelSpec(arch="fernet_duo", model_kwargs={"width": 32, "width_b": 40}), path)
    loaded, _ = load_checkpoint(path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), duo(x), atol=1e-5, rtol=1e-5)


def test_duo_of_a_fine_and_a_coarse_last_map(tmp_path):
    """A default fernet (4×4 last map) joined with a last_stride=1 one (8×8): the coarse map is
    nearest-upsampled, so the logits are still the weighted mean, CAM still equals Grad-CAM on the shared
    map, the checkpoint rebuilds it, and the int8 copy follows it."""
    from duo import join, widths

    from fer_core.checkpoints import ModelSpec, save_checkpoint
    from fer_core.quantize import calibrate_int8, int8_for_inference, int8_supported

    torch.manual_seed(0)
    a, b = create_model("fernet").eval(), create_model("fernet", last_stride=1).eval()
    kwargs = widths(a, b)
    assert kwargs == {"width": 32, "last_stride": 2, "last_stride_b": 1}
    duo = join(a, b, 0.7, num_classes=6, **kwargs)
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(duo(x), 0.7 * a(x) + 0.3 * b(x), atol=1e-5, rtol=1e-5)
        assert duo.forward_features(x).shape == (4, 512, 8, 8)
    cam = explain(duo, x[:1], 1, "cam")
    assert np.allclose(cam, explain(duo, x[:1], 1, "gradcam", layer="layer4"), atol=1e-4)
    path = tmp_path / "fine.safetensors"
    save_checkpoint(duo, ModelSpec(arch="fernet_duo", model_kwargs=kwargs), path)
    loaded, _ = load_checkpoint(path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), duo(x), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="only at the last stage"):
        from fer_core.models import Duo, fernet

        odd = fernet()
        odd.net.layer3[0].conv1.stride = (1, 1)
        Duo(fernet(), odd, 6, 0.0)
    if int8_supported():
        q = int8_for_inference(duo, x[:1], calibrate_int8(duo, [x]))
        with torch.no_grad():
            z8, z32 = q(x), duo(x)
        # untrained weights: 0.91-1.00 over 24 random draws; a broken int8 path gives ~0
        assert np.corrcoef(z8.numpy().ravel(), z32.numpy().ravel())[0, 1] > 0.9
