import threading

import numpy as np
import pytest
import torch
from torch import nn

from fer_core.explainers import EXPLAINERS, explain, supported_explainers, unsupported_reason
from fer_core.faithfulness import deletion_insertion, spearman
from fer_core.models import FerNet, create_model, list_models

FAST = ["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigencam", "cam", "saliency", "guided_gradcam"]
SLOW = ["scorecam", "ablationcam", "occlusion", "integrated_gradients", "smoothgrad"]


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {name: create_model(name).eval() for name in list_models() if name != "vgg16"}


def _check(cam):
    assert cam.shape == (64, 64) and cam.dtype == np.float32
    assert np.isfinite(cam).all() and cam.min() >= 0 and cam.max() <= 1


@pytest.mark.parametrize("method", FAST)
@pytest.mark.parametrize("arch", [n for n in list_models() if n != "vgg16"])
def test_fast_explainers_every_model(models, arch, method):
    model = models[arch]
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    if method not in supported_explainers(model):
        assert unsupported_reason(model, method)
        with pytest.raises(ValueError, match="CAM needs"):
            explain(model, x, 0, method)
        return
    for layer in [None, *model.explain_layers()][:2]:
        _check(explain(model, x, 3, method, layer=layer))


@pytest.mark.parametrize("method", SLOW)
@pytest.mark.parametrize("arch", ["fernet", "baseline"])
def test_slow_explainers(models, arch, method):
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    _check(explain(models[arch], x, 1, method))


def test_vgg16_gradcam_and_cam():
    """vgg16 reads its last stage with GAP + one linear layer, so CAM is defined for it too."""
    model = create_model("vgg16").eval()
    assert model.gap_linear is model.fc
    for method in ("gradcam", "cam"):
        _check(explain(model, torch.randn(1, 3, 64, 64), 0, method))


@pytest.mark.parametrize("method", ["gradcam", "cam", "occlusion", "integrated_gradients", "saliency"])
def test_deterministic(models, method):
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    a = explain(models["fernet"], x, 2, method)
    b = explain(models["fernet"], x, 2, method)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("arch", ["fernet", "resnet18", "resnet34"])
def test_cam_equals_gradcam_on_gap_linear_head(models, arch):
    model = models[arch]
    last = list(model.explain_layers())[-1]
    for target in range(6):
        x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(target))
        cam = explain(model, x, target, "cam")
        grad = explain(model, x, target, "gradcam", layer=last)
        assert np.allclose(cam, grad, atol=1e-4)


@pytest.mark.parametrize("arch", ["fernet", "resnet18", "vgg16", "baseline"])
def test_repeated_maps_are_exactly_the_repeated_ones(models, arch):
    """repeated_maps names a method only where its map is CAM's (GAP + linear head, the pooled layer), and each
    named map is numerically the same; at another layer, or for a multi-layer head, nothing is called a repeat."""
    from fer_core.explainers import SAME_AS_CAM, repeated_maps

    torch.manual_seed(0)
    model = models[arch] if arch in models else create_model(arch).eval()
    methods = ["gradcam", "cam", "hirescam", "xgradcam", "occlusion", "integrated_gradients"]
    pooled = model.pooled_layer
    said = repeated_maps(model, methods, pooled)
    if pooled is None:  # a multi-layer head, or VGG (a max-pool after its last explain layer)
        assert said == {}
        return
    assert said == {"cam": "gradcam", "hirescam": "gradcam", "xgradcam": "gradcam"}
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    maps = {m: explain(model, x, 1, m, layer=pooled) for m in SAME_AS_CAM}
    for m, first in said.items():
        assert np.allclose(maps[m], maps[first], atol=1e-3), m
    shallow = [layer for layer in model.explain_layers() if layer != pooled][-1]
    assert repeated_maps(model, methods, shallow) == {}  # a finer layer's Grad-CAM is another map
    assert spearman(explain(model, x, 1, "gradcam", layer=shallow).ravel(), maps["cam"].ravel()) < 0.999


def test_starting_methods_repeat_no_map(models):
    from fer_core.explainers import DEFAULT_METHODS, repeated_maps

    assert "gradcam" in DEFAULT_METHODS and repeated_maps(models["fernet"], DEFAULT_METHODS) == {}


class TinyNet(FerNet):
    """Hand-weighted: feature map = the input's first two channels; linear head fixed."""

    def __init__(self):
        super().__init__()
        self.arch = "tiny"
        self.ident = nn.Identity()
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, -1.0], [0.5, 2.0]]))

    def forward_features(self, x):
        return self.ident(x[:, :2])

    def forward_head(self, feats):
        return self.fc(feats.mean((2, 3)))

    def explain_layers(self):
        return {"ident": self.ident}

    @property
    def gap_linear(self):
        return self.fc


def test_cam_exact_values_on_hand_weighted_net():
    from fer_core.explainers import cam_from_features

    f = torch.zeros(1, 3, 2, 2)
    f[0, 0] = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    f[0, 1] = torch.tensor([[0.0, 1.0], [1.0, 4.0]])
    net = TinyNet()
    # class 0: 1*A0 - 1*A1 = [[1, 1], [2, -4]] -> ReLU [[1, 1], [2, 0]] -> /2
    raw = cam_from_features(f[0, :2], net.fc.weight[0], 2)
    assert np.allclose(raw, np.array([[0.5, 0.5], [1.0, 0.0]]), atol=1e-6)
    # class 1: 0.5*A0 + 2*A1 = [[0.5, 3], [3.5, 8]] -> min-max -> [[0, 2.5/7.5], [3/7.5, 1]]
    raw1 = cam_from_features(f[0, :2], net.fc.weight[1], 2)
    assert np.allclose(raw1, np.array([[0.0, 2.5 / 7.5], [3.0 / 7.5, 1.0]]), atol=1e-6)
    full = explain(net, f, 1, "cam")  # resized to the 2x2 input: unchanged
    assert np.allclose(full, raw1, atol=1e-6)


def test_thread_safety_same_model(models):
    model = models["fernet"]
    xs = [torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(i)) for i in range(8)]
    jobs = [(x, i % 6, m) for i, x in enumerate(xs) for m in ("gradcam", "hirescam", "guided_gradcam", "cam")]
    # occlusion handed the eager model as its `forward` (a Predictor that predicts eagerly): its passes must
    # not land in another thread's Grad-CAM hooks
    jobs += [(x, 0, "occlusion") for x in xs[:2]]
    expected = [explain(model, x, t, m, forward=model) for x, t, m in jobs]
    results = [None] * len(jobs)

    def worker(k):
        for j in range(k, len(jobs), 4):
            x, t, m = jobs[j]
            results[j] = explain(model, x, t, m, forward=model)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for a, b in zip(expected, results):
        assert np.allclose(a, b, atol=1e-6)


def test_guided_gradcam_and_eigencam_marked_failing_sanity():
    for name in ("guided_gradcam", "eigencam"):
        assert EXPLAINERS[name].fails_sanity
        assert "sanity" in EXPLAINERS[name].note
    assert not any(EXPLAINERS[m].fails_sanity for m in ("gradcam", "cam", "occlusion", "integrated_gradients"))


def test_deletion_insertion_range_and_order(models):
    model = models["fernet"]
    x = torch.randn(1, 3, 64, 64)
    cam = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    d, i = deletion_insertion(model, x, cam, 0)
    assert 0 <= d <= 1 and 0 <= i <= 1


def test_randomised_copies_are_cached_per_seed(models):
    from fer_core.faithfulness import randomised_copy

    model = models["fernet"]
    r0, r1 = randomised_copy(model, 0), randomised_copy(model, 1)
    assert randomised_copy(model, 0) is r0 and r1 is not r0
    assert not torch.equal(r0.net.fc.weight, r1.net.fc.weight)  # another draw, not the first one again
    assert torch.equal(r0.net.layer3[0].conv1.weight, model.net.layer3[0].conv1.weight)  # only the top is redrawn


def test_spearman():
    a = np.arange(16.0)
    assert spearman(a, a) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)


def _blob(cy: int, cx: int, s: int = 64, r: float = 8.0) -> np.ndarray:
    yy, xx = np.mgrid[:s, :s]
    return np.maximum(0.0, 1 - np.hypot(yy - cy, xx - cx) / r)  # a cone: zero outside radius r


def test_spearman_on_tied_maps_matches_scipy():
    """Tied pixels get their average rank: two maps that are mostly zeros, scipy.stats.spearmanr as the oracle.
    A constant map has no ranks: NaN, never a similarity."""
    from scipy.stats import spearmanr

    mouth, eyes = _blob(48, 32), _blob(20, 22) + _blob(20, 42)
    assert (mouth == 0).mean() > 0.9 and (eyes == 0).mean() > 0.8
    expected = spearmanr(mouth.ravel(), eyes.ravel()).statistic
    assert expected < 0  # disjoint blobs: where one is high the other is zero
    assert spearman(mouth, eyes) == pytest.approx(expected, abs=1e-12)
    sparse = np.where(np.random.default_rng(0).random((64, 64)) < 0.2, np.random.default_rng(1).random((64, 64)), 0)
    assert (sparse == 0).mean() == pytest.approx(0.8, abs=0.02)
    assert spearman(sparse, mouth) == pytest.approx(spearmanr(sparse.ravel(), mouth.ravel()).statistic, abs=1e-12)
    assert np.isnan(spearman(mouth, np.zeros((64, 64)))) and np.isnan(spearman(np.full((8, 8), 3.0), mouth[:8, :8]))
    # hand-computed: [0, 0, 1, 2] has ranks [1.5, 1.5, 3, 4]; against [1, 2, 3, 4] r = 0.9486832980505138
    assert spearman(np.array([0.0, 0, 1, 2]), np.arange(1.0, 5)) == pytest.approx(0.9486832980505138)


def test_sanity_verdict_counts_a_collapsed_map_as_changed():
    from fer_core.faithfulness import map_ssim, sanity_verdict

    assert sanity_verdict(float("nan"), True) == (0.0, True)
    assert sanity_verdict(0.7, False) == (0.7, False)
    assert map_ssim(_blob(30, 30), _blob(30, 30)) == pytest.approx(1.0)
    from skimage.metrics import structural_similarity

    a, b = _blob(48, 32), 2 * _blob(20, 22)  # each scaled by its own range
    assert map_ssim(a, b) == pytest.approx(structural_similarity(a, b / 2, data_range=1.0))
    assert map_ssim(a, b) < 0.9


def test_relevance_order_breaks_ties_at_random_and_keeps_the_order_of_values():
    from fer_core.faithfulness import relevance_order, tie_broken

    cam = np.zeros((64, 64))
    cam[40:48, 20:44] = np.linspace(1, 2, 24)  # 192 relevant pixels, the rest (95%) tied at zero
    order = relevance_order(cam, seed=0)
    assert sorted(order.tolist()) == list(range(64 * 64))
    values = cam.ravel()[order]
    assert np.all(np.diff(values) <= 0)  # most relevant first
    zeros = order[192:]
    assert not np.all(np.diff(zeros) > 0)  # not raster order among the ties
    assert np.abs(np.mean(zeros // 64) - 31.5) < 3  # spread over the whole image, not the top rows first
    assert not np.array_equal(relevance_order(cam, seed=1), order) and np.array_equal(relevance_order(cam, 0), order)
    ranked = tie_broken(cam, seed=0)
    assert len(np.unique(ranked)) == 64 * 64 and ranked.min() == 0 and ranked.max() == 1
    for pct in (20, 40, 60, 80):  # a percentile now splits the pixels at exactly its share
        assert (ranked < np.percentile(ranked, pct)).mean() == pytest.approx(pct / 100, abs=1 / 4096)
    # the relevant pixels keep their order above every zero
    assert ranked[cam > 0].min() > ranked[cam == 0].max()


def test_deletion_insertion_is_order_free_among_tied_pixels(models):
    """On a map that is one value everywhere, deletion no longer removes the top rows first: averaged over tie
    orders, deleting 'the most relevant' pixels of a constant map is deleting random pixels."""
    model = models["fernet"].eval()
    x = torch.randn(1, 3, 64, 64)
    flat = np.zeros((64, 64))
    one = deletion_insertion(model, x, flat, 0, seed=0)
    again = deletion_insertion(model, x, flat, 0, seed=0)
    other = deletion_insertion(model, x, flat, 0, seed=3)
    assert one == again and one != other
    mean = deletion_insertion(model, x, flat, 0, tie_orders=3)
    runs = [deletion_insertion(model, x, flat, 0, seed=k) for k in range(3)]
    assert mean[0] == pytest.approx(np.mean([r[0] for r in runs])) and mean[1] == pytest.approx(np.mean([r[1] for r in runs]))


def test_gradcam_beats_random_map_on_trained_checkpoint():
    from fer_core.checkpoints import list_checkpoints
    from fer_core.runtime import DEFAULT_CHECKPOINT, load_predictor
    from tests.conftest import datasets_or_skip

    root = datasets_or_skip()
    if DEFAULT_CHECKPOINT not in list_checkpoints():
        pytest.skip("no trained default checkpoint")
    from fer_core.data import load_labelled_folder
    from fer_core.io import read_image

    import cv2

    pred = load_predictor()
    folder = load_labelled_folder(root / "raf-db" / "test")
    rng = np.random.default_rng(0)
    side = pred.model.forward_features(pred.input_tensor(read_image(folder.paths[0]))).shape[-1]
    g, r = [], []
    for p in folder.paths[:40]:
        x = pred.input_tensor(read_image(p))
        t = int(pred.predict([read_image(p)])[0].argmax())
        g.append(deletion_insertion(pred.model, x, explain(pred.model, x, t, "gradcam"), t))
        # the control has Grad-CAM's own resolution (side x side, upsampled): pixel-level noise deletes
        # scattered pixels, which wrecks any image fastest, so it would test resolution, not content
        rand = cv2.resize(rng.random((side, side)).astype(np.float32), (64, 64), interpolation=cv2.INTER_LINEAR)
        r.append(deletion_insertion(pred.model, x, rand, t))
    g, r = np.array(g), np.array(r)
    assert g[:, 0].mean() < r[:, 0].mean()  # deletion: lower is better
    assert g[:, 1].mean() > r[:, 1].mean()  # insertion: higher is better
