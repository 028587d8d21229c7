"""The anchor: a TFX cifar10-example-style preprocessing_fn that materialises float32 pixels.

Kept only for bench.transform_throughput, to measure this pipeline's data path against the
approach of tfx/examples/cifar10 (cifar10_utils_native_keras.py), which in Transform
  - decodes every image with tf.map_fn,
  - resizes to the model's 224 x 224 input,
  - applies mobilenet.preprocess_input (float32 in [-1, 1]),
and materialises the result: 224 * 224 * 3 float32 = 602,112 bytes of pixels per example before
compression, which the Trainer then reads back every epoch.

Differences from the example, all neutral for cost: `decode_image` instead of `decode_png` (the
data are JPEGs), the resize inside map_fn (cifar10 images all have one size, a few intel images
do not, and map_fn must stack equal shapes) and scalar inputs (our raw schema has fixed-length
scalars, not [batch, 1]).
Not used by the pipeline.
"""
import tensorflow as tf

from trainer_module import names

# The anchor's transformed features (bench-only names: only transform_throughput reads them).
ANCHOR_IMAGE_KEY = "image_xf"
ANCHOR_LABEL_KEY = "label_xf"
ANCHOR_SIZE_KEY = "anchor_size"  # its custom_config: the side of the resized square image


def preprocessing_fn(inputs, custom_config):
    """Decoded, resized, scaled float32 pixels and the label; custom_config: {ANCHOR_SIZE_KEY: 224}."""
    size = int(custom_config.get(ANCHOR_SIZE_KEY, 224))
    image_bytes = tf.reshape(inputs[names.IMAGE_KEY], [-1])
    images = tf.map_fn(  # decode and resize per image: a few intel images are not 150 x 150
        lambda x: tf.image.resize(tf.io.decode_image(x, channels=3, expand_animations=False),
                                  [size, size]),
        image_bytes, fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
    images = images / 127.5 - 1.0  # mobilenet.preprocess_input ("tf" mode)
    return {ANCHOR_IMAGE_KEY: images, ANCHOR_LABEL_KEY: tf.reshape(inputs[names.LABEL_KEY], [-1])}
