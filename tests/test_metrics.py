import numpy as np
import pytest

from fer_core.metrics import classification_report, paired_difference, paired_macro_f1_difference


def test_paired_difference_counts_the_faces_the_two_models_answer_differently():
    a = np.array([1, 1, 1, 1, 0, 0, 1, 1, 1, 1] * 50, dtype=bool)  # 80% right
    b = np.array([1, 1, 0, 1, 0, 1, 1, 1, 0, 1] * 50, dtype=bool)  # 70% right
    r = paired_difference(a, b, n_boot=500)
    assert r["n"] == 500
    assert r["accuracy_a"] == pytest.approx(0.8) and r["accuracy_b"] == pytest.approx(0.7)
    assert r["difference"] == pytest.approx(0.1)
    assert r["discordant"] == pytest.approx(0.3)
    # d is +1 on 20%, -1 on 10%, 0 elsewhere: its standard deviation over sqrt(n) is the bootstrap's error
    sd = np.sqrt(0.3 - 0.1 ** 2)
    assert r["standard_error"] == pytest.approx(sd / np.sqrt(500), rel=0.15)
    lo, hi = r["ci95"]
    assert lo < 0.1 < hi and lo > 0


def test_identical_answers_have_no_difference_and_no_spread():
    a = np.random.default_rng(0).random(200) < 0.6
    r = paired_difference(a, a.copy())
    assert r["difference"] == 0 and r["standard_error"] == 0 and r["discordant"] == 0


def test_paired_difference_refuses_unpaired_inputs():
    with pytest.raises(ValueError):
        paired_difference(np.ones(3, bool), np.ones(4, bool))
    with pytest.raises(ValueError):
        paired_difference([], [])


def test_paired_macro_f1_difference_matches_the_report_and_brackets_it():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 6, 600)
    a = np.where(rng.random(600) < 0.8, y, rng.integers(0, 6, 600))
    b = np.where(rng.random(600) < 0.6, y, rng.integers(0, 6, 600))
    r = paired_macro_f1_difference(y, a, b, n_boot=300)
    assert r["macro_f1_a"] == pytest.approx(classification_report(y, a)["macro_f1"])
    assert r["macro_f1_b"] == pytest.approx(classification_report(y, b)["macro_f1"])
    assert r["difference"] == pytest.approx(r["macro_f1_a"] - r["macro_f1_b"])
    lo, hi = r["ci95"]
    assert 0 < lo < r["difference"] < hi and r["a_better"] == 1.0
    same = paired_macro_f1_difference(y, a, a.copy(), n_boot=50)
    assert same["difference"] == 0 and same["ci95"] == (0.0, 0.0) and same["a_better"] == 0.0
    with pytest.raises(ValueError):
        paired_macro_f1_difference(y, a, b[:-1])


def test_reliability_bins_and_ece_by_hand():
    from fer_core.metrics import expected_calibration_error, reliability

    # four faces at 0.9 confidence (three right), two at 0.55 (both wrong): bins (0.8, 0.9] and (0.5, 0.6]
    probs = np.array([[0.9, 0.1, 0, 0, 0, 0]] * 4 + [[0.55, 0.45, 0, 0, 0, 0]] * 2)
    y = np.array([0, 0, 0, 1, 1, 1])
    r = reliability(probs, y, n_bins=10)
    assert r["count"] == [0, 0, 0, 0, 0, 2, 0, 0, 4, 0] and len(r["edges"]) == 11
    assert r["accuracy"][8] == 0.75 and r["confidence"][8] == pytest.approx(0.9)
    assert r["accuracy"][5] == 0.0 and r["accuracy"][0] is None
    ece = 4 / 6 * abs(0.75 - 0.9) + 2 / 6 * 0.55
    assert expected_calibration_error(probs, y, n_bins=10) == pytest.approx(ece)
    assert expected_calibration_error(np.zeros((0, 6)), np.zeros(0)) == 0.0


def test_the_ece_noise_floor_shrinks_with_more_faces_and_a_miscalibrated_model_stands_above_it():
    from fer_core.metrics import ece_noise_floor, expected_calibration_error

    rng = np.random.default_rng(1)

    def probs(n):
        conf = rng.uniform(0.4, 1.0, n)
        p = np.tile(((1 - conf) / 5)[:, None], (1, 6))
        p[np.arange(n), rng.integers(0, 6, n)] = conf
        return p

    small, large = ece_noise_floor(probs(300)), ece_noise_floor(probs(30000))
    assert 0 < large["mean"] < small["mean"] < small["p95"] and large["mean"] < 0.01
    p = probs(3000)
    right = rng.random(3000) < p.max(1) - 0.15  # 15 points over-confident
    y = np.where(right, p.argmax(1), (p.argmax(1) + 1) % 6)
    assert expected_calibration_error(p, y) > 3 * ece_noise_floor(p)["p95"]
    assert ece_noise_floor(np.zeros((0, 6))) == {"mean": 0.0, "p95": 0.0}
