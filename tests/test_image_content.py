"""common/image_content: the content statistics and hashes, on real decoded images."""
import io

import numpy as np
from PIL import Image, ImageFilter

from common import image_content


def _photo(seed=0, size=(96, 128)):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(size[0] // 8, size[1] // 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(base).resize((size[1], size[0]), Image.BILINEAR))


def _jpeg(image, quality=90):
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def test_grayscale_and_darkened_move_the_colour_and_brightness_statistics():
    image = _photo()
    gray = np.repeat(np.asarray(Image.fromarray(image).convert("L"))[..., None], 3, axis=2)
    dark = (gray.astype(np.float32) * 0.4).astype(np.uint8)
    s, d = image_content.statistics(image), image_content.statistics(dark)
    assert s[image_content.SATURATION] > 0.2 and d[image_content.SATURATION] < 0.01
    assert s[image_content.COLOURFULNESS] > 0.05 and d[image_content.COLOURFULNESS] < 0.01
    assert abs(d[image_content.BRIGHTNESS] - 0.4 * image_content.statistics(gray)[image_content.BRIGHTNESS]) < 0.01
    assert d[image_content.CONTRAST] < s[image_content.CONTRAST]
    assert set(s) == set(image_content.STATISTICS)
    assert s[image_content.ASPECT_RATIO] == 128 / 96


def test_blur_lowers_sharpness_and_flat_images_have_none():
    image = _photo(size=(256, 256))
    blurred = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(4)))
    assert image_content.statistics(blurred)[image_content.SHARPNESS] < 0.5 * image_content.statistics(image)[image_content.SHARPNESS]
    flat = np.full((40, 60, 3), 128, np.uint8)
    stats = image_content.statistics(flat)
    assert stats[image_content.SHARPNESS] == 0 and stats[image_content.CONTRAST] == 0


def test_statistics_hold_whatever_the_resolution():
    image = _photo(size=(600, 800))
    small = np.asarray(Image.fromarray(image).resize((200, 150), Image.LANCZOS))
    a, b = image_content.statistics(image), image_content.statistics(small)
    for key in (image_content.BRIGHTNESS, image_content.SATURATION, image_content.CONTRAST):
        assert abs(a[key] - b[key]) < 0.02, key


def test_a_reencoded_copy_is_near_in_perceptual_hash_and_another_photo_is_far():
    image = _photo(1, size=(120, 160))
    copy = image_content.decode(_jpeg(np.asarray(Image.fromarray(image).resize((320, 240))), quality=60))
    other = _photo(2, size=(120, 160))
    h = image_content.perceptual_hash(image)
    assert image_content.hamming(h, image_content.perceptual_hash(copy)) <= 6
    assert image_content.hamming(h, image_content.perceptual_hash(other)) >= 16
    assert 0 <= h < 2 ** image_content.PERCEPTUAL_HASH_BITS


def test_content_hash_is_the_pixels_not_the_file():
    image = _photo(3)
    png = io.BytesIO()
    Image.fromarray(image).save(png, format="PNG")
    assert image_content.content_hash(image_content.decode(png.getvalue())) == image_content.content_hash(image)
    changed = image.copy()
    changed[0, 0, 0] ^= 1
    assert image_content.content_hash(changed) != image_content.content_hash(image)
