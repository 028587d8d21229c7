"""The pipeline DAG: one create_pipeline, read top to bottom like the graph it builds."""
from typing import Any, Dict, List, Optional, Sequence

import tensorflow_data_validation as tfdv
import tensorflow_model_analysis as tfma
from tfx import v1 as tfx

from components.image_example_gen import ImageExampleGen
from trainer_module import features
from trainer_module.config import transform_config


def make_eval_config(accuracy_lower_bound: float, accuracy_max_drop: float) -> tfma.EvalConfig:
    """TFMA config: accuracy gated absolutely and against the baseline, sliced by true class."""
    accuracy_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": accuracy_lower_bound}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -accuracy_max_drop}))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name=features.SERVING_EXAMPLES_SIGNATURE,
                                    label_key=features.LABEL_KEY,
                                    prediction_key=features.PROBABILITIES_OUTPUT)],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[features.CLASS_NAME_KEY])],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            tfma.MetricConfig(class_name="SparseCategoricalAccuracy", threshold=accuracy_threshold),
            tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
        ])])


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    data_root: str,
    class_names: Sequence[str],
    eval_fraction: float,
    input_fingerprint: str,
    transform_module: str,
    trainer_module: str,
    train_config: Dict[str, Any],
    accuracy_lower_bound: float,
    accuracy_max_drop: float,
    serving_model_dir: str,
    metadata_connection_config=None,
    beam_pipeline_args: Optional[List[str]] = None,
    enable_cache: bool = True,
) -> tfx.dsl.Pipeline:
    """Builds the TFX pipeline from labelled image folders to a pushed, gated SavedModel.

    transform_module / trainer_module are module files (local runs: TFX packages and hashes them)
    or the same code's import paths (images that have the package installed).
    """
    components = []

    # Ingest the image files as tf.Examples, counting and reporting every skipped file.
    example_gen = ImageExampleGen(input_base=data_root, class_names=list(class_names),
                                  eval_fraction=eval_fraction, input_fingerprint=input_fingerprint)
    components.append(example_gen)

    # Compute statistics (with image-domain statistics for the encoded bytes).
    statistics_gen = tfx.components.StatisticsGen(
        examples=example_gen.outputs["examples"],
        stats_options=tfdv.StatsOptions(enable_semantic_domain_stats=True))
    components.append(statistics_gen)

    # Infer a schema from the statistics.
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"],
                                          infer_feature_shape=True)
    components.append(schema_gen)

    # Check the statistics against the schema for anomalies.
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    components.append(example_validator)

    # Build the preprocessing graph (decode, resize, one-hot); pixels are not materialised.
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        materialize=False, disable_statistics=True,
        custom_config=transform_config(class_names, train_config["resize_size"]),
        **_module_arg(transform_module, "preprocessing_fn"))
    components.append(transform)

    # Train MobileNetV3 on the raw examples through the Transform graph, and export it.
    trainer = tfx.components.Trainer(
        examples=example_gen.outputs["examples"], transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"], custom_config=train_config,
        **_module_arg(trainer_module, "run_fn"))
    components.append(trainer)

    # Find the latest blessed model: the baseline for the change threshold.
    model_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    components.append(model_resolver)

    # Evaluate the candidate (and baseline) with TFMA and bless it if it passes the thresholds.
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"], model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"], schema=schema_gen.outputs["schema"],
        eval_config=make_eval_config(accuracy_lower_bound, accuracy_max_drop))
    components.append(evaluator)

    # Push a blessed model to the serving directory (<dir>/<version>/saved_model.pb).
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_model_dir)))
    components.append(pusher)

    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name, pipeline_root=pipeline_root, components=components,
        enable_cache=enable_cache, metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args or []))


def _module_arg(module: str, fn_name: str) -> Dict[str, str]:
    """A .py path becomes module_file; a dotted import path becomes `<module>.<fn>`."""
    if module.endswith(".py"):
        return {"module_file": module}
    return {fn_name: f"{module}.{fn_name}"}
