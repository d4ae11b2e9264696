"""fer_core.framing: training faces framed as the app crops a face in a photo (train.py --app-framed)."""
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent


def _faces(astronaut) -> torch.Tensor:
    """Four 64-px crops of the astronaut's face, framed about as a dataset crops it, each a little different."""
    crops = [astronaut[60:180, 165:285], astronaut[55:185, 160:290], astronaut[65:175, 170:280],
             astronaut[60:180, 165:285][:, ::-1]]
    arr = np.stack([cv2.resize(np.ascontiguousarray(c), (64, 64), interpolation=cv2.INTER_AREA) for c in crops])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def test_app_framed_copies_are_the_apps_crops_seeded_and_cached(astronaut, tmp_path, monkeypatch):
    from fer_core.framing import app_framed

    monkeypatch.setenv("FER_CACHE", str(tmp_path))
    x = _faces(astronaut)
    copies, found = app_framed(x, np.array([3, 0, 2]), seed=5, workers=1)
    assert copies.shape == (3, 3, 64, 64) and copies.dtype == torch.uint8 and found == 3
    # the same face, framed anew (the app's crop of a colour face is tighter than these: 30-50 levels per pixel from
    # its own crop) and in `indices` order: face 3 is face 0 mirrored, and copy 0 is further from face 0 (62)
    diff = [(copies[j].float() - x[i].float()).abs().mean().item() for j, i in enumerate([3, 0, 2])]
    other = (copies[0].float() - x[0].float()).abs().mean().item()
    assert all(0 < d < 55 for d in diff) and other > diff[0] + 10
    assert len(list(tmp_path.glob("app_framed-*.npz"))) == 1
    again, found_again = app_framed(x, np.array([3, 0, 2]), seed=5, workers=1)  # from the cache
    assert torch.equal(again, copies) and found_again == 3
    # the draws do not depend on how the work is shared: two processes, a face a chunk, no cache. The workers are
    # spawned, and a spawned child first runs the parent's __main__ file: after AppTest's tests that is a page script
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    shared, _ = app_framed(x, np.array([3, 0, 2]), seed=5, workers=2, chunk=1, cache=False)
    assert torch.equal(shared, copies)
    other_seed, _ = app_framed(x, np.array([3, 0, 2]), seed=6, workers=1, cache=False)
    assert not torch.equal(other_seed, copies)


def test_a_face_the_detector_misses_keeps_its_crop(tmp_path, monkeypatch):
    from fer_core.framing import app_framed

    monkeypatch.setenv("FER_CACHE", str(tmp_path))
    x = torch.full((2, 3, 64, 64), 128, dtype=torch.uint8)
    copies, found = app_framed(x, np.array([0, 1]), workers=1, cache=False)
    assert found == 0 and torch.equal(copies, x)


def test_train_swaps_a_share_of_the_draws_never_a_validation_face(astronaut, tmp_path, monkeypatch):
    from train import with_app_framed

    monkeypatch.setenv("FER_CACHE", str(tmp_path))
    x = _faces(astronaut)
    y = torch.tensor([0, 1, 2, 3])
    train_idx = np.array([0, 1, 2, 0, 1, 2])  # faces 0-2 twice an epoch (raf-db:2); face 3 is a validation face
    x2, y2, idx, _ = with_app_framed(x, y, train_idx, 0.5, seed=0)
    assert len(x2) == 7 and torch.equal(x2[:4], x) and y2.tolist() == [0, 1, 2, 3, 0, 1, 2]
    assert len(idx) == len(train_idx) and 3 not in idx
    swapped = idx >= 4
    assert 0 < swapped.sum() < len(idx)
    assert (y2[idx] == y[train_idx]).all()  # a copy keeps its face's label
    assert (idx[swapped] - 4 == train_idx[swapped]).all()  # and is the copy of the face it replaces
    _, _, none, _ = with_app_framed(x, y, train_idx, 0.0, seed=0)
    assert (none == train_idx).all()
