"""Every knob of the pipeline, in one place (TFX template convention).

local_runner.py turns each field of PipelineConfig and of trainer_module.train_config.TrainConfig
into a command-line flag (`--epochs 2`, `--data-dir ...`) whose help is the field's text, so the
defaults and meanings below are the documented ones (`python local_runner.py --help`).
"""
import dataclasses
import math
import os
from typing import Tuple

from common import output_dir
from components.vertex_pusher.registry import MODEL_ID_PATTERN
from data_sources.limits import GB, SourceLimits
from trainer_module import image_format
from trainer_module.knobs import knob
from trainer_module.train_config import ConfigError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAINER_MODULE_DIR = os.path.join(REPO_ROOT, "trainer_module")
# TFX packages the folder of each module file (all its .py files) and hashes it for the cache:
# the Transform and Trainer code lives alone in trainer_module/, so edits elsewhere (pipeline/,
# components/) do not invalidate Transform or Trainer.
TRANSFORM_MODULE_FILE = os.path.join(TRAINER_MODULE_DIR, "preprocessing.py")
TRAINER_MODULE_FILE = os.path.join(TRAINER_MODULE_DIR, "trainer.py")
# The same code by import path, for images that have this package installed (Kubeflow / Vertex).
TRANSFORM_MODULE_PATH = "trainer_module.preprocessing"
TRAINER_MODULE_PATH = "trainer_module.trainer"

# Beam DirectRunner, in-memory, one worker: multi-processing re-imports TensorFlow in each
# worker and is slower on a 2-core machine. The Kubeflow runner swaps in Dataflow when asked.
LOCAL_BEAM_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")


@dataclasses.dataclass
class PipelineConfig:
    """Knobs of the pipeline around the Trainer (TrainConfig holds the training recipe)."""

    pipeline_name: str = knob("intel-scenes", "pipeline name: ML Metadata context and output folders", advanced=True)
    output_dir: str = knob(os.path.join(REPO_ROOT, "outputs"),
                           "where pipeline artifacts, ML Metadata, the serving directory and caches go")
    data_dir: str = knob("", "labelled images: a folder, a .zip/.tar.gz archive, an http(s) URL or a "
                             "Google Drive link or gdrive:<id>; empty runs on the generated demo dataset")
    data_checksum: str = knob("", "sha256:<hex> or md5:<hex> that an archive or download must match")
    class_names: Tuple[str, ...] = knob((), "label space in label order; empty takes the sorted class "
                                            "folder names of the train split")
    download_max_gb: float = knob(20.0, "largest download accepted (GB, announced or streamed); also "
                                        "checked against the free space of the cache before fetching", advanced=True)
    download_deadline_minutes: float = knob(120.0, "a whole download must finish within this many minutes",
                                            advanced=True)
    extract_max_gb: float = knob(50.0, "largest total uncompressed size of an archive's members (GB); also "
                                       "checked against the free space of the cache before extracting", advanced=True)
    extract_max_ratio: float = knob(100.0, "largest uncompressed / compressed size of an archive (and of "
                                           "each member): photos barely compress, bombs do", advanced=True)
    max_image_pixels: int = knob(image_format.DEFAULT_MAX_IMAGE_PIXELS,
                                 "pixel budget (width x height, read from the file header before decoding): "
                                 "larger images are skipped at ingestion (too_many_pixels) and refused by the "
                                 "serving signature; fits a 100-megapixel photo, stops decompression bombs",
                                 advanced=True)
    eval_fraction: float = knob(0.2, "share of files sent to eval (by a stable hash of the path) when "
                                     "the data has no split folders")
    demo_train_per_class: int = knob(60, "demo dataset: train images per class", advanced=True)
    demo_eval_per_class: int = knob(20, "demo dataset: eval images per class", advanced=True)
    accuracy_lower_bound: float = knob(0.5, "gate: the candidate is blessed only with at least this "
                                            "eval accuracy")
    accuracy_max_drop: float = knob(0.02, "gate: largest accuracy drop allowed against the latest "
                                          "blessed model (not applied to the first model)")
    # Per-class gates (every threshold above and here also gates the reference set, when given).
    class_recall_lower_bound: float = knob(0.5, "gate: every class's recall (the accuracy on the eval images "
                                                "of that class) must be at least this; a class without eval "
                                                "images fails it; 0 turns it off")
    class_recall_max_drop: float = knob(0.1, "gate: largest drop of any one class's recall against the latest "
                                             "blessed model on the same images (not applied to the first "
                                             "model); 1 turns it off")
    reference_eval_dir: str = knob("", "a fixed labelled image folder (<class>/<image>, every class; a local "
                                       "folder, or gs:// on the cluster) that the Evaluator also scores the "
                                       "candidate and the baseline on, with the same thresholds: the model is "
                                       "pushed only if it passes on the eval split and on this set, so the "
                                       "bar does not move with the data; versioned by its files' "
                                       "fingerprint. Empty: none")
    tflite_float16_max_drop: float = knob(0.002, "edge gate: the float16 TFLite model is pushed beside a blessed "
                                                 "SavedModel only if its eval accuracy is at most this far below "
                                                 "the SavedModel's on the same images")
    tflite_int8_max_drop: float = knob(0.01, "edge gate: the same margin for the int8 TFLite model")
    class_drift_max_linf: float = knob(0.1, "data gate: largest L-infinity distance (the largest change of one "
                                            "class's share) between the train split's class distribution "
                                            "and that of the data the latest blessed model was trained on; "
                                            "also eval vs train (skew)")
    size_drift_max_jsd: float = knob(0.1, "data gate: largest Jensen-Shannon divergence between the train "
                                          "split's image height (and width) distribution and that of the "
                                          "data the latest blessed model was trained on; also eval vs train")
    stop_on_skew: bool = knob(False, "data gate: stop the run when the eval split's class or image size "
                                     "distribution differs from the train split's beyond those thresholds "
                                     "(otherwise a warning in the log and the report)")
    proceed_despite_anomalies: bool = knob(False, "data gate: go on to train (and push, if blessed) although "
                                                  "data validation found anomalies; the run records it")
    label_vetting_max_drop: float = knob(0.40, "label vetting: stop when the latest blessed model agrees with a "
                                               "class's new labels more than this much less often than with its "
                                               "own eval labels (e.g. 0.96 -> 0.50)")
    label_vetting_concentration: float = knob(0.60, "label vetting: also stop when at least this share of a "
                                                    "class's disagreements are predicted as one other class "
                                                    "while its agreement dropped more than "
                                                    "label_vetting_concentration_min_drop (a swap)",
                                              advanced=True)
    label_vetting_concentration_min_drop: float = knob(0.20, "label vetting: the agreement drop the "
                                                             "concentration check needs", advanced=True)
    label_vetting_min_examples: int = knob(20, "label vetting: a class with fewer images (new, or in the "
                                               "blessed model's eval data) is not compared", advanced=True)
    label_vetting_train_sample: int = knob(2000, "label vetting: the train images scored besides the whole eval "
                                                 "split (the first ones, classes mixed); 0 for eval only",
                                           advanced=True)
    label_vetting_warn_only: bool = knob(False, "label vetting: record and warn instead of stopping the run "
                                                "(the labels are right: a class changed meaning)")
    enable_cache: bool = knob(True, "reuse a component's earlier outputs when its inputs, parameters "
                                    "and code are unchanged (TFX caching)", advanced=True)
    beam_pipeline_args: Tuple[str, ...] = knob(LOCAL_BEAM_ARGS, "Apache Beam options of the Beam "
                                                                "components", advanced=True)
    serving_config_base_path: str = knob("", "base_path of the model in the TF Serving model config file the "
                                             "Pusher keeps in the serving dir (models.config, version labels "
                                             "stable and canary): where the server sees the serving dir; empty: "
                                             "/models/<pipeline name>, TF Serving's docker layout", advanced=True)
    wait_for_lock: bool = knob(False, "when another run holds this pipeline's output dir, wait for it to "
                                      "finish instead of exiting with code 3", advanced=True)

    def __post_init__(self):
        self.class_names = tuple(self.class_names)
        self.beam_pipeline_args = tuple(self.beam_pipeline_args)
        self.validate()

    def validate(self) -> None:
        """Raises ConfigError naming the first bad knob."""
        for name in ("eval_fraction", "accuracy_lower_bound", "accuracy_max_drop", "download_max_gb",
                     "download_deadline_minutes", "extract_max_gb", "extract_max_ratio",
                     "tflite_float16_max_drop", "tflite_int8_max_drop",
                     "class_drift_max_linf", "size_drift_max_jsd",
                     "class_recall_lower_bound", "class_recall_max_drop"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ConfigError(f"{name}={value!r}: must be a finite number")
        _check(0.0 < self.eval_fraction < 1.0, "eval_fraction", self.eval_fraction, "must be in (0, 1)")
        _check(0.0 <= self.accuracy_lower_bound <= 1.0, "accuracy_lower_bound", self.accuracy_lower_bound,
               "must be in [0, 1]")
        _check(0.0 <= self.accuracy_max_drop <= 1.0, "accuracy_max_drop", self.accuracy_max_drop,
               "must be in [0, 1]")
        for name in ("tflite_float16_max_drop", "tflite_int8_max_drop", "class_recall_lower_bound",
                     "class_recall_max_drop"):
            _check(0.0 <= getattr(self, name) <= 1.0, name, getattr(self, name), "must be in [0, 1]")
        for name in ("class_drift_max_linf", "size_drift_max_jsd"):  # both measures lie in [0, 1]
            _check(0.0 <= getattr(self, name) <= 1.0, name, getattr(self, name), "must be in [0, 1]")
        for name in ("label_vetting_max_drop", "label_vetting_concentration", "label_vetting_concentration_min_drop"):
            value = getattr(self, name)
            _check(math.isfinite(value) and 0.0 <= value <= 1.0, name, value, "must be in [0, 1]")
        _check(self.label_vetting_min_examples >= 1, "label_vetting_min_examples", self.label_vetting_min_examples,
               "must be >= 1")
        _check(self.label_vetting_train_sample >= 0, "label_vetting_train_sample", self.label_vetting_train_sample,
               "must be >= 0")
        _check(self.demo_train_per_class >= 1, "demo_train_per_class", self.demo_train_per_class, "must be >= 1")
        _check(self.demo_eval_per_class >= 1, "demo_eval_per_class", self.demo_eval_per_class, "must be >= 1")
        _check(bool(self.pipeline_name), "pipeline_name", self.pipeline_name, "must not be empty")
        _check(self.max_image_pixels >= 1, "max_image_pixels", self.max_image_pixels, "must be >= 1")
        for name in ("download_max_gb", "download_deadline_minutes", "extract_max_gb"):
            _check(getattr(self, name) > 0, name, getattr(self, name), "must be > 0")
        _check(self.extract_max_ratio >= 1, "extract_max_ratio", self.extract_max_ratio, "must be >= 1")
        _check(not self.serving_config_base_path or self.serving_config_base_path.startswith("/")
               or "://" in self.serving_config_base_path, "serving_config_base_path", self.serving_config_base_path,
               "must be an absolute path or a URI (gs://...) as the TF Serving server sees it")

    @property
    def source_limits(self) -> SourceLimits:
        """The download and extraction bounds as data_sources takes them."""
        return SourceLimits(max_download_bytes=int(self.download_max_gb * GB),
                            deadline_s=self.download_deadline_minutes * 60.0,
                            max_extract_bytes=int(self.extract_max_gb * GB),
                            max_extract_ratio=self.extract_max_ratio)

    # Where a local run writes (common/output_dir.py).
    @property
    def pipeline_root(self) -> str:
        return output_dir.pipeline_root(self.output_dir, self.pipeline_name)

    @property
    def metadata_path(self) -> str:
        return output_dir.metadata_path(self.output_dir, self.pipeline_name)

    @property
    def serving_model_dir(self) -> str:
        return output_dir.serving_model_dir(self.output_dir, self.pipeline_name)

    @property
    def cache_dir(self) -> str:
        return output_dir.cache_dir(self.output_dir)

    @property
    def lock_path(self) -> str:
        return output_dir.lock_path(self.output_dir, self.pipeline_name)

    def log_path(self, run_id: str) -> str:
        return output_dir.log_path(self.output_dir, self.pipeline_name, run_id)


def _check(ok: bool, name: str, value, rule: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r}: {rule}")


@dataclasses.dataclass(frozen=True)
class VertexConfig:
    """Cluster knobs of kubeflow_v2_runner.py (Vertex AI Pipelines, Kubeflow Pipelines v2)."""

    # Where: everything a step reads or writes is on gs://, the cluster cannot see this disk.
    project: str = knob("", "Google Cloud project of the pipeline job, the training job, Dataflow and the "
                            "endpoint; required")
    region: str = knob("us-central1", "Vertex AI and Dataflow region")
    bucket: str = knob("", "gs:// root of every path below left empty")
    pipeline_root: str = knob("", "gs:// folder of every run's artifacts")
    data_dir: str = knob("", "gs:// labelled images <split>/<class>/<image> or <class>/<image>, passed "
                             "unchanged to ImageExampleGen")
    serving_model_dir: str = knob("", "gs:// folder the Pusher copies a blessed model to (without --endpoint)")
    image: str = knob("", "pipeline image built from ./Dockerfile: every step, the training job and the "
                          "Dataflow workers run it")
    output_file: str = knob("", "the compiled PipelineJob JSON")
    cache_ingestion: bool = knob(False, "serve ImageExampleGen from the backend's cache while --data-dir is "
                                        "unchanged (version your data paths); off: ingestion re-lists the "
                                        "data on every run, and every later step runs again as its input "
                                        "artifacts are new")
    # Dataflow: the Beam components ImageExampleGen, StatisticsGen, Transform and Evaluator.
    dataflow: bool = knob(False, "run the Beam components on Dataflow; otherwise Beam's DirectRunner in "
                                 "each step's container")
    temp_location: str = knob("", "Dataflow: gs:// temp and staging folder")
    dataflow_machine_type: str = knob("n1-standard-4", "Dataflow: worker machine type")
    dataflow_max_workers: int = knob(4, "Dataflow: autoscaling cap on the number of workers")
    # Vertex AI Training: the Trainer.
    vertex_training: bool = knob(True, "train in a Vertex AI custom job; --no-vertex-training trains "
                                       "inside the Trainer step's container")
    training_machine_type: str = knob("n1-standard-8", "Vertex AI Training: worker machine type")
    accelerator_type: str = knob("NVIDIA_TESLA_T4", "Vertex AI Training: GPU type of the worker")
    accelerator_count: int = knob(1, "Vertex AI Training: GPUs on the worker (more than 1: "
                                     "MirroredStrategy, --batch-size per GPU); 0 trains on CPU")
    # Vertex AI endpoint: the Pusher.
    endpoint: str = knob("", "deploy a blessed model to this Vertex AI endpoint (created if missing); "
                             "empty copies it to --serving-model-dir")
    serving_machine_type: str = knob("n1-standard-4", "endpoint: machine type of the deployed model")
    vertex_model: str = knob("", "Model Registry: the id of the Model every blessed push becomes a new version of "
                                 "(projects/<project>/locations/<region>/models/<id>, created by the first push); "
                                 "empty: the pipeline name")
    canary_traffic_percent: int = knob(10, "endpoint: share of the traffic (percent) a new version gets beside the "
                                           "stable version until `python -m releases promote` (the first version "
                                           "gets 100); 0 deploys it without traffic")
    serving_image: str = knob("", "endpoint: serving container; empty: the TF Serving 2.16.1 image built from "
                                  "serving_client/vertex.Dockerfile in the project's registry (Vertex has no "
                                  "prebuilt TF 2.16 image; docs/serving.md)")
    # Submission.
    submit: bool = knob(False, "submit the compiled job to Vertex AI Pipelines (needs credentials); "
                               "otherwise compile only (no credentials, no network)")
    service_account: str = knob("", "service account that runs the pipeline job, the training job and the "
                                    "Dataflow workers; empty: the project's Compute Engine default")
    labels: Tuple[str, ...] = knob((), "labels of the pipeline job, each key=value")

    def __post_init__(self):
        object.__setattr__(self, "labels", tuple(self.labels))
        _check(self.dataflow_max_workers >= 1, "dataflow_max_workers", self.dataflow_max_workers, "must be >= 1")
        _check(self.accelerator_count >= 0, "accelerator_count", self.accelerator_count, "must be >= 0")
        _check(0 <= self.canary_traffic_percent <= 100, "canary_traffic_percent", self.canary_traffic_percent,
               "must be in [0, 100]")
        _check(not self.vertex_model or MODEL_ID_PATTERN.fullmatch(self.vertex_model) is not None,
               "vertex_model", self.vertex_model, "a Vertex AI model id is 1 to 63 lowercase letters, digits, "
               "'_' or '-', starting with a letter")
        for label in self.labels:
            key, sep, _ = label.partition("=")
            _check(bool(sep and key), "labels", label, "each label must be key=value")

    @property
    def label_dict(self) -> dict:
        """The labels as the PipelineJob takes them: {key: value}."""
        return dict(label.split("=", 1) for label in self.labels)


def all_knob_names() -> frozenset:
    """Every knob of either runner: a settings file shared by both may hold any of them."""
    from trainer_module.train_config import TrainConfig

    return frozenset(f.name for cls in (PipelineConfig, VertexConfig, TrainConfig) for f in dataclasses.fields(cls))
