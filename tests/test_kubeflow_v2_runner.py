"""kubeflow_v2_runner.py: its flags, the compiled KFP v2 spec, its execution on this machine, submission.

Nothing here reaches GCP: the spec is compiled offline, its container steps run in this process
through their image's entrypoint with this test playing the KFP backend's part, and aiplatform and
the Vertex AI JobService are replaced at their boundaries.
"""
import dataclasses
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import types

import pytest
import setuptools
from absl import logging as absl_logging
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import kubeflow_v2_runner as runner
import setup
from common import dataset, pipeline_names
from data_sources import demo_data
from pipeline import configs, kubeflow, recipes
from trainer_module.knobs import help_of
from trainer_module.train_config import ConfigError, TrainConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = "europe-west4-docker.pkg.dev/test-proj/tfx/intel-scenes-tfx:1.0"
PROD_FLAGS = ["--project", "test-proj", "--region", "europe-west4", "--bucket", "gs://test-bucket",
              "--image", IMAGE]
RUN_EXECUTOR = ["python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]
VERTEX_WORKER = ["python", "-m", "tfx.scripts.run_executor"]
EXAMPLE_GEN, TRAINER, EVALUATOR, PUSHER = (pipeline_names.EXAMPLE_GEN_NODE, pipeline_names.TRAINER_NODE,
                                           pipeline_names.EVALUATOR_NODE,
                                           pipeline_names.PUSHER_NODE)
BLESSING_RESOLVER = f"{pipeline_names.RESOLVER_NODE}-model-blessing-resolver"
MODEL_RESOLVER = f"{pipeline_names.RESOLVER_NODE}-model-resolver"
SCHEMA, GATE, SKEW = pipeline_names.SCHEMA_GEN_NODE, pipeline_names.DATA_GATE_NODE, pipeline_names.SKEW_VALIDATOR_NODE
EDGE_EVALUATOR = pipeline_names.EDGE_EVALUATOR_NODE
# No drift validation on Vertex AI (its baseline is a custom resolver strategy): the gate reads the
# schema and skew checks. Transform waits for the gate (an order, not data).
CONTAINER_DEPENDENCIES = {
    EXAMPLE_GEN: [],
    SCHEMA: [],
    "StatisticsGen": [SCHEMA, EXAMPLE_GEN],
    "ExampleValidator": [SCHEMA, "StatisticsGen"],
    SKEW: ["StatisticsGen"],
    GATE: [SCHEMA, "ExampleValidator", EXAMPLE_GEN, SKEW, "StatisticsGen"],  # the ingest report: duplicates
    "Transform": [SCHEMA, GATE, EXAMPLE_GEN],
    TRAINER: [SCHEMA, EXAMPLE_GEN, "Transform"],
    EVALUATOR: [SCHEMA, EXAMPLE_GEN, TRAINER, MODEL_RESOLVER],
    EDGE_EVALUATOR: [EVALUATOR, EXAMPLE_GEN, TRAINER, "Transform"],
    # The model card's inputs too: the data gate's result, the examples, the Trainer's model run.
    PUSHER: [GATE, EDGE_EVALUATOR, EVALUATOR, EXAMPLE_GEN, TRAINER],
}


def compile_job(out_dir, *flags, allow_local_paths=False):
    """Compiles with the runner's own flag parsing; returns the PipelineJob dict it wrote."""
    cfg = runner.parse_args([*flags, "--output-file", os.path.join(str(out_dir), "pipeline.json")])
    job = runner.compile_pipeline(cfg, allow_local_paths=allow_local_paths)
    with open(cfg.vertex.output_file) as f:
        assert json.load(f) == job
    return job


def tasks(job):
    return job["pipelineSpec"]["root"]["dag"]["tasks"]


def container(job, task_name):
    spec = job["pipelineSpec"]
    label = spec["components"][tasks(job)[task_name]["componentRef"]["name"]]["executorLabel"]
    return spec["deploymentSpec"]["executors"][label]["container"]


def param(job, task_name, name):
    return tasks(job)[task_name]["inputs"]["parameters"][name]["runtimeValue"]["constant"]


def executor_class(job, task_name):
    args = container(job, task_name)["args"]
    return args[args.index("--executor_class_path") + 1]


@pytest.fixture(scope="module")
def default_job(tmp_path_factory):
    return compile_job(tmp_path_factory.mktemp("default"), *PROD_FLAGS)


@pytest.fixture(scope="module")
def cloud_job(tmp_path_factory):
    """Every cloud option on: Dataflow, a custom GPU pool, a Vertex endpoint, a service account."""
    return compile_job(
        tmp_path_factory.mktemp("cloud"), *PROD_FLAGS, "--dataflow", "--dataflow-machine-type",
        "n2-standard-8", "--dataflow-max-workers", "10", "--training-machine-type", "a2-highgpu-1g",
        "--accelerator-type", "NVIDIA_TESLA_A100", "--accelerator-count", "2", "--endpoint",
        "intel-scenes-endpoint", "--service-account", "runner@test-proj.iam.gserviceaccount.com",
        "--data-dir", "gs://data-bucket/intel/v3")


# --- 1. the flags --------------------------------------------------------------------------------

def _squeezed(text):
    return "".join(text.split())  # argparse re-wraps help text (also at hyphens)


def _has_flag(help_text, field_name):
    return re.search(rf"^  --{field_name.replace('_', '-')}[ ,\n]", help_text, re.M) is not None


def test_help_shows_every_knob_with_its_meaning():
    help_text = runner.make_parser().format_help()
    shared = [f for f in dataclasses.fields(configs.PipelineConfig) if f.name not in runner.LOCAL_ONLY_KNOBS]
    assert {f.name for f in shared} == {"pipeline_name", "class_names", "eval_fraction", "accuracy_lower_bound",
                                        "accuracy_max_drop", "enable_cache", "class_drift_max_linf",
                                        "size_drift_max_jsd", "stop_on_skew", "proceed_despite_anomalies",
                                        "tflite_float16_max_drop", "tflite_int8_max_drop", "max_image_pixels",
                                        "class_recall_lower_bound", "class_recall_max_drop", "reference_eval_dir",
                                        "content_drift_max_jsd", "content_drift_stops", "near_duplicate_max_hamming",
                                        "stop_on_cross_split_duplicates", "label_vetting_max_drop",
                                        "label_vetting_concentration", "label_vetting_concentration_min_drop",
                                        "label_vetting_min_examples", "label_vetting_train_sample",
                                        "label_vetting_warn_only"}
    training = [f for f in dataclasses.fields(TrainConfig) if f.name != "class_names"]
    for field in [*dataclasses.fields(configs.VertexConfig), *shared, *training]:
        assert _has_flag(help_text, field.name), field.name
        assert _squeezed(runner.CLUSTER_HELP.get(field.name, help_of(field))) in _squeezed(help_text), field.name
    # Derived defaults are shown as what they derive from.
    for shown in ("[default: $GOOGLE_CLOUD_PROJECT]", "[default: gs://{project}-intel-scenes]",
                  "[default: {bucket}/pipelines/{pipeline_name}]",
                  "[default: {region}-docker.pkg.dev/{project}/tfx/intel-scenes-tfx:latest]",
                  f"[default: {','.join(dataset.INTEL_CLASS_NAMES)}"):
        assert _squeezed(shown) in _squeezed(help_text), shown
    # The cluster's --data-dir is VertexConfig's (gs://, passed as it is); the others do not exist.
    assert [k for k in runner.LOCAL_ONLY_KNOBS if _has_flag(help_text, k)] == ["data_dir"]
    assert "gs:// labelled images" in help_text


def test_flags_are_read_before_tfx_loads():
    """A flag error or --help answered in a fraction of a second: TFX (pipeline.pipeline) loads when a
    pipeline is built. It used to load first: ~25 s before `unrecognized arguments`."""
    code = ("import sys, kubeflow_v2_runner as r; cfg = r.parse_args(['--project', 'p', '--epochs', '3']); "
            "print(cfg.train.epochs, sorted({m.split('.')[0] for m in sys.modules} & {'tfx', 'tensorflow', "
            "'apache_beam', 'kfp'}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.split("\n")[0]) == (0, "3 []"), done.stderr
    done = subprocess.run([sys.executable, "kubeflow_v2_runner.py", "--no-such-flag"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.strip() == ("error: unrecognized arguments: --no-such-flag; kubeflow_v2_runner.py --help "
                                   "lists the flags (exit 2)")


def test_derived_defaults(monkeypatch):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "env-proj")
    vertex = runner.parse_args(["--pipeline-name", "scenes-2"]).vertex
    assert (vertex.project, vertex.region) == ("env-proj", "us-central1")
    assert vertex.bucket == "gs://env-proj-intel-scenes"
    assert vertex.pipeline_root == "gs://env-proj-intel-scenes/pipelines/scenes-2"
    assert vertex.data_dir == "gs://env-proj-intel-scenes/data/v1"
    assert vertex.serving_model_dir == "gs://env-proj-intel-scenes/serving_model/scenes-2"
    assert vertex.temp_location == "gs://env-proj-intel-scenes/beam-tmp"
    assert vertex.image == "us-central1-docker.pkg.dev/env-proj/tfx/intel-scenes-tfx:latest"
    assert vertex.output_file == "scenes-2_pipeline.json"
    # Set values win; a trailing slash of the bucket is dropped.
    cfg = runner.parse_args([*PROD_FLAGS, "--bucket", "gs://b/", "--data-dir", "gs://d/v7", "--epochs", "3"])
    assert (cfg.vertex.project, cfg.vertex.image, cfg.vertex.data_dir) == ("test-proj", IMAGE, "gs://d/v7")
    assert cfg.vertex.pipeline_root == "gs://b/pipelines/intel-scenes"
    assert cfg.train.epochs == 3 and cfg.train.class_names == dataset.INTEL_CLASS_NAMES
    assert cfg.pipeline.class_names == dataset.INTEL_CLASS_NAMES
    assert cfg.pipeline.data_dir == ""  # the local runner's knob: the cluster's --data-dir is VertexConfig's


@pytest.mark.parametrize("flags,error,message", [
    ([], runner.RunnerError, "--project is required"),
    ([*PROD_FLAGS, "--class-names", ""], runner.RunnerError, "--class-names must name the classes"),
    ([*PROD_FLAGS, "--labels", "team"], ConfigError, "labels='team': each label must be key=value"),
    ([*PROD_FLAGS, "--accelerator-count", "-1"], ConfigError, "accelerator_count=-1: must be >= 0"),
    ([*PROD_FLAGS, "--eval-fraction", "1.5"], ConfigError, r"eval_fraction=1.5: must be in \(0, 1\)"),
    ([*PROD_FLAGS, "--class-names", "a"], ConfigError, "class_names needs at least 2 classes"),
])
def test_bad_flags_fail_with_the_knob_named(flags, error, message, monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    with pytest.raises(error, match=message):
        runner.parse_args(flags)
    assert runner.main([*flags, "--output-file", str(tmp_path / "p.json")]) == 2
    assert re.search("error: .*" + message, capsys.readouterr().err)
    assert not (tmp_path / "p.json").exists()


# --- 2. the compiled spec ------------------------------------------------------------------------

def test_spec_header(default_job):
    spec = default_job["pipelineSpec"]
    assert spec["schemaVersion"] == "2.1.0"
    assert spec["sdkVersion"] == "tfx-1.16.0"
    assert spec["pipelineInfo"]["name"] == default_job["displayName"] == "intel-scenes"
    assert kubeflow.PIPELINE_NAME_PATTERN.fullmatch(spec["pipelineInfo"]["name"])
    assert default_job["runtimeConfig"]["gcsOutputDirectory"] == "gs://test-bucket/pipelines/intel-scenes"


def test_every_component_is_a_task_with_its_dependencies(default_job):
    dag = tasks(default_job)
    assert set(dag) == set(CONTAINER_DEPENDENCIES) | {BLESSING_RESOLVER, MODEL_RESOLVER}
    for name, upstream in CONTAINER_DEPENDENCIES.items():
        assert dag[name].get("dependentTasks", []) == upstream, name
    # The resolver is two backend queries: the latest blessing, then the model it blessed.
    assert dag[MODEL_RESOLVER]["inputs"]["artifacts"]["input"]["taskOutputArtifact"] == {
        "producerTask": BLESSING_RESOLVER, "outputArtifactKey": "model_blessing"}
    assert dag[EVALUATOR]["inputs"]["artifacts"]["baseline_model"]["taskOutputArtifact"] == {
        "producerTask": MODEL_RESOLVER, "outputArtifactKey": "model"}


def caching(job):
    """{task: whether the backend may serve it from its cache}."""
    return {name: task.get("cachingOptions", {}).get("enableCache", False) for name, task in tasks(job).items()}


def test_ingestion_is_never_cached_the_other_steps_are(default_job, tmp_path):
    # ImageExampleGen has no input artifact: cached, it would be keyed on the --data-dir string alone.
    expected = {name: name != EXAMPLE_GEN for name in CONTAINER_DEPENDENCIES}
    expected.update({BLESSING_RESOLVER: False, MODEL_RESOLVER: False})  # backend queries, never cached
    assert caching(default_job) == expected
    assert caching(compile_job(tmp_path, *PROD_FLAGS, "--cache-ingestion")) == dict(
        expected, **{EXAMPLE_GEN: True})
    uncached = compile_job(tmp_path, *PROD_FLAGS, "--no-enable-cache", "--cache-ingestion")
    assert not any(caching(uncached).values())


def test_every_step_runs_the_pipeline_image(default_job):
    for name in CONTAINER_DEPENDENCIES:
        spec = container(default_job, name)
        assert spec["image"] == IMAGE
        assert spec["command"] == RUN_EXECUTOR
        assert spec["args"][3] == "{{$}}"  # --json_serialized_invocation_args: the executor input
    assert executor_class(default_job, EXAMPLE_GEN) == "components.image_example_gen.executor.Executor"
    assert executor_class(default_job, PUSHER) == "components.atomic_pusher.executor.AtomicPusherExecutor"


def test_code_by_import_path_and_data_passed_through(default_job, cloud_job):
    assert param(default_job, "Transform", "preprocessing_fn") == \
        "trainer_module.preprocessing.preprocessing_fn"
    assert param(default_job, TRAINER, "run_fn") == "trainer_module.trainer.run_fn"
    assert "module_file" not in tasks(default_job)[TRAINER]["inputs"]["parameters"]
    assert "module_path" not in tasks(default_job)["Transform"]["inputs"]["parameters"]
    assert param(default_job, EXAMPLE_GEN, "input_base") == "gs://test-bucket/data/v1"
    assert param(cloud_job, EXAMPLE_GEN, "input_base") == "gs://data-bucket/intel/v3"
    assert json.loads(param(default_job, EXAMPLE_GEN, "class_names")) == list(dataset.INTEL_CLASS_NAMES)


def test_trainer_runs_on_a_vertex_gpu_worker_pool(default_job, cloud_job):
    expected = {
        "ai_platform_enable_vertex": True,
        "ai_platform_vertex_region": "europe-west4",
        "ai_platform_training_args": {"project": "test-proj", "job_spec": {"worker_pool_specs": [{
            "machine_spec": {"machine_type": "n1-standard-8", "accelerator_type": "NVIDIA_TESLA_T4",
                             "accelerator_count": 1},
            "replica_count": 1,
            "container_spec": {"image_uri": IMAGE}}]}},
    }
    config = json.loads(param(default_job, TRAINER, "custom_config"))
    assert {k: v for k, v in config.items() if k not in ("train_config", "max_image_pixels")} == expected
    assert config["max_image_pixels"] == configs.PipelineConfig.max_image_pixels  # the serving errors' budget
    assert config["train_config"]["class_names"] == list(dataset.INTEL_CLASS_NAMES)
    assert executor_class(default_job, TRAINER) == \
        "tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor"

    job_spec = json.loads(param(cloud_job, TRAINER, "custom_config"))["ai_platform_training_args"]["job_spec"]
    assert job_spec["worker_pool_specs"][0]["machine_spec"] == {
        "machine_type": "a2-highgpu-1g", "accelerator_type": "NVIDIA_TESLA_A100", "accelerator_count": 2}
    assert job_spec["service_account"] == "runner@test-proj.iam.gserviceaccount.com"


def test_training_switches(tmp_path):
    cpu = compile_job(tmp_path, *PROD_FLAGS, "--accelerator-count", "0")
    pools = json.loads(param(cpu, TRAINER, "custom_config"))["ai_platform_training_args"]["job_spec"]
    assert pools["worker_pool_specs"][0]["machine_spec"] == {"machine_type": "n1-standard-8"}
    in_step = compile_job(tmp_path, *PROD_FLAGS, "--no-vertex-training", "--epochs", "2")
    config = json.loads(param(in_step, TRAINER, "custom_config"))
    assert sorted(config) == ["max_image_pixels", "train_config"] and config["train_config"]["epochs"] == 2
    assert executor_class(in_step, TRAINER) == "tfx.components.trainer.executor.GenericExecutor"


def test_dataflow_args_only_when_asked(default_job, cloud_job):
    dataflow = ["--runner=DataflowRunner", "--project=test-proj", "--region=europe-west4",
                "--temp_location=gs://test-bucket/beam-tmp", "--machine_type=n2-standard-8",
                "--max_num_workers=10", f"--sdk_container_image={IMAGE}", "--experiments=use_runner_v2",
                "--service_account_email=runner@test-proj.iam.gserviceaccount.com"]
    for name in (EXAMPLE_GEN, "StatisticsGen", "Transform", EVALUATOR):
        assert container(cloud_job, name)["args"][-len(dataflow):] == dataflow, name
        assert container(default_job, name)["args"][-2:] == list(configs.LOCAL_BEAM_ARGS), name
    assert "Dataflow" not in json.dumps(default_job)
    assert "--temp_location" not in json.dumps(default_job)


def test_pusher_targets(default_job, cloud_job):
    destination = json.loads(param(default_job, PUSHER, "push_destination"))
    assert destination == {"filesystem": {"base_directory": "gs://test-bucket/serving_model/intel-scenes"}}
    assert json.loads(param(cloud_job, PUSHER, "custom_config")) == {
        "ai_platform_enable_vertex": True,
        "ai_platform_vertex_region": "europe-west4",
        "ai_platform_vertex_container_image_uri":
            "europe-west4-docker.pkg.dev/test-proj/tfx/intel-scenes-serving:2.16.1",
        "ai_platform_serving_args": {"project_id": "test-proj", "endpoint_name": "intel-scenes-endpoint",
                                     "machine_type": "n1-standard-4"},
        # Pushes are versions of one Model in the registry (the pipeline name), 10 % to a new canary.
        "vertex_model_registry": {"model_id": "intel-scenes", "canary_traffic_percent": 10},
    }
    assert executor_class(cloud_job, PUSHER) == \
        "components.vertex_pusher.executor.VertexRegistryPusherExecutor"


def test_a_reference_set_adds_its_ingestion_and_evaluator_and_the_endpoint_pusher_waits_for_both(tmp_path):
    job = compile_job(tmp_path, *PROD_FLAGS, "--endpoint", "intel-scenes-endpoint",
                      "--reference-eval-dir", "gs://data-bucket/reference/v1")
    reference_gen, reference_evaluator = pipeline_names.REFERENCE_EXAMPLE_GEN_NODE, pipeline_names.REFERENCE_EVALUATOR_NODE
    assert param(job, reference_gen, "input_base") == "gs://data-bucket/reference/v1"
    assert sorted(upstream_tasks(tasks(job)[reference_evaluator])) == sorted(
        [SCHEMA, reference_gen, TRAINER, MODEL_RESOLVER])
    assert json.loads(param(job, reference_evaluator, "example_splits")) == ["train", "eval"]
    assert json.loads(param(job, reference_evaluator, "eval_config")) == json.loads(param(job, EVALUATOR, "eval_config"))
    # The Vertex registry Pusher with the reference set's blessing as a second input.
    assert executor_class(job, PUSHER) == "components.vertex_pusher.executor.VertexRegistryPusherExecutor"
    assert {"model", "model_blessing", "reference_blessing"} <= set(tasks(job)[PUSHER]["inputs"]["artifacts"])
    assert reference_evaluator in upstream_tasks(tasks(job)[PUSHER])
    # Its ingestion is cached like the data's: not unless asked (a fixed set: version its path).
    assert caching(job)[reference_gen] is False
    # Without a reference set the DAG is the default one.
    assert reference_gen not in tasks(compile_job(tmp_path, *PROD_FLAGS, "--endpoint", "e"))


@pytest.mark.parametrize("job_name", ["default_job", "cloud_job"])
def test_no_local_path_anywhere(job_name, request):
    text = json.dumps(request.getfixturevalue(job_name))
    for local in ("/work/", "/tmp/", configs.REPO_ROOT, os.path.expanduser("~"), tempfile.gettempdir(),
                  os.getcwd(), "file://", "metadata.sqlite", ".py\""):
        assert local not in text, local
    # No string or flag value (also inside the nested JSON strings) starts with an absolute path.
    assert re.findall(r'(?:^|["\'=\s,\[])/\w', text.replace('\\"', '"')) == []
    assert kubeflow.find_local_paths(text) == []


@pytest.mark.parametrize("name", ["Intel_Scenes", "-intel", "intel.scenes", "a" * 129, ""])
def test_bad_pipeline_name_is_rejected(name, tmp_path, capsys):
    with pytest.raises(runner.RunnerError, match=r"pipeline name .* is not valid for Kubeflow Pipelines"):
        compile_job(tmp_path, *PROD_FLAGS, f"--pipeline-name={name}")
    assert runner.main([*PROD_FLAGS, f"--pipeline-name={name}", "--output-file", str(tmp_path / "p.json")]) == 2
    assert f"error: pipeline name {name!r} is not valid" in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()


def test_local_paths_are_rejected_for_the_cluster(tmp_path):
    with pytest.raises(runner.RunnerError, match=r"--data-dir.*/data/intel.*--serving-model-dir"):
        compile_job(tmp_path, *PROD_FLAGS, "--data-dir", "/data/intel", "--serving-model-dir", "serving")
    with pytest.raises(runner.RunnerError, match=r"--reference-eval-dir': '/data/reference'"):
        compile_job(tmp_path, *PROD_FLAGS, "--reference-eval-dir", "/data/reference")
    with pytest.raises(runner.RunnerError, match="--weights"):
        compile_job(tmp_path, *PROD_FLAGS, "--weights", "/models/mobilenet.h5")
    assert kubeflow.find_local_paths(f'{{"a": "{tempfile.gettempdir()}/x"}}') == [tempfile.gettempdir()]


def test_a_spec_naming_a_local_path_is_not_left_behind(tmp_path, monkeypatch):
    # Pretend the bucket were a directory of this machine: the check on the compiled JSON fires.
    monkeypatch.setattr(kubeflow, "local_path_markers", lambda: ["gs://test-bucket"])
    with pytest.raises(runner.RunnerError, match=r"names local paths under \['gs://test-bucket'\]"):
        compile_job(tmp_path, *PROD_FLAGS)
    assert not (tmp_path / "pipeline.json").exists()


def test_dockerfile_pins_match_requirements():
    requirements = {canonicalize_name(Requirement(r).name): Requirement(r)
                    for section in setup.read_requirements().values() for r in section}
    with open(os.path.join(configs.REPO_ROOT, "Dockerfile")) as f:
        dockerfile = f.read()
    image, tag = re.search(r"^FROM\s+(\S+):(\S+)\s*$", dockerfile, re.M).groups()
    assert image == "gcr.io/tfx-oss-public/tfx" and str(requirements["tfx"].specifier) == f"=={tag}"
    assert re.search(r"^ENV\s+TF_USE_LEGACY_KERAS=1\s*$", dockerfile, re.M)
    # setup.py reads its pins from requirements.in: both go into the image, with the lock.
    assert re.search(r"^COPY\s+requirements\.in\s+requirements\.lock\s+setup\.py\s", dockerfile, re.M)
    assert re.search(r"pip install .*--constraint requirements\.lock \.", dockerfile)
    # Every package of the repository but the benchmarks is installed in the image.
    for package in setuptools.find_packages(configs.REPO_ROOT, exclude=["bench", "bench.*", "tests*"]):
        top = package.split(".")[0]
        assert re.search(rf"^COPY\s+{top}/\s+{top}/\s*$", dockerfile, re.M), top
    # The lock constrains the image's install, so each of its pins must satisfy requirements.in.
    with open(os.path.join(configs.REPO_ROOT, "requirements.lock")) as f:
        locked = {canonicalize_name(n): v for n, v in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", f.read(), re.M)}
    for name, requirement in requirements.items():
        assert requirement.specifier.contains(locked[name]), (name, locked[name], str(requirement))


# --- 3. the compiled spec executes ---------------------------------------------------------------

def upstream_tasks(task):
    producers = {a["taskOutputArtifact"]["producerTask"]
                 for a in task.get("inputs", {}).get("artifacts", {}).values()}
    return set(task.get("dependentTasks", [])) | producers


def dependency_levels(dag):
    """Task names in waves: each wave needs only earlier ones (dependentTasks and input producers)."""
    levels, done = [], set()
    while len(done) < len(dag):
        ready = sorted(n for n, t in dag.items() if n not in done and upstream_tasks(t) <= done)
        assert ready, f"cycle among {set(dag) - done}"
        levels.append(ready)
        done.update(ready)
    return levels


# absl's app.run(main, flags_parser=PARSER) of each container entrypoint: the parser gets the
# whole argv (program first), main what it returns.
ENTRYPOINT_FLAGS_PARSERS = {RUN_EXECUTOR[2]: "_parse_flags", VERTEX_WORKER[2]: "parse_flags"}


def run_in_process(command):
    """Runs a container's `python -m MODULE ARGS` in this process, through the module's own flag
    parsing and main: a new process would spend ~20 s importing TensorFlow and TFX again."""
    assert command[:2] == ["python", "-m"] and command[2] in ENTRYPOINT_FLAGS_PARSERS, command
    module = importlib.import_module(command[2])
    parse = getattr(module, ENTRYPOINT_FLAGS_PARSERS[command[2]])
    module.main(parse([module.__file__, *command[3:]]))


class LocalBackend:
    """The KFP backend's part in one run: what it puts into `{{$}}` and carries between steps.

    For each container task: the parameters' constant values, the input artifacts as their
    producers left them (uri, metadata, resource name), fresh output artifacts under the pipeline
    root, and the executor_output.json path; afterwards the artifacts of that file are what
    downstream tasks receive (as the backend does through ML Metadata).
    """

    def __init__(self, job, root):
        self.spec, self.root = job["pipelineSpec"], root
        self.outputs = {}  # task -> output key -> [RuntimeArtifact dict]
        self.seconds = {}

    def run(self):
        dag = self.spec["root"]["dag"]["tasks"]
        for level in dependency_levels(dag):
            for name in level:
                self.run_task(name, dag[name])

    def executor(self, task):
        label = self.spec["components"][task["componentRef"]["name"]]["executorLabel"]
        return self.spec["deploymentSpec"]["executors"][label]

    def run_task(self, name, task):
        executor = self.executor(task)
        if "resolver" in executor:
            # Resolver tasks are MLMD queries the backend answers itself (no container). This is
            # the first run: no ModelBlessing is blessed yet, so both queries return nothing.
            self.outputs[name] = {key: [] for key in executor["resolver"]["outputArtifactQueries"]}
            return
        executor_input = self.executor_input(name, task)
        container = executor["container"]
        command = container["command"] + [json.dumps(executor_input) if a == "{{$}}" else a
                                          for a in container["args"]]
        assert not [a for a in command if "{{$" in a], "a placeholder the backend would fill is left"
        start = time.monotonic()
        try:
            run_in_process(command)
        except Exception as e:
            raise AssertionError(f"step {name} failed: {e!r}") from e
        self.seconds[name] = time.monotonic() - start
        self.outputs[name] = self.collect_outputs(executor_input)

    def executor_input(self, name, task):
        component = self.spec["components"][task["componentRef"]["name"]]
        task_root = f"{self.root}/local-run/{name}_{len(self.outputs)}"
        parameters = task.get("inputs", {}).get("parameters", {})
        assert all("runtimeValue" in p for p in parameters.values()), "only constants are expected"
        inputs = {
            "parameterValues": {k: p["runtimeValue"]["constant"] for k, p in parameters.items()},
            "artifacts": {k: {"artifacts": [
                dict(a, type=component["inputDefinitions"]["artifacts"][k]["artifactType"])
                for a in self.outputs[src["taskOutputArtifact"]["producerTask"]][
                    src["taskOutputArtifact"]["outputArtifactKey"]]]}
                for k, src in task.get("inputs", {}).get("artifacts", {}).items()},
        }
        outputs = {
            "artifacts": {k: {"artifacts": [{
                "name": f"projects/test/locations/local/metadataStores/default/artifacts/{name}-{k}",
                "type": d["artifactType"], "uri": f"{task_root}/{k}", "metadata": {}}]}
                for k, d in component["outputDefinitions"]["artifacts"].items()},
            "outputFile": f"{task_root}/executor_output.json",
        }
        return {"inputs": inputs, "outputs": outputs}

    @staticmethod
    def collect_outputs(executor_input):
        """The output artifacts, updated with what the step reported (metadata) in its output file."""
        with open(executor_input["outputs"]["outputFile"]) as f:
            reported = json.load(f).get("artifacts", {})
        result = {}
        for key, declared in executor_input["outputs"]["artifacts"].items():
            artifact = dict(declared["artifacts"][0])
            for update in reported.get(key, {}).get("artifacts", []):
                artifact.update(uri=update["uri"], metadata=update.get("metadata", {}))
            result[key] = [artifact]
        return result


@pytest.fixture
def vertex_job_service(monkeypatch):
    """The Vertex AI JobService replaced at its boundary; returns the CustomJobs launched.

    The extension's executor builds the CustomJob as on Vertex; the fake records it and runs its
    worker's command line (`python -m tfx.scripts.run_executor ARGS`, a separate container on
    Vertex) in this process.
    """
    from tfx.extensions.google_cloud_ai_platform import training_clients

    launched = []

    def create_client(client):
        client._client = None  # the real client needs credentials and network

    def launch_job(client, project, training_job):
        launched.append({"project": project, "region": client._region, "custom_job": training_job})
        run_in_process(training_job["job_spec"]["worker_pool_specs"][0]["container_spec"]["command"])
        client._job_name = f"projects/{project}/locations/{client._region}/customJobs/local"

    def get_job(client):
        return types.SimpleNamespace(state=training_clients._VERTEX_JOB_STATE_SUCCEEDED)

    for name, fake in [("create_client", create_client), ("launch_job", launch_job), ("get_job", get_job)]:
        monkeypatch.setattr(training_clients.VertexJobClient, name, fake)
    return launched


@pytest.fixture
def container_state(tmp_path, monkeypatch):
    """What the entrypoints change in a process of their own: the working directory (a container's
    WORKDIR) and absl's verbosity (they set INFO). Restored for the tests that follow."""
    verbosity = absl_logging.get_verbosity()
    monkeypatch.chdir(tmp_path)
    yield
    absl_logging.set_verbosity(verbosity)


@pytest.mark.slow
@pytest.mark.usefixtures("container_state")
def test_compiled_spec_executes_to_a_pushed_model(tmp_path, vertex_job_service):
    data = demo_data.make_demo_dataset(str(tmp_path / "data"), train_per_class=8, eval_per_class=4, size=64)
    serving, root = str(tmp_path / "serving"), str(tmp_path / "root")
    # The production configuration (Trainer on Vertex AI) with local paths: test only. The cpu
    # recipe: the gpu recipe's ImageNet weights cannot be downloaded here.
    job = compile_job(tmp_path, *PROD_FLAGS, "--recipe", "cpu", "--pipeline-root", root, "--data-dir", data,
                      "--serving-model-dir", serving, "--image-size", "64", "--resize-size", "72",
                      "--batch-size", "8", "--epochs", "1", "--accuracy-lower-bound", "0.0",
                      "--class-recall-lower-bound", "0.0",
                      # the Trainer's after-training steps add nothing to what the spec must carry
                      "--no-temperature-scaling", "--bn-recalibration-batches", "0", "--no-test-time-flip",
                      "--no-tflite-export", allow_local_paths=True)
    backend = LocalBackend(job, root)
    backend.run()
    print("step seconds:", {k: round(v) for k, v in backend.seconds.items()})
    assert set(backend.seconds) == set(CONTAINER_DEPENDENCIES)  # every container step ran

    examples = backend.outputs[EXAMPLE_GEN][pipeline_names.EXAMPLES_OUTPUT][0]
    assert examples["metadata"]["ingested"] == 6 * (8 + 4)
    [vertex] = vertex_job_service
    assert (vertex["project"], vertex["region"]) == ("test-proj", "europe-west4")
    [pool] = vertex["custom_job"]["job_spec"]["worker_pool_specs"]
    assert pool["machine_spec"] == {"machine_type": "n1-standard-8", "accelerator_type": "NVIDIA_TESLA_T4",
                                    "accelerator_count": 1}
    assert pool["container_spec"]["image_uri"] == IMAGE
    assert pool["container_spec"]["command"][:5] == [
        *VERTEX_WORKER, "--executor_class_path", "tfx.components.trainer.executor.GenericExecutor"]
    model = backend.outputs[TRAINER][pipeline_names.MODEL_OUTPUT][0]
    assert os.path.isfile(os.path.join(model["uri"], pipeline_names.TRAINER_SERVING_SUBDIR,
                                       pipeline_names.SAVED_MODEL_FILE))

    blessing = backend.outputs[EVALUATOR][pipeline_names.BLESSING_OUTPUT][0]
    assert blessing["metadata"][pipeline_names.PROP_BLESSED] == 1
    # The next run's resolver query finds the blessed model by this name.
    assert blessing["metadata"][pipeline_names.PROP_CURRENT_MODEL_ID] == model["name"]
    assert os.listdir(backend.outputs[EVALUATOR][pipeline_names.EVALUATION_OUTPUT][0]["uri"])  # TFMA results
    pushed = backend.outputs[PUSHER][pipeline_names.PUSHED_MODEL_OUTPUT][0]["metadata"]
    assert pushed[pipeline_names.PROP_PUSHED] == 1 and pushed[pipeline_names.PROP_PUSHED_DESTINATION].startswith(serving + "/")
    assert os.path.isfile(os.path.join(pushed[pipeline_names.PROP_PUSHED_DESTINATION], pipeline_names.SAVED_MODEL_FILE))
    versions = [v for v in os.listdir(serving) if v.isdigit()]  # beside the release files
    assert versions == [os.path.basename(pushed[pipeline_names.PROP_PUSHED_DESTINATION])]


# --- 4. submission -------------------------------------------------------------------------------

class FakePipelineJob:
    """aiplatform.PipelineJob with submit() recorded; the job it would send is built by the real
    class (anonymous credentials: no network), so what Vertex would receive can be checked."""

    instances = []
    real_class = None

    def __init__(self, **kwargs):
        from google.auth.credentials import AnonymousCredentials

        self.kwargs, self.submit_kwargs = kwargs, None
        self.sent = FakePipelineJob.real_class(**kwargs, credentials=AnonymousCredentials()).to_dict()
        self.resource_name = "projects/1/locations/europe-west4/pipelineJobs/intel-scenes-1"
        FakePipelineJob.instances.append(self)

    def submit(self, **kwargs):
        self.submit_kwargs = kwargs


@pytest.fixture
def fake_aiplatform(monkeypatch):
    """Records aiplatform.init calls; PipelineJob is FakePipelineJob."""
    from google.cloud import aiplatform

    inits = []
    FakePipelineJob.instances, FakePipelineJob.real_class = [], aiplatform.PipelineJob
    monkeypatch.setattr(aiplatform, "init", lambda **kwargs: inits.append(kwargs))
    monkeypatch.setattr(aiplatform, "PipelineJob", FakePipelineJob)
    return inits


def test_submit_builds_the_pipeline_job(tmp_path, fake_aiplatform, capsys):
    out = str(tmp_path / "job.json")
    assert runner.main([*PROD_FLAGS, "--submit", "--output-file", out, "--labels", "team=vision,env=dev",
                        "--service-account", "runner@test-proj.iam.gserviceaccount.com"]) == 0

    assert fake_aiplatform == [{"project": "test-proj", "location": "europe-west4"}]
    [job] = FakePipelineJob.instances
    assert job.kwargs == {
        "display_name": "intel-scenes", "template_path": out,
        "pipeline_root": "gs://test-bucket/pipelines/intel-scenes", "enable_caching": None,
        "labels": {"team": "vision", "env": "dev"}, "project": "test-proj", "location": "europe-west4"}
    assert job.submit_kwargs == {"service_account": "runner@test-proj.iam.gserviceaccount.com"}
    with open(out) as f:
        assert json.load(f)["pipelineSpec"]["pipelineInfo"]["name"] == "intel-scenes"
    assert f"Submitted {job.resource_name}" in capsys.readouterr().out
    # Vertex receives the compiled per-task caching: ingestion off, the other steps on.
    assert caching(job.sent) == caching(compile_job(tmp_path, *PROD_FLAGS))
    assert caching(job.sent)[EXAMPLE_GEN] is False and caching(job.sent)[TRAINER] is True


def test_submit_without_cache_sends_every_step_uncached(tmp_path, fake_aiplatform):
    out = str(tmp_path / "job.json")
    assert runner.main([*PROD_FLAGS, "--submit", "--no-enable-cache", "--output-file", out]) == 0
    [job] = FakePipelineJob.instances
    assert job.kwargs["enable_caching"] is False and job.kwargs["labels"] is None
    assert set(caching(job.sent).values()) == {False}


def test_compile_only_never_calls_aiplatform(tmp_path, monkeypatch):
    from google.cloud import aiplatform

    def fail(**kwargs):
        raise AssertionError("aiplatform called without --submit")
    monkeypatch.setattr(aiplatform, "init", fail)
    monkeypatch.setattr(aiplatform, "PipelineJob", fail)
    assert runner.main([*PROD_FLAGS, "--output-file", str(tmp_path / "job.json")]) == 0
    assert (tmp_path / "job.json").exists()


@pytest.mark.parametrize("key_file", ["missing-key.json", None])
def test_submit_without_credentials_fails_clearly(key_file, tmp_path, monkeypatch, capsys):
    # A key file that is not there, or none; an empty home (no gcloud config); no probe of the
    # GCE metadata server.
    if key_file:
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / key_file))
    else:
        monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.delenv("CLOUDSDK_CONFIG", raising=False)
    out = str(tmp_path / "job.json")
    assert runner.main([*PROD_FLAGS, "--submit", "--output-file", out]) == 2
    err = capsys.readouterr().err
    assert f"error: no Google Cloud credentials to submit {out}" in err
    assert "gcloud auth application-default login" in err
    assert not key_file or key_file in err
    assert os.path.exists(out)  # the compiled file is still there to submit later


# --- recipes --------------------------------------------------------------------------------------

@pytest.mark.parametrize("recipe", ["notebook", "gpu"])
def test_a_recipe_compiles_into_the_spec_with_its_settings(recipe, default_job, tmp_path):
    job = default_job if recipe == runner.DEFAULT_RECIPE else compile_job(tmp_path, *PROD_FLAGS, "--recipe", recipe)
    train = json.loads(param(job, TRAINER, "custom_config"))["train_config"]
    assert train["recipe"] == recipe
    assert {knob: train[knob] for knob in recipes.RECIPES[recipe]} == recipes.RECIPES[recipe]


def test_a_flag_wins_over_the_recipe_and_auto_follows_the_accelerators(tmp_path):
    job = compile_job(tmp_path, *PROD_FLAGS, "--recipe", "notebook", "--epochs", "2")
    train = json.loads(param(job, TRAINER, "custom_config"))["train_config"]
    assert (train["epochs"], train["weights"], train["schedule"]) == (2, "imagenet", "step")
    assert runner.parse_args([*PROD_FLAGS, "--recipe", "auto"]).train.recipe == "gpu"
    cpu = runner.parse_args([*PROD_FLAGS, "--recipe", "auto", "--accelerator-count", "0"]).train
    assert (cpu.recipe, cpu.weights, cpu.image_size) == ("cpu", "none", recipes.CPU["image_size"])
