"""What an image shows, in a few numbers: content statistics and hashes of decoded pixels.

Ingestion records these per image (beside height, width and format) so the data gate can watch
them with TFDV's skew and drift comparators; the prediction logs record the same numbers per
request so the monitor can compare served traffic with the training data. One definition for both,
so the two sides measure the same thing.

Every statistic is computed on the image shrunk to at most `ANALYSIS_SIDE` pixels on its long side
(the cost stays flat whatever the photo's size, and sharpness does not depend on resolution), and
scaled to [0, 1] where it has a natural range:

    brightness    mean luma (ITU-R BT.601), 0 black .. 1 white
    contrast      standard deviation of luma (0 for a flat image, 0.5 at most)
    saturation    mean HSV saturation, (max - min) / max per pixel; 0 for a grayscale image
    colourfulness Hasler and Suesstrunk's metric (2003) on [0, 1] channels; 0 for grayscale
    sharpness     mean absolute Laplacian of luma (edges and texture; a blurred image is low)
    aspect_ratio  width / height of the original image

Hashes: `content_hash` (SHA-256 of the decoded pixels: the same photo re-encoded in another file
name is still caught by the near-duplicate hash, a byte-identical copy by this one) and
`perceptual_hash` (the 64-bit difference hash, dHash: the sign of horizontal gradients of a 9x8
grayscale thumbnail; images within a few bits of each other look the same). `luma_thumbnail` and
`thumbnail_similarity` confirm a near duplicate the dHash proposes.

Written by hand: TFDV's image statistics (ImageStatsGenerator) give only format and size, and no
library in the stack computes perceptual hashes.
"""
import hashlib
from typing import Dict

import numpy as np
import tensorflow as tf

ANALYSIS_SIDE = 128

BRIGHTNESS = "content_brightness"
CONTRAST = "content_contrast"
SATURATION = "content_saturation"
COLOURFULNESS = "content_colourfulness"
SHARPNESS = "content_sharpness"
ASPECT_RATIO = "content_aspect_ratio"
# The statistics' keys, as written in the examples, the schema and the prediction logs.
STATISTICS = (BRIGHTNESS, CONTRAST, SATURATION, COLOURFULNESS, SHARPNESS, ASPECT_RATIO)

PERCEPTUAL_HASH_BITS = 64
THUMBNAIL_SIDE = 16  # the luma thumbnail that confirms a near duplicate (thumbnail_similarity)


def _shrunk(image: np.ndarray) -> np.ndarray:
    """The image as float32 [0, 1] RGB, at most ANALYSIS_SIDE pixels on its long side."""
    height, width = image.shape[:2]
    scale = ANALYSIS_SIDE / max(height, width)
    pixels = tf.convert_to_tensor(image[..., :3])
    if scale < 1:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        pixels = tf.image.resize(pixels, size, method="area", antialias=True)
    return np.asarray(pixels, dtype=np.float32) / 255.0


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def statistics(image: np.ndarray) -> Dict[str, float]:
    """The content statistics of one decoded image (H x W x 3 uint8, RGB)."""
    if image.ndim != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected an H x W x 3 image, got shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    rgb = _shrunk(image)
    luma = _luma(rgb)
    top, bottom = rgb.max(axis=2), rgb.min(axis=2)
    saturation = np.where(top > 0, (top - bottom) / np.maximum(top, 1e-6), 0.0)
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    colourfulness = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    if luma.shape[0] >= 3 and luma.shape[1] >= 3:
        laplacian = (luma[1:-1, :-2] + luma[1:-1, 2:] + luma[:-2, 1:-1] + luma[2:, 1:-1]
                     - 4.0 * luma[1:-1, 1:-1])
        sharpness = float(np.abs(laplacian).mean())
    else:
        sharpness = 0.0
    return {
        BRIGHTNESS: float(luma.mean()),
        CONTRAST: float(luma.std()),
        SATURATION: float(saturation.mean()),
        COLOURFULNESS: float(colourfulness),
        SHARPNESS: sharpness,
        ASPECT_RATIO: float(image.shape[1] / image.shape[0]),
    }


def content_hash(image: np.ndarray) -> str:
    """SHA-256 of the decoded pixels and their shape (hex): the same picture in any file."""
    pixels = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
    digest = hashlib.sha256(str(pixels.shape).encode("ascii"))
    digest.update(pixels.tobytes())
    return digest.hexdigest()


def perceptual_hash(image: np.ndarray) -> int:
    """The 64-bit difference hash (dHash) of one decoded image: near-identical pictures (resized,
    re-encoded, slightly brightened) differ in a few bits."""
    gray = _luma(np.asarray(image[..., :3], dtype=np.float32))
    thumb = tf.image.resize(gray[..., None], (8, 9), method="area", antialias=True).numpy()[..., 0]
    bits = (thumb[:, 1:] > thumb[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def luma_thumbnail(image: np.ndarray) -> np.ndarray:
    """A THUMBNAIL_SIDE x THUMBNAIL_SIDE luma thumbnail, standardised (zero mean, unit variance):
    a brightened, resized or re-encoded copy keeps its pattern (float16, 512 bytes)."""
    gray = _luma(np.asarray(image[..., :3], dtype=np.float32) / 255.0)
    side = (THUMBNAIL_SIDE, THUMBNAIL_SIDE)
    thumb = tf.image.resize(gray[..., None], side, method="area", antialias=True).numpy()[..., 0]
    thumb = thumb - thumb.mean()
    return (thumb / max(float(np.sqrt((thumb * thumb).mean())), 1e-6)).astype(np.float16)


def thumbnail_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """The correlation of two luma_thumbnails, -1 .. 1. The 64-bit dHash alone calls two photos of
    a horizon under a bright sky near duplicates; on intel-dev their thumbnails correlate at most
    0.85, while resized, re-encoded or 10 % brightened copies correlate above 0.99."""
    return float((np.asarray(a, np.float32) * np.asarray(b, np.float32)).mean())


def hamming(a: int, b: int) -> int:
    """How many bits two perceptual hashes differ in."""
    return bin(a ^ b).count("1")


def decode(data: bytes) -> np.ndarray:
    """The RGB pixels of an encoded image (JPEG, PNG, GIF's first frame, BMP) as uint8 H x W x 3."""
    return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
