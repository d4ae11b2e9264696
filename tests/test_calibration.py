"""Calibration: one temperature for colour faces and one for black-and-white faces, fitted on validation."""
import numpy as np
import pytest
import torch

from fer_core.checkpoints import ModelSpec, load_checkpoint
from fer_core.runtime import Predictor
from fer_core.metrics import MIN_GROUP, calibrate, fit_temperature, fit_temperatures
from fer_core.preprocess import GRAY_TOLERANCE, grayscale_mask


def _sampled(n: int, temperature: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits that are `temperature` times too sharp: labels drawn from softmax(s), logits s * temperature."""
    rng = np.random.default_rng(seed)
    s = rng.normal(0, 2, (n, 6))
    p = np.exp(s) / np.exp(s).sum(1, keepdims=True)
    y = np.array([rng.choice(6, p=row) for row in p])
    return s * temperature, y


def test_grayscale_mask_tells_black_and_white_faces_from_colour_ones():
    rng = np.random.default_rng(0)
    gray = np.repeat(rng.integers(0, 256, (2, 1, 64, 64)), 3, axis=1)
    gray[1] = np.clip(gray[1] + rng.integers(-GRAY_TOLERANCE // 2, GRAY_TOLERANCE // 2 + 1, (3, 64, 64)), 0, 255)
    colour = gray[:1].copy()
    colour[0, 0, 10, 10] = (colour[0, 1, 10, 10] + GRAY_TOLERANCE + 1) % 256  # one reddish pixel is enough
    x = torch.from_numpy(np.concatenate([gray, colour])).to(torch.uint8)
    assert grayscale_mask(x).tolist() == [True, True, False]
    assert grayscale_mask(x, ModelSpec(arch="fernet", grayscale=True)).tolist() == [True, True, True]


def test_each_kind_of_face_gets_its_own_temperature():
    zc, yc = _sampled(1500, 2.0, seed=0)  # colour faces twice too sharp
    zg, yg = _sampled(1500, 1.0, seed=1)  # black-and-white faces calibrated already
    z, y = np.concatenate([zc, zg]), np.concatenate([yc, yg])
    gray = np.r_[np.zeros(1500, bool), np.ones(1500, bool)]
    t, t_gray = fit_temperatures(z, y, gray)
    assert t == pytest.approx(2.0, rel=0.15) and t_gray == pytest.approx(1.0, rel=0.15)
    one = fit_temperature(z, y)
    assert t_gray < one < t
    # too few black-and-white faces to fit on: one temperature serves both
    few = np.zeros(len(y), bool)
    few[:MIN_GROUP - 1] = True
    assert fit_temperatures(z, y, few) == (fit_temperature(z, y),) * 2
    cal = calibrate(z, y, gray)
    assert (cal["temperature"], cal["temperature_gray"]) == (t, t_gray)
    assert cal["val_ece_after"] < cal["val_ece_before"] / 2


def test_predictor_divides_each_face_by_its_kind_of_temperature(random_checkpoint):
    model, spec = load_checkpoint(random_checkpoint)
    pred = Predictor(model, spec.with_updates(temperature=1.0, temperature_gray=3.0), precision="float32")
    assert pred.temperatures == (1.0, 3.0)
    rng = np.random.default_rng(3)
    colour = rng.integers(0, 256, (70, 60, 3), dtype=np.uint8)
    gray = np.repeat(colour[..., :1], 3, axis=2)
    z = pred.logits([colour, gray])
    probs = pred.predict([colour, gray])
    np.testing.assert_allclose(probs[0], torch.softmax(z[0], 0).numpy(), atol=1e-6)
    np.testing.assert_allclose(probs[1], torch.softmax(z[1] / 3.0, 0).numpy(), atol=1e-6)
    # a checkpoint from before black-and-white temperatures: its one temperature for both
    assert Predictor(model, spec, precision="float32").temperatures == (spec.temperature, spec.temperature)
