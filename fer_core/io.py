"""Reading images from anything a user can hand us, and writing score tables."""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Iterable, Sequence, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageTooLarge, UnreadableImage

ImageSource = Union[str, os.PathLike, bytes, bytearray, Image.Image, np.ndarray]

# phones save 48-108 MP photos in their full-resolution modes (8064×6048 on an iPhone, 12000×9000 on a 108 MP
# Android): read them whole (a 48 MP JPEG: 0.4 s, ~1.3 GB peak with the analysis); larger ones are refused
# from the header before any pixel is decoded
MAX_PIXELS = 110_000_000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif", ".jif", ".pjpeg", ".pjp", ".png", ".bmp", ".dib", ".gif", ".webp",
                  ".tif", ".tiff", ".heic", ".heif", ".avif", ".ppm", ".pgm", ".pbm", ".pnm")
# OpenCV's resize and detector take sides up to SHRT_MAX; a longer side (a 60,000 × 100 panorama strip) is refused
MAX_SIDE = 32_767
# brands in an ISO-BMFF 'ftyp' box (bytes 4-12) that mark a HEIF photo (an iPhone's .heic)
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")

try:  # HEIC/HEIF photos (iPhones save these): pillow-heif adds the decoder to Pillow, orientation applied
    from pillow_heif import register_heif_opener

    register_heif_opener()
    HEIF_SUPPORTED = True
except ImportError:  # pragma: no cover - pillow-heif is in requirements.txt
    HEIF_SUPPORTED = False


def is_heif(head: bytes) -> bool:
    """Whether the first bytes of a file are those of a HEIF/HEIC photo."""
    return len(head) >= 12 and head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; alpha is composited on white, 16-bit/float is rescaled, not clipped."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        arr8 = ((arr - lo) * scale).round().clip(0, 255).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def read_image(src: ImageSource, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode `src` to an RGB uint8 array (H, W, 3), EXIF orientation applied.

    Accepts a path, raw bytes, a PIL image or an array ((H, W), (H, W, 3) or (H, W, 4) uint8).
    Raises UnreadableImage for anything that is not a decodable image and ImageTooLarge above
    `max_pixels` (checked from the header, before the pixels are decoded).
    """
    if isinstance(src, np.ndarray):
        return _array_to_rgb(src)
    if isinstance(src, Image.Image):
        img = src
    else:
        if isinstance(src, (bytes, bytearray)):
            if len(src) == 0:
                raise UnreadableImage("the file is empty (0 bytes)")
            fp: object = io.BytesIO(bytes(src))
            name = "the data"
        elif isinstance(src, (str, os.PathLike)):
            path = Path(src)
            if not path.is_file():
                raise UnreadableImage(f"{path} is not a file")
            if path.stat().st_size == 0:
                raise UnreadableImage(f"{path.name} is empty (0 bytes)")
            fp = path
            name = path.name
        else:
            raise UnreadableImage(f"cannot read an image from {type(src).__name__}")
        try:
            img = Image.open(fp)  # lazy: reads the header only
        except Image.DecompressionBombError as exc:
            raise ImageTooLarge(f"{name} is far too large to decode safely") from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            head = bytes(src[:12]) if isinstance(src, (bytes, bytearray)) else _head(path)
            if is_heif(head) and not HEIF_SUPPORTED:
                raise UnreadableImage(f"{name} is a HEIC/HEIF photo and this install has no HEIF decoder "
                                      "(pip install pillow-heif), or save it as JPEG") from exc
            raise UnreadableImage(f"{name} is not an image format we can read") from exc
    w, h = img.size
    if w * h > max_pixels:
        raise ImageTooLarge(
            f"image is {w}×{h} = {w * h / 1e6:.0f} megapixels; the limit is {max_pixels / 1e6:.0f}"
        )
    if w == 0 or h == 0:
        raise UnreadableImage("image has zero width or height")
    if max(w, h) > MAX_SIDE:
        raise ImageTooLarge(f"image is {w}×{h}: a side of {max(w, h)} px; the limit is {MAX_SIDE} px a side")
    try:
        img.load()
        img = ImageOps.exif_transpose(img)
        rgb = _to_rgb(img)
        return np.array(rgb, dtype=np.uint8)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge("image is far too large to decode safely") from exc
    except (OSError, SyntaxError, ValueError, TypeError) as exc:
        raise UnreadableImage(f"image data is corrupt or truncated ({exc})") from exc


def display_name(path: str | os.PathLike) -> str:
    """A path as text that is always valid UTF-8: bytes of a file name that are not UTF-8 (an old disk's or zip's
    Latin-1 names, which Python keeps as surrogates) are written as backslash escapes (`bad\\xffname.jpg`), so a
    CSV stays valid and the original name can be recovered (`os.fsencode` of the unescaped text)."""
    text = os.fspath(path)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(12)


def _array_to_rgb(arr: np.ndarray) -> np.ndarray:
    if arr.dtype != np.uint8:
        raise UnreadableImage(f"arrays must be uint8, got {arr.dtype}")
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim == 3 and arr.shape[2] == 3:
        return np.ascontiguousarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 4:
        return _array_to_rgb_via_pil(arr)
    raise UnreadableImage(f"array of shape {arr.shape} is not an image")


def _array_to_rgb_via_pil(arr: np.ndarray) -> np.ndarray:
    return np.array(_to_rgb(Image.fromarray(arr, mode="RGBA")), dtype=np.uint8)


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def write_csv(path: str | os.PathLike, rows: Iterable[dict], columns: Sequence[str]) -> None:
    """Write dict rows with a fixed column order; missing keys become empty cells."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)


def prepare_output(path: str | os.PathLike, *, folder: bool = False) -> Path:
    """Check an output path before any work is done, so a long run never fails at its end: its folder is created
    (with `folder`, the path itself is one), and a folder where a file is expected, a file where a folder is, or a
    place that cannot be written raise OutputError with one line saying which."""
    from .errors import OutputError

    p = Path(path)
    where = p if folder else p.parent
    try:
        name_max = os.pathconf(where if where.is_dir() else Path.cwd(), "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    long = next((part for part in p.parts if len(os.fsencode(part)) > name_max), None)
    if long is not None:
        raise OutputError(f"the name {long[:40]}... is {len(os.fsencode(long))} bytes; the file system allows {name_max}")
    if not folder and p.is_dir():
        raise OutputError(f"{p} is a folder; give a file name (for example {p / 'out.csv'})")
    if folder and p.exists() and not p.is_dir():
        raise OutputError(f"{p} is a file; give a folder for the output")
    try:
        where.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"cannot create the folder {where}: a file of that name is in the way") from None
    except OSError as exc:
        raise OutputError(f"cannot create the folder {where}: {exc.strerror or exc}") from None
    if not os.access(where, os.W_OK | os.X_OK) or (p.exists() and not folder and not os.access(p, os.W_OK)):
        raise OutputError(f"{p if p.exists() else where} is not writable")
    return p


class CsvSink:
    """A CSV written as rows arrive: the header first, then each `write` of rows flushed to disk at once, so a run
    that is interrupted leaves a valid file with every row written so far. With `append`, rows go after those of
    an existing file with the same header (`score --resume`)."""

    def __init__(self, path: str | os.PathLike, columns: Sequence[str], *, append: bool = False) -> None:
        self.path = Path(path)
        new = not (append and self.path.is_file() and self.path.stat().st_size > 0)
        self._fh = open(self.path, "w" if new else "a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._fh, fieldnames=list(columns), extrasaction="ignore")
        if new:
            self._writer.writeheader()
            self._fh.flush()
        self.rows, self._owned = 0, True

    @classmethod
    def to_stream(cls, stream, columns: Sequence[str]) -> "CsvSink":
        """A sink onto an open text stream (standard output), header first; closing it leaves the stream open."""
        sink = cls.__new__(cls)
        sink.path, sink._fh, sink.rows, sink._owned = None, stream, 0, False
        sink._writer = csv.DictWriter(stream, fieldnames=list(columns), extrasaction="ignore")
        sink._writer.writeheader()
        stream.flush()
        return sink

    def write(self, rows: Iterable[dict]) -> None:
        for row in rows:
            self._writer.writerow(row)
            self.rows += 1
        self._fh.flush()

    def close(self) -> None:
        if self._owned:
            self._fh.close()

    def __enter__(self) -> "CsvSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def resume_csv(path: str | os.PathLike, columns: Sequence[str], inputs: set[str] | None = None) -> tuple[set[str], str | None]:
    """What an interrupted `score -o path` finished, for `--resume`: (the `filepath`s of its rows to skip, the file
    whose rows were removed to score it again or None). Every row stays, except a last line cut off mid-write and
    the rows of the last file in it when that file is among `inputs` (it may have more faces to come; a file that is
    not being scored again keeps its rows). Raises OutputError where the file's header is not `columns`."""
    from .errors import OutputError

    p = Path(path)
    if not p.is_file() or p.stat().st_size == 0:
        return set(), None
    data = p.read_bytes()
    text = data[:data.rfind(b"\n") + 1].decode("utf-8", errors="replace")  # a partial last line dropped
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows or rows[0] != list(columns):
        raise OutputError(f"{p} was not written by this command with these options (its columns differ); "
                          "give another --output or leave out --resume")
    done = [r[0] for r in rows[1:] if r]
    last = done[-1] if done else None
    redo = last if last is not None and (inputs is None or last in inputs) else None
    kept = [rows[0]] + [r for r in rows[1:] if r and r[0] != redo]  # a file's rows are written together, last
    buf = io.StringIO()
    csv.writer(buf).writerows(kept)
    if buf.getvalue().encode("utf-8") != data:
        with open(p, "w", newline="", encoding="utf-8") as fh:
            fh.write(buf.getvalue())
    return {f for f in done if f != redo}, redo
