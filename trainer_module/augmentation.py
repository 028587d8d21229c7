"""Image augmentations of the training input, one small parameterised unit each.

Training takes a random `size` crop of the resized image (the notebook: resize 256, crop 224)
and optionally flips it; evaluation and serving take the centre crop (model_input.py), so both
see the same scale. Options: a random-resized crop instead (scale augmentation), colour jitter,
and progressive resizing (the batch scaled down early in training). Only the Trainer's input
pipeline uses this module, never serving.
"""
import tensorflow as tf


def random_crop(image: tf.Tensor, size: int) -> tf.Tensor:
    """A random size x size window of one [H, W, C] image (H, W >= size)."""
    return tf.image.random_crop(image, [size, size, tf.shape(image)[-1]])


def random_resized_crop(image: tf.Tensor, size: int, area_min: float) -> tf.Tensor:
    """A random window of one [H, W, C] image covering a share in [area_min, 1] of its area, aspect
    ratio 3/4 to 4/3, resized (bilinear) to size x size: scale augmentation (Szegedy et al. 2015).
    Returns float32 8-bit values (rounded), as the plain crop's pixels are."""
    begin, extent, _ = tf.image.sample_distorted_bounding_box(
        tf.shape(image), tf.zeros([1, 0, 4]), min_object_covered=0.0, aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(area_min, 1.0), max_attempts=10, use_image_if_no_bounding_boxes=True)
    window = tf.slice(image, begin, extent)
    resized = tf.image.resize(tf.cast(window, tf.float32), [size, size])
    return tf.round(tf.clip_by_value(resized, 0.0, 255.0))


def color_jitter(image: tf.Tensor, strength: float) -> tf.Tensor:
    """One [H, W, 3] image (8-bit values, any dtype) with its brightness, contrast and saturation
    each scaled by a factor drawn from [1 - strength, 1 + strength]; float32 8-bit values back."""
    pixels = tf.cast(image, tf.float32)
    low, high = 1.0 - strength, 1.0 + strength
    pixels = pixels * tf.random.uniform([], low, high)  # brightness
    pixels = tf.image.adjust_contrast(pixels, tf.random.uniform([], low, high))
    pixels = tf.image.adjust_saturation(pixels, tf.random.uniform([], low, high))
    return tf.round(tf.clip_by_value(pixels, 0.0, 255.0))


def resize_batch(images: tf.Tensor, side) -> tf.Tensor:
    """[B, H, W, C] images resized (bilinear) to side x side: progressive resizing's smaller
    views of the same crops (side may be a tensor read at run time)."""
    return tf.image.resize(tf.cast(images, tf.float32), tf.stack([side, side]))


def random_flip(image: tf.Tensor) -> tf.Tensor:
    """Mirror one image left-right with probability 1/2 (scenes have no handedness)."""
    return tf.image.random_flip_left_right(image)


def sample_beta(shape, alpha: float) -> tf.Tensor:
    """Beta(alpha, alpha) samples from two Gamma draws (TensorFlow has no Beta sampler)."""
    x = tf.random.gamma(shape, alpha)
    y = tf.random.gamma(shape, alpha)
    return x / (x + y)


def cutmix_boxes(batch_size, height: int, width: int, probability: float, alpha: float):
    """(y1, y2, x1, x2) paste boxes, one per image; an image without CutMix gets an empty box.

    An image gets a box when a uniform draw exceeds 1 - probability (the notebook: > 0.5).
    The box's area fraction is 1 - lambda with lambda ~ Beta(alpha, alpha) (Yun et al. 2019),
    centred uniformly; boxes that cross the border are clipped, so the pasted area can be smaller.
    """
    applied = tf.random.uniform([batch_size]) > 1.0 - probability
    cut_ratio = tf.sqrt(1.0 - sample_beta([batch_size], alpha))
    cut_h = tf.cast(cut_ratio * height, tf.int32)
    cut_w = tf.cast(cut_ratio * width, tf.int32)
    center_y = tf.random.uniform([batch_size], 0, height, dtype=tf.int32)
    center_x = tf.random.uniform([batch_size], 0, width, dtype=tf.int32)
    y1 = tf.clip_by_value(center_y - cut_h // 2, 0, height)
    y2 = tf.clip_by_value(center_y + cut_h // 2, 0, height)
    x1 = tf.clip_by_value(center_x - cut_w // 2, 0, width)
    x2 = tf.clip_by_value(center_x + cut_w // 2, 0, width)
    return y1, tf.where(applied, y2, y1), x1, x2


def paste_box(own: tf.Tensor, other: tf.Tensor, top, bottom, left, right) -> tf.Tensor:
    """own [H, W, C] with other's pixels in rows [top, bottom) x columns [left, right)."""
    middle = tf.concat([own[top:bottom, :left], other[top:bottom, left:right], own[top:bottom, right:]],
                       axis=1)
    return tf.concat([own[:top], middle, own[bottom:]], axis=0)


def cutmix(images: tf.Tensor, labels: tf.Tensor, probability: float = 0.5, alpha: float = 1.0):
    """CutMix on a batch: paste a box from a partner image and mix the one-hot labels.

    images [B, H, W, C] (any dtype), labels [B, N] one-hot (or already soft). Each label row
    becomes (1 - a) * own + a * partner's, where a is the pasted area fraction actually written,
    so rows still sum to 1. Partners are a random permutation of the batch. Boxes are pasted by
    slicing: a [B, H, W] mask with a broadcasting select costs ~3x more CPU (bench/README.md).
    """
    height, width = images.shape[1], images.shape[2]
    y1, y2, x1, x2 = cutmix_boxes(tf.shape(images)[0], height, width, probability, alpha)
    partner = tf.random.shuffle(tf.range(tf.shape(images)[0]))
    mixed = tf.map_fn(lambda args: paste_box(*args), (images, tf.gather(images, partner), y1, y2, x1, x2),
                      fn_output_signature=tf.TensorSpec(images.shape[1:], images.dtype))
    mixed.set_shape(images.shape)
    area = tf.cast((y2 - y1) * (x2 - x1), labels.dtype)[:, tf.newaxis] / (height * width)
    return mixed, (1.0 - area) * labels + area * tf.gather(labels, partner)


def mixup(images: tf.Tensor, labels: tf.Tensor, probability: float = 0.0, alpha: float = 0.2):
    """MixUp on a batch (Zhang et al. 2018): blend a share of the images with a partner image.

    images [B, H, W, C] (any dtype; blended in float32 and returned as float32 8-bit values),
    labels [B, N] one-hot or soft. An image is blended when a uniform draw exceeds 1 - probability;
    the partner's weight is min(l, 1 - l) with l ~ Beta(alpha, alpha), so the image stays the
    majority, and the label rows mix with the same weight (rows still sum to 1).
    """
    batch = tf.shape(images)[0]
    applied = tf.random.uniform([batch]) > 1.0 - probability
    draw = sample_beta([batch], alpha)
    weight = tf.where(applied, tf.minimum(draw, 1.0 - draw), 0.0)
    partner = tf.random.shuffle(tf.range(batch))
    pixels = tf.cast(images, tf.float32)
    mixed = (1.0 - weight[:, None, None, None]) * pixels + weight[:, None, None, None] * tf.gather(pixels, partner)
    label_weight = tf.cast(weight, labels.dtype)[:, tf.newaxis]
    return mixed, (1.0 - label_weight) * labels + label_weight * tf.gather(labels, partner)
