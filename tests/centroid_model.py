"""A stand-in for the pushed model, for the prediction log and monitor tests: the project's serving
signature (signatures.classify_images: decoding, pixel budget, per-image errors) over a classifier
that takes the class whose mean colour (from labelled training images) is nearest an image's."""
import glob
import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from trainer_module import names, preprocessing, signatures
from trainer_module.train_config import TrainConfig

SIZE = 32


def _decode(features):
    return {names.TRANSFORMED_IMAGE_KEY: preprocessing.decode_and_resize(
        tf.reshape(features[names.IMAGE_KEY], [-1]), SIZE)}


class CentroidModel(tf.Module):
    """serving_default: probabilities softmax(-distance / temperature) to each class's mean RGB."""

    def __init__(self, class_names: Sequence[str], centroids: np.ndarray, temperature: float = 8.0):
        super().__init__()
        self.class_names = tf.constant(list(class_names))
        self.centroids = tf.constant(centroids, tf.float32)
        self.temperature = temperature
        self.cfg = TrainConfig(class_names=tuple(class_names), image_size=SIZE, resize_size=SIZE)

    def _classify(self, images, training=False):
        means = tf.reduce_mean(tf.cast(images, tf.float32), axis=[1, 2])
        distance = tf.norm(means[:, None, :] - self.centroids[None], axis=-1)
        return tf.nn.softmax(-distance / self.temperature)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=names.SERVING_BYTES_INPUT)])
    def serve(self, image_bytes):
        return signatures.classify_images(self._classify, _decode, tf.io.FixedLenFeature([1], tf.string),
                                          self.class_names, image_bytes, self.cfg)


def export(train_dir: str, folder: str) -> str:
    """Saves the model fitted on <train_dir>/<class>/* as a SavedModel in `folder`."""
    class_names = sorted(d for d in os.listdir(train_dir) if os.path.isdir(os.path.join(train_dir, d)))
    centroids = []
    for name in class_names:
        files = glob.glob(os.path.join(train_dir, name, "*"))
        centroids.append(np.mean([tf.image.resize(tf.io.decode_image(tf.io.read_file(f), 3,
                                                                    expand_animations=False), (SIZE, SIZE))
                                  .numpy().mean(axis=(0, 1)) for f in files], axis=0))
    model = CentroidModel(class_names, np.array(centroids))
    tf.saved_model.save(model, folder, signatures={names.SERVING_BYTES_SIGNATURE: model.serve})
    return folder
