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
from .labels import CLASSES_7, EMOTIONS, emotion_index

REPO_ROOT = Path(__file__).resolve().parent.parent


def datasets_root() -> Path:
    """$FER_DATASETS, else ../shared/datasets beside the repository."""
    env = os.environ.get("FER_DATASETS")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "datasets"


def _parse_label(value: str) -> int:
    value = value.strip()
    if value.lstrip("-").isdigit():
        idx = int(value)
        if not 0 <= idx < len(CLASSES_7):
            raise ValueError(f"label {idx} out of range 0..{len(CLASSES_7) - 1}")
        return idx
    return emotion_index(value)


@dataclass(frozen=True)
class LabelledFolder:
    """Image paths and integer labels (index into CLASSES_7: the six emotions 0-5, neutral 6)."""

    root: Path
    paths: tuple[Path, ...]
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def class_counts(self) -> list[int]:
        return np.bincount(np.array(self.labels, dtype=np.int64), minlength=self.num_classes).tolist()

    @property
    def num_classes(self) -> int:
        """6, or 7 where a face is labelled neutral."""
        return len(CLASSES_7) if any(label == len(EMOTIONS) for label in self.labels) else len(EMOTIONS)


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
        for idx, name in enumerate(CLASSES_7):
            sub = next((d for d in root.iterdir() if d.is_dir() and d.name.lower() == name), None)
            if sub is None:
                continue
            for p in sorted(sub.rglob("*")):
                if p.is_file() and is_image_name(p.name):
                    paths.append(p)
                    labels.append(idx)
        if not paths:
            raise ValueError(
                f"{root} has no labels CSV and no class-named subfolders ({', '.join(CLASSES_7)})"
            )
    return LabelledFolder(root, tuple(paths), tuple(labels))


def cache_dir() -> Path:
    """Where decoded splits (load_uint8) and app-framed copies (fer_core.framing) are cached: FER_CACHE, else
    ~/.cache/fer_core."""
    return Path(os.environ.get("FER_CACHE", Path.home() / ".cache" / "fer_core"))


def _detector_crop(image: np.ndarray, size: int) -> tuple[np.ndarray, bool]:
    """`image` (a loosely cropped face) found and cropped as the app crops a photo's face (the detector's most
    confident face, fer_core.faces.crop_face), resized to `size`; the whole image where no face is found."""
    from .faces import crop_face, detect_faces
    from .preprocess import resize_face

    boxes = detect_faces(image, turns=False)
    if not boxes:
        return resize_face(image, size), False
    return resize_face(crop_face(image, boxes[0]).face, size), True  # the most confident face comes first


def _decode_chunk(paths: list[Path], size: int, crop: str) -> tuple[np.ndarray, int]:
    from .preprocess import resize_face

    import cv2

    cv2.setNumThreads(1)
    arr, found = np.empty((len(paths), size, size, 3), dtype=np.uint8), 0
    for i, p in enumerate(paths):
        img = read_image(p)
        if crop == "detector":
            arr[i], hit = _detector_crop(img, size)
            found += hit
        else:
            arr[i] = resize_face(img, size)
    return arr, found


CROPS = ("whole", "detector")  # how load_uint8 reads each image: all of it, or the app's detector crop of it


def load_uint8(folder: LabelledFolder, size: int = 64, *, cache: bool = True,
               crop: str = "whole", workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode a whole split once: uint8 (N, 3, size, size) and int64 labels (N,).

    `crop="whole"` reads each image as the face; `crop="detector"` finds the face in it and crops it as the app
    crops a face in a photo (images where no face is found are read whole): loosely framed in-the-wild faces then
    look like the app's crops, whatever their source's framing. Cached as .npy under FER_CACHE keyed by the file
    list, size and crop, so later runs start instantly; the detector crop runs on `workers` processes (0: one per
    CPU; spawned, so a calling script needs the `if __name__ == "__main__":` guard).
    """
    if crop not in CROPS:
        raise ValueError(f"unknown crop {crop!r}; choose from {', '.join(CROPS)}")
    key = hashlib.sha1(
        ("\n".join(str(p) for p in folder.paths) + f"|{size}" + ("" if crop == "whole" else f"|{crop}")).encode()
    ).hexdigest()[:16]
    cache_file = cache_dir() / f"{folder.root.name}-{key}.npy"
    if cache and cache_file.is_file():
        arr = np.load(cache_file)
    else:
        paths = list(folder.paths)
        workers = workers or os.cpu_count() or 1
        if crop == "whole" or workers == 1 or len(paths) < 200:
            arr, found = _decode_chunk(paths, size, crop)
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            chunks = [paths[k:k + 250] for k in range(0, len(paths), 250)]
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                done = list(pool.map(_decode_chunk, chunks, [size] * len(chunks), [crop] * len(chunks)))
            arr, found = np.concatenate([d[0] for d in done]), sum(d[1] for d in done)
        if crop == "detector":
            print(f"{folder.root}: the detector found a face in {found} of {len(paths)} images "
                  f"({100 * found / max(len(paths), 1):.1f}%; the rest are read whole)")
        if cache:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            # a temporary name, then an atomic rename: processes decoding the same split at once (torchrun) or
            # a run killed mid-write never leave a torn cache file
            tmp = cache_file.with_name(f"{cache_file.stem}.{os.getpid()}.tmp.npy")
            np.save(tmp, arr)
            os.replace(tmp, cache_file)
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


# training sets that are not a `<name>/train` folder: name -> (folder under the datasets root, labels CSV in it)
NAMED_SETS: dict[str, tuple[str, str]] = {
    "ferplus7": ("fer2013", "ferplus7_train_labels.csv"),  # every voted FER2013 training face, FER+ majority of 7
}
# the test split of each: name -> (folder, labels CSV); evaluation's "ferplus7" column
NAMED_TESTS: dict[str, tuple[str, str]] = {"ferplus7": ("fer2013", "ferplus7_test_labels.csv")}


def named_set(name: str) -> tuple[Path, Path] | None:
    """(folder, labels CSV) of a NAMED_SETS name, or None."""
    if name not in NAMED_SETS:
        return None
    folder, labels = NAMED_SETS[name]
    return datasets_root() / folder, datasets_root() / folder / labels


def inherited_split(folder: LabelledFolder, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices of a folder whose labels CSV names images in sub-folders (`train/x.jpg`,
    `ferplus_only/train/y.jpg`): a face whose sub-folder is itself a labelled split (`train/` with
    `train_labels.csv` beside it) keeps the side that folder's own seeded split gives it, so a model fine-tuned
    from one trained on `train/` is never validated on faces it trained on; the other faces are split by
    `stratified_split` on their labels here."""
    labels = np.array(folder.labels)
    subs = [p.parent for p in folder.paths]
    is_val = np.zeros(len(labels), dtype=bool)
    for sub in sorted(set(subs)):
        members = np.flatnonzero([s == sub for s in subs])
        own_csv = sub.parent / f"{sub.name}_labels.csv"
        if own_csv.is_file():
            own = load_labelled_folder(sub, own_csv)
            _, own_val = stratified_split(own.labels, val_fraction, seed)
            held = {own.paths[i].name for i in own_val}
            is_val[members] = [folder.paths[i].name in held for i in members]
        else:
            _, va = stratified_split(labels[members], val_fraction, seed)
            is_val[members[va]] = True
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def load_split_folder(root: str | os.PathLike, size: int, *, val_fraction: float, seed: int,
                      limit: int = 0, crop: str = "whole",
                      labels_csv: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """One training folder as train/train.py reads it: uint8 images, labels (the first `limit` only, when
    set) and its (train, val) indices. Where the folder is a dataset's `train/` with a `val/` beside it
    (affectnet-hq), that folder is the validation split and all of `train/` trains; with a `labels_csv` naming
    images in sub-folders (NAMED_SETS), `inherited_split`; otherwise a seeded stratified
    `val_fraction` of it is held out. train.py, quantize.py and duo.py all call this, so a checkpoint's validation
    split can be rebuilt exactly from its recorded arguments."""
    root = Path(root)
    folder = load_labelled_folder(root, labels_csv)
    x, y = load_uint8(folder, size, crop=crop)
    if limit:
        x, y = x[:limit], y[:limit]
    val_dir = root.parent / "val"
    if labels_csv is None and root.name == "train" and val_dir.is_dir() and (root.parent / "val_labels.csv").is_file():
        xv, yv = load_uint8(load_labelled_folder(val_dir), size, crop=crop)
        if limit:
            xv, yv = xv[:limit], yv[:limit]
        n = len(y)
        return torch.cat([x, xv]), torch.cat([y, yv]), np.arange(n), n + np.arange(len(yv))
    if labels_csv is not None:
        tr, va = inherited_split(folder, val_fraction, seed)
        if limit:
            tr, va = tr[tr < limit], va[va < limit]
        return x, y, tr, va
    tr, va = stratified_split(y, val_fraction, seed)
    return x, y, tr, va


FERPLUS_CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
                   "unknown", "NF")


FERPLUS_MODES = ("off", "drop", "agree", "soft")


def ferplus_votes(root: str | os.PathLike) -> dict[str, np.ndarray]:
    """FER+ crowd votes (ten per face, FERPLUS_CLASSES order) for the images of a FER2013 split folder, keyed by
    file name: read from `ferplus_votes.csv` beside the split (empty where there is none)."""
    root = Path(root)
    csv_path = root.parent / "ferplus_votes.csv"
    out: dict[str, np.ndarray] = {}
    if not csv_path.is_file():
        return out
    with open(csv_path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            split, _, name = row["image"].partition("/")
            if split == root.name:
                out[name] = np.array([int(row[c]) for c in FERPLUS_CLASSES], dtype=np.int64)
    return out


def ferplus_majority(votes: np.ndarray) -> int:
    """The FER+ majority among the six emotions as an EMOTIONS index, or -1 where the face's overall majority is
    neutral, contempt, unknown or not a face (a tie is broken towards those: the face is not clearly one of six)."""
    six = votes[1:7]
    if votes.sum() == 0 or six.max() <= max(votes[0], votes[7], votes[8], votes[9]):
        return -1
    return int(six.argmax())


def ferplus_filter(root: str | os.PathLike, idx: np.ndarray, mode: str, *, limit: int = 0) -> np.ndarray:
    """Training indices of a FER2013 folder with FER+ applied: "drop" keeps the faces whose FER+ majority is one of
    the six emotions (ferplus_majority; faces without votes are kept), "agree" only those whose FER+ majority is
    their FER2013 label, "soft" those with at least one vote among the six (they learn ferplus_targets), "off"
    keeps all. Labels are not changed, so the FER2013 benchmark keeps its original labels."""
    if mode == "off":
        return idx
    if mode not in FERPLUS_MODES:
        raise ValueError(f"unknown FER+ mode {mode!r}; choose from {', '.join(FERPLUS_MODES)}")
    folder = load_labelled_folder(root)
    votes = ferplus_votes(root)
    if not votes:
        return idx
    paths = folder.paths[:limit] if limit else folder.paths
    labels = folder.labels[:len(paths)]
    if mode == "soft":
        keep = np.array([p.name not in votes or votes[p.name][1:7].sum() > 0 for p in paths])
        return idx[keep[idx]]
    majority = np.array([ferplus_majority(votes[p.name]) if p.name in votes else -2 for p in paths])
    keep = (majority >= 0) | (majority == -2) if mode == "drop" else (majority == np.array(labels)) | (majority == -2)
    return idx[keep[idx]]


def ferplus_targets(root: str | os.PathLike, y: torch.Tensor, *, limit: int = 0) -> torch.Tensor:
    """Soft training targets (N × 6, EMOTIONS order) for the first len(y) images of a folder: where FER+ votes
    exist, each of the six emotions' share of all ten votes (restricted to the six and renormalised, then scaled
    by the share of votes that fell on the six, so a face most annotators called neutral or not a face weighs
    little: the loss of a row is its sum times the cross-entropy against the renormalised six); elsewhere the
    one-hot label."""
    targets = torch.nn.functional.one_hot(y.long(), len(EMOTIONS)).float()
    votes = ferplus_votes(root)
    if not votes:
        return targets
    folder = load_labelled_folder(root)
    paths = folder.paths[:limit] if limit else folder.paths
    for i, p in enumerate(paths[:len(y)]):
        v = votes.get(p.name)
        if v is not None and v.sum() > 0:
            targets[i] = torch.from_numpy(v[1:7] / v.sum()).float()
    return targets


def original_labels(folder: LabelledFolder) -> np.ndarray:
    """Each face's FER2013 label from its file name (`..._<emotion>.jpg`; `ferplus_only/` faces are the ones
    FER2013 called neutral), as a CLASSES_7 index: the label a ferplus7 face had before FER+ re-voted it."""
    out = np.empty(len(folder.paths), dtype=np.int64)
    for i, p in enumerate(folder.paths):
        token = p.stem.rsplit("_", 1)[-1].lower()
        if token in CLASSES_7:
            out[i] = CLASSES_7.index(token)
        elif "ferplus_only" in p.parts:
            out[i] = CLASSES_7.index("neutral")
        else:
            out[i] = folder.labels[i]
    return out


def blended_targets(y: torch.Tensor, original: np.ndarray, weight: float, num_classes: int) -> torch.Tensor:
    """Soft targets (N × num_classes): (1 - weight) · one-hot(y) + weight · one-hot(original). For a FER+ majority
    label `y` and the face's FER2013 label, a face both agree on learns its class alone; one they disagree on
    (FER2013 "fear", FER+ "neutral") learns mostly the majority and keeps its original emotion second, which is what
    the FER2013 benchmark (argmax over the six) reads."""
    one_hot = torch.nn.functional.one_hot(y.long(), num_classes).float()
    orig = torch.nn.functional.one_hot(torch.as_tensor(original[:len(y)]).long(), num_classes).float()
    return (1 - weight) * one_hot + weight * orig


def source_of_name(name: str) -> str:
    """A pooled folder's source from a file name's first token, digits dropped: `ffhq_12_neutral.jpg` -> ffhq,
    `image0042_anger.jpg` -> image (AffectNet), `webcam_7_happiness.jpg` -> webcam."""
    return "".join(ch for ch in name.split("_", 1)[0] if not ch.isdigit()).lower()


def oversample_rare(labels: torch.Tensor | np.ndarray, idx: np.ndarray, power: float, seed: int,
                    sources: np.ndarray | None = None) -> np.ndarray:
    """Class-balanced sampling by repetition: class c of `idx` appears (n_max / n_c) ** power times as
    often (0 = unchanged, 0.5 = square root, 1 = fully balanced); fractional repeats are a seeded
    random subset. With `sources` (one name per image), the strata are (source, class) pairs instead of classes:
    a pool where one source holds most of a class (a webcam collection's neutral faces) gets its other sources'
    faces of that class, and its own faces of the other classes, repeated up. Returns the indices (a superset of
    `idx`, sorted)."""
    idx = np.asarray(idx)
    if power <= 0 or len(idx) == 0:
        return idx
    lab = np.asarray(labels)[idx]
    if sources is not None:
        names = np.asarray(sources)[idx]
        _, lab = np.unique(np.char.add(np.char.add(names.astype(str), "|"), lab.astype(str)), return_inverse=True)
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
