"""TFLite (edge) models of the trained network: float16 and full-integer int8, with metadata.

Both flavours take what a camera app has, uint8 RGB [1, S, S, 3] (S = the served side,
TrainConfig.served_image_size: test_image_size, or image_size when that is 0): the image
resized to resize_size x resize_size (bilinear, antialiased when shrinking: preprocessing.resize),
then its centre S x S crop, values 0-255 unnormalised (the model's own rescaling layer normalises).
That is the SavedModel's serving input (model_input.inference_input), as 8-bit values. Both output
the class probabilities [1, C]: float32 (float16) or uint8 with the tensor's scale and zero point
(int8).

- float16: weights stored as float16 (half the size), run in float32 on CPU; a Cast takes the
  uint8 input.
- int8: weights and activations int8, calibrated on centre crops of train images; uint8 in and
  out, so it runs on integer-only accelerators. The calibration also sees an all-0 and an
  all-255 image, so the input's range is exactly [0, 255]: scale 1, zero point 0, and the
  uint8 input IS the pixel.

Each file carries TFLite metadata: the labels (names.TFLITE_LABELS_FILE), the input spec
(names.TFLITE_INPUT_SPEC_FILE, JSON) and the input's description in words, so an app needs
nothing else. trainer_module/tflite_format.py writes it (LiteRT's metadata layout) and reads it back.
"""
import os
from typing import Dict, Iterator

import numpy as np
import tensorflow as tf
import tf_keras as keras
from absl import logging
from tf_keras.src.saving import serialization_lib

from trainer_module import model as model_lib, names, tflite_format
from trainer_module.train_config import TrainConfig

RESIZE_METHOD = "bilinear, antialiased when shrinking"  # preprocessing.resize


def input_spec(cfg: TrainConfig) -> dict:
    """The JSON input spec packed into each model (names.INPUT_SPEC_* keys)."""
    return {names.INPUT_SPEC_IMAGE_SIZE: cfg.served_image_size, names.INPUT_SPEC_RESIZE_SIZE: cfg.resize_size,
            names.INPUT_SPEC_DTYPE: "uint8", names.INPUT_SPEC_RANGE: [0, 255],
            names.INPUT_SPEC_COLOR: "RGB", names.INPUT_SPEC_RESIZE_METHOD: RESIZE_METHOD}


def input_description(cfg: TrainConfig) -> str:
    """The input spec in words: the input tensor's description in the metadata."""
    s, r = cfg.served_image_size, cfg.resize_size
    return (f"uint8 RGB image [1, {s}, {s}, 3]: the image resized to {r}x{r} ({RESIZE_METHOD}), "
            f"then its centre {s}x{s} crop; values 0-255, not normalised (the model normalises them).")


def export_edge_models(model: keras.Model, cfg: TrainConfig, representative: tf.data.Dataset,
                       out_dir: str) -> Dict[str, str]:
    """Writes one .tflite per names.TFLITE_FLAVOURS (names.TFLITE_FILE) and the labels file into
    out_dir; returns {flavour: path}.

    model: build_model's (float32 pixels in [0, 255] in, probabilities out). representative:
    batches of float32 centre crops of train images, or (images, labels) batches; the first
    cfg.tflite_calibration_images images calibrate int8.
    """
    model = float32_model(model)
    temperature = model_lib.temperature_of(model)
    tf.io.gfile.makedirs(out_dir)
    paths = {}
    for flavour in names.TFLITE_FLAVOURS:
        model_bytes = add_metadata(convert(model, cfg, flavour, representative), cfg, flavour, temperature)
        paths[flavour] = os.path.join(out_dir, names.TFLITE_FILE.format(flavour=flavour))
        _write(paths[flavour], model_bytes)
        logging.info("TFLite %s model: %s (%.2f MB)", flavour, paths[flavour], len(model_bytes) / 1e6)
    _write(os.path.join(out_dir, names.TFLITE_LABELS_FILE),
           tflite_format.packed_files(model_bytes)[names.TFLITE_LABELS_FILE])
    return paths


def float32_model(model: keras.Model) -> keras.Model:
    """`model` itself when it computes in float32, else a float32 clone with its weights.

    Why: a model trained under a mixed-precision policy holds float16 Casts, which full-integer
    conversion cannot quantize and which the float16 flavour does not need.
    """
    if all(layer.compute_dtype == "float32" for layer in model.submodules
           if isinstance(layer, keras.layers.Layer)):
        return model
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")  # the clone's inputs and nested models take it
    try:  # Lambda layers of this process's own model: their functions are trusted
        with serialization_lib.SafeModeScope(False):
            copy = keras.models.clone_model(model, clone_function=_float32_layer)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    copy.set_weights(model.get_weights())
    return copy


def _float32_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
    """A new float32 layer with `layer`'s config; nested models are cloned layer by layer."""
    if isinstance(layer, keras.Model):
        return keras.models.clone_model(layer, clone_function=_float32_layer)
    return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})


def convert(model: keras.Model, cfg: TrainConfig, flavour: str, representative: tf.data.Dataset) -> bytes:
    """One flavour's TFLite flatbuffer (no metadata), for a float32 model, batch 1."""
    if flavour == "float16":
        converter = _converter(model, cfg.served_image_size, tf.uint8)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif flavour == "int8":
        converter = _converter(model, cfg.served_image_size, tf.float32)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image] for image in calibration_images(
            representative, cfg.tflite_calibration_images))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    else:
        raise ValueError(f"unknown TFLite flavour {flavour!r}; expected one of {names.TFLITE_FLAVOURS}")
    return converter.convert()


def _converter(model: keras.Model, size: int, dtype: tf.DType) -> tf.lite.TFLiteConverter:
    """A converter of model(cast(image, float32)) for [1, size, size, 3] images of `dtype`."""
    # autograph=False: the functional model has no Python control flow, and autograph makes
    # tracing MobileNetV3 about 10x slower.
    @tf.function(autograph=False)
    def classify(image):
        return model(tf.cast(image, tf.float32), training=False)

    function = classify.get_concrete_function(tf.TensorSpec([1, size, size, 3], dtype, name="image"))
    # The trackable only has to hold the variables: given the Keras model, the converter saves it
    # with Keras' per-layer traces (about 30 s instead of 4 s for MobileNetV3 small on 2 cores).
    holder = tf.Module()
    holder.model_variables = list(model.variables)
    return tf.lite.TFLiteConverter.from_concrete_functions([function], holder)


def calibration_images(representative: tf.data.Dataset, count: int) -> Iterator[np.ndarray]:
    """float32 [1, S, S, 3] images: an all-0 and an all-255 one (the input range is then exactly
    [0, 255], so the uint8 input is the pixel), then the first `count` of `representative`."""
    images = representative.map(lambda *batch: batch[0]).unbatch().take(count)
    shape = [1, *images.element_spec.shape]
    yield np.zeros(shape, np.float32)
    yield np.full(shape, 255.0, np.float32)
    for image in images.as_numpy_iterator():
        yield image[np.newaxis].astype(np.float32)


def add_metadata(model_bytes: bytes, cfg: TrainConfig, flavour: str, temperature: float = 1.0) -> bytes:
    """The model with image-classifier metadata: the labels, the input spec (file and words), and
    the temperature its probabilities are scaled by (1: none)."""
    calibrated = (f" Calibrated: softmax of the logits divided by the temperature {temperature:.4g} fitted on "
                  "the eval split." if temperature != 1.0 else "")
    return tflite_format.with_metadata(
        model_bytes, name=f"{cfg.model_variant} MobileNetV3 scene classifier ({flavour})",
        description=f"Classifies a scene as one of: {', '.join(cfg.class_names)}.",
        input_description=input_description(cfg),
        output_description=f"Class probabilities in the order of {names.TFLITE_LABELS_FILE}.{calibrated}",
        labels=cfg.class_names, input_spec=input_spec(cfg),
        input_spec_description=f"The input spec as JSON: {', '.join(input_spec(cfg))}.")


def _write(path: str, data: bytes) -> None:
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(data)
