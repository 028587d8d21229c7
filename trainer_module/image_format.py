"""Image file formats, known in one place: which formats the pipeline reads (their magic bytes, as
tf.io.decode_image tells them apart), and an image's width and height from its header, without
decoding it: the pixel budget's first line.

A few hundred KB of PNG or JPEG can declare 20000x20000 pixels (a decompression bomb): decoding
it allocates gigabytes. Ingestion and the prediction client read the header here, in pure Python,
and refuse an image over `max_image_pixels` before any decoder runs; the Transform graph (so
both serving signatures) repeats the check with TensorFlow ops (preprocessing.decode_image).

Plain Python, no TensorFlow: importing this module is cheap.
"""
import re
import struct
from typing import Optional, Tuple

from trainer_module import names

# The skip reason at ingestion and the error prefix in predictions and in the serving error.
TOO_MANY_PIXELS = "too_many_pixels"
# Positional "{}" fields, so that tf.strings.format fills the same text in the Transform graph:
# width, height, width x height, the budget.
OVER_BUDGET_TEMPLATE = "{}x{} = {} pixels > " + names.MAX_IMAGE_PIXELS_KEY + " = {}"

# The pixel budget's default (the max_image_pixels knob): width x height, read from the header.
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GIF_MAGICS = (b"GIF87a", b"GIF89a")
BMP_MAGIC = b"BM"
# (format, its magic bytes): every format the pipeline reads. Ingestion, the prediction client and
# the serving signature's error text all tell formats apart by this table.
FORMATS = (("jpeg", (JPEG_MAGIC,)), ("png", (PNG_MAGIC,)), ("gif", GIF_MAGICS), ("bmp", (BMP_MAGIC,)))
FORMAT_NAMES = tuple(name for name, _ in FORMATS)


def sniff_format(data: bytes) -> Optional[str]:
    """The format ("jpeg", "png", "gif", "bmp") from the magic bytes; None for any other bytes."""
    for name, magics in FORMATS:
        if data.startswith(magics):
            return name
    return None

# JPEG start-of-frame markers (SOF0..SOF15) carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC)
# share the range but are not frames.
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RST0..RST7 and SOI.
_JPEG_STANDALONE_MARKERS = frozenset([0x01, *range(0xD0, 0xD9)])
_JPEG_EOI, _JPEG_SOS = 0xD9, 0xDA
_BMP_CORE_HEADER_SIZE = 12  # OS/2 BITMAPCOREHEADER: 16-bit width and height


def image_dimensions(data: bytes) -> Optional[Tuple[int, int]]:
    """(width, height) from a JPEG, PNG, GIF or BMP header; None when the header cannot tell.

    None: another format, a header cut short, a malformed header, or a zero side (a JPEG whose
    height comes later in a DNL segment, a broken PNG). The decoder then gives its own error.
    """
    fmt = sniff_format(data)
    if fmt == "jpeg":
        dims = _jpeg_dimensions(data)
    elif fmt == "png":
        dims = _png_dimensions(data)
    elif fmt == "gif":
        dims = struct.unpack_from("<HH", data, 6) if len(data) >= 10 else None
    elif fmt == "bmp":
        dims = _bmp_dimensions(data)
    else:
        dims = None
    if dims is None or dims[0] <= 0 or dims[1] <= 0:
        return None
    return int(dims[0]), int(dims[1])


def over_budget(data: bytes, max_pixels: int) -> Optional[str]:
    """Why the image is over the pixel budget (OVER_BUDGET_TEMPLATE), or None when it is not.

    An image whose header cannot tell its size is not over the budget here: the decoder, guarded
    by the same check in the graph, decides.
    """
    dims = image_dimensions(data)
    if dims is None or dims[0] * dims[1] <= max_pixels:
        return None
    return over_budget_message(dims[0], dims[1], max_pixels)


def over_budget_message(width: int, height: int, max_pixels: int) -> str:
    """`20000x20000 = 400000000 pixels > max_image_pixels = 100000000`."""
    return OVER_BUDGET_TEMPLATE.format(width, height, width * height, max_pixels)


_OVER_BUDGET_IN_ERROR = re.compile(re.escape(TOO_MANY_PIXELS) + r": ([^\]'\n]*)")


def over_budget_in_error(message: str) -> Optional[str]:
    """The OVER_BUDGET_TEMPLATE text in a TensorFlow error raised by the graph's pixel-budget
    assertion (preprocessing.decode_image), or None when the error is another one."""
    match = _OVER_BUDGET_IN_ERROR.search(message)
    return match.group(1) if match else None


def _jpeg_dimensions(data: bytes) -> Optional[Tuple[int, int]]:
    """Walks the marker segments from SOI to the first SOFn, as libjpeg reads them.

    Segments are skipped by their length, so an EXIF thumbnail (a whole JPEG inside APP1) is never
    mistaken for the image; stray bytes before a marker are skipped, as libjpeg does (a warning
    there, so a file with them still decodes and must still be sized here).
    """
    pos = 2
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0:
            return None
        while pos < len(data) and data[pos] == 0xFF:  # a marker may be preceded by fill bytes
            pos += 1
        if pos >= len(data):
            return None
        marker = data[pos]
        pos += 1
        if marker == 0x00 or marker in _JPEG_STANDALONE_MARKERS:  # FF 00 is a stuffed byte, no marker
            continue
        if marker in (_JPEG_EOI, _JPEG_SOS) or pos + 2 > len(data):
            return None  # no frame header before the image data
        (length,) = struct.unpack_from(">H", data, pos)
        if marker in _JPEG_SOF_MARKERS:
            if length < 7 or pos + 7 > len(data):
                return None
            height, width = struct.unpack_from(">HH", data, pos + 3)  # after length and precision
            return width, height
        if length < 2:
            return None
        pos += length


def _png_dimensions(data: bytes) -> Optional[Tuple[int, int]]:
    """IHDR must be the first chunk: length 13, then width and height (big-endian)."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    return struct.unpack_from(">II", data, 16)


def _bmp_dimensions(data: bytes) -> Optional[Tuple[int, int]]:
    """Width and |height| of the DIB header (a negative height means rows stored top-down)."""
    if len(data) < 18:
        return None
    (header_size,) = struct.unpack_from("<I", data, 14)
    if header_size == _BMP_CORE_HEADER_SIZE:
        return struct.unpack_from("<HH", data, 18) if len(data) >= 22 else None
    if len(data) < 26:
        return None
    width, height = struct.unpack_from("<ii", data, 18)
    return width, abs(height)
