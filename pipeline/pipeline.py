"""The pipeline DAG: one create_pipeline, read top to bottom like the graph it builds."""
import dataclasses
import json
from typing import Any, Dict, Optional, Tuple

from tfx import v1 as tfx

from common import dataset, pipeline_names
from components.atomic_pusher.component import AtomicPusher
from components.baseline_resolver import latest_blessed_model_resolver
from components.curated_schema_gen import CuratedSchemaGen
from components.data_gate.component import DataGate
from components.edge_evaluator.component import EdgeEvaluator
from components.image_example_gen.component import ImageExampleGen
from components.label_vetter.component import LabelVetter, blessed_model_training_data_resolver
from components.statistics_resolver import blessed_model_statistics_resolver
from components.vertex_pusher.component import VertexRegistryPusher
from pipeline import configs, data_validation
from pipeline.evaluation import make_eval_config
from pipeline.schema.curated import render_schema
from trainer_module import names
from trainer_module.train_config import TrainConfig, transform_config


# A reference set of class folders is hashed into two splits like any data, and both are scored: an
# even split makes an empty one (which the Evaluator could not read) least likely.
REFERENCE_EVAL_FRACTION = 0.5


@dataclasses.dataclass(frozen=True)
class Platform:
    """Where the pipeline runs: what a local run and a cluster run differ in (the knobs are the same).

    module_files: True, TFX packages trainer_module/ as a wheel and hashes it for the Transform and
    Trainer cache (local runs); False, the steps import the same code from the installed package
    (images built from ./Dockerfile). custom_resolvers: the baseline is the latest blessed model
    other than the candidate, so an unchanged rerun is cached end to end, and the train split is
    compared with the data that trained the served model, and the served model vets the new labels
    against it (LabelVetter); the KFP v2 compiler turns only TFX's
    built-in resolver strategies into backend queries, so the Kubeflow runner turns them off
    (components/baseline_resolver.py). vertex_training / vertex_serving: custom_config entries of
    the Google Cloud AI Platform extension (kubeflow_v2_runner.py builds them): the Trainer runs as
    a Vertex AI training job and the Pusher deploys to a Vertex endpoint instead of a serving dir.
    """
    pipeline_root: str
    data_root: str
    serving_model_dir: str
    beam_pipeline_args: Tuple[str, ...] = configs.LOCAL_BEAM_ARGS
    metadata_connection_config: Any = None  # local: SQLite; a cluster's backend owns its own
    module_files: bool = True
    custom_resolvers: bool = True
    vertex_training: Optional[Dict[str, Any]] = None
    vertex_serving: Optional[Dict[str, Any]] = None


def create_pipeline(cfg: configs.PipelineConfig, train: TrainConfig, platform: Platform) -> tfx.dsl.Pipeline:
    """Builds the TFX pipeline from labelled image folders to a pushed, gated SavedModel.

    cfg: the pipeline's knobs (data, gates); train: the training recipe, with the label space the
    runner found in the data (train.class_names); platform: where it runs.
    """
    class_names = list(train.class_names)
    train_config = json.loads(train.to_json())
    components = []

    # Ingest the image files as tf.Examples, counting and reporting every skipped file.
    example_gen = ImageExampleGen(input_base=platform.data_root, class_names=class_names,
                                  eval_fraction=cfg.eval_fraction, max_image_pixels=cfg.max_image_pixels)
    components.append(example_gen)

    # Import the curated schema (pipeline/schema/) with this configuration's classes and pixel budget.
    schema_gen = CuratedSchemaGen(schema_text=render_schema(class_names, cfg.max_image_pixels))
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
    skew_validator = data_validation.skew_validator(statistics_gen.outputs["statistics"], cfg)
    components.append(skew_validator)

    drift_validator = statistics_resolver = None
    if platform.custom_resolvers:
        # Find the statistics of the examples that trained the latest blessed model.
        statistics_resolver = blessed_model_statistics_resolver(statistics_gen.outputs["statistics"])
        components.append(statistics_resolver)

        # Compare the train split with that data (drift: class and image size distributions).
        drift_validator = data_validation.drift_validator(
            statistics_gen.outputs["statistics"], statistics_resolver.outputs["statistics"], cfg)
        components.append(drift_validator)

    # Stop the run on any anomaly, before anything is trained (unless proceed_despite_anomalies).
    data_gate = DataGate(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"],
        anomalies=example_validator.outputs["anomalies"], skew_anomalies=skew_validator.outputs["anomalies"],
        drift_anomalies=drift_validator.outputs["anomalies"] if drift_validator else None,
        baseline_statistics=statistics_resolver.outputs["statistics"] if statistics_resolver else None,
        proceed_despite_anomalies=cfg.proceed_despite_anomalies, stop_on_skew=cfg.stop_on_skew)
    components.append(data_gate)

    # Build the preprocessing graph (decode, resize, one-hot) once the gate passed; pixels are not
    # materialised.
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        materialize=False, disable_statistics=True,
        custom_config=transform_config(class_names, train.resize_size, cfg.max_image_pixels),
        **_module_arg(platform, configs.TRANSFORM_MODULE_FILE, configs.TRANSFORM_MODULE_PATH,
                      "preprocessing_fn"))
    transform.add_upstream_node(data_gate)  # an order, not data: Transform's cache keys stay its inputs
    components.append(transform)

    label_vetter = None
    if platform.custom_resolvers:
        # Find the latest blessed model and the examples it was trained on (none on the first run).
        training_data_resolver = blessed_model_training_data_resolver(example_gen.outputs["examples"])
        components.append(training_data_resolver)

        # Score this run's labelled data with that model; stop when it disagrees with a class's new
        # labels far more than with its own (a label swap), before anything is trained.
        label_vetter = LabelVetter(
            examples=example_gen.outputs["examples"], model=training_data_resolver.outputs["model"],
            baseline_examples=training_data_resolver.outputs["examples"],
            train_sample=cfg.label_vetting_train_sample, max_drop=cfg.label_vetting_max_drop,
            concentration=cfg.label_vetting_concentration,
            concentration_min_drop=cfg.label_vetting_concentration_min_drop,
            min_examples=cfg.label_vetting_min_examples, warn_only=cfg.label_vetting_warn_only)
        label_vetter.add_upstream_node(data_gate)  # the cheap checks first: score only data the gate let through
        components.append(label_vetter)

    # Train MobileNetV3 on the raw examples through the Transform graph, and export it.
    trainer_class = (tfx.extensions.google_cloud_ai_platform.Trainer if platform.vertex_training
                     else tfx.components.Trainer)
    trainer = trainer_class(
        examples=example_gen.outputs["examples"], transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        custom_config={names.TRAIN_CONFIG_KEY: train_config, names.MAX_IMAGE_PIXELS_KEY: cfg.max_image_pixels,
                       **(platform.vertex_training or {})},
        **_module_arg(platform, configs.TRAINER_MODULE_FILE, configs.TRAINER_MODULE_PATH, "run_fn"))
    if label_vetter is not None:
        trainer.add_upstream_node(label_vetter)  # an order, not data: the Trainer's cache keys stay its inputs
    components.append(trainer)

    # Find the latest blessed model: the baseline for the change threshold.
    model_resolver = latest_blessed_model_resolver(
        candidate=trainer.outputs["model"], exclude_candidate=platform.custom_resolvers)
    components.append(model_resolver)

    # Evaluate the candidate (and baseline) with TFMA and bless it if it passes the thresholds.
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"], model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"], schema=schema_gen.outputs["schema"],
        eval_config=make_eval_config(cfg, class_names))
    components.append(evaluator)

    # With a fixed reference set: ingest it (versioned by its files' fingerprint, like the data) and
    # score candidate and baseline on every image of it with the same thresholds, so the bar cannot
    # move with the data drop; the Pusher needs this blessing too.
    reference_evaluator = None
    if cfg.reference_eval_dir:
        reference_gen = ImageExampleGen(
            input_base=cfg.reference_eval_dir, class_names=class_names, eval_fraction=REFERENCE_EVAL_FRACTION,
            max_image_pixels=cfg.max_image_pixels).with_id(pipeline_names.REFERENCE_EXAMPLE_GEN_NODE)
        components.append(reference_gen)
        reference_evaluator = tfx.components.Evaluator(
            examples=reference_gen.outputs["examples"], model=trainer.outputs["model"],
            baseline_model=model_resolver.outputs["model"], schema=schema_gen.outputs["schema"],
            eval_config=make_eval_config(cfg, class_names),
            example_splits=list(dataset.SPLITS)).with_id(pipeline_names.REFERENCE_EVALUATOR_NODE)
        components.append(reference_evaluator)
    reference_blessing = reference_evaluator.outputs["blessing"] if reference_evaluator else None

    # Score the TFLite models like the SavedModel on the same images; gate each against it (edge gate).
    edge_evaluator = EdgeEvaluator(
        examples=example_gen.outputs["examples"], transform_graph=transform.outputs["transform_graph"],
        model=trainer.outputs["model"], blessing=evaluator.outputs["blessing"],
        float16_max_drop=cfg.tflite_float16_max_drop, int8_max_drop=cfg.tflite_int8_max_drop,
        max_image_pixels=cfg.max_image_pixels)
    components.append(edge_evaluator)

    # Push a blessed model to the serving directory (<dir>/<version>/saved_model.pb, and the TFLite
    # models that passed the edge gate in <version>/tflite/, written aside and renamed: complete or
    # absent) or endpoint.
    if platform.vertex_serving:
        # A new version of one Model in the Vertex AI Model Registry (TFX's Vertex Pusher uploads
        # each push as a Model of its own), with its model card and a canary share of the endpoint.
        pusher = VertexRegistryPusher(
            model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
            custom_config=platform.vertex_serving,
            edge_evaluation=edge_evaluator.outputs[pipeline_names.EDGE_EVALUATION_OUTPUT],
            reference_blessing=reference_blessing,
            **_model_card_inputs(example_gen, trainer, evaluator, data_gate))
    else:
        pusher = AtomicPusher(
            model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
            edge_evaluation=edge_evaluator.outputs[pipeline_names.EDGE_EVALUATION_OUTPUT],
            reference_blessing=reference_blessing,
            push_destination=tfx.proto.PushDestination(
                filesystem=tfx.proto.PushDestination.Filesystem(base_directory=platform.serving_model_dir)),
            # What the version's model card shows, and where TF Serving finds the serving dir.
            **_model_card_inputs(example_gen, trainer, evaluator, data_gate),
            serving_base_path=cfg.serving_config_base_path)
    components.append(pusher)

    return tfx.dsl.Pipeline(
        pipeline_name=cfg.pipeline_name, pipeline_root=platform.pipeline_root, components=components,
        enable_cache=cfg.enable_cache, metadata_connection_config=platform.metadata_connection_config,
        beam_pipeline_args=list(platform.beam_pipeline_args))


def _model_card_inputs(example_gen, trainer, evaluator, data_gate) -> Dict[str, Any]:
    """The Pusher's inputs its model card reads: data, recipe, evaluation and the data gate's result."""
    return {"examples": example_gen.outputs[pipeline_names.EXAMPLES_OUTPUT],
            "model_run": trainer.outputs[pipeline_names.MODEL_RUN_OUTPUT],
            "evaluation": evaluator.outputs[pipeline_names.EVALUATION_OUTPUT],
            "data_validation": data_gate.outputs[pipeline_names.DATA_GATE_OUTPUT]}


def _module_arg(platform: Platform, module_file: str, module_path: str, fn_name: str) -> Dict[str, str]:
    """The module file TFX packages (local), or the function's import path (installed package)."""
    if platform.module_files:
        return {"module_file": module_file}
    return {fn_name: f"{module_path}.{fn_name}"}
