"""The pipeline on a cluster (Kubeflow Pipelines v2, Vertex AI Pipelines): the Platform a cluster
run gets from VertexConfig (gs:// paths, the pipeline image, Dataflow for the Beam components, a
Vertex AI training job for the Trainer, a Vertex endpoint for the Pusher), and the compiled
PipelineJob spec with the checks a spec must pass before it leaves this machine.
"""
import json
import os
import re
import tempfile
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from common import pipeline_names
from pipeline import configs
from trainer_module.train_config import ConfigError, TrainConfig

if TYPE_CHECKING:  # pipeline.pipeline imports TFX (~25 s): loaded when a pipeline is built, not for a
    from pipeline.pipeline import Platform  # flag error or --help

# KFP's rule for pipeline names (TFX checks it too, but its message omits the name).
PIPELINE_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")


class RunnerError(ConfigError):
    """A knob value the cluster cannot use, or a submission that cannot proceed."""


def check_pipeline_name(name: str) -> None:
    """Raises RunnerError unless `name` follows KFP's rule for pipeline names."""
    if not PIPELINE_NAME_PATTERN.fullmatch(name):
        raise RunnerError(f"pipeline name {name!r} is not valid for Kubeflow Pipelines: use lowercase "
                          "letters, digits and '-', starting with a letter or digit, at most 128 "
                          "characters ([a-z0-9][a-z0-9-]{0,127})")


def check_remote_paths(vertex: configs.VertexConfig, train: TrainConfig, reference_eval_dir: str = "") -> None:
    """Every location the steps read or write must be gs://: a cluster cannot see this disk."""
    paths = {"--pipeline-root": vertex.pipeline_root, "--data-dir": vertex.data_dir,
             "--serving-model-dir": vertex.serving_model_dir, "--temp-location": vertex.temp_location}
    if reference_eval_dir:
        paths["--reference-eval-dir"] = reference_eval_dir
    if train.weights not in ("none", "imagenet"):
        paths["--weights"] = train.weights
    local = {flag: path for flag, path in paths.items() if not path.startswith("gs://")}
    if local:
        raise RunnerError(f"these must be gs:// paths the cluster can reach: {local}")

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


def vertex_serving_config(vertex: configs.VertexConfig, pipeline_name: str = "") -> Optional[Dict[str, Any]]:
    """The VertexRegistryPusher's custom_config for a Vertex endpoint (None: push to the serving dir):
    TFX's Vertex keys and serving args, and the Model Registry's parent model and canary share."""
    if not vertex.endpoint:
        return None
    from tfx import v1 as tfx

    from components.vertex_pusher import executor as vertex_pusher
    extension = tfx.extensions.google_cloud_ai_platform
    return {
        extension.ENABLE_VERTEX_KEY: True,
        extension.VERTEX_REGION_KEY: vertex.region,
        extension.VERTEX_CONTAINER_IMAGE_URI_KEY: vertex.serving_image,
        extension.SERVING_ARGS_KEY: {"project_id": vertex.project, "endpoint_name": vertex.endpoint,
                                     "machine_type": vertex.serving_machine_type},
        vertex_pusher.REGISTRY_ARGS_KEY: {vertex_pusher.MODEL_ID: vertex.vertex_model or pipeline_name,
                                          vertex_pusher.CANARY_TRAFFIC_PERCENT: vertex.canary_traffic_percent},
    }



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
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    for node in (pipeline_names.EXAMPLE_GEN_NODE, pipeline_names.REFERENCE_EXAMPLE_GEN_NODE):
        if node in tasks:  # the reference set's ingestion likewise (a fixed set: version its path)
            tasks[node]["cachingOptions"] = {"enableCache": enable}



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


def platform(vertex: configs.VertexConfig, pipeline_name: str = "") -> "Platform":
    """The cluster: gs:// paths, the installed package's code by import path, no ML Metadata config
    (the backend owns metadata). The KFP v2 compiler turns only TFX's own resolver strategies into
    backend queries: no baseline other than the candidate, no drift against the served model's data."""
    from pipeline.pipeline import Platform

    return Platform(pipeline_root=vertex.pipeline_root, data_root=vertex.data_dir,
                    serving_model_dir=vertex.serving_model_dir, beam_pipeline_args=tuple(beam_pipeline_args(vertex)),
                    module_files=False, custom_resolvers=False,
                    vertex_training=vertex_training_config(vertex), vertex_serving=vertex_serving_config(vertex, pipeline_name))


def build_pipeline(pipeline: configs.PipelineConfig, vertex: configs.VertexConfig, train: TrainConfig):
    """The tfx Pipeline for the cluster. The edge gate runs there too; the TFLite files stay in the
    Model artifact (the Vertex endpoint's Pusher and TFX's gs:// push carry the SavedModel only)."""
    from pipeline.pipeline import create_pipeline

    check_pipeline_name(pipeline.pipeline_name)
    return create_pipeline(pipeline, train, platform(vertex, pipeline.pipeline_name))


def compile_pipeline(pipeline: configs.PipelineConfig, vertex: configs.VertexConfig, train: TrainConfig,
                     allow_local_paths: bool = False) -> Tuple[Dict[str, Any], str]:
    """Writes the PipelineJob JSON to vertex.output_file; returns it and where it was written.

    allow_local_paths is for tests that execute the compiled steps on this machine.
    """
    from tfx import v1 as tfx
    from tfx.dsl.io import fileio

    if not allow_local_paths:
        check_remote_paths(vertex, train, pipeline.reference_eval_dir)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=vertex.image,
            # PipelineSpec schema 2.1.0: typed parameterValues, what KFP 2 and Vertex AI read.
            use_pipeline_spec_2_1=True),
        output_dir=os.path.dirname(vertex.output_file) or os.getcwd(),
        output_filename=os.path.basename(vertex.output_file))
    job = runner.run(build_pipeline(pipeline, vertex, train), write_out=False)
    set_ingestion_caching(job, pipeline.enable_cache and vertex.cache_ingestion)
    if not allow_local_paths:
        check_no_local_paths(json.dumps(job))  # before writing: never leave a spec the cluster cannot run
    output_file = compiled_spec_path(runner)
    fileio.makedirs(os.path.dirname(output_file))
    with fileio.open(output_file, "w") as f:
        json.dump(job, f, sort_keys=True)
    return job, output_file
