"""The seven-class plumbing: neutral labels, the FER+ seven-class set's split and targets, a six-class head widened
to seven, source-stratified oversampling, and the library, CLI and video with a seven-class model."""
import csv

import numpy as np
import pytest
import torch
from PIL import Image

from fer_core.labels import CLASSES_7, EMOTIONS, class_list, emotion_index


def test_class_lists():
    assert CLASSES_7[:6] == EMOTIONS and CLASSES_7[6] == "neutral" and emotion_index("Neutral") == 6
    assert class_list(6) == EMOTIONS and class_list(7) == CLASSES_7
    with pytest.raises(ValueError):
        class_list(5)


def _fer_like(root, rng):
    """A FER2013-like folder: train/ (six classes, its own labels CSV) and ferplus_only/train/ (neutral), with a
    seven-class labels CSV over both, as the datasets ship them."""
    (root / "train").mkdir(parents=True)
    (root / "ferplus_only" / "train").mkdir(parents=True)
    own, seven = [], []
    for i in range(60):
        c = i % 6
        name = f"Training_{i}_{EMOTIONS[c]}.jpg"
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8)).save(root / "train" / name)
        own.append((name, c))
        seven.append((f"train/{name}", 6 if i % 5 == 0 else c))  # the annotators call some neutral
    for i in range(20):
        name = f"fer{i:07d}.jpg"
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8)).save(root / "ferplus_only" / "train" / name)
        seven.append((f"ferplus_only/train/{name}", 6))
    for path, rows in ((root / "train_labels.csv", own), (root / "ferplus7_train_labels.csv", seven)):
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["image", "label"])
            w.writerows(rows)


def test_ferplus7_split_inherits_the_six_class_split_and_blends_targets(tmp_path, monkeypatch):
    from fer_core.data import (blended_targets, inherited_split, load_labelled_folder, load_split_folder,
                               original_labels, stratified_split)

    monkeypatch.setenv("FER_CACHE", str(tmp_path / "cache"))
    _fer_like(tmp_path / "fer2013", np.random.default_rng(0))
    root = tmp_path / "fer2013"
    seven = load_labelled_folder(root, root / "ferplus7_train_labels.csv")
    assert seven.num_classes == 7 and seven.class_counts()[6] == 32
    tr, va = inherited_split(seven, 0.1, seed=0)
    own = load_labelled_folder(root / "train")
    _, own_val = stratified_split(own.labels, 0.1, 0)
    held = {own.paths[i].name for i in own_val}
    in_train = [i for i, p in enumerate(seven.paths) if p.parent.name == "train" and "ferplus_only" not in p.parts]
    # a face of train/ is validation exactly when the six-class split held it out
    assert {seven.paths[i].name for i in va if i in in_train} == held
    assert not set(tr) & set(va) and len(tr) + len(va) == len(seven)
    x, y, tr2, va2 = load_split_folder(root, 32, val_fraction=0.1, seed=0, labels_csv=root / "ferplus7_train_labels.csv")
    assert np.array_equal(tr2, tr) and np.array_equal(va2, va) and x.shape[1:] == (3, 32, 32)
    original = original_labels(seven)
    assert original[0] == 0 and original[-1] == 6  # Training_0_happiness; a ferplus_only face: FER2013's neutral
    t = blended_targets(y, original, 0.3, 7)
    assert torch.allclose(t.sum(1), torch.ones(len(y)))
    assert t[0, 6] == pytest.approx(0.7) and t[0, 0] == pytest.approx(0.3)  # majority neutral, FER2013 happiness
    assert t[1, 1] == pytest.approx(1.0)  # both agree


def test_a_six_class_head_widened_to_seven_keeps_the_six():
    from fer_core.models import create_model
    from train import widen_head

    torch.manual_seed(0)
    six = create_model("fernet").eval()
    seven = create_model("fernet", num_classes=7).eval()
    widened = widen_head(seven, six.state_dict())
    assert len(widened) == 2
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = six(x), seven(x)
    assert torch.allclose(a, b[:, :6], atol=1e-5)  # the six logits unchanged
    assert torch.allclose(b[:, 6], six.gap_linear.bias.mean().expand(2), atol=1e-5)  # neutral: the mean bias


def test_oversampling_by_source_and_class():
    from fer_core.data import oversample_rare, source_of_name

    assert [source_of_name(n) for n in ("ffhq_3_neutral.jpg", "image0042_anger.jpg", "webcam_7_fear.jpg")] == [
        "ffhq", "image", "webcam"]
    labels = np.array([6] * 16 + [0] * 4 + [6] * 4)
    sources = np.array(["webcam"] * 20 + ["ffhq"] * 4)
    counts = np.bincount(oversample_rare(labels, np.arange(24), 0.5, 0, sources=sources), minlength=24)
    assert (counts[:16] == 1).all() and (counts[16:] == 2).all()  # webcam neutral as is, the rest twice


@pytest.fixture(scope="module")
def seven_checkpoint(tmp_path_factory):
    from fer_core.checkpoints import ModelSpec, save_checkpoint
    from fer_core.models import create_model

    torch.manual_seed(0)
    model = create_model("fernet", num_classes=7).eval()
    path = tmp_path_factory.mktemp("seven") / "seven.safetensors"
    save_checkpoint(model, ModelSpec(arch="fernet", classes=CLASSES_7, temperature=1.2), path)
    return path


def test_a_seven_class_model_everywhere(seven_checkpoint, random_checkpoint, astronaut, tmp_path):
    """The library, the CSV (a neutral column after fear; a six-class model's header unchanged) and the video
    timeline with a seven-class checkpoint."""
    from fer_core.__main__ import main
    from fer_core.pipeline import analyze
    from fer_core.runtime import load_predictor
    from fer_core.scoring import score_columns

    predictor = load_predictor(seven_checkpoint)
    faces = analyze(astronaut, predictor=predictor, methods=["gradcam"])
    assert predictor.classes == CLASSES_7 and faces[0].probs.shape == (7,) and faces[0].prediction in CLASSES_7
    photo = tmp_path / "a.png"
    Image.fromarray(astronaut).save(photo)
    out7, out6 = tmp_path / "seven.csv", tmp_path / "six.csv"
    assert main(["score", str(photo), "--model", str(seven_checkpoint), "-o", str(out7)]) == 0
    assert main(["score", str(photo), "--model", str(random_checkpoint), "-o", str(out6)]) == 0
    header7 = out7.read_text().splitlines()[0].split(",")
    assert header7[header7.index("fear") + 1] == "neutral" and header7 == score_columns(True, CLASSES_7)
    assert out6.read_text().splitlines()[0] == ",".join(score_columns(True))  # six-class: byte for byte as before
    assert "neutral" not in out6.read_text().splitlines()[0]
    from tests.test_video import make_clip

    clip = make_clip(tmp_path / "c.avi", astronaut, frames=4)
    timeline = tmp_path / "t.csv"
    assert main(["video", str(clip), "--model", str(seven_checkpoint), "--csv", str(timeline)]) == 0
    assert "neutral" in timeline.read_text().splitlines()[0].split(",")
