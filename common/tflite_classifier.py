"""Run an exported TFLite model (trainer_module/tflite_export.py) as an app would: the EdgeEvaluator
scores the models with it and the prediction client serves them with it.

The labels and the input spec come from the model's own metadata; `preprocess` makes the uint8
centre crop from image bytes with the project's preprocessing functions, so a TFLite model sees
exactly the pixels the SavedModel's serving signature gives its network. Runs on TensorFlow's
tf.lite.Interpreter; float16 and int8 models are used the same way.
"""
import os
from typing import List, Optional, Sequence, Tuple, Union

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow loads

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from trainer_module import image_format, model_input, names, preprocessing, signatures, tflite_format  # noqa: E402


def read_metadata(model: Union[bytes, str]) -> Tuple[Tuple[str, ...], dict]:
    """(labels in label order, input spec dict) from a TFLite model's bytes or path.

    Raises ValueError when it is not a TFLite model or lacks the metadata tflite_export writes.
    """
    if isinstance(model, (bytes, bytearray)):
        return tflite_format.read_metadata(bytes(model))
    return tflite_format.read_metadata(_read(model), model)


def _read(path: str) -> bytes:
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


def preprocess(image_bytes: bytes, resize_size: int, image_size: int,
               max_pixels: int = image_format.DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Encoded JPEG/PNG/GIF/BMP bytes -> uint8 [image_size, image_size, 3]: the model's input.

    The serving signature's pixels: preprocessing.decode_and_resize (decode, resize, round to 8
    bits), then model_input.center_crop. Raises tf.errors.InvalidArgumentError for an image that
    cannot be decoded or is over `max_pixels`.
    """
    return _preprocess(tf.constant(image_bytes), resize_size, image_size, max_pixels).numpy()


@tf.function
def _preprocess(image_bytes, resize_size: int, image_size: int, max_pixels: int):
    resized = preprocessing.decode_and_resize(image_bytes[tf.newaxis], resize_size, max_pixels)
    return tf.cast(model_input.center_crop(resized[0], image_size), tf.uint8)  # whole numbers: lossless


class TFLiteClassifier:
    """A TFLite classifier with the metadata tflite_export writes: labels, input spec, predict."""

    def __init__(self, path: str, num_threads: Optional[int] = None):
        """Loads `path`; raises ValueError when it is not a TFLite model with that metadata."""
        self.path = path
        content = _read(path)
        self.labels, self.input_spec = tflite_format.read_metadata(content, path)
        try:
            self._interpreter = tf.lite.Interpreter(model_content=content, num_threads=num_threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ValueError(f"{path}: TFLite cannot load it: {e}") from e
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._batches = True  # until a batch fails: a model whose shapes are fixed to batch 1
        self._check_shapes()

    @property
    def image_size(self) -> int:
        """The side of the model's square input."""
        return int(self.input_spec[names.INPUT_SPEC_IMAGE_SIZE])

    @property
    def resize_size(self) -> int:
        """The square side an image is resized to before its centre image_size crop."""
        return int(self.input_spec[names.INPUT_SPEC_RESIZE_SIZE])

    def _check_shapes(self) -> None:
        want_in, want_out = [1, self.image_size, self.image_size, 3], [1, len(self.labels)]
        got_in, got_out = self._input["shape"].tolist(), self._output["shape"].tolist()
        if (got_in, got_out) != (want_in, want_out):
            raise ValueError(f"{self.path}: tensors {got_in} -> {got_out} do not fit its metadata "
                             f"({want_in} -> {want_out})")

    def predict(self, images: np.ndarray) -> np.ndarray:
        """uint8 [n, S, S, 3] (preprocess's crops) -> float32 probabilities [n, classes]."""
        images = np.asarray(images)
        if images.ndim != 4 or list(images.shape[1:]) != [self.image_size, self.image_size, 3]:
            size = self.image_size
            raise ValueError(f"expected images [n, {size}, {size}, 3], got {images.shape}")
        if not len(images):
            return np.zeros([0, len(self.labels)], np.float32)
        if self._batches and len(images) > 1:
            try:
                return self._invoke(images)
            except (ValueError, RuntimeError):  # TFLite cannot resize this model's batch
                self._batches = False
        return np.concatenate([self._invoke(image[np.newaxis]) for image in images])

    def _invoke(self, images: np.ndarray) -> np.ndarray:
        """One interpreter call on a batch, resizing the input when the batch size changes."""
        index = self._input["index"]
        if self._interpreter.get_input_details()[0]["shape"][0] != len(images):
            self._interpreter.resize_tensor_input(index, images.shape, strict=False)
            self._interpreter.allocate_tensors()
        self._interpreter.set_tensor(index, _quantize(images, self._input))
        self._interpreter.invoke()
        probabilities = _dequantize(self._interpreter.get_tensor(self._output["index"]), self._output)
        if probabilities.shape != (len(images), len(self.labels)):
            raise ValueError(f"output {probabilities.shape} for {len(images)} images")
        return probabilities

    def classify_encoded(self, encoded: Sequence[bytes],
                         max_pixels: int = image_format.DEFAULT_MAX_IMAGE_PIXELS) -> Tuple[np.ndarray, List[str]]:
        """(probabilities [n, classes], errors [n]) for encoded images, as the SavedModel's
        serving_default answers: an image that fails gets zero probabilities and its reason
        (signatures.failure_reasons' words), the others are still classified, in one batch."""
        crops, accepted, refused, errors = [], [], [], [""] * len(encoded)
        for i, data in enumerate(encoded):
            try:
                crops.append(preprocess(data, self.resize_size, self.image_size, max_pixels))
                accepted.append(i)
            except tf.errors.InvalidArgumentError:
                refused.append(i)
        if refused:  # the serving signature's words, for all refused images in one call
            reasons = signatures.failure_reasons(tf.constant([encoded[i] for i in refused]), max_pixels)
            for i, reason in zip(refused, reasons.numpy()):
                errors[i] = reason.decode()
        probabilities = np.zeros([len(encoded), len(self.labels)], np.float32)
        if crops:
            probabilities[accepted] = self.predict(np.stack(crops))
        return probabilities, errors


def _quantize(images: np.ndarray, tensor: dict) -> np.ndarray:
    """Pixels as the input tensor's dtype, through its scale and zero point when it has them
    (the int8 model's uint8 input has scale 1, zero point 0: the pixels themselves)."""
    dtype = tensor["dtype"]
    scale, zero_point = tensor["quantization"]
    if not np.issubdtype(dtype, np.integer) or not scale:
        return images.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(images / scale + zero_point), info.min, info.max).astype(dtype)


def _dequantize(values: np.ndarray, tensor: dict) -> np.ndarray:
    """An output tensor's values as float32, through its scale and zero point when quantized."""
    scale, zero_point = tensor["quantization"]
    if np.issubdtype(values.dtype, np.integer) and scale:
        return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)
    return values.astype(np.float32)
