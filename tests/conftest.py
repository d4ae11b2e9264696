from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent

torch.set_num_threads(2)
os.environ["FER_WARM_UP"] = "0"  # the app's warm-up thread (ui.warm_up) would explain every throwaway model


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from fer_core.examples import astronaut as make

    return make()


@pytest.fixture(scope="session")
def close_up(astronaut) -> np.ndarray:
    """The astronaut's face cut to the central two thirds of its detected box, at 224 px: a close-up that cuts off
    forehead and chin (a "cut-off face")."""
    import cv2

    from fer_core.faces import detect_faces

    box = detect_faces(astronaut)[0]
    cx, cy, r = box.x + box.w // 2, box.y + box.h // 2, box.w // 3
    return cv2.resize(astronaut[cy - r:cy + r, cx - r:cx + r], (224, 224), interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory) -> Path:
    """An untrained default-architecture checkpoint (fast, deterministic)."""
    from fer_core.checkpoints import ModelSpec, save_checkpoint
    from fer_core.models import create_model

    torch.manual_seed(0)
    model = create_model("fernet").eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(model, ModelSpec(arch="fernet", temperature=1.3), path)
    return path


@pytest.fixture(scope="session")
def predictor(random_checkpoint):
    from fer_core.runtime import load_predictor

    return load_predictor(random_checkpoint)


def datasets_or_skip() -> Path:
    from fer_core.data import datasets_root

    root = datasets_root()
    if not (root / "raf-db" / "test").is_dir():
        pytest.skip(f"datasets not found at {root}")
    return root
