"""The Transform module: decode image bytes, resize, one-hot encode the label.

This graph is the single copy of the preprocessing: the Trainer applies it to raw examples
(`tft_layer`) and both serving signatures embed it. Transform runs with `materialize=False`:
decoded pixels are never written to disk (a 256x256 float32 image is 786 KB; the raw example
~15 KB); the Trainer decodes on the fly in tf.data.
"""
import tensorflow as tf

from trainer_module import names


def decode_image(data: tf.Tensor) -> tf.Tensor:
    """One encoded JPEG/PNG/GIF/BMP image -> [H, W, 3] uint8 (grayscale and RGBA become RGB).

    The one decoder of the project: Transform and serving run it here, and ImageExampleGen checks
    every file with it at ingestion, so a file accepted there decodes here. A GIF gives its first
    frame (an animation is not a scene).
    """
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def decode_and_resize(image_bytes: tf.Tensor, size: int) -> tf.Tensor:
    """[batch] encoded JPEG/PNG/GIF/BMP bytes -> [batch, size, size, 3] float32 8-bit values.

    Grayscale and RGBA images become RGB; any input size is accepted. The output holds whole
    numbers in [0, 255] (the resized image rounded to 8 bits), so the Trainer can carry it as
    uint8 without loss and serving sees exactly the pixels training saw.
    """
    def one(data):
        return resize(tf.cast(decode_image(data), tf.float32), size)

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
            tf.reshape(inputs[names.IMAGE_KEY], [-1]), custom_config[names.TRANSFORM_RESIZE_SIZE_KEY]),
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
