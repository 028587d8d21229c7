"""Compiles the pipeline for Kubeflow Pipelines v2 / Vertex AI Pipelines, and optionally submits it.

    python kubeflow_v2_runner.py --project my-proj                       # writes intel-scenes_pipeline.json
    python kubeflow_v2_runner.py --project my-proj --dataflow --submit   # Beam on Dataflow, run on Vertex AI

The same create_pipeline as local_runner.py, with what a cluster can reach: gs:// data, pipeline
root and serving directory, the pipeline image (Dockerfile) with this package installed, module
code by import path (nothing to upload), the Trainer as a Vertex AI training job on a GPU worker,
and optionally Dataflow for the Beam components and a Vertex endpoint for the Pusher.
Compiling needs no credentials and no network; --submit needs both. docs/kubeflow_vertex.md
walks through it. Every knob is a flag generated from its declaration (pipeline.configs.VertexConfig,
PipelineConfig, trainer_module.train_config.TrainConfig): `--help` lists each with its meaning and
default.
"""
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # before TensorFlow loads: TFT and TFMA need Keras 2

if __name__ == "__main__":  # the project's Python (set up if missing), and a quiet start
    from run_control.environment import ensure_project_python
    from run_control.startup import quiet_startup

    ensure_project_python()
    quiet_startup()

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from typing import Any, Dict, List, Optional  # noqa: E402

from common import dataset, output_dir  # noqa: E402
from pipeline import configs, flags, kubeflow, recipes  # noqa: E402
from pipeline.kubeflow import RunnerError, check_pipeline_name  # noqa: E402
from run_control import exit_codes  # noqa: E402
from trainer_module.train_config import TrainConfig  # noqa: E402

log = logging.getLogger("kubeflow_v2_runner")

# PipelineConfig knobs that mean this machine: its output folder, data that is downloaded,
# checked or generated here (the cluster reads --data-dir on gs:// as it is), the Beam
# options (derived from --dataflow and its knobs), and the TF Serving config file of a local
# serving dir (a cluster pushes to gs:// or to the Vertex AI Model Registry).
LOCAL_ONLY_KNOBS = ("output_dir", "data_dir", "data_checksum", "demo_train_per_class",
                    "demo_eval_per_class", "beam_pipeline_args", "download_max_gb",
                    "download_deadline_minutes", "extract_max_gb", "extract_max_ratio", "wait_for_lock",
                    "serving_config_base_path")
# VertexConfig knobs that are derived when left empty, in this order ({...}: other knobs). The
# bucket is laid out as a local output dir.
DERIVED_DEFAULTS = {
    "bucket": "gs://{project}-intel-scenes",
    "pipeline_root": "{bucket}/" + output_dir.PIPELINES_DIR + "/{pipeline_name}",
    "data_dir": "{bucket}/data/v1",
    "serving_model_dir": "{bucket}/" + output_dir.SERVING_DIR + "/{pipeline_name}",
    "temp_location": "{bucket}/beam-tmp",
    "image": "{region}-docker.pkg.dev/{project}/tfx/intel-scenes-tfx:latest",
    "serving_image": "{region}-docker.pkg.dev/{project}/tfx/intel-scenes-serving:2.16.1",
    "output_file": "{pipeline_name}_pipeline.json",
}
PROJECT_ENV = "GOOGLE_CLOUD_PROJECT"


@dataclasses.dataclass(frozen=True)
class RunnerConfig:
    """One compile's validated knobs: the pipeline's, the cluster's (derived paths filled) and training."""

    pipeline: configs.PipelineConfig
    vertex: configs.VertexConfig
    train: TrainConfig


# ----------------------------------------------------------------------------------------------
# Flags


# The cluster trains on a Vertex AI GPU with ImageNet weights unless told otherwise.
DEFAULT_RECIPE = "gpu"
CLUSTER_RECIPE_HELP = ("named preset of the training knobs (pipeline/recipes.py; a knob set by flag, environment or "
                       "settings file wins): gpu (ImageNet-pretrained MobileNetV3 Large on the training job's GPU), "
                       "cpu (from scratch, for --accelerator-count 0), notebook (the notebook's recipe); auto: gpu "
                       "when the training job has accelerators, else cpu")
# Knobs that mean more on the cluster than in a local run.
CLUSTER_HELP = {"class_names": "label space in label order; required on the cluster, where a bucket cannot be "
                               "listed at compile time", "recipe": CLUSTER_RECIPE_HELP}


def make_parser() -> argparse.ArgumentParser:
    """Flags generated from VertexConfig, PipelineConfig (the knobs shared with local runs) and TrainConfig."""
    parser = exit_codes.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_knob_flags(parser, [
        flags.KnobGroup(configs.VertexConfig, "cluster", defaults={"project": f"${PROJECT_ENV}", **DERIVED_DEFAULTS}),
        flags.KnobGroup(configs.PipelineConfig, "pipeline (data, gates)", skip=LOCAL_ONLY_KNOBS,
                        defaults={"class_names": ",".join(dataset.INTEL_CLASS_NAMES)}, helps=CLUSTER_HELP),
        flags.KnobGroup(TrainConfig, "training", skip=("class_names",), defaults={"recipe": DEFAULT_RECIPE},
                        helps=CLUSTER_HELP)])
    flags.add_config_flag(parser)
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error too")
    return parser


def parse_args(argv: Optional[List[str]] = None) -> RunnerConfig:
    """The three configs from the command line, with the derived defaults (paths, image) filled in."""
    parser = make_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    for source in flags.apply_settings(parser, argv, configs.all_knob_names()):
        log.info("settings from %s", source)
    args = parser.parse_args(argv)
    vertex_values = flags.dataclass_overrides(args, configs.VertexConfig)
    recipe, why = recipes.resolve(args.recipe or DEFAULT_RECIPE, demo_data=False,
                                  gpu_visible=lambda: _trains_on_gpu(vertex_values))
    args.recipe = recipe
    log.info("%s", recipes.describe(recipe, why, recipes.fill_unset(args, recipe)))
    pipeline_values = flags.dataclass_overrides(args, configs.PipelineConfig, skip=LOCAL_ONLY_KNOBS)
    pipeline_values.setdefault("class_names", dataset.INTEL_CLASS_NAMES)
    if not pipeline_values["class_names"]:
        raise RunnerError("--class-names must name the classes: a bucket cannot be listed at compile time")
    check_pipeline_name(pipeline_values.get("pipeline_name", configs.PipelineConfig.pipeline_name))
    pipeline = configs.PipelineConfig(**pipeline_values)
    vertex = derive_defaults(configs.VertexConfig(**vertex_values), pipeline.pipeline_name)
    train = TrainConfig.from_dict({**flags.dataclass_overrides(args, TrainConfig),
                                   "class_names": pipeline.class_names})
    return RunnerConfig(pipeline=pipeline, vertex=vertex, train=train)


def _trains_on_gpu(vertex_values: Dict[str, Any]) -> bool:
    """Whether the Trainer gets a GPU: a Vertex AI training job with accelerators."""
    vertex = configs.VertexConfig(**vertex_values)
    return vertex.vertex_training and vertex.accelerator_count > 0


def derive_defaults(vertex: configs.VertexConfig, pipeline_name: str) -> configs.VertexConfig:
    """Fills the empty project from $GOOGLE_CLOUD_PROJECT, then the empty DERIVED_DEFAULTS."""
    project = vertex.project or os.environ.get(PROJECT_ENV, "")
    if not project:
        raise RunnerError(f"--project is required (or set {PROJECT_ENV}, or project in the settings)")
    values = dict(dataclasses.asdict(vertex), project=project, pipeline_name=pipeline_name)
    values["bucket"] = values["bucket"].rstrip("/")
    for name, template in DERIVED_DEFAULTS.items():
        values[name] = values[name] or template.format(**values)
    del values["pipeline_name"]
    return configs.VertexConfig(**values)


def compile_pipeline(cfg: RunnerConfig, allow_local_paths: bool = False) -> Dict[str, Any]:
    """Writes the PipelineJob JSON to cfg.vertex.output_file and returns it (pipeline/kubeflow.py)."""
    job, output_file = kubeflow.compile_pipeline(cfg.pipeline, cfg.vertex, cfg.train, allow_local_paths)
    print(f"Compiled {output_file}", flush=True)
    return job


def build_pipeline(cfg: RunnerConfig):
    """The tfx Pipeline for the cluster."""
    return kubeflow.build_pipeline(cfg.pipeline, cfg.vertex, cfg.train)


def submit(cfg: RunnerConfig):
    """Submits the compiled file to Vertex AI Pipelines; returns the PipelineJob."""
    from google.auth import exceptions as auth_exceptions
    from google.cloud import aiplatform

    vertex = cfg.vertex
    try:
        aiplatform.init(project=vertex.project, location=vertex.region)
        job = aiplatform.PipelineJob(
            display_name=cfg.pipeline.pipeline_name, template_path=vertex.output_file,
            pipeline_root=vertex.pipeline_root,
            # None keeps each task's compiled cachingOptions (ImageExampleGen's off): True would
            # overwrite them all (aiplatform's _set_enable_caching_value).
            enable_caching=None if cfg.pipeline.enable_cache else False,
            labels=vertex.label_dict or None, project=vertex.project, location=vertex.region)
        job.submit(service_account=vertex.service_account or None)
    except auth_exceptions.DefaultCredentialsError as e:
        raise RunnerError(
            f"no Google Cloud credentials to submit {vertex.output_file}: run "
            "`gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a "
            f"service-account key file ({e})") from e
    return job


def main(argv: Optional[List[str]] = None) -> int:
    """Compiles (and with --submit submits); an exit code of run_control.exit_codes, with one line
    on stderr for what stopped it (2: a bad flag or submission)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = parse_args(argv)
        compile_pipeline(cfg)
        if cfg.vertex.submit:
            job = submit(cfg)
            print(f"Submitted {job.resource_name}", flush=True)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - every failure: one line, a documented code
        return exit_codes.fail(e, "--debug" in (sys.argv if argv is None else argv))
    return exit_codes.OK


if __name__ == "__main__":
    sys.exit(main())
