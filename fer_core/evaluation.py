"""What evaluation, promotion and the benchmarks share: the app's logits on uint8 faces, seeded samples, batch-1
latency, and a checkpoint's own training folders re-split as train/train.py split them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .data import datasets_root, load_split_folder, split_seed
from .device import median_ms
from .training import predict_logits


def sample_indices(n: int, k: int, seed: int = 0) -> np.ndarray:
    if not k or k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def app_logits(predictor, x_u8: torch.Tensor) -> torch.Tensor:
    """Uncalibrated logits of uint8 faces through the same module (eager, frozen or int8), precision and flip
    averaging as the app's predictor."""
    spec = predictor.spec
    return predict_logits(predictor.prediction_model(), x_u8, spec=spec, tta_flip=spec.tta_flip,
                          device=predictor.device, bf16=predictor.precision == "bfloat16")


def latency_ms(predictor, repeats: int = 200) -> float:
    """Median ms per face at batch size 1 after warm-up (preprocessing included)."""
    face = np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    return median_ms(lambda f: predictor.predict([f]), face, repeats=repeats, warmup=10)


def training_splits(spec, sources: list[str] | None = None,
                    positions: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """All images of the spec's training folders as uint8 (N, 3, S, S), labels, and the train/val
    indices train/train.py used (its --val-fraction, --seed and --limit). A list passed as `sources`
    receives each validation index's folder name ("raf-db/train"), in val order; one passed as `positions` its
    index within that folder (its image in load_labelled_folder's order)."""
    xs, ys, tr_parts, va_parts, offset = [], [], [], [], 0
    for source in spec.train_data:  # "raf-db/train (9747 images, x2)", relative to the datasets root
        root = Path(source.rsplit(" (", 1)[0])
        crop = "detector" if ", detector crop" in source else "whole"
        root = root if root.is_absolute() else datasets_root() / root
        labels_csv = None
        if root.suffix == ".csv":  # a named set: its folder and labels CSV (fer2013/ferplus7_train_labels.csv)
            root, labels_csv = root.parent, root
        x, y, tr, va = load_split_folder(root, spec.input_size, val_fraction=spec.args.get("val_fraction", 0.1),
                                         seed=split_seed(spec.args), limit=spec.args.get("limit") or 0, crop=crop,
                                         labels_csv=labels_csv)
        xs.append(x)
        ys.append(y)
        tr_parts.append(tr + offset)
        va_parts.append(va + offset)
        offset += len(y)
        if sources is not None:
            sources.extend([str(labels_csv or root)] * len(va))
        if positions is not None:
            positions.extend(va.tolist())
    return torch.cat(xs), torch.cat(ys), np.concatenate(tr_parts), np.concatenate(va_parts)
