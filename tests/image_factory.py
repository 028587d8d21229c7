"""Helpers that tests use to make image files: valid, truncated and corrupt.

Plain functions (not fixtures) so any test module can import them. Everything is
deterministic for a given ``seed``. Import as ``from image_factory import ...`` (pytest puts
``tests/`` on ``sys.path`` because it has no ``__init__.py``) or ``from tests.image_factory ...``.
"""
from __future__ import annotations

import hashlib
import io
import os
import zlib
from typing import Iterable, Optional, Sequence, Union

import numpy as np
from PIL import Image

Color = Union[int, Sequence[int]]

SOI = b"\xff\xd8"  # JPEG start-of-image marker
EOI = b"\xff\xd9"  # JPEG end-of-image marker
SOS = b"\xff\xda"  # JPEG start-of-scan marker (entropy-coded data follows its header)


def _pattern(width: int, height: int, channels: int, seed: int) -> np.ndarray:
    """A random but smooth-ish test pattern (gradients + blocks + noise) as uint8 HxWxC."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.empty((height, width, channels))
    for c in range(channels):
        fx, fy = rng.uniform(0.5, 3.0, size=2)
        base[..., c] = 127.5 + 100 * np.sin(2 * np.pi * (fx * xs / max(1, width) + fy * ys / max(1, height))
                                            + rng.uniform(0, 2 * np.pi))
    # A few solid blocks give sharp edges, and noise gives the entropy coder real work.
    for _ in range(3):
        x0, y0 = int(rng.integers(0, max(1, width))), int(rng.integers(0, max(1, height)))
        base[y0:y0 + max(1, height // 3), x0:x0 + max(1, width // 3)] = rng.uniform(0, 255, size=channels)
    base += rng.normal(0, 12, size=base.shape)
    return np.clip(base, 0, 255).astype(np.uint8)


def _pil_image(width: int, height: int, mode: str, color: Optional[Color], seed: int) -> Image.Image:
    channels = {"L": 1, "RGB": 3, "RGBA": 4}.get(mode)
    if channels is None:
        raise ValueError(f"unsupported mode {mode!r}")
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if color is None:
        arr = _pattern(width, height, channels, seed)
        return Image.fromarray(arr[..., 0] if channels == 1 else arr)  # mode inferred: L/RGB/RGBA
    if isinstance(color, int):
        color = (color,) * channels
    color = tuple(int(c) for c in color)
    if mode == "L" and len(color) >= 3:  # allow an RGB colour for a greyscale image
        color = (int(round(0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2])),)
    if mode == "RGBA" and len(color) == 3:
        color = color + (255,)
    if len(color) != channels:
        raise ValueError(f"color {color} does not fit mode {mode!r}")
    return Image.new(mode, (width, height), color if channels > 1 else color[0])


def jpeg_bytes(width: int = 32, height: int = 32, color: Optional[Color] = None, seed: int = 0,
               mode: str = "RGB", quality: int = 90) -> bytes:
    """A real JPEG of ``width`` x ``height``: a solid ``color`` or, if None, a random pattern.

    ``mode`` is "RGB" (3 channels) or "L" (greyscale, 1 channel in the file).
    """
    if mode not in ("RGB", "L"):
        raise ValueError(f"JPEG mode must be 'RGB' or 'L', got {mode!r}")
    buf = io.BytesIO()
    _pil_image(width, height, mode, color, seed).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def png_bytes(width: int = 32, height: int = 32, mode: str = "RGB", seed: int = 0,
              color: Optional[Color] = None) -> bytes:
    """A real PNG ("RGB", "RGBA" or "L"); random pattern unless ``color`` is given."""
    buf = io.BytesIO()
    _pil_image(width, height, mode, color, seed).save(buf, format="PNG")
    return buf.getvalue()


def bmp_bytes(width: int = 32, height: int = 32, seed: int = 0) -> bytes:
    """A real 24-bit BMP with a random pattern."""
    buf = io.BytesIO()
    _pil_image(width, height, "RGB", None, seed).save(buf, format="BMP")
    return buf.getvalue()


def gif_bytes(width: int = 32, height: int = 32, frames: int = 1, seed: int = 0) -> bytes:
    """A real GIF; ``frames > 1`` makes it animated."""
    if frames < 1:
        raise ValueError("frames must be >= 1")
    imgs = [_pil_image(width, height, "RGB", None, seed + i).convert("P", palette=Image.Palette.ADAPTIVE)
            for i in range(frames)]
    buf = io.BytesIO()
    imgs[0].save(buf, format="GIF", save_all=frames > 1, append_images=imgs[1:], duration=100, loop=0)
    return buf.getvalue()


def _scan_data_start(data: bytes) -> int:
    """Offset of the first entropy-coded byte (just past the first SOS segment header)."""
    pos = data.find(SOS)
    if pos < 0:
        raise ValueError("no SOS marker: not a baseline JPEG")
    seg_len = int.from_bytes(data[pos + 2:pos + 4], "big")  # length includes its own 2 bytes
    return pos + 2 + seg_len


def truncated_jpeg_bytes(width: int = 64, height: int = 64, seed: int = 0, fraction: float = 0.5,
                         mode: str = "RGB") -> bytes:
    """A valid JPEG (random pattern) cut to about ``fraction`` of its length.

    Headers are always kept whole: the cut lands inside the entropy-coded scan data, so
    the file has a valid SOI/SOF/SOS but no EOI marker (like an interrupted download).
    """
    data = jpeg_bytes(width, height, None, seed, mode)
    start = _scan_data_start(data)
    cut = int(len(data) * fraction)
    cut = min(max(cut, start + 16), len(data) - 16)  # strictly inside the scan data
    if cut <= start:
        raise ValueError(f"image too small to truncate inside its scan data ({len(data)} bytes)")
    out = data[:cut]
    assert out.startswith(SOI) and not out.endswith(EOI)
    return out


def corrupt_jpeg_bytes(width: int = 64, height: int = 64, seed: int = 0, mode: str = "RGB") -> bytes:
    """A JPEG whose headers (SOI ... SOS) are intact but whose entropy data is garbage.

    The scan data is replaced, at the same length, by a reserved marker (0xFF 0x3F) followed by
    seeded random bytes that contain no 0xFF, then EOI. libjpeg parses the headers, then stops
    with a hard error ("Unsupported marker type 0x3f"), which TensorFlow surfaces as
    ``InvalidArgumentError``. (Plain zeros or an 0xFF 0x01 pattern would NOT do: libjpeg only
    warns about those and returns a flat grey image; random bytes fail only with high
    probability, when they happen to contain an invalid marker.)
    """
    data = jpeg_bytes(width, height, None, seed, mode)
    start = _scan_data_start(data)
    n = len(data) - start - len(EOI)
    rng = np.random.default_rng(seed)
    garbage = (b"\xff\x3f" + rng.integers(0, 255, size=max(0, n - 2), dtype=np.uint8).tobytes())[:n]
    out = data[:start] + garbage + EOI
    assert out.startswith(SOI) and len(out) == len(data)
    return out


def write_file(path: Union[str, os.PathLike], data: bytes) -> str:
    """Write ``data`` to ``path``, creating parent directories; return the path as a str."""
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def make_image_tree(root: Union[str, os.PathLike], layout: dict[str, dict[str, int]],
                    size: tuple[int, int] = (32, 32), ext: str = ".jpg") -> list[str]:
    """Write small valid JPEGs as ``root/<split>/<class>/<class>_<i:03d><ext>``.

    ``layout`` maps split -> class -> count, e.g. ``{"train": {"a": 3, "b": 3}, "val": {"a": 1}}``.
    Each image gets a distinct, deterministic pattern. ``size`` is (width, height). Returns the
    written paths (str), in layout order.
    """
    root = os.fspath(root)
    width, height = size
    paths: list[str] = []
    for split, classes in layout.items():
        for class_name, count in classes.items():
            for i in range(count):
                rel = os.path.join(split, class_name, f"{class_name}_{i:03d}{ext}")
                seed = zlib.crc32(rel.replace(os.sep, "/").encode("utf-8"))  # stable across runs
                paths.append(write_file(os.path.join(root, rel), jpeg_bytes(width, height, None, seed)))
    return paths


def files_under(root: Union[str, os.PathLike], suffixes: Iterable[str] = (".jpg", ".jpeg")) -> list[str]:
    """Sorted list of files under ``root`` whose name ends with one of ``suffixes`` (any case)."""
    suffixes = tuple(s.lower() for s in suffixes)
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(os.fspath(root)) for f in fs
                  if f.lower().endswith(suffixes))


def tree_digest(root: Union[str, os.PathLike]) -> dict[str, str]:
    """{relative path: sha256} of every file under ``root`` (empty when root does not exist)."""
    digest = {}
    for folder, _, files in os.walk(os.fspath(root)):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                digest[os.path.relpath(path, os.fspath(root))] = hashlib.sha256(f.read()).hexdigest()
    return digest
