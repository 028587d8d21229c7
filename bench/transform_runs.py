"""tf.Transform through Beam as TFX's Transform executor runs it, and the Trainer's view of the result.

Beam runs with the pipeline's own LOCAL_BEAM_ARGS (DirectRunner, in memory, one worker).
"""
import glob
import os
import time
from typing import Callable, Dict, Optional

from bench import raw_examples, workdir
from components.image_example_gen import records


class _RecordBatchEncoder:
    """(RecordBatch, passthrough) -> serialized tf.Examples (tfx_bsl's encoder, as TFX's Transform)."""

    def __init__(self, schema):
        self._schema = schema
        self._encoder = None

    def __call__(self, record_batch, _unused_passthrough):
        if self._encoder is None:
            from tfx_bsl.coders import example_coder
            self._encoder = example_coder.RecordBatchToExamplesEncoder(self._schema)
        return self._encoder.encode(record_batch)


def run_transform(file_pattern: str, preprocessing_fn: Callable, custom_config: Dict, work_dir: str,
                  materialize: bool) -> Dict:
    """tft_beam on the raw examples, as TFX's Transform executor does it; returns timings and sizes.

    materialize=False: AnalyzeDataset + WriteTransformFn (this pipeline: graph only).
    materialize=True:  AnalyzeAndTransformDataset + WriteTransformFn + the transformed examples
                       written as gzipped tf.Examples (record batches -> tf.Example, like TFX).
    Like TFX, the raw examples' schema is written beside the graph (TFTransformOutput's
    raw_feature_spec() reads it), after the timer.
    The timer covers pipeline construction and run (Beam start-up, tracing, the data pass).
    """
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils
    from tfx_bsl.public import tfxio

    from pipeline.configs import LOCAL_BEAM_ARGS

    raw_schema = schema_utils.schema_from_feature_spec(records.raw_feature_spec())
    source = tfxio.TFExampleRecord(file_pattern=file_pattern, schema=raw_schema, telemetry_descriptors=["bench"])
    transform_fn_dir = os.path.join(work_dir, "transform_graph")
    transformed_prefix = os.path.join(work_dir, "transformed_examples", "transformed_examples")

    def fn(inputs):
        return preprocessing_fn(inputs, custom_config)

    start = time.perf_counter()
    with beam.Pipeline(options=PipelineOptions(list(LOCAL_BEAM_ARGS))) as p:
        with tft_beam.Context(temp_dir=os.path.join(work_dir, "tmp"), force_tf_compat_v1=False):
            dataset = (p | "Read" >> source.BeamSource(), source.TensorAdapterConfig())
            if materialize:
                (transformed_data, transformed_metadata), transform_fn = (
                    dataset | "AnalyzeAndTransform" >> tft_beam.AnalyzeAndTransformDataset(
                        fn, output_record_batches=True))
                schema = getattr(transformed_metadata, "dataset_metadata", transformed_metadata).schema
                _ = (transformed_data
                     | "Encode" >> beam.FlatMapTuple(_RecordBatchEncoder(schema))
                     | "Write" >> beam.io.WriteToTFRecord(transformed_prefix, file_name_suffix=".gz"))
            else:
                transform_fn = dataset | "Analyze" >> tft_beam.AnalyzeDataset(fn)
            _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(transform_fn_dir)
    seconds = time.perf_counter() - start
    metadata_io.write_metadata(dataset_metadata.DatasetMetadata(raw_schema),
                               os.path.join(transform_fn_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
    out = {"seconds": seconds, "transform_graph": transform_fn_dir,
           "transformed_files": [], "transformed_bytes": 0, "graph_bytes": workdir.dir_bytes(transform_fn_dir)}
    if materialize:
        out["transformed_files"] = sorted(glob.glob(transformed_prefix + "*"))
        out["transformed_bytes"] = sum(os.path.getsize(f) for f in out["transformed_files"])
    return out


def transform_layer(transform_graph_dir: Optional[str], custom_config: Dict):
    """(layer, how it was made, raw feature spec) as the Trainer's run_fn gets them.

    With a written graph: TFTransformOutput's transform_features_layer() and raw_feature_spec().
    With transform_graph_dir=None (TF Transform not installed, e.g. a GPU box): preprocessing_fn
    applied directly (the same ops without the SavedModel wrapper) and records.raw_feature_spec().
    """
    if transform_graph_dir:
        import tensorflow_transform as tft
        output = tft.TFTransformOutput(transform_graph_dir)
        return output.transform_features_layer(), "tft_layer", output.raw_feature_spec()
    from trainer_module import preprocessing
    return (lambda inputs: preprocessing.preprocessing_fn(inputs, custom_config),
            "preprocessing_fn applied directly (no TFT)", records.raw_feature_spec())
