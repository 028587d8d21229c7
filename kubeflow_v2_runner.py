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

if __name__ == "__main__":  # under the project's .venv whatever `python` started this (set up if missing)
    from run_control.environment import ensure_project_python

    ensure_project_python()

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from typing import Any, Dict, List, Optional  # noqa: E402

from pipeline import configs, flags, recipes  # noqa: E402
from trainer_module import names  # noqa: E402
from trainer_module.train_config import ConfigError, TrainConfig  # noqa: E402

log = logging.getLogger("kubeflow_v2_runner")

# KFP's rule for pipeline names (TFX checks it too, but its message omits the name).
PIPELINE_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")
# PipelineConfig knobs that mean this machine: its output folder, data that is downloaded,
# checked or generated here (the cluster reads --data-dir on gs:// as it is), and the Beam
# options (derived from --dataflow and its knobs).
LOCAL_ONLY_KNOBS = ("output_dir", "data_dir", "data_checksum", "demo_train_per_class",
                    "demo_eval_per_class", "beam_pipeline_args", "download_max_gb",
                    "download_deadline_minutes", "extract_max_gb", "extract_max_ratio", "wait_for_lock")
# VertexConfig knobs that are derived when left empty, in this order ({...}: other knobs). The
# bucket is laid out as a local output dir.
DERIVED_DEFAULTS = {
    "bucket": "gs://{project}-intel-scenes",
    "pipeline_root": "{bucket}/" + configs.PIPELINES_DIR + "/{pipeline_name}",
    "data_dir": "{bucket}/data/v1",
    "serving_model_dir": "{bucket}/" + configs.SERVING_DIR + "/{pipeline_name}",
    "temp_location": "{bucket}/beam-tmp",
    "image": "{region}-docker.pkg.dev/{project}/tfx/intel-scenes-tfx:latest",
    "serving_image": "{region}-docker.pkg.dev/{project}/tfx/intel-scenes-serving:2.16.1",
    "output_file": "{pipeline_name}_pipeline.json",
}
PROJECT_ENV = "GOOGLE_CLOUD_PROJECT"


class RunnerError(ValueError):
    """A flag value the cluster cannot use, or a submission that cannot proceed."""


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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_dataclass_flags(
        parser, configs.VertexConfig, title="cluster (pipeline.configs.VertexConfig)",
        defaults={"project": f"${PROJECT_ENV}", **DERIVED_DEFAULTS})
    flags.add_dataclass_flags(
        parser, configs.PipelineConfig, skip=LOCAL_ONLY_KNOBS,
        title="pipeline (pipeline.configs.PipelineConfig)",
        defaults={"class_names": ",".join(names.INTEL_CLASS_NAMES)}, helps=CLUSTER_HELP)
    flags.add_dataclass_flags(parser, TrainConfig, skip=("class_names",),
                              title="training (trainer_module.train_config.TrainConfig)",
                              defaults={"recipe": DEFAULT_RECIPE}, helps=CLUSTER_HELP)
    flags.add_config_flag(parser)
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
    pipeline_values.setdefault("class_names", names.INTEL_CLASS_NAMES)
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


def check_pipeline_name(name: str) -> None:
    """Raises RunnerError unless `name` follows KFP's rule for pipeline names."""
    if not PIPELINE_NAME_PATTERN.fullmatch(name):
        raise RunnerError(f"pipeline name {name!r} is not valid for Kubeflow Pipelines: use lowercase "
                          "letters, digits and '-', starting with a letter or digit, at most 128 "
                          "characters ([a-z0-9][a-z0-9-]{0,127})")


def check_remote_paths(cfg: RunnerConfig) -> None:
    """Every location the steps read or write must be gs://: a cluster cannot see this disk."""
    vertex = cfg.vertex
    paths = {"--pipeline-root": vertex.pipeline_root, "--data-dir": vertex.data_dir,
             "--serving-model-dir": vertex.serving_model_dir, "--temp-location": vertex.temp_location}
    if cfg.train.weights not in ("none", "imagenet"):
        paths["--weights"] = cfg.train.weights
    local = {flag: path for flag, path in paths.items() if not path.startswith("gs://")}
    if local:
        raise RunnerError(f"these must be gs:// paths the cluster can reach: {local}")


# ----------------------------------------------------------------------------------------------
# Pipeline pieces


def beam_pipeline_args(vertex: configs.VertexConfig) -> List[str]:
    """Dataflow when asked, else the in-container DirectRunner."""
    if not vertex.dataflow:
        return list(configs.LOCAL_BEAM_ARGS)
    beam_args = [
        "--runner=DataflowRunner",
        f"--project={vertex.project}",
        f"--region={vertex.region}",
        f"--temp_location={vertex.temp_location}",
        f"--machine_type={vertex.dataflow_machine_type}",
        f"--max_num_workers={vertex.dataflow_max_workers}",
        # Workers run the pipeline image (its ENTRYPOINT is Beam's boot, inherited from the TFX
        # image): the DoFns import components/ and trainer_module/ from the installed package.
        f"--sdk_container_image={vertex.image}",
        "--experiments=use_runner_v2",  # custom containers need Runner v2
    ]
    if vertex.service_account:
        beam_args.append(f"--service_account_email={vertex.service_account}")
    return beam_args


def vertex_training_config(vertex: configs.VertexConfig) -> Optional[Dict[str, Any]]:
    """The Trainer's custom_config entries that make it a Vertex AI custom job (None: in-step)."""
    if not vertex.vertex_training:
        return None
    from tfx import v1 as tfx
    extension = tfx.extensions.google_cloud_ai_platform
    machine_spec: Dict[str, Any] = {"machine_type": vertex.training_machine_type}
    if vertex.accelerator_count > 0:
        machine_spec.update(accelerator_type=vertex.accelerator_type,
                            accelerator_count=vertex.accelerator_count)
    job_spec: Dict[str, Any] = {"worker_pool_specs": [{
        "machine_spec": machine_spec,
        "replica_count": 1,
        # The job's command is set by TFX (python -m tfx.scripts.run_executor ...).
        "container_spec": {"image_uri": vertex.image},
    }]}
    if vertex.service_account:
        job_spec["service_account"] = vertex.service_account
    return {
        extension.ENABLE_VERTEX_KEY: True,
        extension.VERTEX_REGION_KEY: vertex.region,
        # A CustomJob; `project` is taken out by TFX. The `job_spec` nesting is the current form
        # (a bare CustomJobSpec still works but is deprecated in tfx/extensions/.../training_clients.py).
        extension.TRAINING_ARGS_KEY: {"project": vertex.project, "job_spec": job_spec},
    }


def vertex_serving_config(vertex: configs.VertexConfig) -> Optional[Dict[str, Any]]:
    """The Pusher's custom_config for a Vertex endpoint (None: push to the serving dir)."""
    if not vertex.endpoint:
        return None
    from tfx import v1 as tfx
    extension = tfx.extensions.google_cloud_ai_platform
    return {
        extension.ENABLE_VERTEX_KEY: True,
        extension.VERTEX_REGION_KEY: vertex.region,
        extension.VERTEX_CONTAINER_IMAGE_URI_KEY: vertex.serving_image,
        extension.SERVING_ARGS_KEY: {"project_id": vertex.project, "endpoint_name": vertex.endpoint,
                                     "machine_type": vertex.serving_machine_type},
    }


def build_pipeline(cfg: RunnerConfig):
    """The tfx Pipeline for the cluster (no ML Metadata config: the backend owns metadata)."""
    from pipeline.pipeline import create_pipeline

    pipeline, vertex = cfg.pipeline, cfg.vertex
    check_pipeline_name(pipeline.pipeline_name)
    return create_pipeline(
        pipeline_name=pipeline.pipeline_name, pipeline_root=vertex.pipeline_root,
        data_root=vertex.data_dir, class_names=pipeline.class_names, eval_fraction=pipeline.eval_fraction,
        transform_module=configs.TRANSFORM_MODULE_PATH, trainer_module=configs.TRAINER_MODULE_PATH,
        train_config=json.loads(cfg.train.to_json()),
        accuracy_lower_bound=pipeline.accuracy_lower_bound, accuracy_max_drop=pipeline.accuracy_max_drop,
        class_drift_max_linf=pipeline.class_drift_max_linf, size_drift_max_jsd=pipeline.size_drift_max_jsd,
        stop_on_skew=pipeline.stop_on_skew, proceed_despite_anomalies=pipeline.proceed_despite_anomalies,
        # The edge gate runs here too; the TFLite files stay in the Model artifact (the Vertex
        # endpoint's Pusher and TFX's gs:// push carry the SavedModel only).
        tflite_float16_max_drop=pipeline.tflite_float16_max_drop, tflite_int8_max_drop=pipeline.tflite_int8_max_drop,
        serving_model_dir=vertex.serving_model_dir, metadata_connection_config=None,
        beam_pipeline_args=beam_pipeline_args(vertex), enable_cache=pipeline.enable_cache,
        vertex_training_config=vertex_training_config(vertex),
        vertex_serving_config=vertex_serving_config(vertex),
        # The KFP v2 compiler turns only TFX's own resolver strategies into backend queries: no
        # baseline other than the candidate, no drift against the served model's data.
        exclude_candidate_from_baseline=False, compare_with_served_data=False)


def set_ingestion_caching(job: Dict[str, Any], enable: bool) -> None:
    """Sets the ImageExampleGen task's cachingOptions in a compiled PipelineJob dict.

    Locally ImageExampleGen's driver fingerprints the input files before TFX's cache lookup; KFP v2
    runs no custom driver for a component that is not a FileBasedExampleGen. Its cache key is a
    task's parameter values, input artifact ids and container: ImageExampleGen, which has no input
    artifact, would be cached on the --data-dir string alone and miss changed files at that path.
    Uncached (the default) it lists the data on every run, and as its Examples are then a new
    artifact, every later step misses the cache as well. --cache-ingestion caches it again, for
    versioned data paths.
    """
    task = job["pipelineSpec"]["root"]["dag"]["tasks"][names.EXAMPLE_GEN_NODE]
    task["cachingOptions"] = {"enableCache": enable}


def compile_pipeline(cfg: RunnerConfig, allow_local_paths: bool = False) -> Dict[str, Any]:
    """Writes the PipelineJob JSON to cfg.vertex.output_file and returns it.

    allow_local_paths is for tests that execute the compiled steps on this machine.
    """
    from tfx import v1 as tfx
    from tfx.dsl.io import fileio

    if not allow_local_paths:
        check_remote_paths(cfg)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=cfg.vertex.image,
            # PipelineSpec schema 2.1.0: typed parameterValues, what KFP 2 and Vertex AI read.
            use_pipeline_spec_2_1=True),
        output_dir=os.path.dirname(cfg.vertex.output_file) or os.getcwd(),
        output_filename=os.path.basename(cfg.vertex.output_file))
    job = runner.run(build_pipeline(cfg), write_out=False)
    set_ingestion_caching(job, cfg.pipeline.enable_cache and cfg.vertex.cache_ingestion)
    if not allow_local_paths:
        check_no_local_paths(json.dumps(job))  # before writing: never leave a spec the cluster cannot run
    output_file = compiled_spec_path(runner)
    fileio.makedirs(os.path.dirname(output_file))
    with fileio.open(output_file, "w") as f:
        json.dump(job, f, sort_keys=True)
    print(f"Compiled {output_file}", flush=True)
    return job


def compiled_spec_path(runner) -> str:
    """Where the spec goes: --output-file, or where the `tfx` CLI points the runner (`tfx pipeline
    create --engine vertex` sets the runner's output folder to its own home, and reads the spec
    from there for `tfx run create`). The CLI's patcher sets these attributes; there is no API."""
    return os.path.join(runner._output_dir, runner._output_filename)  # noqa: SLF001


def local_path_markers() -> List[str]:
    """This machine's directories that must never reach a cluster spec."""
    markers = {configs.REPO_ROOT, os.path.expanduser("~"), os.getcwd(), tempfile.gettempdir()}
    return sorted(m.rstrip("/") for m in markers if m.rstrip("/"))


def find_local_paths(spec_text: str) -> List[str]:
    """Local directories (and file:// URIs) named in a compiled spec, also inside nested JSON."""
    found = ["file://"] if "file://" in spec_text else []
    for marker in local_path_markers():
        # A path starts a string or a flag value and ends at a separator: "gs://b/p" is not "/p".
        if re.search(r'(?:^|[\s"\'=,\[\\])' + re.escape(marker) + r'(?=[/"\'\\,\s\]]|$)', spec_text):
            found.append(marker)
    return found


def check_no_local_paths(spec_text: str) -> None:
    """Raises RunnerError when a compiled spec names a directory of this machine."""
    found = find_local_paths(spec_text)
    if found:
        raise RunnerError(f"the compiled spec names local paths under {found}: the cluster cannot read them")


# ----------------------------------------------------------------------------------------------
# Submission


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
    """Compiles (and with --submit submits); 2 with a one-line error for a bad flag or submission."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = parse_args(argv)
        compile_pipeline(cfg)
        if cfg.vertex.submit:
            job = submit(cfg)
            print(f"Submitted {job.resource_name}", flush=True)
    except (RunnerError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
