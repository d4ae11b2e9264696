import io

import numpy as np
import pytest
from PIL import Image

from fer_core.errors import ImageTooLarge, UnreadableImage
from fer_core.io import read_image


def _bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F", "1", "RGB"])
def test_every_mode_becomes_rgb(mode):
    img = Image.new(mode, (20, 10))
    out = read_image(img)
    assert out.shape == (10, 20, 3) and out.dtype == np.uint8


def test_sixteen_bit_is_rescaled_not_clipped():
    arr = np.linspace(0, 65535, 100 * 4, dtype=np.uint16).reshape(4, 100)
    out = read_image(Image.fromarray(arr))
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255
    assert len(np.unique(out[..., 0])) > 100


def test_rgba_composites_on_white():
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert (read_image(img) == 255).all()


def test_exif_orientation_applied():
    img = Image.new("RGB", (30, 10), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    data = _bytes(img, "JPEG", exif=exif)
    assert read_image(data).shape == (30, 10, 3)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_phone_formats_read_upright(astronaut, fmt):
    """iPhones save HEIC (pillow-heif decodes it), newer phones and browsers AVIF; an EXIF orientation turns
    the picture once, not twice."""
    from fer_core.io import is_heif, is_image_name

    tall = astronaut[:, :400]
    data = _bytes(Image.fromarray(tall), fmt, quality=90)
    out = read_image(data)
    assert out.shape == tall.shape and np.abs(out.astype(int) - tall).mean() < 6
    assert is_heif(data) == (fmt == "HEIF") and is_image_name(f"IMG_0001.{fmt.lower()}")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display (pillow-heif writes it as the HEIF's own rotation)
    turned = read_image(_bytes(Image.fromarray(tall), fmt, quality=90, exif=exif.tobytes()))
    assert turned.shape == (400, 512, 3) and np.abs(turned.astype(int) - np.rot90(tall, -1)).mean() < 6


def test_truncated_heic_rejected(astronaut):
    data = _bytes(Image.fromarray(astronaut), "HEIF", quality=80)
    for cut in (40, len(data) // 2, len(data) - 10):
        with pytest.raises(UnreadableImage):
            read_image(data[:cut])


def test_heic_without_a_decoder_says_so(astronaut, monkeypatch):
    import fer_core.io as fio

    data = _bytes(Image.fromarray(astronaut), "HEIF", quality=80)
    monkeypatch.setattr(fio, "HEIF_SUPPORTED", False)

    def no_heif(fp, *a, **k):
        raise fio.UnidentifiedImageError("cannot identify image file")

    monkeypatch.setattr(fio.Image, "open", no_heif)
    with pytest.raises(UnreadableImage, match="HEIC/HEIF photo"):
        read_image(data)


def test_paths_bytes_and_arrays(tmp_path):
    img = Image.new("RGB", (8, 6), (1, 2, 3))
    p = tmp_path / "a.png"
    img.save(p)
    assert read_image(p).shape == (6, 8, 3)
    assert read_image(str(p)).shape == (6, 8, 3)
    assert read_image(p.read_bytes()).shape == (6, 8, 3)
    assert read_image(np.zeros((5, 5), np.uint8)).shape == (5, 5, 3)


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n garbage"])
def test_non_images_rejected(data):
    with pytest.raises(UnreadableImage):
        read_image(data)


def test_truncated_jpeg_rejected():
    data = _bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)), "JPEG")
    with pytest.raises(UnreadableImage):
        read_image(data[: len(data) // 3])


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(UnreadableImage, match="not a file"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(UnreadableImage, match="empty"):
        read_image(tmp_path / "empty.jpg")
    with pytest.raises(UnreadableImage):
        read_image(12345)


def test_huge_image_refused_from_header():
    data = _bytes(Image.new("1", (12000, 10000)))  # 120 megapixels, a few kB on disk
    with pytest.raises(ImageTooLarge, match="120 megapixels; the limit is 110"):
        read_image(data)
    assert read_image(_bytes(Image.new("1", (8000, 6000)))).shape == (6000, 8000, 3)  # a 48 MP phone photo
    with pytest.raises(ImageTooLarge, match="megapixels"):
        read_image(_bytes(Image.new("1", (200, 100))), max_pixels=10_000)
