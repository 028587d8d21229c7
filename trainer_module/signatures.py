"""Serving signatures: raw image bytes for clients, serialized tf.Example for TFMA.

Both call the Transform graph (`tft_layer`) and then model_input.inference_input, the function
evaluation uses, so the served preprocessing is the evaluated one, with no second copy of it.

serving_default answers per image: an image the Transform graph refuses (not an image, over the
pixel budget, corrupt) gets an `error` and zero probabilities, and the others in the request are
still classified (docs/serving.md, "A bad image in a batch"). TensorFlow cannot catch an op's
error inside a graph except in tf.data (ignore_errors), so the batch goes through the Transform
graph inside an in-graph dataset, and only when it fails there, each image alone; the images
that pass go through the model as one batch. serving_examples (TFMA) fails the whole batch.
"""
import json
import os
from typing import Sequence

import tensorflow as tf
import tf_keras as keras

from trainer_module import image_format, model_input, names, preprocessing, serving_warmup
from trainer_module.train_config import TrainConfig


def _predict(model, tft_layer, image_spec, image_bytes, cfg: TrainConfig):
    images = model_input.inference_input(_transform(tft_layer, image_spec, image_bytes), cfg.served_image_size)
    return model(images, training=False)


def _transform(tft_layer, image_spec, image_bytes):
    """[n] encoded images through the Transform graph -> [n, S, S, 3] float32."""
    # The raw schema fixes the image feature's shape ([1] as inferred by SchemaGen).
    transformed = tft_layer({names.IMAGE_KEY: tf.reshape(image_bytes, [-1, *image_spec.shape])})
    return transformed[names.TRANSFORMED_IMAGE_KEY]


def _surviving(elements: tf.data.Dataset, sentinel, count) -> tf.data.Dataset:
    """One element: the elements (at most `count`) that raised no error, batched (ignore_errors
    drops the others). The sentinel, appended and removed again, makes that one batch exist when
    every element failed."""
    batches = elements.ignore_errors().concatenate(tf.data.Dataset.from_tensors(sentinel))
    return batches.batch(tf.cast(count, tf.int64) + 1).map(
        lambda *batch: tuple(component[:-1] for component in batch))


def _transformed_images(tft_layer, image_spec, image_bytes, size: int):
    """(int32 indices of the images the Transform graph accepted, their [k, S, S, 3] images).

    The whole batch goes through the Transform graph as one call. Only when that fails
    does each image go through it alone, in parallel, keeping those that pass: datasets are
    lazy, and take(1) stops at the whole batch when it succeeded.
    """
    count = tf.size(image_bytes)
    whole = tf.data.Dataset.from_tensors(image_bytes).map(
        lambda batch: (tf.range(count), _transform(tft_layer, image_spec, batch))).ignore_errors()
    one_by_one = tf.data.Dataset.from_tensor_slices((tf.range(count), image_bytes)).map(
        lambda i, data: (i, _transform(tft_layer, image_spec, data)[0]),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    sentinel = (tf.constant(-1), tf.zeros([size, size, 3]))
    return whole.concatenate(_surviving(one_by_one, sentinel, count)).take(1).get_single_element()


def _header_sizes(image_bytes):
    """(width, height) int64 [k] from each header as the Transform graph reads it; 0 where the
    header cannot be read (a JPEG without a frame header makes libjpeg fail: caught here too)."""
    count = tf.size(image_bytes)
    elements = tf.data.Dataset.from_tensor_slices((tf.range(count), image_bytes)).map(
        lambda i, data: (i, *preprocessing.header_dimensions(data)))
    index, width, height = _surviving(elements, (tf.constant(-1), tf.constant(0, tf.int64),
                                                 tf.constant(0, tf.int64)), count).get_single_element()
    return tuple(tf.scatter_nd(index[:, tf.newaxis], side, [count]) for side in (width, height))


def _format_names(image_bytes):
    """[k] "JPEG", "PNG", "GIF", "BMP" from the magic bytes, "" for anything else."""
    name = tf.fill(tf.shape(image_bytes), "")
    for format_name, magics in image_format.FORMATS:
        for magic in magics:
            name = tf.where(tf.strings.substr(image_bytes, 0, len(magic)) == magic, format_name.upper(), name)
    return name


def failure_reasons(image_bytes, max_pixels: int):
    """Why the Transform graph refused each of these images: names.ERROR_OUTPUT's text.

    Run on the refused images only (usually none), so a request of good images pays nothing.
    """
    format_name = _format_names(image_bytes)
    width, height = _header_sizes(image_bytes)
    budget = tf.constant(max_pixels, tf.int64)
    # height > budget // width is width x height > budget without int64 overflow (as in the graph).
    over = tf.logical_and(width > 0, height > budget // tf.maximum(width, 1))
    over_text = tf.map_fn(
        lambda sides: tf.strings.format(f"{image_format.TOO_MANY_PIXELS}: {image_format.OVER_BUDGET_TEMPLATE}",
                                        [sides[0], sides[1], sides[0] * sides[1], budget]),
        tf.stack([width, height], axis=1), fn_output_signature=tf.string)
    undecodable = tf.strings.join([f"{names.UNDECODABLE_ERROR}: corrupt or truncated ", format_name, " data"])
    not_an_image = f"{names.NOT_AN_IMAGE_ERROR}: not a JPEG, PNG, GIF or BMP file"
    return tf.where(format_name == "", not_an_image, tf.where(over, over_text, undecodable))


def _errors(image_bytes, accepted, max_pixels: int):
    """[n] names.ERROR_OUTPUT: "" where accepted, failure_reasons elsewhere."""
    refused = tf.where(~accepted)[:, 0]
    reasons = tf.cond(tf.size(refused) > 0,  # skipped when none: its datasets cost ~1 ms even empty
                      lambda: failure_reasons(tf.gather(image_bytes, refused), max_pixels),
                      lambda: tf.zeros([0], tf.string))
    return tf.tensor_scatter_nd_update(tf.fill(tf.shape(image_bytes), ""), refused[:, tf.newaxis], reasons)


def classify_images(model, tft_layer, image_spec, class_names, image_bytes, cfg: TrainConfig,
                    max_pixels: int = image_format.DEFAULT_MAX_IMAGE_PIXELS):
    """serving_default's outputs for [n] encoded images; an image the Transform graph refuses
    gets an error, zero probabilities, predicted_class "" and does not fail the others."""
    count, classes = tf.size(image_bytes), len(cfg.class_names)
    index, images = _transformed_images(tft_layer, image_spec, image_bytes, cfg.resize_size)
    scores = tf.cond(  # the backbone's depthwise convolutions fail on an empty batch
        tf.size(index) > 0,  # (float32: both branches must agree, also under mixed precision)
        lambda: tf.cast(model(model_input.inference_input(images, cfg.served_image_size), training=False), tf.float32),
        lambda: tf.zeros([0, classes]))
    probabilities = tf.scatter_nd(index[:, tf.newaxis], scores, [count, classes])
    accepted = tf.scatter_nd(index[:, tf.newaxis], tf.ones_like(index), [count]) > 0
    return {
        names.PROBABILITIES_OUTPUT: probabilities,
        names.CLASS_NAMES_OUTPUT: tf.tile(class_names[tf.newaxis], [count, 1]),
        names.PREDICTED_CLASS_OUTPUT: tf.where(
            accepted, tf.gather(class_names, tf.argmax(probabilities, axis=-1)), ""),
        names.PREDICTED_PROBABILITY_OUTPUT: tf.reduce_max(probabilities, axis=-1),
        names.ERROR_OUTPUT: _errors(image_bytes, accepted, max_pixels),
    }


def make_signatures(model: keras.Model, tft_layer, raw_feature_spec, cfg: TrainConfig,
                    max_pixels: int = image_format.DEFAULT_MAX_IMAGE_PIXELS):
    """{signature name: concrete function} for tf.saved_model.save; `max_pixels` is the pixel budget
    the Transform graph holds images to, for the error text of an image over it."""
    image_spec = raw_feature_spec[names.IMAGE_KEY]
    class_names = tf.constant(list(cfg.class_names))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=names.SERVING_BYTES_INPUT)])
    def serve_image_bytes(image_bytes):
        return classify_images(model, tft_layer, image_spec, class_names, image_bytes, cfg, max_pixels)

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
                         export_dir: str, warmup_images: Sequence[bytes] = (),
                         max_pixels: int = image_format.DEFAULT_MAX_IMAGE_PIXELS) -> None:
    """Saves the model with both signatures; in assets.extra, the class names for humans and,
    from `warmup_images` (encoded eval images), TF Serving's warm-up requests."""
    model.tft_layer = tft_layer  # tracked, so the Transform graph and its assets are saved too
    tf.saved_model.save(model, export_dir,
                        signatures=make_signatures(model, tft_layer, raw_feature_spec, cfg, max_pixels))
    extra = os.path.join(export_dir, names.EXTRA_ASSETS_DIR)
    tf.io.gfile.makedirs(extra)
    with tf.io.gfile.GFile(os.path.join(extra, names.CLASS_NAMES_ASSET), "w") as f:
        json.dump(list(cfg.class_names), f)
    if warmup_images:
        serving_warmup.write_warmup_requests(export_dir, warmup_images)
