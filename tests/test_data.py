import numpy as np
import pytest
from PIL import Image

from fer_core.data import (
    ferplus_filter, ferplus_majority, ferplus_targets, load_labelled_folder, load_uint8, oversample_rare, split_seed,
    stratified_split,
)
from fer_core.labels import EMOTIONS


def make_folder(root, n_per_class=3, with_csv=True):
    rng = np.random.default_rng(0)
    rows = []
    root.mkdir(parents=True, exist_ok=True)
    for c, name in enumerate(EMOTIONS):
        for i in range(n_per_class):
            img = Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8))
            if with_csv:
                fn = f"img_{c}_{i}_{name}.jpg"
                img.save(root / fn)
                rows.append(f"{fn},{c}")
            else:
                (root / name).mkdir(exist_ok=True)
                img.save(root / name / f"{i}.png")
    if with_csv:
        (root.parent / f"{root.name}_labels.csv").write_text("image,label\n" + "\n".join(rows) + "\n")
    return root


def test_csv_folder(tmp_path):
    f = load_labelled_folder(make_folder(tmp_path / "train"))
    assert len(f) == 18 and f.class_counts() == [3] * 6


def test_class_subfolders(tmp_path):
    f = load_labelled_folder(make_folder(tmp_path / "sub", with_csv=False))
    assert len(f) == 18 and f.class_counts() == [3] * 6


def test_label_names_and_errors(tmp_path):
    root = tmp_path / "x"
    root.mkdir()
    Image.new("RGB", (4, 4)).save(root / "a.jpg")
    (tmp_path / "x_labels.csv").write_text("image,label\na.jpg,Fear\n")
    assert load_labelled_folder(root).labels == (5,)
    (tmp_path / "x_labels.csv").write_text("image,label\na.jpg,9\n")
    with pytest.raises(ValueError, match="out of range"):
        load_labelled_folder(root)
    (tmp_path / "x_labels.csv").write_text("file,y\na.jpg,1\n")
    with pytest.raises(ValueError, match="image,label"):
        load_labelled_folder(root)


def test_load_uint8(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_CACHE", str(tmp_path / "cache"))
    x, y = load_uint8(load_labelled_folder(make_folder(tmp_path / "train")), 32)
    assert x.shape == (18, 3, 32, 32) and x.dtype.is_floating_point is False
    x2, _ = load_uint8(load_labelled_folder(tmp_path / "train"), 32)  # from the cache
    assert (x == x2).all() and y.tolist()[:3] == [0, 0, 0]


def test_stratified_split_is_seeded_and_disjoint():
    labels = np.repeat(np.arange(6), [50, 20, 30, 10, 10, 3])
    tr, va = stratified_split(labels, 0.1, seed=0)
    tr2, va2 = stratified_split(labels, 0.1, seed=0)
    assert (va == va2).all() and not set(tr) & set(va)
    assert len(tr) + len(va) == len(labels)
    assert set(labels[va]) == set(range(6))  # every class, fear included, has validation samples


def test_split_seed_defaults_to_the_run_seed():
    assert split_seed({"seed": 3}) == 3 and split_seed({}) == 0
    assert split_seed({"seed": 3, "split_seed": None}) == 3  # train.py records None when not given
    assert split_seed({"seed": 3, "split_seed": 0}) == 0


def test_oversample_rare_balances_by_power_and_keeps_every_index():
    labels = np.array([0] * 100 + [1] * 25 + [2] * 4 + [3] * 7)
    idx = np.arange(129)  # class 3 is outside idx (e.g. validation) and must stay out
    sqrt = oversample_rare(labels, idx, 0.5, seed=0)
    assert np.bincount(labels[sqrt], minlength=4).tolist() == [100, 50, 20, 0]
    assert set(sqrt.tolist()) == set(idx.tolist())
    full = oversample_rare(labels, idx, 1.0, seed=0)
    assert np.bincount(labels[full], minlength=4).tolist() == [100, 100, 100, 0]
    assert np.array_equal(oversample_rare(labels, idx, 0.0, seed=0), idx)
    odd = oversample_rare(labels, idx, 0.7, seed=3)
    assert np.array_equal(odd, oversample_rare(labels, idx, 0.7, seed=3))  # seeded


def test_low_resolution_augmentation_blurs_only_the_drawn_samples():
    import torch

    from fer_core.preprocess import AugmentOptions, BatchAugment

    none = dict(flip=False, rotation=0.0, crop=False, color_jitter=0.0, erasing=0.0, grayscale=0.0, blur=0.0, jpeg=0.0)
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (8, 3, 64, 64), np.uint8))
    plain = BatchAugment(AugmentOptions(**none), 64)(x)
    torch.manual_seed(0)
    low = BatchAugment(AugmentOptions(**none, lowres=1.0), 64)(x)
    assert low.shape == plain.shape and low.dtype == torch.float32
    assert 0.0 <= float(low.min()) and float(low.max()) <= 1.0

    def detail(t):  # energy of neighbouring-pixel differences: small after down- and up-sampling
        return (t[..., 1:] - t[..., :-1]).abs().mean((1, 2, 3))

    assert torch.all(detail(low) < 0.5 * detail(plain))
    torch.manual_seed(0)
    untouched = BatchAugment(AugmentOptions(**none, lowres=1e-9), 64)(x)
    assert torch.equal(untouched, plain)


def _every_augmentation(jpeg: float):
    from fer_core.preprocess import AugmentOptions, BatchAugment

    return BatchAugment(AugmentOptions(rotation=15.0, perspective=0.3, erasing=0.5, grayscale=0.5, blur=0.5,
                                       jpeg=jpeg, lowres=0.5), 64)


def test_every_augmentation_at_once_is_seeded_and_stays_in_range():
    import torch

    x = torch.from_numpy(np.random.default_rng(1).integers(0, 255, (16, 3, 64, 64), np.uint8))
    aug = _every_augmentation(jpeg=0.5)  # JPEG round-trips through the CPU whatever the batch's device
    torch.manual_seed(3)
    a = aug(x)
    torch.manual_seed(3)
    b = aug(x)
    assert a.shape == (16, 3, 64, 64) and a.dtype == torch.float32 and a.device == x.device
    assert torch.equal(a, b)
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    assert not torch.equal(a, x.float() / 255)


def test_augmentation_on_a_gpu_draws_what_the_cpu_draws():
    import pytest
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    x = torch.from_numpy(np.random.default_rng(2).integers(0, 255, (16, 3, 64, 64), np.uint8))
    aug = _every_augmentation(jpeg=0.0)
    torch.manual_seed(4)
    on_cpu = aug(x)
    torch.manual_seed(4)
    on_gpu = aug(x.cuda())
    assert on_gpu.device.type == "cuda"
    assert torch.allclose(on_gpu.cpu(), on_cpu, atol=2e-3)


def test_batched_grayscale_and_blur_match_torchvision_per_image():
    """The batched grayscale and blur give what torchvision's per-image transforms give for the same draws."""
    import torch
    from torchvision.transforms.v2 import functional as TF

    from fer_core.preprocess import BatchAugment

    x = torch.rand(6, 3, 64, 64)
    idx = torch.tensor([0, 2, 5])
    gray = BatchAugment._grayscale(x, idx)
    for i in range(6):
        want = TF.rgb_to_grayscale(x[i], num_output_channels=3) if i in idx else x[i]
        assert torch.allclose(gray[i], want, atol=1e-6)
    torch.manual_seed(7)
    blurred = BatchAugment._blur(x, idx)
    torch.manual_seed(7)
    sigmas = torch.empty(3).uniform_(0.3, 1.5)  # the same draw _blur makes
    for j, i in enumerate(idx.tolist()):
        s = float(sigmas[j])
        assert torch.allclose(blurred[i], TF.gaussian_blur(x[i], [5, 5], [s, s]), atol=1e-5)
    assert torch.equal(blurred[1], x[1]) and torch.equal(blurred[3], x[3])


def test_batched_erasing_paints_one_box_per_drawn_sample():
    import torch

    from fer_core.preprocess import BatchAugment

    x = torch.rand(40, 3, 64, 64) * 0.4  # never 0.5, so erased pixels are exactly the 0.5 ones
    idx = torch.arange(0, 40, 2)
    torch.manual_seed(0)
    out = BatchAugment._erase(x, idx)
    for i in range(40):
        changed = (out[i] != x[i]).any(0)
        if i % 2:
            assert not changed.any()
            continue
        rows, cols = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
        h, w = len(rows), len(cols)
        assert h and w and h < 64 and w < 64
        assert int(rows[-1] - rows[0]) + 1 == h and int(cols[-1] - cols[0]) + 1 == w  # one solid box
        assert int(changed.sum()) == h * w and torch.all(out[i][:, changed] == 0.5)
        assert 0.01 <= h * w / 64 ** 2 <= 0.36  # torchvision's area share 0.02-0.33, up to rounding


def _with_votes(root):
    """A FER2013-like split with ferplus_votes.csv beside it: four faces with votes, the rest without."""
    f = load_labelled_folder(make_folder(root, n_per_class=1))
    names = [p.name for p in f.paths]
    votes = {  # neutral, six emotions, contempt, unknown, NF
        names[0]: [0, 8, 2, 0, 0, 0, 0, 0, 0, 0],  # labelled happiness; FER+ agrees
        names[1]: [6, 0, 2, 0, 0, 0, 2, 0, 0, 0],  # labelled surprise; FER+ majority neutral
        names[2]: [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],  # not a face: no vote among the six
        names[5]: [0, 0, 3, 0, 0, 0, 7, 0, 0, 0],  # labelled fear; FER+ says fear
    }
    head = "image,ferplus_image,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
    rows = [f"{root.name}/{n},x.png," + ",".join(map(str, v)) for n, v in votes.items()]
    (root.parent / "ferplus_votes.csv").write_text(head + "\n" + "\n".join(rows) + "\n")
    return f


def test_ferplus_modes_and_soft_targets(tmp_path):
    import torch

    f = _with_votes(tmp_path / "train")
    idx = np.arange(len(f))
    assert ferplus_majority(np.array([0, 8, 2, 0, 0, 0, 0, 0, 0, 0])) == 0
    assert ferplus_majority(np.array([5, 5, 0, 0, 0, 0, 0, 0, 0, 0])) == -1  # a tie goes to "not one of six"
    assert ferplus_filter(tmp_path / "train", idx, "off").tolist() == idx.tolist()
    assert ferplus_filter(tmp_path / "train", idx, "drop").tolist() == [0, 3, 4, 5]
    assert ferplus_filter(tmp_path / "train", idx, "agree").tolist() == [0, 3, 4, 5]
    assert ferplus_filter(tmp_path / "train", idx, "soft").tolist() == [0, 1, 3, 4, 5]
    with pytest.raises(ValueError, match="unknown FER\\+ mode"):
        ferplus_filter(tmp_path / "train", idx, "vote")
    t = ferplus_targets(tmp_path / "train", torch.tensor(f.labels))
    assert t.shape == (6, 6)
    assert torch.allclose(t[0], torch.tensor([0.8, 0.2, 0, 0, 0, 0]))
    assert torch.allclose(t[1], torch.tensor([0, 0.2, 0, 0, 0, 0.2]))  # weighs 0.4: most said neutral
    assert t[2].sum() == 0  # left out by the "soft" filter
    assert torch.equal(t[3], torch.tensor([0.0, 0, 0, 1, 0, 0]))  # no votes: its label
    assert torch.allclose(t[5], torch.tensor([0, 0.3, 0, 0, 0, 0.7]))
