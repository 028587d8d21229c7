"""Serving signatures: raw image bytes for clients, serialized tf.Example for TFMA.

Both call the Transform graph (`tft_layer`) and then model_input.inference_input, the function
evaluation uses, so the served preprocessing is the evaluated one, with no second copy of it.
"""
import json
import os

import tensorflow as tf
import tf_keras as keras

from trainer_module import model_input, names
from trainer_module.train_config import TrainConfig


def _predict(model, tft_layer, image_spec, image_bytes, cfg: TrainConfig):
    # The raw schema fixes the image feature's shape ([1] as inferred by SchemaGen).
    image_bytes = tf.reshape(image_bytes, [-1, *image_spec.shape])
    transformed = tft_layer({names.IMAGE_KEY: image_bytes})
    images = model_input.inference_input(transformed[names.TRANSFORMED_IMAGE_KEY], cfg.image_size)
    return model(images, training=False)


def make_signatures(model: keras.Model, tft_layer, raw_feature_spec, cfg: TrainConfig):
    """{signature name: concrete function} for tf.saved_model.save."""
    image_spec = raw_feature_spec[names.IMAGE_KEY]
    class_names = tf.constant(list(cfg.class_names))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=names.SERVING_BYTES_INPUT)])
    def serve_image_bytes(image_bytes):
        probabilities = _predict(model, tft_layer, image_spec, image_bytes, cfg)
        top = tf.argmax(probabilities, axis=-1)
        batch = tf.shape(probabilities)[0]
        return {
            names.PROBABILITIES_OUTPUT: probabilities,
            names.CLASS_NAMES_OUTPUT: tf.tile(class_names[tf.newaxis], [batch, 1]),
            names.PREDICTED_CLASS_OUTPUT: tf.gather(class_names, top),
            names.PREDICTED_PROBABILITY_OUTPUT: tf.reduce_max(probabilities, axis=-1),
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=names.SERVING_EXAMPLES_INPUT)])
    def serve_examples(serialized):
        parsed = tf.io.parse_example(serialized, {names.IMAGE_KEY: image_spec})
        return {names.PROBABILITIES_OUTPUT: _predict(
            model, tft_layer, image_spec, parsed[names.IMAGE_KEY], cfg)}

    return {
        names.SERVING_BYTES_SIGNATURE: serve_image_bytes.get_concrete_function(),
        names.SERVING_EXAMPLES_SIGNATURE: serve_examples.get_concrete_function(),
    }


def export_serving_model(model: keras.Model, tft_layer, raw_feature_spec, cfg: TrainConfig,
                         export_dir: str) -> None:
    """Saves the model with both signatures; class names also go to assets.extra for humans."""
    model.tft_layer = tft_layer  # tracked, so the Transform graph and its assets are saved too
    tf.saved_model.save(model, export_dir,
                        signatures=make_signatures(model, tft_layer, raw_feature_spec, cfg))
    extra = os.path.join(export_dir, names.EXTRA_ASSETS_DIR)
    tf.io.gfile.makedirs(extra)
    with tf.io.gfile.GFile(os.path.join(extra, names.CLASS_NAMES_ASSET), "w") as f:
        json.dump(list(cfg.class_names), f)
