"""TF Serving warm-up requests: a few real eval images the server replays before it serves.

TF Serving loads a new version lazily: the first requests pay for kernel set-up (oneDNN
primitives per batch shape, the in-graph dataset's functions) and come seconds late. With
<SavedModel>/assets.extra/tf_serving_warmup_requests (names.WARMUP_REQUESTS_FILE) it replays
those PredictionLogs while loading and only then marks the version AVAILABLE.
"""
import os
from typing import List, Sequence

import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from trainer_module import input_pipeline, names


def sample_images(file_patterns: Sequence[str], count: int = names.WARMUP_IMAGES) -> List[bytes]:
    """The encoded image bytes of the first `count` examples in these gzipped TFRecord files."""
    records = tf.data.TFRecordDataset(input_pipeline.list_files(file_patterns), compression_type="GZIP")
    images = []
    for record in records.take(count):
        example = tf.train.Example.FromString(record.numpy())
        images.append(example.features.feature[names.IMAGE_KEY].bytes_list.value[0])
    return images


def warmup_requests(images: Sequence[bytes]) -> List[prediction_log_pb2.PredictionLog]:
    """Two serving_default requests: all the images as one batch, then the first alone (the two
    request shapes clients send; oneDNN sets up its kernels per shape)."""
    batches = [list(images), list(images[:1])] if len(images) > 1 else [list(images)]
    return [prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(
        request=predict_pb2.PredictRequest(
            model_spec=model_pb2.ModelSpec(signature_name=names.SERVING_BYTES_SIGNATURE),
            inputs={names.SERVING_BYTES_INPUT: tf.make_tensor_proto(batch, dtype=tf.string)})))
        for batch in batches]


def write_warmup_requests(saved_model_dir: str, images: Sequence[bytes]) -> str:
    """Writes warmup_requests(images) where TF Serving looks for them; returns the file's path."""
    extra = os.path.join(saved_model_dir, names.EXTRA_ASSETS_DIR)
    tf.io.gfile.makedirs(extra)
    path = os.path.join(extra, names.WARMUP_REQUESTS_FILE)
    with tf.io.TFRecordWriter(path) as writer:
        for log in warmup_requests(images):
            writer.write(log.SerializeToString())
    return path
