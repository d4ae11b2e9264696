import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fer_core.models import MODELS, count_parameters, create_model, list_models, model_options, register_model

PAPER_PARAMS = {"baseline": 2.6e6, "gimefive": 10.5e6, "resnet18": 11.2e6, "resnet34": 21.3e6}


@pytest.mark.parametrize("name", list_models())
def test_forward_contract(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    with torch.inference_mode():
        logits = model(torch.randn(2, 3, 64, 64))
        probs = torch.softmax(logits, 1)
    assert logits.shape == (2, 6)
    assert torch.isfinite(logits).all()
    assert torch.allclose(probs.sum(1), torch.ones(2), atol=1e-5)
    feats = model.forward_features(torch.randn(1, 3, 64, 64))
    assert feats.ndim == 4
    assert model.default_layer in model.explain_layers()


@pytest.mark.parametrize("name,expected", sorted(PAPER_PARAMS.items()))
def test_parameter_counts_match_paper(name, expected):
    n = count_parameters(create_model(name))
    assert abs(n - expected) / expected < 0.05, n


def test_default_architecture_is_explainable():
    model = create_model("fernet")
    assert model.gap_linear is not None
    assert model.forward_features(torch.randn(1, 3, 64, 64)).shape[-2:] == (4, 4)
    assert count_parameters(model) * 4 < 30e6


def test_fernet_last_stride_one_keeps_an_8x8_last_map():
    model = create_model("fernet", last_stride=1)
    assert model.forward_features(torch.randn(1, 3, 64, 64)).shape[-2:] == (8, 8)
    assert count_parameters(model) == count_parameters(create_model("fernet"))  # same weights, finer map
    with pytest.raises(ValueError, match="last_stride"):
        create_model("fernet", last_stride=3)


def test_fernet_stochastic_depth_drops_branches_only_while_training():
    torch.manual_seed(0)
    plain = create_model("fernet", width=8)
    deep = create_model("fernet", width=8, drop_path=0.5)
    assert list(deep.state_dict()) == list(plain.state_dict())  # same weights: --init and checkpoints work
    deep.load_state_dict(plain.state_dict())
    probs = [b.drop_prob for layer in ("layer1", "layer2", "layer3", "layer4") for b in getattr(deep.net, layer)]
    assert probs == pytest.approx([0.5 * (i + 1) / 8 for i in range(8)])
    x = torch.randn(8, 3, 64, 64)
    plain.eval(), deep.eval()
    with torch.no_grad():
        assert torch.equal(deep(x), plain(x))  # eval: exactly the plain network
    deep.train()
    torch.manual_seed(1)
    with torch.no_grad():
        a = deep(x)
        b = deep(x)
    assert not torch.allclose(a, b)  # a different set of branches skipped on each pass
    with pytest.raises(ValueError, match="drop_path"):
        create_model("fernet", drop_path=1.0)


def test_registry_is_strict():
    with pytest.raises(ValueError, match="choose from"):
        create_model("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_model("baseline")(lambda **kw: None)
    assert set(PAPER_PARAMS) <= set(MODELS)


def test_model_options_are_the_builders_keywords():
    assert model_options("fernet") == {"dropout", "width", "last_stride", "drop_path"}
    assert model_options("fernet_duo") == {"dropout", "width", "width_b", "last_stride", "last_stride_b"}
    assert model_options("baseline") == {"dropout"}
    with pytest.raises(ValueError, match="choose from"):
        model_options("nope")


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, fer_core; print(sorted(m for m in ('torch', 'streamlit', 'matplotlib', 'cv2') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_default_model_runs_without_importing_torchvision():
    """fernet is built from our own ResNet body, so loading and running the default does not pay torchvision's
    ~1.2 s import (the zoo's resnet18/34 and vgg16 still import it when built)."""
    code = ("import sys, numpy as np\nfrom fer_core.runtime import load_predictor\n"
            "p = load_predictor('fernet')\np.predict([np.zeros((64, 64, 3), np.uint8)])\n"
            "print('torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=str(Path(__file__).resolve().parent.parent))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"
