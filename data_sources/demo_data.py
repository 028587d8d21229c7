"""The embedded demo dataset: six synthetic scene classes named like the Intel scenes.

With no data configured the pipeline trains on this instead of the real Intel Image
Classification set. Every image is a real JPEG drawn with numpy + PIL; the classes differ in
colour *and* in structure (window grids, vertical trunks, jagged ice, triangular peaks,
horizontal waves, converging road lines), and each image gets its own random layout, scale,
hue/brightness jitter and pixel noise, so a small CNN trained from scratch for a couple of
epochs has something real (but easy) to learn.

This module deliberately imports only numpy and PIL so that importing it stays fast.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

from common.dataset import INTEL_CLASS_NAMES  # the demo mimics the Intel scenes

TRAIN_SPLIT = "train"
EVAL_SPLIT = "val"
SPLITS: tuple[str, ...] = (TRAIN_SPLIT, EVAL_SPLIT)
MANIFEST_NAME = "DEMO_DATASET.json"
JPEG_QUALITY = 90

# Bump whenever the drawing code changes what gets written, so a cached demo dataset made by an
# older generator is not silently reused as if it were the current one.
GENERATOR_VERSION = 1

# Drawing happens at this multiple of the output size and is then downsampled, which
# anti-aliases the shapes (ImageDraw itself does not) and makes thin lines survive resizing.
_SUPERSAMPLE = 2

_Color = tuple[int, int, int]


# ----------------------------------------------------------------------------- colour helpers
def _jitter(rng: np.random.Generator, rgb: _Color, amount: float = 14.0) -> _Color:
    """Return ``rgb`` with Gaussian jitter, clipped to 0..255.

    Mostly a shared brightness shift plus a little per-channel tint: fully independent channel
    noise would turn greys and pale skies green or purple and blur the classes' colour families.
    """
    out = (np.asarray(rgb, dtype=np.float64) + rng.normal(0.0, amount)
           + rng.normal(0.0, amount * 0.35, size=3))
    return tuple(int(v) for v in np.clip(out, 0, 255))  # type: ignore[return-value]


def _mix(a: _Color, b: _Color, t: float) -> _Color:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))  # type: ignore[return-value]


def _vertical_gradient(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int],
                       top: _Color, bottom: _Color) -> None:
    """Fill ``box`` (x0, y0, x1, y1) with a top-to-bottom linear gradient, one row at a time."""
    x0, y0, x1, y1 = box
    span = max(1, y1 - y0)
    for y in range(y0, y1):
        draw.line([(x0, y), (x1, y)], fill=_mix(top, bottom, (y - y0) / span))


# ----------------------------------------------------------------------------- class painters
# Each painter draws on a square RGB canvas of side ``s`` (already supersampled) in place.

def _paint_buildings(img: Image.Image, rng: np.random.Generator, s: int) -> None:
    draw = ImageDraw.Draw(img)
    _vertical_gradient(draw, (0, 0, s, s), _jitter(rng, (165, 185, 210)), _jitter(rng, (215, 220, 225)))
    ground = int(s * rng.uniform(0.85, 1.0))
    palette = [(125, 125, 130), (145, 105, 75), (180, 160, 130), (90, 90, 100), (160, 90, 70)]
    # Enough, tall enough buildings that facades (not sky) fill most of the frame.
    n = int(rng.integers(4, 8))
    for _ in range(n):
        w = int(s * rng.uniform(0.18, 0.38))
        h = int(s * rng.uniform(0.5, 0.95))
        x0 = int(rng.uniform(-0.1, 0.95) * s) - w // 2
        top = ground - h
        body = _jitter(rng, palette[int(rng.integers(len(palette)))], 12)
        draw.rectangle([x0, top, x0 + w, s], fill=body)
        # The regular window grid is the class's signature texture.
        pitch = max(6, int(s * rng.uniform(0.045, 0.075)))
        win = max(2, int(pitch * rng.uniform(0.4, 0.6)))
        dark, lit = _jitter(rng, (45, 55, 70), 8), _jitter(rng, (225, 205, 130), 10)
        for wy in range(top + pitch // 2, ground - pitch, pitch):
            for wx in range(x0 + pitch // 2, x0 + w - win - 1, pitch):
                draw.rectangle([wx, wy, wx + win, wy + win], fill=lit if rng.random() < 0.25 else dark)
    if ground < s:
        draw.rectangle([0, ground, s, s], fill=_jitter(rng, (95, 95, 95), 10))


def _paint_forest(img: Image.Image, rng: np.random.Generator, s: int) -> None:
    draw = ImageDraw.Draw(img)
    _vertical_gradient(draw, (0, 0, s, s), _jitter(rng, (45, 85, 40)), _jitter(rng, (25, 50, 20)))

    def trunks(count: int) -> None:
        for _ in range(count):
            w = max(2, int(s * rng.uniform(0.02, 0.06)))
            x = int(rng.uniform(0, s))
            lean = int(s * rng.uniform(-0.04, 0.04))
            draw.polygon([(x, -1), (x + w, -1), (x + w + lean, s), (x + lean, s)],
                         fill=_jitter(rng, (70, 48, 30), 10))

    trunks(int(rng.integers(3, 7)))
    # Foliage: many overlapping leafy blobs in assorted greens.
    for _ in range(int(rng.integers(40, 80))):
        r = s * rng.uniform(0.04, 0.13)
        cx, cy = rng.uniform(-0.05, 1.05) * s, rng.uniform(-0.05, 0.8) * s
        green = (int(rng.integers(15, 80)), int(rng.integers(70, 150)), int(rng.integers(15, 60)))
        draw.ellipse([cx - r, cy - r * rng.uniform(0.7, 1.2), cx + r, cy + r], fill=green)
    trunks(int(rng.integers(2, 6)))
    # Dappled light: small bright specks give the high-frequency texture of leaves.
    for _ in range(int(rng.integers(60, 140))):
        r = s * rng.uniform(0.004, 0.012)
        cx, cy = rng.uniform(0, s), rng.uniform(0, s * 0.85)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=_jitter(rng, (140, 190, 80), 20))


def _paint_glacier(img: Image.Image, rng: np.random.Generator, s: int) -> None:
    draw = ImageDraw.Draw(img)
    horizon = int(s * rng.uniform(0.22, 0.45))
    # Sky over the whole canvas: the jagged ice edge can dip below the horizon.
    _vertical_gradient(draw, (0, 0, s, s), _jitter(rng, (185, 215, 240), 8),
                       _jitter(rng, (225, 238, 248), 6))
    # Several stacked ice masses, each with a jagged (saw-tooth) upper edge.
    layers = int(rng.integers(2, 4))
    for k in range(layers):
        base_y = horizon + (s - horizon) * k / (layers + 0.5)
        n_pts = int(rng.integers(8, 16))
        xs = np.linspace(-0.05 * s, 1.05 * s, n_pts)
        ys = base_y + rng.uniform(-0.12, 0.06, size=n_pts) * s
        ys[1::2] -= s * rng.uniform(0.03, 0.1)  # alternate spikes
        outline = list(zip(xs.tolist(), ys.tolist())) + [(1.05 * s, s), (-0.05 * s, s)]
        ice = _jitter(rng, (228 - 12 * k, 242 - 6 * k, 250), 6)
        draw.polygon(outline, fill=ice)
        # Pale blue shaded facets and crevasses hanging off the peaks.
        for i in range(1, n_pts - 1, 2):
            facet = [(xs[i], ys[i]), (xs[i + 1], ys[i + 1]),
                     (xs[i] + s * rng.uniform(0.0, 0.05), ys[i] + s * rng.uniform(0.08, 0.2))]
            draw.polygon(facet, fill=_jitter(rng, (165, 205, 230), 10))
        for _ in range(int(rng.integers(2, 6))):
            x = rng.uniform(0, s)
            y = rng.uniform(base_y, s)
            pts = [(x + rng.uniform(-0.03, 0.03) * s, y + j * s * 0.04) for j in range(4)]
            draw.line(pts, fill=_jitter(rng, (120, 175, 210), 10), width=max(1, s // 150))


def _paint_mountain(img: Image.Image, rng: np.random.Generator, s: int) -> None:
    draw = ImageDraw.Draw(img)
    _vertical_gradient(draw, (0, 0, s, s), _jitter(rng, (75, 125, 205), 10),
                       _jitter(rng, (165, 195, 230), 8))
    rock = [(115, 92, 70), (105, 102, 108), (135, 112, 85), (90, 78, 66)]
    peaks = int(rng.integers(2, 5))
    # Far peaks first (lighter, higher), near peaks last so they overlap them.
    for k in range(peaks):
        px = rng.uniform(0.1, 0.9) * s
        py = s * rng.uniform(0.12, 0.45) + k * s * 0.06
        half = s * rng.uniform(0.45, 0.85)
        color = _jitter(rng, rock[int(rng.integers(len(rock)))], 10)
        color = _mix(color, (150, 170, 200), 0.35 * (peaks - 1 - k) / max(1, peaks - 1))
        draw.polygon([(px, py), (px + half, s * 1.02), (px - half, s * 1.02)], fill=color)
        # Shadowed right flank gives each peak a visible ridge line.
        draw.polygon([(px, py), (px + half, s * 1.02), (px + half * 0.3, s * 1.02)],
                     fill=_mix(color, (30, 30, 40), 0.3))
        if rng.random() < 0.6:  # snow cap
            cap = rng.uniform(0.12, 0.25)
            draw.polygon([(px, py), (px + half * cap, py + (s - py) * cap),
                          (px - half * cap, py + (s - py) * cap)], fill=_jitter(rng, (235, 238, 242), 6))
    band = int(s * rng.uniform(0.85, 0.97))
    draw.rectangle([0, band, s, s], fill=_jitter(rng, (85, 95, 55), 10))


def _paint_sea(img: Image.Image, rng: np.random.Generator, s: int) -> None:
    horizon = int(s * rng.uniform(0.22, 0.45))
    draw = ImageDraw.Draw(img)
    _vertical_gradient(draw, (0, 0, s, horizon), _jitter(rng, (150, 190, 235), 10),
                       _jitter(rng, (205, 225, 245), 6))
    # Water and its horizontal wave crests are computed in numpy: stripes whose spacing grows
    # towards the viewer (perspective), wobbled sideways by a sine.
    ys, xs = np.mgrid[horizon:s, 0:s].astype(np.float64)
    depth = (ys - horizon) / max(1, s - horizon)  # 0 at horizon, 1 at bottom
    top, bottom = np.array(_jitter(rng, (40, 105, 170), 10)), np.array(_jitter(rng, (15, 55, 115), 10))
    water = top + (bottom - top) * depth[..., None]
    period_x = s * rng.uniform(0.15, 0.4)
    wobble = s * rng.uniform(0.005, 0.02) * np.sin(2 * np.pi * xs / period_x + rng.uniform(0, 2 * np.pi))
    # Integral of a linearly growing spacing keeps crests evenly spaced in perspective.
    base_spacing = s * rng.uniform(0.02, 0.035)
    phase = (ys - horizon + wobble) / (base_spacing * (1.0 + 2.5 * depth))
    crest = np.clip((np.cos(2 * np.pi * phase) - 0.55) / 0.45, 0, 1) ** 1.5
    foam = np.array(_jitter(rng, (170, 210, 240), 10))
    water = water + (foam - water) * crest[..., None] * rng.uniform(0.55, 0.9)
    arr = np.asarray(img).copy()
    arr[horizon:s] = np.clip(water, 0, 255).astype(np.uint8)
    img.paste(Image.fromarray(arr))


def _paint_street(img: Image.Image, rng: np.random.Generator, s: int) -> None:
    draw = ImageDraw.Draw(img)
    horizon = s * rng.uniform(0.28, 0.45)
    vx = s * rng.uniform(0.35, 0.65)
    _vertical_gradient(draw, (0, 0, s, int(horizon) + 2), _jitter(rng, (175, 190, 205), 10),
                       _jitter(rng, (215, 218, 220), 6))
    draw.rectangle([0, int(horizon), s, s], fill=_jitter(rng, (165, 160, 150), 10))  # pavements
    spread = rng.uniform(0.75, 1.1)
    left_bottom, right_bottom = vx - s * spread, vx + s * spread
    asphalt = _jitter(rng, (72, 72, 78), 8)
    draw.polygon([(vx - s * 0.01, horizon), (vx + s * 0.01, horizon), (right_bottom, s), (left_bottom, s)],
                 fill=asphalt)

    def along(t: float, bottom_x: float) -> tuple[float, float]:
        """Point at fraction t (0 = vanishing point, 1 = bottom edge) of a line to bottom_x."""
        return vx + (bottom_x - vx) * t, horizon + (s - horizon) * t

    white = _jitter(rng, (235, 235, 230), 6)
    lw = max(1, s // 60)
    for bottom_x in (left_bottom + s * 0.12, right_bottom - s * 0.12):  # solid edge lines
        draw.line([along(0.02, bottom_x), along(1.0, bottom_x)], fill=white, width=lw)
    # Dashed centre line whose dashes lengthen towards the viewer.
    centre = vx + s * rng.uniform(-0.15, 0.15)
    paint = white if rng.random() < 0.5 else _jitter(rng, (230, 195, 60), 8)
    t, dash = rng.uniform(0.02, 0.08), 0.06
    while t < 1.0:
        t1 = min(1.0, t + dash * (0.4 + t))
        a, b = along(t, centre), along(t1, centre)
        draw.line([a, b], fill=paint, width=max(lw, int(lw * 3 * t)))
        t = t1 + dash * (0.3 + t)
    # Kerb lines where the asphalt meets the pavement.
    kerb = _jitter(rng, (120, 118, 112), 8)
    for bottom_x in (left_bottom, right_bottom):
        draw.line([along(0.0, bottom_x), along(1.0, bottom_x)], fill=kerb, width=lw)


_PAINTERS: dict[str, Callable[[Image.Image, np.random.Generator, int], None]] = {
    "buildings": _paint_buildings,
    "forest": _paint_forest,
    "glacier": _paint_glacier,
    "mountain": _paint_mountain,
    "sea": _paint_sea,
    "street": _paint_street,
}
# Pixel noise per class: leafy forest is grainier than smooth ice or sky.
_NOISE_STD = {"buildings": 4.0, "forest": 9.0, "glacier": 3.0, "mountain": 4.0, "sea": 4.0, "street": 4.0}


def render_image(class_name: str, rng: np.random.Generator, size: int = 150) -> np.ndarray:
    """Draw one synthetic scene of ``class_name`` and return it as a ``size x size x 3`` uint8 array.

    All randomness (layout, scale, colours, hue/brightness jitter, mirroring, noise) comes from
    ``rng``, so the same generator state always yields the same pixels.
    """
    if class_name not in _PAINTERS:
        raise ValueError(f"unknown demo class {class_name!r}; expected one of {INTEL_CLASS_NAMES}")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    big = size * _SUPERSAMPLE
    img = Image.new("RGB", (big, big))
    _PAINTERS[class_name](img, rng, big)
    img = img.resize((size, size), Image.Resampling.LANCZOS)
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)

    # Hue jitter of roughly +-10 degrees, done in HSV so it cannot push a class into another's
    # colour family, followed by brightness/contrast jitter and Gaussian pixel noise.
    hsv = np.asarray(img.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(rng.integers(-7, 8))) % 256
    rgb = np.asarray(Image.frombytes("HSV", img.size, hsv.tobytes()).convert("RGB")).astype(np.float64)
    gain, offset = rng.uniform(0.88, 1.12), rng.uniform(-10, 10)
    rgb = (rgb - 128.0) * rng.uniform(0.9, 1.1) + 128.0
    rgb = rgb * gain + offset + rng.normal(0.0, _NOISE_STD[class_name], size=rgb.shape)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- dataset on disk
def _image_rng(seed: int, split: str, class_name: str, index: int) -> np.random.Generator:
    # One independent stream per image, keyed by its identity rather than by generation order,
    # so changing a count never changes any other image.
    key = [seed, SPLITS.index(split), INTEL_CLASS_NAMES.index(class_name), index]
    return np.random.default_rng(np.random.SeedSequence(key))


def _expected_params(train_per_class: int, eval_per_class: int, size: int, seed: int) -> dict:
    return {
        "generator_version": GENERATOR_VERSION,
        "class_names": list(INTEL_CLASS_NAMES),
        "train_per_class": train_per_class,
        "eval_per_class": eval_per_class,
        "size": size,
        "seed": seed,
        "jpeg_quality": JPEG_QUALITY,
    }


def _count_files(root: str) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


def _check_existing(dest_dir: str, params: dict) -> str:
    """Return ``dest_dir`` if it is a complete demo dataset built with ``params``; else raise."""
    manifest_path = os.path.join(dest_dir, MANIFEST_NAME)
    if not os.path.isfile(manifest_path):
        raise FileExistsError(
            f"{dest_dir!r} already exists and is not a demo dataset (no {MANIFEST_NAME}); refusing to "
            f"touch it. Point the demo dataset at an empty or non-existent directory instead.")
    try:
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise FileExistsError(f"{dest_dir!r} has an unreadable {MANIFEST_NAME} ({e}); delete the "
                              f"directory to rebuild the demo dataset.") from e
    found = manifest.get("params")
    if found != params:
        raise FileExistsError(
            f"{dest_dir!r} holds a demo dataset built with different parameters ({found}) than "
            f"requested ({params}); delete it or choose another directory.")
    expected_files = manifest.get("file_count")
    actual = _count_files(dest_dir)
    if actual != expected_files:
        raise FileExistsError(
            f"{dest_dir!r} is an incomplete or modified demo dataset ({actual} files, manifest says "
            f"{expected_files}); delete it to rebuild.")
    return dest_dir


def make_demo_dataset(dest_dir: str, train_per_class: int = 40, eval_per_class: int = 10,
                      size: int = 150, seed: int = 0) -> str:
    """Write the demo dataset to ``dest_dir`` (if not already there) and return ``dest_dir``.

    Layout: ``dest_dir/{train,val}/<class>/<class>_<i:04d>.jpg`` (JPEG quality 90) plus a
    ``DEMO_DATASET.json`` manifest recording the parameters, per-class counts and file count.
    Output is byte-for-byte deterministic for the same arguments.

    The build happens in a temporary sibling directory that is moved into place with a single
    ``os.replace``, so ``dest_dir`` is either absent or complete. Calling again with the same
    arguments returns the existing directory untouched. If ``dest_dir`` exists with different
    parameters, or is not a demo dataset at all, ``FileExistsError`` is raised and nothing is
    modified (an existing *empty* directory is treated as absent and filled).
    """
    for name, value in (("train_per_class", train_per_class), ("eval_per_class", eval_per_class),
                        ("size", size), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if train_per_class < 1:
        raise ValueError("train_per_class must be at least 1")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    train_per_class, eval_per_class, size, seed = map(int, (train_per_class, eval_per_class, size, seed))

    dest_dir = os.fspath(dest_dir)
    params = _expected_params(train_per_class, eval_per_class, size, seed)
    if os.path.lexists(dest_dir):
        if not os.path.isdir(dest_dir):
            raise FileExistsError(f"{dest_dir!r} exists and is not a directory")
        if os.listdir(dest_dir):
            return _check_existing(dest_dir, params)

    parent = os.path.dirname(os.path.abspath(dest_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(dest_dir))}.tmp-", dir=parent)
    try:
        counts = {TRAIN_SPLIT: train_per_class, EVAL_SPLIT: eval_per_class}
        file_count = 0
        for split in SPLITS:
            for class_name in INTEL_CLASS_NAMES:
                class_dir = os.path.join(tmp, split, class_name)
                os.makedirs(class_dir)
                for i in range(counts[split]):
                    pixels = render_image(class_name, _image_rng(seed, split, class_name, i), size)
                    Image.fromarray(pixels).save(
                        os.path.join(class_dir, f"{class_name}_{i:04d}.jpg"), format="JPEG",
                        quality=JPEG_QUALITY)
                    file_count += 1
        manifest = {
            "description": "Synthetic demo dataset generated by pipeline/demo_data.py",
            "params": params,
            "counts": {split: {c: counts[split] for c in INTEL_CLASS_NAMES} for split in SPLITS},
            "file_count": file_count + 1,  # the images plus this manifest
        }
        with open(os.path.join(tmp, MANIFEST_NAME), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
            f.write("\n")
        # mkdtemp makes the directory 0700; give the result ordinary permissions.
        os.chmod(tmp, 0o755)
        try:
            os.replace(tmp, dest_dir)
        except OSError:
            # Someone else filled dest_dir meanwhile (a concurrent build, or user data):
            # accept it only if it is the very dataset we were building.
            if os.path.isdir(dest_dir) and os.listdir(dest_dir):
                return _check_existing(dest_dir, params)
            raise
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return dest_dir
