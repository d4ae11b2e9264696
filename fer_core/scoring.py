"""Batch scoring of files, folders and zip archives: one CSV row per face (or per bad file)."""
from __future__ import annotations

import os
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import cv2

from .errors import FerError
from .faces import FaceBox, FaceCrop
from .notes import face_notes
from .pipeline import find_faces
from .runtime import Predictor
from .io import display_name, is_image_name, read_image
from .labels import EMOTIONS
from .rows import BOX_COLUMNS, box_fields, prob_columns, prob_fields

NO_FACE = "no face found (for a photo that is already a tight face crop, use whole-image mode)"
WHOLE_FALLBACK = "no face found: the whole image scored"  # the note of score_items(whole_if_no_face=True)'s rows
MAX_MEMBER_BYTES = 64 * 1024 * 1024  # a zip member larger than this is refused (zip bombs)
MAX_MEMBERS = 20_000


@dataclass(frozen=True)
class ImageItem:
    """A named image source: either raw bytes or a path; or an error found while listing."""

    name: str
    data: bytes | Path | None
    error: str = ""


def iter_zip(path_or_bytes: str | os.PathLike | bytes, label: str) -> Iterator[ImageItem]:
    """Image members of a zip, read in memory (never extracted, so odd member paths are harmless)."""
    import io

    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, (bytes, bytearray)) else path_or_bytes
    try:
        zf = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, OSError) as exc:
        yield ImageItem(label, None, f"not a readable zip archive ({exc})")
        return
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        if len(infos) > MAX_MEMBERS:
            yield ImageItem(label, None, f"zip has {len(infos)} files; the limit is {MAX_MEMBERS}")
            return
        for info in infos:
            name = display_name(f"{label}/{info.filename}")
            base = info.filename.replace("\\", "/").rsplit("/", 1)[-1]
            if base.startswith(".") or "__MACOSX/" in info.filename:
                continue  # resource forks and hidden files are not the user's images
            if not is_image_name(base):
                yield ImageItem(name, None, "not an image file name (skipped)")
                continue
            if info.file_size > MAX_MEMBER_BYTES:
                yield ImageItem(name, None, f"member is {info.file_size / 1e6:.0f} MB uncompressed; too large")
                continue
            try:
                yield ImageItem(name, zf.read(info))
            except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, EOFError) as exc:
                yield ImageItem(name, None, f"cannot extract from the zip ({exc})")


def list_inputs(paths: Iterable[str | os.PathLike]) -> Iterator[ImageItem]:
    """The files behind `paths` in scoring order, nothing read yet: each image file and each .zip archive as an item
    whose data is its Path (folders recursive, sorted), and an error item for a path that is not there or a file
    that is not an image by its name, or a link to nothing. Names are display_name's (valid UTF-8, odd bytes
    escaped). Both engines list inputs with it."""
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(q for q in p.rglob("*") if q.is_file() or q.is_symlink()):
                if not f.exists():
                    yield ImageItem(display_name(f), None, "a link to a file that is not there (broken link)")
                elif f.is_dir():
                    continue
                elif f.suffix.lower() == ".zip" or is_image_name(f.name):
                    yield ImageItem(display_name(f), f)
                elif not f.name.startswith("."):
                    yield ImageItem(display_name(f), None, "not an image file name (skipped)")
        elif p.is_file():
            yield ImageItem(display_name(p), p)
        else:
            yield ImageItem(display_name(p), None, "no such file or folder")


def expand(item: ImageItem) -> Iterator[ImageItem]:
    """A listed item ready to score: a zip archive (a path or its bytes) becomes its image members, anything else
    stays as it is."""
    if item.error or not item.name.lower().endswith(".zip"):
        yield item
    else:
        yield from iter_zip(item.data, item.name)


def iter_inputs(paths: Iterable[str | os.PathLike]) -> Iterator[ImageItem]:
    """Expand files, folders (recursive, sorted) and .zip archives into image items."""
    for item in list_inputs(paths):
        yield from expand(item)


def parse_shard(text: str) -> tuple[int, int]:
    """"i/N" (0 <= i < N) -> (i, N); a ValueError that says what is expected otherwise."""
    i, sep, n = text.partition("/")
    try:
        k, count = int(i), int(n)
    except ValueError:
        k = count = -1
    if not sep or count < 1 or not 0 <= k < count:
        raise ValueError(f"--shard {text!r}: expected i/N with 0 <= i < N, such as 0/4")
    return k, count


def shard_of(items: Sequence[ImageItem], k: int, count: int) -> list[ImageItem]:
    """Shard k of `count` of the listed inputs: a contiguous block in input order, so shards 0..N-1 scored one after
    another (or their CSVs joined in that order, headers dropped) give the unsharded rows; blocks differ by at most
    one file."""
    n = len(items)
    return list(items[n * k // count: n * (k + 1) // count])


def iter_scores(
    items: Iterable[ImageItem],
    predictor: Predictor,
    *,
    whole_image: bool = False,
    detector: str = "auto",
    margin: float | None = None,
    batch_size: int = 64,
    progress: Callable[[int, str], None] | None = None,
    keep_faces: bool = False,
    whole_if_no_face: bool = False,
) -> Iterator[list[dict]]:
    """score_items' rows as they are finished, a list at a time (every file's rows in one list, in input order):
    what `score` streams to its CSV, so an interrupted run keeps every row finished so far. One row per face:
    filepath, face, x, y, w, h, face_score (the detector's confidence), one probability per class, prediction,
    confidence, crop_px (the face's side in the photo's pixels) and note (`face_notes`: "small face", "cut-off
    face", "turned photo", "side view", "unsure").

    A file that cannot be read, or holds no face, gets one row with `error` and no scores; the run
    goes on. With `whole_if_no_face`, a file with no face found is scored as one whole-image face instead, its
    note saying so (a folder of face crops, some too tight or odd for the detector). Faces are classified in
    batches across files. With `keep_faces`, rows carry the crop under the key "_face" (for thumbnails).
    """
    rows: list[dict] = []  # finished, or waiting for their batch's scores
    # (row, crop, scored whole because no face was found, the detector's box or None)
    pending: list[tuple[dict, FaceCrop, bool, FaceBox | None]] = []

    def flush() -> None:
        if not pending:
            return
        probs = predictor.predict([c.face for _, c, _, _ in pending], batch_size=batch_size)
        for (row, crop, fallback, box), p in zip(pending, probs):
            row.update(prob_fields(p, predictor.classes))
            row["crop_px"] = round(crop.source_side, 1)
            notes = face_notes(crop.source_side, row["confidence"], crop.widened, box)
            row["note"] = ", ".join([WHOLE_FALLBACK] * fallback + notes)
            if keep_faces:
                row["_face"] = crop.face
        pending.clear()

    for n, item in enumerate(items, start=1):
        if progress:
            progress(n, item.name)
        if not pending and rows:  # nothing waits for scores: hand over what is finished
            yield rows
            rows = []
        if item.error:
            rows.append({"filepath": item.name, "error": item.error})
            continue
        try:
            image = read_image(item.data)
            found = find_faces(image, whole_image=whole_image, detector=detector, margin=margin)
            fallback = not found and whole_if_no_face
            if fallback:
                found = find_faces(image, whole_image=True)
        except FerError as exc:  # unreadable, too large, ...
            rows.append({"filepath": item.name, "error": str(exc)})
            continue
        except (MemoryError, cv2.error, OSError, ValueError, RuntimeError) as exc:
            # a failure no check foresaw (a decoder's or OpenCV's limit): this file's error row, and the run goes on
            rows.append({"filepath": item.name, "error": f"cannot be analysed ({type(exc).__name__}: "
                                                          f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else ''})"})
            continue
        if not found:
            rows.append({"filepath": item.name, "error": NO_FACE})
            continue
        for i, (box, crop) in enumerate(found):
            row = {"filepath": item.name, "face": i + 1, "error": "", **box_fields(box)}
            rows.append(row)
            pending.append((row, crop, fallback, box))
        if len(pending) >= batch_size:
            flush()
    flush()
    if rows:
        yield rows


def score_items(items: Iterable[ImageItem], predictor: Predictor, **kwargs) -> list[dict]:
    """One row per face (iter_scores' rows, all at once): filepath, face, x, y, w, h, face_score, the six
    probabilities, prediction, confidence, crop_px and note; a bad file's row has `error`."""
    return [row for part in iter_scores(items, predictor, **kwargs) for row in part]


def score_columns(with_boxes: bool, classes: Sequence[str] = EMOTIONS) -> list[str]:
    """The CSV columns of `score`: a column per class of the model (a `neutral` column after `fear` for a model
    that has it)."""
    base = ["filepath"] + (["face", *BOX_COLUMNS] if with_boxes else [])
    return base + prob_columns(classes) + ["crop_px", "note", "error"]


def note_counts(rows: Iterable[dict]) -> Counter:
    """How many of score_items' faces carry each note."""
    return Counter(note for row in rows for note in str(row.get("note") or "").split(", ") if note)


def noted_faces(rows: Iterable[dict] | Counter) -> str:
    """How many of score_items' faces carry each note, most first ("2 side view, 1 small face"; "" when none),
    counted at the end of `score` (from its running note_counts) and above the Batch page's table."""
    counts = rows if isinstance(rows, Counter) else note_counts(rows)
    return ", ".join(f"{n} {note}" for note, n in counts.most_common())
