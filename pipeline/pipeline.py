"""The pipeline DAG: one create_pipeline, read top to bottom like the graph it builds."""
from typing import Any, Dict, List, Optional, Sequence

from tfx import v1 as tfx

from components.atomic_pusher.component import AtomicPusher
from components.baseline_resolver import latest_blessed_model_resolver
from components.curated_schema_gen import CuratedSchemaGen
from components.data_gate.component import DataGate
from components.edge_evaluator.component import EdgeEvaluator
from components.image_example_gen.component import ImageExampleGen
from components.statistics_resolver import blessed_model_statistics_resolver
from pipeline import configs, data_validation
from pipeline.evaluation import make_eval_config
from pipeline.schema.curated import render_schema
from trainer_module.names import EDGE_EVALUATION_OUTPUT, TRAIN_CONFIG_KEY
from trainer_module.train_config import transform_config


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    data_root: str,
    class_names: Sequence[str],
    eval_fraction: float,
    transform_module: str,
    trainer_module: str,
    train_config: Dict[str, Any],
    accuracy_lower_bound: float,
    accuracy_max_drop: float,
    serving_model_dir: str,
    metadata_connection_config=None,
    beam_pipeline_args: Optional[List[str]] = None,
    enable_cache: bool = True,
    vertex_training_config: Optional[Dict[str, Any]] = None,
    vertex_serving_config: Optional[Dict[str, Any]] = None,
    exclude_candidate_from_baseline: bool = True,
    class_drift_max_linf: float = configs.PipelineConfig.class_drift_max_linf,
    size_drift_max_jsd: float = configs.PipelineConfig.size_drift_max_jsd,
    stop_on_skew: bool = configs.PipelineConfig.stop_on_skew,
    proceed_despite_anomalies: bool = configs.PipelineConfig.proceed_despite_anomalies,
    compare_with_served_data: bool = True,
    tflite_float16_max_drop: float = configs.PipelineConfig.tflite_float16_max_drop,
    tflite_int8_max_drop: float = configs.PipelineConfig.tflite_int8_max_drop,
) -> tfx.dsl.Pipeline:
    """Builds the TFX pipeline from labelled image folders to a pushed, gated SavedModel.

    transform_module / trainer_module are module files (local runs: TFX packages and hashes them)
    or the same code's import paths (images that have the package installed).
    vertex_training_config / vertex_serving_config: custom_config entries of the Google Cloud AI
    Platform extension (kubeflow_v2_runner.py builds them); given, the Trainer runs as a Vertex AI
    training job and the Pusher deploys to a Vertex endpoint instead of a serving directory.
    exclude_candidate_from_baseline: the baseline is the latest blessed model other than the
    candidate, so an unchanged rerun is cached end to end; KFP v2 compiles only TFX's built-in
    resolver strategies, so its runner passes False (see components/baseline_resolver.py).
    class_drift_max_linf, size_drift_max_jsd, stop_on_skew, proceed_despite_anomalies: the data
    gate (PipelineConfig's knobs). compare_with_served_data: compare the train split with the
    data that trained the latest blessed model (a custom resolver strategy: the Kubeflow runner
    passes False, as for the baseline model).
    tflite_float16_max_drop, tflite_int8_max_drop: the edge gate (PipelineConfig's knobs): a TFLite
    model is pushed beside a blessed SavedModel only if its eval accuracy is at most this far below
    the SavedModel's. With vertex_serving_config, the Google Cloud Pusher has no edge input: the
    EdgeEvaluator still scores and gates the TFLite models, which stay in the Model artifact's
    Format-TFLite folder (as they do on a gs:// serving dir, which TFX's own executor pushes).
    """
    components = []

    # Ingest the image files as tf.Examples, counting and reporting every skipped file.
    example_gen = ImageExampleGen(input_base=data_root, class_names=list(class_names),
                                  eval_fraction=eval_fraction,
                                  max_image_pixels=train_config["max_image_pixels"])
    components.append(example_gen)

    # Import the curated schema (pipeline/schema/) with this configuration's classes and pixel budget.
    schema_gen = CuratedSchemaGen(schema_text=render_schema(class_names, train_config["max_image_pixels"]))
    components.append(schema_gen)

    # Compute statistics per split (with image-domain statistics for the encoded bytes).
    statistics_gen = tfx.components.StatisticsGen(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        stats_options=data_validation.stats_options())
    components.append(statistics_gen)

    # Check each split against the curated schema.
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    components.append(example_validator)

    # Compare the eval split with the train split (skew: class and image size distributions).
    skew_validator = data_validation.skew_validator(statistics_gen.outputs["statistics"],
                                                    class_drift_max_linf, size_drift_max_jsd)
    components.append(skew_validator)

    drift_validator = statistics_resolver = None
    if compare_with_served_data:
        # Find the statistics of the examples that trained the latest blessed model.
        statistics_resolver = blessed_model_statistics_resolver(statistics_gen.outputs["statistics"])
        components.append(statistics_resolver)

        # Compare the train split with that data (drift: class and image size distributions).
        drift_validator = data_validation.drift_validator(
            statistics_gen.outputs["statistics"], statistics_resolver.outputs["statistics"],
            class_drift_max_linf, size_drift_max_jsd)
        components.append(drift_validator)

    # Stop the run on any anomaly, before anything is trained (unless proceed_despite_anomalies).
    data_gate = DataGate(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"],
        anomalies=example_validator.outputs["anomalies"], skew_anomalies=skew_validator.outputs["anomalies"],
        drift_anomalies=drift_validator.outputs["anomalies"] if drift_validator else None,
        baseline_statistics=statistics_resolver.outputs["statistics"] if statistics_resolver else None,
        proceed_despite_anomalies=proceed_despite_anomalies, stop_on_skew=stop_on_skew)
    components.append(data_gate)

    # Build the preprocessing graph (decode, resize, one-hot) once the gate passed; pixels are not
    # materialised.
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        materialize=False, disable_statistics=True,
        custom_config=transform_config(class_names, train_config["resize_size"],
                                       train_config["max_image_pixels"]),
        **_module_arg(transform_module, "preprocessing_fn"))
    transform.add_upstream_node(data_gate)  # an order, not data: Transform's cache keys stay its inputs
    components.append(transform)

    # Train MobileNetV3 on the raw examples through the Transform graph, and export it.
    trainer_class = (tfx.extensions.google_cloud_ai_platform.Trainer if vertex_training_config
                     else tfx.components.Trainer)
    trainer = trainer_class(
        examples=example_gen.outputs["examples"], transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        custom_config={TRAIN_CONFIG_KEY: train_config, **(vertex_training_config or {})},
        **_module_arg(trainer_module, "run_fn"))
    components.append(trainer)

    # Find the latest blessed model: the baseline for the change threshold.
    model_resolver = latest_blessed_model_resolver(
        candidate=trainer.outputs["model"], exclude_candidate=exclude_candidate_from_baseline)
    components.append(model_resolver)

    # Evaluate the candidate (and baseline) with TFMA and bless it if it passes the thresholds.
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"], model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"], schema=schema_gen.outputs["schema"],
        eval_config=make_eval_config(accuracy_lower_bound, accuracy_max_drop, class_names=class_names))
    components.append(evaluator)

    # Score the TFLite models like the SavedModel on the same images; gate each against it (edge gate).
    edge_evaluator = EdgeEvaluator(
        examples=example_gen.outputs["examples"], transform_graph=transform.outputs["transform_graph"],
        model=trainer.outputs["model"], blessing=evaluator.outputs["blessing"],
        float16_max_drop=tflite_float16_max_drop, int8_max_drop=tflite_int8_max_drop,
        max_image_pixels=train_config["max_image_pixels"])
    components.append(edge_evaluator)

    # Push a blessed model to the serving directory (<dir>/<version>/saved_model.pb, and the TFLite
    # models that passed the edge gate in <version>/tflite/, written aside and renamed: complete or
    # absent) or endpoint.
    if vertex_serving_config:
        pusher = tfx.extensions.google_cloud_ai_platform.Pusher(
            model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
            custom_config=vertex_serving_config)
    else:
        pusher = AtomicPusher(
            model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
            edge_evaluation=edge_evaluator.outputs[EDGE_EVALUATION_OUTPUT],
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
