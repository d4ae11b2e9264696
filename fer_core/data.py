"""Labelled-folder datasets: a folder of images + an `image,label` CSV, or class-named subfolders."""
from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .io import is_image_name, read_image
from .labels import EMOTIONS, emotion_index

REPO_ROOT = Path(__file__).resolve().parent.parent


def datasets_root() -> Path:
    """$FER_DATASETS, else ../shared/datasets beside the repository."""
    env = os.environ.get("FER_DATASETS")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "datasets"


def _parse_label(value: str) -> int:
    value = value.strip()
    if value.lstrip("-").isdigit():
        idx = int(value)
        if not 0 <= idx < len(EMOTIONS):
            raise ValueError(f"label {idx} out of range 0..{len(EMOTIONS) - 1}")
        return idx
    return emotion_index(value)


@dataclass(frozen=True)
class LabelledFolder:
    """Image paths and integer labels (index into EMOTIONS)."""

    root: Path
    paths: tuple[Path, ...]
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def class_counts(self) -> list[int]:
        return np.bincount(np.array(self.labels, dtype=np.int64), minlength=len(EMOTIONS)).tolist()


def load_labelled_folder(root: str | os.PathLike, labels_csv: str | os.PathLike | None = None) -> LabelledFolder:
    """Read a split. `root` is a folder of images with `<root>_labels.csv` beside it (or `labels_csv`,
    or a `labels.csv` inside it); or, with no CSV, a folder of class-named subfolders."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    candidates = [Path(labels_csv)] if labels_csv else [
        root.parent / f"{root.name}_labels.csv", root / "labels.csv", root / f"{root.name}_labels.csv"
    ]
    csv_path = next((c for c in candidates if c.is_file()), None)
    paths: list[Path] = []
    labels: list[int] = []
    if csv_path is not None:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"image", "label"} <= set(reader.fieldnames):
                raise ValueError(f"{csv_path} must have the columns image,label")
            for line, row in enumerate(reader, start=2):
                try:
                    labels.append(_parse_label(row["label"]))
                except ValueError as exc:
                    raise ValueError(f"{csv_path}:{line}: {exc}") from exc
                paths.append(root / row["image"])
    else:
        for idx, name in enumerate(EMOTIONS):
            sub = next((d for d in root.iterdir() if d.is_dir() and d.name.lower() == name), None)
            if sub is None:
                continue
            for p in sorted(sub.rglob("*")):
                if p.is_file() and is_image_name(p.name):
                    paths.append(p)
                    labels.append(idx)
        if not paths:
            raise ValueError(
                f"{root} has no labels CSV and no class-named subfolders ({', '.join(EMOTIONS)})"
            )
    return LabelledFolder(root, tuple(paths), tuple(labels))


def cache_dir() -> Path:
    """Where decoded splits (load_uint8) and app-framed copies (fer_core.framing) are cached: FER_CACHE, else
    ~/.cache/fer_core."""
    return Path(os.environ.get("FER_CACHE", Path.home() / ".cache" / "fer_core"))


def load_uint8(folder: LabelledFolder, size: int = 64, *, cache: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode a whole split once: uint8 (N, 3, size, size) and int64 labels (N,).

    Cached as .npy under ~/.cache/fer_core keyed by the file list, so later runs start instantly.
    """
    from .preprocess import resize_face

    key = hashlib.sha1(
        ("\n".join(str(p) for p in folder.paths) + f"|{size}").encode()
    ).hexdigest()[:16]
    cache_file = cache_dir() / f"{folder.root.name}-{key}.npy"
    if cache and cache_file.is_file():
        arr = np.load(cache_file)
    else:
        arr = np.empty((len(folder), size, size, 3), dtype=np.uint8)
        for i, p in enumerate(folder.paths):
            arr[i] = resize_face(read_image(p), size)
        if cache:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            np.save(cache_file, arr)
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor(folder.labels, dtype=torch.int64)


def split_seed(args: dict) -> int:
    """The seed of a run's train/validation split, from its recorded arguments: `split_seed` when the run
    set one (so runs with different init seeds can share a validation split), else `seed`."""
    value = args.get("split_seed")
    return int(args.get("seed", 0) if value is None else value)


def stratified_split(labels: torch.Tensor | np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded per-class split of indices into (train, val); every class keeps >=1 val sample."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_val = max(1, int(round(len(idx) * val_fraction))) if val_fraction > 0 else 0
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


def load_split_folder(root: str | os.PathLike, size: int, *, val_fraction: float, seed: int,
                      limit: int = 0) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """One training folder as train/train.py reads it: uint8 images, labels (the first `limit` only, when
    set) and its seeded stratified (train, val) indices. train.py, quantize.py and duo.py all call this,
    so a checkpoint's validation split can be rebuilt exactly from its recorded arguments."""
    x, y = load_uint8(load_labelled_folder(root), size)
    if limit:
        x, y = x[:limit], y[:limit]
    tr, va = stratified_split(y, val_fraction, seed)
    return x, y, tr, va


def oversample_rare(labels: torch.Tensor | np.ndarray, idx: np.ndarray, power: float, seed: int) -> np.ndarray:
    """Class-balanced sampling by repetition: class c of `idx` appears (n_max / n_c) ** power times as
    often (0 = unchanged, 0.5 = square root, 1 = fully balanced); fractional repeats are a seeded
    random subset. Returns the indices (a superset of `idx`, sorted)."""
    idx = np.asarray(idx)
    if power <= 0 or len(idx) == 0:
        return idx
    lab = np.asarray(labels)[idx]
    counts = np.bincount(lab)
    n_max = counts.max()
    rng = np.random.default_rng(seed)
    parts = []
    for c in np.flatnonzero(counts):
        members = idx[lab == c]
        factor = (n_max / counts[c]) ** power
        whole, frac = int(factor), factor - int(factor)
        parts.append(np.tile(members, whole))
        parts.append(rng.choice(members, int(round(frac * len(members))), replace=False))
    return np.sort(np.concatenate(parts))
