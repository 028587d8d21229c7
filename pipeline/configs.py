"""Every knob of the pipeline, in one place (TFX template convention).

local_runner.py turns each field of PipelineConfig and of trainer_module.train_config.TrainConfig
into a command-line flag (`--epochs 2`, `--data-dir ...`) whose help is the field's text, so the
defaults and meanings below are the documented ones (`python local_runner.py --help`).
"""
import dataclasses
import math
import os
from typing import Tuple

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

    pipeline_name: str = knob("intel-scenes", "pipeline name: ML Metadata context and output folders")
    output_dir: str = knob(os.path.join(REPO_ROOT, "outputs"),
                           "where pipeline artifacts, ML Metadata, the serving directory and caches go")
    data_dir: str = knob("", "labelled images: a folder, a .zip/.tar.gz archive, an http(s) URL or a "
                             "Google Drive link or gdrive:<id>; empty runs on the generated demo dataset")
    data_checksum: str = knob("", "sha256:<hex> or md5:<hex> that an archive or download must match")
    class_names: Tuple[str, ...] = knob((), "label space in label order; empty takes the sorted class "
                                            "folder names of the train split")
    eval_fraction: float = knob(0.2, "share of files sent to eval (by a stable hash of the path) when "
                                     "the data has no split folders")
    demo_train_per_class: int = knob(60, "demo dataset: train images per class")
    demo_eval_per_class: int = knob(20, "demo dataset: eval images per class")
    accuracy_lower_bound: float = knob(0.5, "gate: the candidate is blessed only with at least this "
                                            "eval accuracy")
    accuracy_max_drop: float = knob(0.02, "gate: largest accuracy drop allowed against the latest "
                                          "blessed model (not applied to the first model)")
    enable_cache: bool = knob(True, "reuse a component's earlier outputs when its inputs, parameters "
                                    "and code are unchanged (TFX caching)")
    beam_pipeline_args: Tuple[str, ...] = knob(LOCAL_BEAM_ARGS, "Apache Beam options of the Beam "
                                                                "components")

    def __post_init__(self):
        self.class_names = tuple(self.class_names)
        self.beam_pipeline_args = tuple(self.beam_pipeline_args)
        self.validate()

    def validate(self) -> None:
        """Raises ConfigError naming the first bad knob."""
        for name in ("eval_fraction", "accuracy_lower_bound", "accuracy_max_drop"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ConfigError(f"{name}={value!r}: must be a finite number")
        _check(0.0 < self.eval_fraction < 1.0, "eval_fraction", self.eval_fraction, "must be in (0, 1)")
        _check(0.0 <= self.accuracy_lower_bound <= 1.0, "accuracy_lower_bound", self.accuracy_lower_bound,
               "must be in [0, 1]")
        _check(0.0 <= self.accuracy_max_drop <= 1.0, "accuracy_max_drop", self.accuracy_max_drop,
               "must be in [0, 1]")
        _check(self.demo_train_per_class >= 1, "demo_train_per_class", self.demo_train_per_class, "must be >= 1")
        _check(self.demo_eval_per_class >= 1, "demo_eval_per_class", self.demo_eval_per_class, "must be >= 1")
        _check(bool(self.pipeline_name), "pipeline_name", self.pipeline_name, "must not be empty")

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.output_dir, "pipelines", self.pipeline_name)

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.output_dir, "metadata", self.pipeline_name, "metadata.sqlite")

    @property
    def serving_model_dir(self) -> str:
        return os.path.join(self.output_dir, "serving_model", self.pipeline_name)

    @property
    def cache_dir(self) -> str:
        return os.path.join(self.output_dir, "cache")


def _check(ok: bool, name: str, value, rule: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r}: {rule}")
