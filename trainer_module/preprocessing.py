"""The Transform module: decode image bytes, resize, one-hot encode the label.

This graph is the single copy of the preprocessing: the Trainer applies it to raw examples
(`tft_layer`) and both serving signatures embed it. Transform runs with `materialize=False`:
decoded pixels are never written to disk (a 256x256 float32 image is 786 KB; the raw example
~15 KB); the Trainer decodes on the fly in tf.data.
"""
from typing import Tuple

import tensorflow as tf

from trainer_module import image_format, names


def decode_image(data: tf.Tensor, max_pixels: int = image_format.DEFAULT_MAX_IMAGE_PIXELS) -> tf.Tensor:
    """One encoded JPEG/PNG/GIF/BMP image -> [H, W, 3] uint8 (grayscale and RGBA become RGB).

    The one decoder of the project: Transform and serving run it here, and ImageExampleGen checks
    every file with it at ingestion, so a file accepted there decodes here. A GIF gives its first
    frame (an animation is not a scene). An image whose header declares more than `max_pixels`
    (width x height) is refused with InvalidArgumentError before the decoder allocates anything.
    """
    with tf.control_dependencies([pixel_budget_check(data, max_pixels)]):
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def pixel_budget_check(data: tf.Tensor, max_pixels: int) -> tf.Operation:
    """An assertion that the header's width x height is at most `max_pixels`.

    Fails with "too_many_pixels: WxH = N pixels > max_image_pixels = B" (image_format's wording).
    A header that tells no size passes: the decoder then fails on it with its own error.
    """
    width, height = header_dimensions(data)
    budget = tf.constant(max_pixels, tf.int64)
    # height <= budget // width is width x height <= budget without int64 overflow on absurd headers.
    within = tf.logical_or(width <= 0, height <= budget // tf.maximum(width, 1))
    message = tf.strings.format(f"{image_format.TOO_MANY_PIXELS}: {image_format.OVER_BUDGET_TEMPLATE}",
                                [width, height, width * height, budget])
    return tf.debugging.Assert(within, [message])


# Header bytes that hold the PNG (IHDR), GIF (logical screen) and BMP (DIB header) sizes.
_HEADER_BYTES = 26


def header_dimensions(data: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """(width, height) int64 scalars as TensorFlow's decoders read them; (0, 0) for other bytes.

    JPEG: tf.io.extract_jpeg_shape (libjpeg reads the header only; it fails on a JPEG without a
    readable frame header, as the decoder would). PNG, GIF, BMP: fixed offsets of the header,
    read as decode_png/gif/bmp read them (BMP: signed 32-bit width and |height|).
    """
    def jpeg():
        shape = tf.cast(tf.io.extract_jpeg_shape(data), tf.int64)  # [height, width, channels]
        return shape[1], shape[0]

    is_jpeg = tf.equal(tf.strings.substr(data, 0, len(image_format.JPEG_MAGIC)), image_format.JPEG_MAGIC)
    return tf.cond(is_jpeg, jpeg, lambda: _fixed_header_dimensions(data))


def _fixed_header_dimensions(data: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    # Padded with zeros: a file shorter than the header reads as size 0.
    head = tf.strings.substr(tf.strings.join([tf.strings.substr(data, 0, _HEADER_BYTES),
                                              b"\0" * _HEADER_BYTES]), 0, _HEADER_BYTES)
    b = tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int64)

    def uint(offsets):  # an unsigned integer from bytes, most significant first
        value = tf.constant(0, tf.int64)
        for i in offsets:
            value = value * 256 + b[i]
        return value

    def int32(offsets):
        value = uint(offsets)
        return tf.where(value >= 2 ** 31, value - 2 ** 32, value)

    sizes = (  # magic (as tf.io.decode_image tells the formats apart), width, height
        (image_format.PNG_MAGIC, uint([16, 17, 18, 19]), uint([20, 21, 22, 23])),
        *((magic, uint([7, 6]), uint([9, 8])) for magic in image_format.GIF_MAGICS),
        (image_format.BMP_MAGIC, int32([21, 20, 19, 18]), tf.abs(int32([25, 24, 23, 22]))),
    )
    width = height = tf.constant(0, tf.int64)
    for magic, w, h in sizes:
        is_format = tf.equal(tf.strings.substr(data, 0, len(magic)), magic)
        width, height = tf.where(is_format, w, width), tf.where(is_format, h, height)
    return width, height


def decode_and_resize(image_bytes: tf.Tensor, size: int,
                      max_pixels: int = image_format.DEFAULT_MAX_IMAGE_PIXELS) -> tf.Tensor:
    """[batch] encoded JPEG/PNG/GIF/BMP bytes -> [batch, size, size, 3] float32 8-bit values.

    Grayscale and RGBA images become RGB; any input size is accepted. The output holds whole
    numbers in [0, 255] (the resized image rounded to 8 bits), so the Trainer can carry it as
    uint8 without loss and serving sees exactly the pixels training saw. An image over
    `max_pixels` fails the batch before it is decoded (decode_image).
    """
    def one(data):
        return resize(tf.cast(decode_image(data, max_pixels), tf.float32), size)

    images = tf.map_fn(one, image_bytes, fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
    return tf.round(tf.clip_by_value(images, 0.0, 255.0))


def resize(image: tf.Tensor, size: int) -> tf.Tensor:
    """Bilinear resize of one [H, W, 3] image, antialiased only when a side shrinks.

    Antialiasing runs TensorFlow's generic ScaleAndTranslate kernel (~1 ms more per image on CPU,
    bench/README.md) and changes nothing when enlarging (intel-dev's 150 px images go to 256).
    """
    shape = tf.shape(image)
    shrinks = tf.logical_or(shape[0] > size, shape[1] > size)
    return tf.cond(shrinks,
                   lambda: tf.image.resize(image, [size, size], antialias=True),
                   lambda: tf.image.resize(image, [size, size]))


def preprocessing_fn(inputs, custom_config):
    """TFX Transform entry point; custom_config = trainer_module.train_config.transform_config(...)."""
    num_classes = len(custom_config[names.TRANSFORM_CLASS_NAMES_KEY])
    outputs = {
        names.TRANSFORMED_IMAGE_KEY: decode_and_resize(
            tf.reshape(inputs[names.IMAGE_KEY], [-1]), custom_config[names.TRANSFORM_RESIZE_SIZE_KEY],
            custom_config[names.MAX_IMAGE_PIXELS_KEY]),
    }
    if names.LABEL_KEY in inputs:
        label = tf.reshape(inputs[names.LABEL_KEY], [-1])
        with tf.control_dependencies([tf.debugging.assert_less(
                label, tf.constant(num_classes, tf.int64),
                message="label outside the configured class names")]):
            label = tf.identity(label)
        outputs[names.TRANSFORMED_LABEL_KEY] = label
        outputs[names.TRANSFORMED_ONE_HOT_KEY] = tf.one_hot(label, num_classes, dtype=tf.float32)
    return outputs
