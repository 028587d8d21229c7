"""Compiles the pipeline for Kubeflow Pipelines v2 / Vertex AI Pipelines, and optionally submits it.

    python kubeflow_v2_runner.py --project my-proj                       # writes intel-scenes_pipeline.json
    python kubeflow_v2_runner.py --project my-proj --dataflow --submit   # Beam on Dataflow, run on Vertex AI

The same create_pipeline as local_runner.py, with what a cluster can reach: gs:// data, pipeline
root and serving directory, the pipeline image (Dockerfile) with this package installed, module
code by import path (nothing to upload), the Trainer as a Vertex AI training job on a GPU worker,
and optionally Dataflow for the Beam components and a Vertex endpoint for the Pusher.
Compiling needs no credentials and no network; --submit needs both. docs/kubeflow_vertex.md
walks through it. `--help` lists every flag with its default.
"""
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # before TensorFlow loads: TFT and TFMA need Keras 2

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from typing import Any, Dict, List, Optional  # noqa: E402

from pipeline import configs, flags  # noqa: E402
from trainer_module import names  # noqa: E402
from trainer_module.train_config import ConfigError, TrainConfig  # noqa: E402

log = logging.getLogger("kubeflow_v2_runner")

# KFP's rule for pipeline names (TFX checks it too, but its message omits the name).
PIPELINE_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")
# The image has this package installed: TFX imports the functions, nothing is packaged or uploaded.
TRANSFORM_MODULE = "trainer_module.preprocessing"
TRAINER_MODULE = "trainer_module.trainer"
# Vertex AI's newest prebuilt TensorFlow serving image (there is none for 2.16).
DEFAULT_SERVING_IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"


class RunnerError(ValueError):
    """A flag value the cluster cannot use, or a submission that cannot proceed."""


# ----------------------------------------------------------------------------------------------
# Flags


def _comma_list(value: str) -> List[str]:
    return [x.strip() for x in value.split(",") if x.strip()]


def _labels(value: str) -> Dict[str, str]:
    labels = {}
    for item in _comma_list(value):
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"label {item!r} is not key=value")
        labels[key] = val
    return labels


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("where")
    g.add_argument("--project", default=os.environ.get("GOOGLE_CLOUD_PROJECT", ""),
                   help="GCP project (default: $GOOGLE_CLOUD_PROJECT); required")
    g.add_argument("--region", default="us-central1", help="Vertex AI / Dataflow region (default: us-central1)")
    g.add_argument("--pipeline-name", default=configs.PipelineConfig.pipeline_name,
                   help="KFP pipeline name, [a-z0-9][a-z0-9-]{0,127} (default: %(default)s)")
    g.add_argument("--bucket", default="",
                   help="gs:// root of everything below (default: gs://<project>-intel-scenes)")
    g.add_argument("--pipeline-root", default="",
                   help="artifacts of every run (default: <bucket>/pipelines/<pipeline-name>)")
    g.add_argument("--data-dir", default="",
                   help="image folders <split>/<class>/<file>, passed unchanged to ImageExampleGen; "
                        "version it, KFP caches on this string (default: <bucket>/data/v1)")
    g.add_argument("--serving-model-dir", default="",
                   help="Pusher target when not pushing to an endpoint "
                        "(default: <bucket>/serving_model/<pipeline-name>)")
    g.add_argument("--image", default="",
                   help="pipeline image built from ./Dockerfile "
                        "(default: <region>-docker.pkg.dev/<project>/tfx/intel-scenes-tfx:latest)")
    g.add_argument("--output-file", default="",
                   help="compiled PipelineJob JSON (default: ./<pipeline-name>_pipeline.json)")

    g = p.add_argument_group("pipeline")
    g.add_argument("--class-names", type=_comma_list, default=list(names.INTEL_CLASS_NAMES),
                   help="label space, comma-separated; a bucket cannot be listed at compile time "
                        f"(default: {','.join(names.INTEL_CLASS_NAMES)})")
    g.add_argument("--eval-fraction", type=float, default=configs.PipelineConfig.eval_fraction,
                   help="share sent to eval when the data has one split (default: %(default)s)")
    g.add_argument("--accuracy-lower-bound", type=float, default=configs.PipelineConfig.accuracy_lower_bound,
                   help="Evaluator gate (default: %(default)s)")
    g.add_argument("--accuracy-max-drop", type=float, default=configs.PipelineConfig.accuracy_max_drop,
                   help="Evaluator gate against the latest blessed model (default: %(default)s)")
    g.add_argument("--enable-cache", action=argparse.BooleanOptionalAction, default=True,
                   help="KFP step caching (default: True)")

    g = p.add_argument_group("Dataflow (Beam components: ImageExampleGen, StatisticsGen, Transform, Evaluator)")
    g.add_argument("--dataflow", action="store_true",
                   help="run Beam on Dataflow; otherwise DirectRunner inside each step's container "
                        f"({' '.join(configs.LOCAL_BEAM_ARGS)}) (default: off)")
    g.add_argument("--temp-location", default="", help="Dataflow temp/staging (default: <bucket>/beam-tmp)")
    g.add_argument("--dataflow-machine-type", default="n1-standard-4", help="default: %(default)s")
    g.add_argument("--dataflow-max-workers", type=int, default=4, help="autoscaling cap (default: %(default)s)")

    g = p.add_argument_group("Vertex AI Training (the Trainer)")
    g.add_argument("--vertex-training", action=argparse.BooleanOptionalAction, default=True,
                   help="train in a Vertex AI custom job; --no-vertex-training trains inside the "
                        "pipeline step (default: True)")
    g.add_argument("--training-machine-type", default="n1-standard-8", help="default: %(default)s")
    g.add_argument("--accelerator-type", default="NVIDIA_TESLA_T4", help="default: %(default)s")
    g.add_argument("--accelerator-count", type=int, default=1, help="0 trains on CPU (default: %(default)s)")

    g = p.add_argument_group("Vertex AI endpoint (the Pusher)")
    g.add_argument("--endpoint", default="",
                   help="deploy a blessed model to this Vertex endpoint (created if missing); "
                        "empty pushes to --serving-model-dir (default: empty)")
    g.add_argument("--serving-machine-type", default="n1-standard-4", help="default: %(default)s")
    g.add_argument("--serving-image", default=DEFAULT_SERVING_IMAGE, help="default: %(default)s")

    g = p.add_argument_group("submission")
    g.add_argument("--submit", action="store_true",
                   help="submit the compiled job to Vertex AI Pipelines (default: compile only)")
    g.add_argument("--service-account", default="",
                   help="runs the pipeline, training job and Dataflow workers "
                        "(default: empty, the project's Compute Engine default)")
    g.add_argument("--labels", type=_labels, default={},
                   help="job labels, k=v,k2=v2 (default: none)")
    flags.add_dataclass_flags(p, TrainConfig, skip=("class_names",),
                              title="training (trainer_module.train_config.TrainConfig)")
    return p


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Flags with the derived defaults (paths, image) filled in."""
    args = make_parser().parse_args(argv)
    if not args.project:
        raise RunnerError("--project is required (or set GOOGLE_CLOUD_PROJECT)")
    bucket = (args.bucket or f"gs://{args.project}-intel-scenes").rstrip("/")
    args.bucket = bucket
    args.pipeline_root = args.pipeline_root or f"{bucket}/pipelines/{args.pipeline_name}"
    args.data_dir = args.data_dir or f"{bucket}/data/v1"
    args.serving_model_dir = args.serving_model_dir or f"{bucket}/serving_model/{args.pipeline_name}"
    args.temp_location = args.temp_location or f"{bucket}/beam-tmp"
    args.image = args.image or f"{args.region}-docker.pkg.dev/{args.project}/tfx/intel-scenes-tfx:latest"
    args.output_file = args.output_file or f"{args.pipeline_name}_pipeline.json"
    return args


def check_pipeline_name(name: str) -> None:
    if not PIPELINE_NAME_PATTERN.fullmatch(name):
        raise RunnerError(f"pipeline name {name!r} is not valid for Kubeflow Pipelines: use lowercase "
                          "letters, digits and '-', starting with a letter or digit, at most 128 "
                          "characters ([a-z0-9][a-z0-9-]{0,127})")


def check_remote_paths(args: argparse.Namespace) -> None:
    """Every location the steps read or write must be gs://: a cluster cannot see this disk."""
    paths = {"--pipeline-root": args.pipeline_root, "--data-dir": args.data_dir,
             "--serving-model-dir": args.serving_model_dir, "--temp-location": args.temp_location}
    if (args.weights or "none") not in ("none", "imagenet"):
        paths["--weights"] = args.weights
    local = {flag: path for flag, path in paths.items() if not path.startswith("gs://")}
    if local:
        raise RunnerError(f"these must be gs:// paths the cluster can reach: {local}")


# ----------------------------------------------------------------------------------------------
# Pipeline pieces


def beam_pipeline_args(args: argparse.Namespace) -> List[str]:
    """Dataflow when asked, else the in-container DirectRunner."""
    if not args.dataflow:
        return list(configs.LOCAL_BEAM_ARGS)
    beam_args = [
        "--runner=DataflowRunner",
        f"--project={args.project}",
        f"--region={args.region}",
        f"--temp_location={args.temp_location}",
        f"--machine_type={args.dataflow_machine_type}",
        f"--max_num_workers={args.dataflow_max_workers}",
        # Workers run the pipeline image (its ENTRYPOINT is Beam's boot, inherited from the TFX
        # image): the DoFns import components/ and trainer_module/ from the installed package.
        f"--sdk_container_image={args.image}",
        "--experiments=use_runner_v2",  # custom containers need Runner v2
    ]
    if args.service_account:
        beam_args.append(f"--service_account_email={args.service_account}")
    return beam_args


def vertex_training_config(args: argparse.Namespace) -> Optional[Dict[str, Any]]:
    """The Trainer's custom_config entries that make it a Vertex AI custom job (None: in-step)."""
    if not args.vertex_training:
        return None
    from tfx import v1 as tfx
    vertex = tfx.extensions.google_cloud_ai_platform
    machine_spec: Dict[str, Any] = {"machine_type": args.training_machine_type}
    if args.accelerator_count > 0:
        machine_spec.update(accelerator_type=args.accelerator_type,
                            accelerator_count=args.accelerator_count)
    job_spec: Dict[str, Any] = {"worker_pool_specs": [{
        "machine_spec": machine_spec,
        "replica_count": 1,
        # The job's command is set by TFX (python -m tfx.scripts.run_executor ...).
        "container_spec": {"image_uri": args.image},
    }]}
    if args.service_account:
        job_spec["service_account"] = args.service_account
    return {
        vertex.ENABLE_VERTEX_KEY: True,
        vertex.VERTEX_REGION_KEY: args.region,
        # A CustomJob; `project` is taken out by TFX. The `job_spec` nesting is the current form
        # (a bare CustomJobSpec still works but is deprecated in tfx/extensions/.../training_clients.py).
        vertex.TRAINING_ARGS_KEY: {"project": args.project, "job_spec": job_spec},
    }


def vertex_serving_config(args: argparse.Namespace) -> Optional[Dict[str, Any]]:
    """The Pusher's custom_config for a Vertex endpoint (None: push to the serving dir)."""
    if not args.endpoint:
        return None
    from tfx import v1 as tfx
    vertex = tfx.extensions.google_cloud_ai_platform
    return {
        vertex.ENABLE_VERTEX_KEY: True,
        vertex.VERTEX_REGION_KEY: args.region,
        vertex.VERTEX_CONTAINER_IMAGE_URI_KEY: args.serving_image,
        vertex.SERVING_ARGS_KEY: {"project_id": args.project, "endpoint_name": args.endpoint,
                                  "machine_type": args.serving_machine_type},
    }


def train_config(args: argparse.Namespace) -> Dict[str, Any]:
    """The validated TrainConfig as the JSON dict the Trainer receives."""
    values = flags.dataclass_overrides(args, TrainConfig)
    return json.loads(TrainConfig.from_dict({**values, "class_names": args.class_names}).to_json())


def build_pipeline(args: argparse.Namespace):
    """The tfx Pipeline for the cluster (no ML Metadata config: the backend owns metadata)."""
    check_pipeline_name(args.pipeline_name)
    from pipeline.pipeline import create_pipeline

    return create_pipeline(
        pipeline_name=args.pipeline_name, pipeline_root=args.pipeline_root,
        data_root=args.data_dir, class_names=args.class_names, eval_fraction=args.eval_fraction,
        transform_module=TRANSFORM_MODULE, trainer_module=TRAINER_MODULE,
        train_config=train_config(args),
        accuracy_lower_bound=args.accuracy_lower_bound, accuracy_max_drop=args.accuracy_max_drop,
        serving_model_dir=args.serving_model_dir, metadata_connection_config=None,
        beam_pipeline_args=beam_pipeline_args(args), enable_cache=args.enable_cache,
        vertex_training_config=vertex_training_config(args),
        vertex_serving_config=vertex_serving_config(args),
        # The KFP v2 compiler turns only TFX's own resolver strategies into backend queries.
        exclude_candidate_from_baseline=False)


def compile_pipeline(args: argparse.Namespace, allow_local_paths: bool = False) -> Dict[str, Any]:
    """Writes the PipelineJob JSON to args.output_file and returns it.

    allow_local_paths is for tests that execute the compiled steps on this machine.
    """
    from tfx import v1 as tfx

    check_pipeline_name(args.pipeline_name)
    if not allow_local_paths:
        check_remote_paths(args)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=args.image,
            # PipelineSpec schema 2.1.0: typed parameterValues, what KFP 2 and Vertex AI read.
            use_pipeline_spec_2_1=True),
        output_dir=os.path.dirname(os.path.abspath(args.output_file)),
        output_filename=os.path.basename(args.output_file))
    job = runner.run(build_pipeline(args))
    if not allow_local_paths:
        try:
            check_no_local_paths(json.dumps(job))
        except RunnerError:
            os.remove(args.output_file)  # never leave a spec the cluster cannot run
            raise
    log.info("compiled %s", args.output_file)
    return job


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
    found = find_local_paths(spec_text)
    if found:
        raise RunnerError(f"the compiled spec names local paths under {found}: the cluster cannot read them")


# ----------------------------------------------------------------------------------------------
# Submission


def submit(args: argparse.Namespace):
    """Submits the compiled file to Vertex AI Pipelines; returns the PipelineJob."""
    from google.auth import exceptions as auth_exceptions
    from google.cloud import aiplatform

    try:
        aiplatform.init(project=args.project, location=args.region)
        job = aiplatform.PipelineJob(
            display_name=args.pipeline_name, template_path=args.output_file,
            pipeline_root=args.pipeline_root, enable_caching=args.enable_cache,
            labels=args.labels or None, project=args.project, location=args.region)
        job.submit(service_account=args.service_account or None)
    except auth_exceptions.DefaultCredentialsError as e:
        raise RunnerError(
            f"no Google Cloud credentials to submit {args.output_file}: run "
            "`gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a "
            f"service-account key file ({e})") from e
    return job


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args = parse_args(argv)
        compile_pipeline(args)
        print(f"Compiled {args.output_file}", flush=True)
        if args.submit:
            job = submit(args)
            print(f"Submitted {job.resource_name}", flush=True)
    except (RunnerError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
