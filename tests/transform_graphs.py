"""A real Transform graph (our preprocessing_fn written by tft_beam) for tests that run the Trainer
or an executor without a pipeline."""
import functools
import os
from typing import Dict, Iterable, Sequence

import apache_beam as beam
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

from trainer_module import preprocessing
from trainer_module.train_config import transform_config


def write_transform_graph(output_dir: str, temp_dir: str, raw_spec: Dict, instances: Iterable[Dict],
                          class_names: Sequence[str], resize_size: int) -> str:
    """Writes the Transform component's transform_graph (transform_fn/, transformed_metadata/,
    metadata/) of preprocessing_fn for `class_names` and `resize_size`; returns output_dir."""
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(raw_spec))
    fn = functools.partial(preprocessing.preprocessing_fn, custom_config=transform_config(class_names, resize_size))
    with tft_beam.Context(temp_dir=temp_dir), beam.Pipeline() as pipeline:
        raw = pipeline | beam.Create(list(instances))
        transform_fn = (raw, metadata) | tft_beam.AnalyzeDataset(fn)
        _ = transform_fn | tft_beam.WriteTransformFn(output_dir)
    metadata_io.write_metadata(metadata, os.path.join(output_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
    return output_dir
