"""trainer_module/image_format.py: image sizes from headers (no decoding, no TensorFlow)."""
import io
import os
import struct
import subprocess
import sys
import zlib

import pytest
from PIL import Image

import image_factory
from trainer_module import image_format
from trainer_module.image_format import image_dimensions, over_budget, over_budget_in_error

SOI = b"\xff\xd8"


def _segment(marker: int, payload: bytes) -> bytes:
    """A JPEG marker segment: FF, marker, big-endian length (itself included), payload."""
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _sof(width: int, height: int, marker: int = 0xC0) -> bytes:
    """A start-of-frame segment: precision 8, height, width, 3 components."""
    return _segment(marker, struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01")


def _with_sof_size(jpeg: bytes, width: int, height: int) -> bytes:
    """A real JPEG whose SOF0 declares another size (the entropy data stays the small image's)."""
    at = jpeg.index(b"\xff\xc0") + 5  # marker, length, precision
    return jpeg[:at] + struct.pack(">HH", height, width) + jpeg[at + 4:]


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_header(width: int, height: int) -> bytes:
    """Signature, IHDR (8-bit RGB), a one-byte IDAT and IEND: a header that declares any size."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (image_format.PNG_MAGIC + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\0")) + _png_chunk(b"IEND", b""))


def _pil_bytes(width: int, height: int, fmt: str, mode: str = "RGB", **save) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (width, height), 128 if mode in ("L", "P") else (200, 40, 90)[:len(mode)]).save(
        buf, format=fmt, **save)
    return buf.getvalue()


ODD_SIZES = [(1, 1), (7, 301), (301, 7), (33, 20), (1023, 3), (150, 150)]


@pytest.mark.parametrize("width,height", ODD_SIZES)
@pytest.mark.parametrize("encode", [
    lambda w, h: image_factory.jpeg_bytes(w, h),
    lambda w, h: image_factory.jpeg_bytes(w, h, mode="L"),
    lambda w, h: _pil_bytes(w, h, "JPEG", progressive=True),
    lambda w, h: _pil_bytes(w, h, "JPEG", subsampling=0, quality=100),
    lambda w, h: image_factory.png_bytes(w, h),
    lambda w, h: image_factory.png_bytes(w, h, mode="RGBA"),
    lambda w, h: _pil_bytes(w, h, "PNG", mode="P"),
    lambda w, h: image_factory.gif_bytes(w, h),
    lambda w, h: image_factory.gif_bytes(w, h, frames=3),
    lambda w, h: image_factory.bmp_bytes(w, h),
    lambda w, h: _pil_bytes(w, h, "BMP", mode="L"),
], ids=["jpeg", "jpeg_gray", "jpeg_progressive", "jpeg_444", "png", "png_rgba", "png_palette", "gif",
        "gif_animated", "bmp", "bmp_gray"])
def test_real_images_of_odd_sizes(encode, width, height):
    data = encode(width, height)
    assert Image.open(io.BytesIO(data)).size == (width, height)  # the encoder made what was asked
    assert image_dimensions(data) == (width, height)


def test_progressive_jpeg_has_its_size_in_sof2():
    data = _pil_bytes(45, 17, "JPEG", progressive=True)
    assert b"\xff\xc2" in data and b"\xff\xc0" not in data
    assert image_dimensions(data) == (45, 17)


def test_exif_thumbnail_before_the_frame_is_not_the_image():
    """APP1 holds a whole JPEG (the thumbnail, with its own SOF0): skipped by its length."""
    thumbnail = image_factory.jpeg_bytes(160, 120)
    main = image_factory.jpeg_bytes(40, 30)
    data = main[:2] + _segment(0xE1, b"Exif\0\0" + thumbnail) + main[2:]
    assert data.index(b"\xff\xc0") < data.rindex(b"\xff\xc0")  # the thumbnail's SOF comes first
    assert Image.open(io.BytesIO(data)).size == (40, 30)
    assert image_dimensions(data) == (40, 30)


@pytest.mark.parametrize("sof_marker", [0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC7, 0xC9, 0xCB, 0xCD, 0xCF])
def test_every_frame_marker_gives_the_size(sof_marker):
    assert image_dimensions(SOI + _sof(641, 479, sof_marker)) == (641, 479)


def test_tables_fill_bytes_and_standalone_markers_before_the_frame():
    """DHT (C4) and DAC (CC) sit in the SOF range but are no frames; 0xFF fill bytes may precede
    a marker; RSTn and TEM have no length field."""
    data = (SOI + _segment(0xE0, b"JFIF\0\1\1\0\0\1\0\1\0\0") + b"\xff\xff\xff"
            + _segment(0xC4, b"\x00" + b"\x01" * 16 + b"\x05" * 16) + _segment(0xCC, b"\x00\x11")
            + b"\xff\xd0\xff\x01" + _segment(0xDB, b"\x00" + b"\x10" * 64) + _sof(1920, 1080, 0xC1))
    assert image_dimensions(data) == (1920, 1080)


def test_stray_bytes_before_a_marker_are_skipped_as_libjpeg_does():
    """libjpeg only warns about them ("extraneous bytes before marker") and decodes the image."""
    main = image_factory.jpeg_bytes(40, 30)
    end_of_app0 = 4 + struct.unpack_from(">H", main, 4)[0]
    data = main[:end_of_app0] + b"\x00\x12junk\xff\x00" + main[end_of_app0:]
    assert Image.open(io.BytesIO(data)).size == (40, 30)
    assert image_dimensions(data) == (40, 30)


def test_jpeg_bomb_header_is_read():
    data = _with_sof_size(image_factory.jpeg_bytes(16, 16), 20000, 20000)
    assert image_dimensions(data) == (20000, 20000)


@pytest.mark.parametrize("data", [
    SOI,  # nothing after the start of image
    SOI + b"\xff",  # a marker cut short
    SOI + b"\xff\xc0\x00",  # a length cut short
    SOI + _sof(20, 10)[:8],  # a frame header cut before its width
    SOI + _segment(0xE0, b"JFIF\0" * 4)[:10],  # cut inside a segment, no frame yet
    SOI + _segment(0xDA, b"\x01\x01\x00\x00\x3f\x00") + b"\x00" * 10,  # scan data before any frame
    SOI + b"\xff\xd9",  # end of image before any frame
    SOI + b"\x00\x00\x00",  # no marker at all
    SOI + b"\xff\xe0\x00\x01",  # a segment length below its own 2 bytes
    SOI + _sof(20, 0),  # height 0: given later by a DNL segment, the size is unknown here
], ids=["soi_only", "marker_cut", "length_cut", "sof_cut", "segment_cut", "sos_first", "eoi_first",
        "no_marker", "bad_length", "dnl_height"])
def test_jpeg_headers_that_cannot_tell(data):
    assert image_dimensions(data) is None


def test_truncated_real_jpeg_still_has_its_header():
    assert image_dimensions(image_factory.truncated_jpeg_bytes(64, 48)) == (64, 48)
    assert image_dimensions(image_factory.corrupt_jpeg_bytes(31, 17)) == (31, 17)


def test_png_header():
    assert image_dimensions(_png_header(20000, 20000)) == (20000, 20000)
    assert image_dimensions(_png_header(2 ** 31 - 1, 3)) == (2 ** 31 - 1, 3)
    assert Image.open(io.BytesIO(_png_header(37, 5))).size == (37, 5)  # a well-formed header
    assert image_dimensions(_png_header(20000, 20000)[:23]) is None  # cut inside the height
    assert image_dimensions(_png_header(0, 5)) is None
    other_first = image_format.PNG_MAGIC + _png_chunk(b"tEXt", b"a\0b") + _png_header(5, 5)[8:]
    assert image_dimensions(other_first) is None  # IHDR must come first


def test_gif_header():
    screen = struct.pack("<HH", 60000, 50000) + b"\x00\x00\x00"
    assert image_dimensions(b"GIF89a" + screen) == (60000, 50000)
    assert image_dimensions(b"GIF87a" + screen) == (60000, 50000)
    assert image_dimensions(b"GIF89a" + screen[:3]) is None
    assert image_dimensions(b"GIF88a" + screen) is None  # no such version


def test_bmp_header():
    real = image_factory.bmp_bytes(13, 9)
    top_down = real[:22] + struct.pack("<i", -9) + real[26:]  # rows stored top-down
    assert image_dimensions(top_down) == (13, 9)
    bomb = real[:18] + struct.pack("<ii", 20000, -20000) + real[26:]
    assert image_dimensions(bomb) == (20000, 20000)
    core = b"BM" + b"\0" * 12 + struct.pack("<IHHHH", 12, 300, 200, 1, 24)  # OS/2 16-bit sizes
    assert image_dimensions(core) == (300, 200)
    assert image_dimensions(real[:25]) is None
    assert image_dimensions(real[:18] + struct.pack("<ii", -13, 9) + real[26:]) is None


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"RIFF\x10\0\0\0WEBPVP8 ", b"%PDF-1.4",
                                  b"\xff\xd8", b"\x89PNG\r\n"])
def test_other_bytes_cannot_tell(data):
    assert image_dimensions(data) is None


def test_over_budget_is_exact_at_the_boundary():
    data = image_factory.png_bytes(37, 21)
    assert over_budget(data, 777) is None  # 37 x 21 = 777: within
    assert over_budget(data, 776) == "37x21 = 777 pixels > max_image_pixels = 776"
    assert over_budget(_png_header(20000, 20000), 100_000_000) == \
        "20000x20000 = 400000000 pixels > max_image_pixels = 100000000"
    assert over_budget(b"no header", 1) is None  # unknown size: the decoder decides


def test_over_budget_text_is_found_in_tensorflow_errors():
    text = "too_many_pixels: 20x20 = 400 pixels > max_image_pixels = 100"
    graph_error = (f"{{{{function_node __inference_serve_9}}}} assertion failed: [{text}]\n"
                   "\t [[{{node Assert}}]]")
    eager_error = f"Expected 'tf.Tensor(False, shape=(), dtype=bool)' to be true. Summarized data: b'{text}'"
    for message in (graph_error, eager_error):
        assert over_budget_in_error(message) == text[len("too_many_pixels: "):]
    assert over_budget_in_error("jpeg::Uncompress failed. Invalid JPEG data or crop window") is None


def test_importing_it_loads_no_tensorflow():
    """Ingestion and the prediction client read headers without paying for TensorFlow."""
    code = "import sys, trainer_module.image_format; print(sorted(m for m in sys.modules if 'tensorflow' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.strip() == "[]"
