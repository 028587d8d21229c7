"""Every knob of the pipeline, in one place (TFX template convention).

local_runner.py turns each field of PipelineConfig and of trainer_module.config.TrainConfig into a
command-line flag (`--epochs 2`, `--data-dir ...`), so the defaults below are the documented ones.
"""
import dataclasses
import os
from typing import Tuple

from trainer_module.config import TrainConfig

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAINER_MODULE_DIR = os.path.join(REPO_ROOT, "trainer_module")
# TFX packages the folder of each module file (all its .py files) and hashes it for the cache:
# the Transform and Trainer code lives alone in trainer_module/, so edits elsewhere (pipeline/,
# components/) do not invalidate Transform or Trainer.
TRANSFORM_MODULE_FILE = os.path.join(TRAINER_MODULE_DIR, "preprocessing.py")
TRAINER_MODULE_FILE = os.path.join(TRAINER_MODULE_DIR, "trainer.py")

# The Intel Image Classification scenes: the label space when no data folder is listed.
INTEL_CLASS_NAMES = ("buildings", "forest", "glacier", "mountain", "sea", "street")

# Beam DirectRunner, in-memory, one worker: multi-processing re-imports TensorFlow in each
# worker and is slower on a 2-core machine. On Dataflow these are replaced (issue: Vertex runner).
LOCAL_BEAM_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")


@dataclasses.dataclass
class PipelineConfig:
    """Knobs of the pipeline around the Trainer (TrainConfig holds the training recipe)."""

    pipeline_name: str = "intel-scenes"
    # Where pipeline artifacts, ML Metadata, the serving directory and caches go.
    output_dir: str = os.path.join(REPO_ROOT, "outputs")
    # Data: a folder, an archive (.zip/.tar.gz), an http(s) URL or a Google Drive link/id;
    # empty runs on the generated demo dataset.
    data_dir: str = ""
    data_checksum: str = ""  # "sha256:<hex>" or "md5:<hex>" for archives and downloads
    # Label space: empty derives the sorted class folder names from the train split.
    class_names: Tuple[str, ...] = ()
    # Share of files sent to eval (by path hash) when the data has a single split.
    eval_fraction: float = 0.2
    # Demo dataset size (images per class).
    demo_train_per_class: int = 60
    demo_eval_per_class: int = 20
    # Evaluation gate: absolute lower bound on accuracy, and the largest accuracy drop allowed
    # against the latest blessed model (skipped on the first run, when there is none).
    accuracy_lower_bound: float = 0.5
    accuracy_max_drop: float = 0.02
    enable_cache: bool = True
    beam_pipeline_args: Tuple[str, ...] = LOCAL_BEAM_ARGS

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


def default_train_config(class_names) -> TrainConfig:
    """The notebook's recipe (TrainConfig defaults) for the given classes."""
    return TrainConfig(class_names=tuple(class_names))
