"""The records ImageExampleGen writes: one tf.Example per image file (TensorFlow only, no TFX).

The bench scripts and the tests write records with the same function, also on a machine that has
TensorFlow but not TFX (a GPU box for bench.gpu_check).
"""
from typing import Dict, Mapping, Optional

import tensorflow as tf

from trainer_module import names


def _bytes_feature(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int_feature(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def _float_feature(value: float) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[value]))


def make_example(data: bytes, label: int, class_name: str, relpath: str,
                 height: int, width: int, fmt: str,
                 content: Optional[Mapping[str, float]] = None) -> tf.train.Example:
    """The tf.Example for one image file (bytes kept exactly as read); `content`: its content
    statistics (common/image_content.statistics), one float feature each, for data validation
    only (Transform and the Trainer read the image and the label alone)."""
    example = tf.train.Example(features=tf.train.Features(feature={
        names.IMAGE_KEY: _bytes_feature(data),
        names.LABEL_KEY: _int_feature(label),
        names.CLASS_NAME_KEY: _bytes_feature(class_name.encode("utf-8")),
        names.PATH_KEY: _bytes_feature(relpath.encode("utf-8")),
        names.HEIGHT_KEY: _int_feature(height),
        names.WIDTH_KEY: _int_feature(width),
        names.FORMAT_KEY: _bytes_feature(fmt.encode("utf-8")),
    }))
    for key, value in (content or {}).items():
        example.features.feature[key].CopyFrom(_float_feature(value))
    return example


def raw_feature_spec() -> Dict[str, tf.io.FixedLenFeature]:
    """The features the Transform graph reads, as SchemaGen infers them (one value each).

    For code that parses the records without a Transform graph at hand (benches, tests); the
    Trainer reads the same spec back from the graph (TFTransformOutput.raw_feature_spec()).
    """
    return {names.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
            names.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}
