"""Image augmentations of the training input, one small parameterised unit each.

Training takes a random `size` crop of the resized image (the notebook: resize 256, crop 224)
and optionally flips it; evaluation and serving take the centre crop, so both see the same scale.
"""
import tensorflow as tf


def random_crop(image: tf.Tensor, size: int) -> tf.Tensor:
    """A random size x size window of one [H, W, C] image (H, W >= size)."""
    return tf.image.random_crop(image, [size, size, tf.shape(image)[-1]])


def center_crop(images: tf.Tensor, size: int) -> tf.Tensor:
    """The central size x size window of [H, W, C] or [batch, H, W, C] images."""
    height, width = tf.shape(images)[-3], tf.shape(images)[-2]
    top, left = (height - size) // 2, (width - size) // 2
    cropped = images[..., top:top + size, left:left + size, :]
    cropped.set_shape(images.shape[:-3].concatenate([size, size, images.shape[-1]]))
    return cropped


def random_flip(image: tf.Tensor) -> tf.Tensor:
    """Mirror one image left-right with probability 1/2 (scenes have no handedness)."""
    return tf.image.random_flip_left_right(image)
