"""bench/robustness.py: every corruption is deterministic, keeps shape and dtype, and changes the face."""
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from robustness import CORRUPTIONS, corrupt_batch  # noqa: E402


def test_corruptions_are_seeded_and_change_the_image(astronaut):
    import cv2

    face = cv2.resize(astronaut[20:220, 150:350], (64, 64), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(np.stack([face, face[:, ::-1]]).copy()).permute(0, 3, 1, 2).contiguous()
    for name, fn in CORRUPTIONS.items():
        a, b = corrupt_batch(x, fn, seed=1), corrupt_batch(x, fn, seed=1)
        assert a.shape == x.shape and a.dtype == torch.uint8, name
        assert torch.equal(a, b), name
        changed = (a.int() - x.int()).abs().float().mean().item()
        assert (changed == 0) == (name == "clean"), (name, changed)
