"""The model's input, made from the Transform output the same way for evaluation and serving.

The Transform graph outputs resize_size x resize_size images of 8-bit values. Evaluation and both
serving signatures call `inference_input` (the centre crop of TrainConfig.served_image_size, as
float32; the TFLite models take the same crop), so what is served is exactly what was evaluated;
the training view takes random crops instead (augmentation.py) and ends with the same
`to_model_dtype` cast. Serving loads this module, not the augmentations.
"""
import tensorflow as tf

# The model's input dtype: Keras' float32 Input, also under a mixed-precision policy (the
# backbone casts to the compute dtype itself).
MODEL_INPUT_DTYPE = tf.float32


def center_crop(images: tf.Tensor, size: int) -> tf.Tensor:
    """The central size x size window of [H, W, C] or [batch, H, W, C] images."""
    height, width = tf.shape(images)[-3], tf.shape(images)[-2]
    top, left = (height - size) // 2, (width - size) // 2
    cropped = images[..., top:top + size, left:left + size, :]
    cropped.set_shape(images.shape[:-3].concatenate([size, size, images.shape[-1]]))
    return cropped


def to_model_dtype(pixels: tf.Tensor) -> tf.Tensor:
    """8-bit pixel values (uint8 or whole-number floats in [0, 255]) as the model's float input.

    Lossless: the backbone's own rescaling layer maps [0, 255] to its range.
    """
    return tf.cast(pixels, MODEL_INPUT_DTYPE)


def inference_input(images: tf.Tensor, size: int) -> tf.Tensor:
    """Evaluation and serving input: the centre crop of Transform-output images, as float32."""
    return to_model_dtype(center_crop(images, size))
