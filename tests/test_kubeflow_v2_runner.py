"""kubeflow_v2_runner.py: the compiled KFP v2 spec, its execution on this machine, and submission.

Nothing here reaches GCP: the spec is compiled offline, its container steps run as local
subprocesses with this test playing the KFP backend's part, and aiplatform is replaced at its
boundary.
"""
import ast
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import pytest
from packaging.requirements import Requirement

import kubeflow_v2_runner as runner
from data_sources import demo_data
from pipeline import configs
from trainer_module import names

IMAGE = "europe-west4-docker.pkg.dev/test-proj/tfx/intel-scenes-tfx:1.0"
PROD_FLAGS = ["--project", "test-proj", "--region", "europe-west4", "--bucket", "gs://test-bucket",
              "--image", IMAGE]
RUN_EXECUTOR = ["python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]
BLESSING_RESOLVER = "latest_blessed_model_resolver-model-blessing-resolver"
MODEL_RESOLVER = "latest_blessed_model_resolver-model-resolver"
CONTAINER_DEPENDENCIES = {
    "ImageExampleGen": [],
    "StatisticsGen": ["ImageExampleGen"],
    "SchemaGen": ["StatisticsGen"],
    "ExampleValidator": ["SchemaGen", "StatisticsGen"],
    "Transform": ["ImageExampleGen", "SchemaGen"],
    "Trainer": ["ImageExampleGen", "SchemaGen", "Transform"],
    "Evaluator": ["ImageExampleGen", "SchemaGen", "Trainer", MODEL_RESOLVER],
    "Pusher": ["Evaluator", "Trainer"],
}


def compile_job(out_dir, *flags, allow_local_paths=False):
    """Compiles with the runner's own flag parsing; returns the PipelineJob dict it wrote."""
    args = runner.parse_args([*flags, "--output-file", os.path.join(str(out_dir), "pipeline.json")])
    job = runner.compile_pipeline(args, allow_local_paths=allow_local_paths)
    with open(args.output_file) as f:
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


# --- 1. the compiled spec ------------------------------------------------------------------------

def test_spec_header(default_job):
    spec = default_job["pipelineSpec"]
    assert spec["schemaVersion"] == "2.1.0"
    assert spec["sdkVersion"] == "tfx-1.16.0"
    assert spec["pipelineInfo"]["name"] == default_job["displayName"] == "intel-scenes"
    assert runner.PIPELINE_NAME_PATTERN.fullmatch(spec["pipelineInfo"]["name"])
    assert default_job["runtimeConfig"]["gcsOutputDirectory"] == "gs://test-bucket/pipelines/intel-scenes"


def test_every_component_is_a_task_with_its_dependencies(default_job):
    dag = tasks(default_job)
    assert set(dag) == set(CONTAINER_DEPENDENCIES) | {BLESSING_RESOLVER, MODEL_RESOLVER}
    for name, upstream in CONTAINER_DEPENDENCIES.items():
        assert dag[name].get("dependentTasks", []) == upstream, name
        assert dag[name]["cachingOptions"] == {"enableCache": True}, name
    # The resolver is two backend queries: the latest blessing, then the model it blessed.
    assert dag[MODEL_RESOLVER]["inputs"]["artifacts"]["input"]["taskOutputArtifact"] == {
        "producerTask": BLESSING_RESOLVER, "outputArtifactKey": "model_blessing"}
    assert dag["Evaluator"]["inputs"]["artifacts"]["baseline_model"]["taskOutputArtifact"] == {
        "producerTask": MODEL_RESOLVER, "outputArtifactKey": "model"}


def test_every_step_runs_the_pipeline_image(default_job):
    for name in CONTAINER_DEPENDENCIES:
        spec = container(default_job, name)
        assert spec["image"] == IMAGE
        assert spec["command"] == RUN_EXECUTOR
        assert spec["args"][3] == "{{$}}"  # --json_serialized_invocation_args: the executor input
    assert executor_class(default_job, "ImageExampleGen") == "components.image_example_gen.executor.Executor"
    assert executor_class(default_job, "Pusher") == "tfx.components.pusher.executor.Executor"


def test_code_by_import_path_and_data_passed_through(default_job, cloud_job):
    assert param(default_job, "Transform", "preprocessing_fn") == \
        "trainer_module.preprocessing.preprocessing_fn"
    assert param(default_job, "Trainer", "run_fn") == "trainer_module.trainer.run_fn"
    assert "module_file" not in tasks(default_job)["Trainer"]["inputs"]["parameters"]
    assert "module_path" not in tasks(default_job)["Transform"]["inputs"]["parameters"]
    assert param(default_job, "ImageExampleGen", "input_base") == "gs://test-bucket/data/v1"
    assert param(cloud_job, "ImageExampleGen", "input_base") == "gs://data-bucket/intel/v3"
    assert json.loads(param(default_job, "ImageExampleGen", "class_names")) == list(names.INTEL_CLASS_NAMES)


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
    config = json.loads(param(default_job, "Trainer", "custom_config"))
    assert {k: v for k, v in config.items() if k != "train_config"} == expected
    assert config["train_config"]["class_names"] == list(names.INTEL_CLASS_NAMES)
    assert executor_class(default_job, "Trainer") == \
        "tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor"

    job_spec = json.loads(param(cloud_job, "Trainer", "custom_config"))["ai_platform_training_args"]["job_spec"]
    assert job_spec["worker_pool_specs"][0]["machine_spec"] == {
        "machine_type": "a2-highgpu-1g", "accelerator_type": "NVIDIA_TESLA_A100", "accelerator_count": 2}
    assert job_spec["service_account"] == "runner@test-proj.iam.gserviceaccount.com"


def test_training_switches(tmp_path):
    cpu = compile_job(tmp_path, *PROD_FLAGS, "--accelerator-count", "0")
    pools = json.loads(param(cpu, "Trainer", "custom_config"))["ai_platform_training_args"]["job_spec"]
    assert pools["worker_pool_specs"][0]["machine_spec"] == {"machine_type": "n1-standard-8"}
    in_step = compile_job(tmp_path, *PROD_FLAGS, "--no-vertex-training", "--epochs", "2")
    config = json.loads(param(in_step, "Trainer", "custom_config"))
    assert list(config) == ["train_config"] and config["train_config"]["epochs"] == 2
    assert executor_class(in_step, "Trainer") == "tfx.components.trainer.executor.GenericExecutor"


def test_dataflow_args_only_when_asked(default_job, cloud_job):
    dataflow = ["--runner=DataflowRunner", "--project=test-proj", "--region=europe-west4",
                "--temp_location=gs://test-bucket/beam-tmp", "--machine_type=n2-standard-8",
                "--max_num_workers=10", f"--sdk_container_image={IMAGE}", "--experiments=use_runner_v2",
                "--service_account_email=runner@test-proj.iam.gserviceaccount.com"]
    for name in ("ImageExampleGen", "StatisticsGen", "Transform", "Evaluator"):
        assert container(cloud_job, name)["args"][-len(dataflow):] == dataflow, name
        assert container(default_job, name)["args"][-2:] == list(configs.LOCAL_BEAM_ARGS), name
    assert "Dataflow" not in json.dumps(default_job)
    assert "--temp_location" not in json.dumps(default_job)


def test_pusher_targets(default_job, cloud_job):
    destination = json.loads(param(default_job, "Pusher", "push_destination"))
    assert destination == {"filesystem": {"base_directory": "gs://test-bucket/serving_model/intel-scenes"}}
    assert json.loads(param(cloud_job, "Pusher", "custom_config")) == {
        "ai_platform_enable_vertex": True,
        "ai_platform_vertex_region": "europe-west4",
        "ai_platform_vertex_container_image_uri": runner.DEFAULT_SERVING_IMAGE,
        "ai_platform_serving_args": {"project_id": "test-proj", "endpoint_name": "intel-scenes-endpoint",
                                     "machine_type": "n1-standard-4"},
    }
    assert executor_class(cloud_job, "Pusher") == \
        "tfx.extensions.google_cloud_ai_platform.pusher.executor.Executor"


@pytest.mark.parametrize("job_name", ["default_job", "cloud_job"])
def test_no_local_path_anywhere(job_name, request):
    text = json.dumps(request.getfixturevalue(job_name))
    for local in ("/work/", "/tmp/", configs.REPO_ROOT, os.path.expanduser("~"), tempfile.gettempdir(),
                  os.getcwd(), "file://", "metadata.sqlite", ".py\""):
        assert local not in text, local
    # No string or flag value (also inside the nested JSON strings) starts with an absolute path.
    assert re.findall(r'(?:^|["\'=\s,\[])/\w', text.replace('\\"', '"')) == []
    assert runner.find_local_paths(text) == []


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
    with pytest.raises(runner.RunnerError, match="--weights"):
        compile_job(tmp_path, *PROD_FLAGS, "--weights", "/models/mobilenet.h5")
    assert runner.find_local_paths(f'{{"a": "{tempfile.gettempdir()}/x"}}') == [tempfile.gettempdir()]


def test_a_spec_naming_a_local_path_is_not_left_behind(tmp_path, monkeypatch):
    # Pretend the bucket were a directory of this machine: the check on the compiled JSON fires.
    monkeypatch.setattr(runner, "local_path_markers", lambda: ["gs://test-bucket"])
    with pytest.raises(runner.RunnerError, match=r"names local paths under \['gs://test-bucket'\]"):
        compile_job(tmp_path, *PROD_FLAGS)
    assert not (tmp_path / "pipeline.json").exists()


def test_dockerfile_pins_match_setup_py():
    with open(os.path.join(configs.REPO_ROOT, "setup.py")) as f:
        tree = ast.parse(f.read())
    install_requires = next(ast.literal_eval(node.value) for node in ast.walk(tree)
                            if isinstance(node, ast.Assign) and node.targets[0].id == "INSTALL_REQUIRES")
    requirements = {Requirement(r).name: Requirement(r) for r in install_requires}
    with open(os.path.join(configs.REPO_ROOT, "Dockerfile")) as f:
        dockerfile = f.read()
    image, tag = re.search(r"^FROM\s+(\S+):(\S+)\s*$", dockerfile, re.M).groups()
    assert image == "gcr.io/tfx-oss-public/tfx" and requirements["tfx"].specifier.contains(tag)
    assert str(requirements["tfx"].specifier) == f"=={tag}"
    assert re.search(r"^ENV\s+TF_USE_LEGACY_KERAS=1\s*$", dockerfile, re.M)
    assert re.search(r"^COPY\s+requirements\.lock\s+setup\.py\s", dockerfile, re.M)
    assert re.search(r"pip install .*--constraint requirements\.lock \.", dockerfile)
    # The lock constrains the image's install, so each of its pins must satisfy setup.py.
    with open(os.path.join(configs.REPO_ROOT, "requirements.lock")) as f:
        locked = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", f.read(), re.M))
    for name, requirement in requirements.items():
        assert requirement.specifier.contains(locked[name]), (name, locked[name], str(requirement))


# --- 2. the compiled spec executes ---------------------------------------------------------------

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


class LocalBackend:
    """The KFP backend's part in one run: what it puts into `{{$}}` and carries between steps.

    For each container task: the parameters' constant values, the input artifacts as their
    producers left them (uri, metadata, resource name), fresh output artifacts under the pipeline
    root, and the executor_output.json path; afterwards the artifacts of that file are what
    downstream tasks receive (as the backend does through ML Metadata).
    """

    def __init__(self, job, root, log_dir, task_env=None):
        self.spec, self.root, self.log_dir = job["pipelineSpec"], root, log_dir
        self.task_env = task_env or {}  # task -> extra environment variables
        self.outputs = {}  # task -> output key -> [RuntimeArtifact dict]
        self.seconds = {}

    def run(self):
        dag = self.spec["root"]["dag"]["tasks"]
        for level in dependency_levels(dag):
            procs = {name: self.start(name, dag[name]) for name in level}
            for name, proc in procs.items():
                self.finish(name, proc)

    def executor(self, task):
        label = self.spec["components"][task["componentRef"]["name"]]["executorLabel"]
        return self.spec["deploymentSpec"]["executors"][label]

    def start(self, name, task):
        executor = self.executor(task)
        if "resolver" in executor:
            # Resolver tasks are MLMD queries the backend answers itself (no container). This is
            # the first run: no ModelBlessing is blessed yet, so both queries return nothing.
            self.outputs[name] = {key: [] for key in executor["resolver"]["outputArtifactQueries"]}
            return None
        self.seconds[name] = time.monotonic()
        executor_input = self.executor_input(name, task)
        cmd = [sys.executable if a == "python" and i == 0 else a for i, a in enumerate(
            executor["container"]["command"])]
        cmd += [json.dumps(executor_input) if a == "{{$}}" else a for a in executor["container"]["args"]]
        assert not [a for a in cmd if "{{$" in a], "a placeholder the backend would fill is left"
        log = open(os.path.join(self.log_dir, f"{name}.log"), "w")
        # The image's environment: its ENV (TF_USE_LEGACY_KERAS) and the installed package.
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="1",
                   **self.task_env.get(name, {}))
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.log_dir)
        proc.executor_input, proc.log = executor_input, log
        return proc

    def finish(self, name, proc):
        if proc is None:
            return
        rc = proc.wait()
        self.seconds[name] = time.monotonic() - self.seconds[name]
        proc.log.close()
        with open(proc.log.name) as f:
            assert rc == 0, f"{name} failed ({rc}):\n{f.read()[-6000:]}"
        self.outputs[name] = self.collect_outputs(proc.executor_input)

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


# Test-only sitecustomize for the Trainer step: the Vertex AI JobService replaced at its boundary.
# The extension's executor builds the CustomJob as on Vertex; the fake records it and runs its
# worker's command line (`python -m tfx.scripts.run_executor ARGS`: a separate container on
# Vertex) through that module's own flag parsing and main, in the step's process: a second
# process would only repeat the ~40 s TensorFlow import.
VERTEX_JOB_SERVICE_FAKE = '''
import json, os, types
from tfx.extensions.google_cloud_ai_platform import training_clients

def create_client(self):
    self._client = None  # the real client needs credentials and network

def launch_job(self, project, training_job):
    with open(os.environ["VERTEX_JOB_RECORD"], "w") as f:
        json.dump({"project": project, "region": self._region, "custom_job": training_job}, f)
    command = training_job["job_spec"]["worker_pool_specs"][0]["container_spec"]["command"]
    assert command[:3] == ["python", "-m", "tfx.scripts.run_executor"], command
    from tfx.scripts import run_executor
    run_executor.main(run_executor.parse_flags(command[3:]))
    self._job_name = f"projects/{project}/locations/{self._region}/customJobs/local"

def get_job(self):
    return types.SimpleNamespace(state=training_clients._VERTEX_JOB_STATE_SUCCEEDED)

training_clients.VertexJobClient.create_client = create_client
training_clients.VertexJobClient.launch_job = launch_job
training_clients.VertexJobClient.get_job = get_job
'''


@pytest.mark.slow
def test_compiled_spec_executes_to_a_pushed_model(tmp_path):
    data = demo_data.make_demo_dataset(str(tmp_path / "data"), train_per_class=8, eval_per_class=4, size=64)
    serving, root, logs, fake = (str(tmp_path / d) for d in ("serving", "root", "logs", "fake"))
    for d in (logs, fake):
        os.makedirs(d)
    with open(os.path.join(fake, "sitecustomize.py"), "w") as f:
        f.write(VERTEX_JOB_SERVICE_FAKE)
    record = os.path.join(logs, "vertex_custom_job.json")
    # The production configuration (Trainer on Vertex AI) with local paths: test only.
    job = compile_job(tmp_path, *PROD_FLAGS, "--pipeline-root", root, "--data-dir", data,
                      "--serving-model-dir", serving, "--image-size", "64", "--resize-size", "72",
                      "--batch-size", "8", "--epochs", "1", "--accuracy-lower-bound", "0.0",
                      allow_local_paths=True)
    backend = LocalBackend(job, root, logs, task_env={
        "Trainer": {"PYTHONPATH": fake, "VERTEX_JOB_RECORD": record}})
    backend.run()
    print("step seconds:", {k: round(v) for k, v in backend.seconds.items()})

    examples = backend.outputs["ImageExampleGen"]["examples"][0]
    assert examples["metadata"]["ingested"] == 6 * (8 + 4)
    with open(record) as f:
        vertex = json.load(f)
    assert (vertex["project"], vertex["region"]) == ("test-proj", "europe-west4")
    [pool] = vertex["custom_job"]["job_spec"]["worker_pool_specs"]
    assert pool["machine_spec"] == {"machine_type": "n1-standard-8", "accelerator_type": "NVIDIA_TESLA_T4",
                                    "accelerator_count": 1}
    assert pool["container_spec"]["image_uri"] == IMAGE
    assert pool["container_spec"]["command"][:5] == [
        "python", "-m", "tfx.scripts.run_executor", "--executor_class_path",
        "tfx.components.trainer.executor.GenericExecutor"]
    model = backend.outputs["Trainer"]["model"][0]
    assert os.path.isfile(os.path.join(model["uri"], "Format-Serving", "saved_model.pb"))

    blessing = backend.outputs["Evaluator"]["blessing"][0]
    assert blessing["metadata"]["blessed"] == 1
    # The next run's resolver query finds the blessed model by this name.
    assert blessing["metadata"]["current_model_id"] == model["name"]
    assert os.listdir(backend.outputs["Evaluator"]["evaluation"][0]["uri"])  # TFMA results
    pushed = backend.outputs["Pusher"]["pushed_model"][0]["metadata"]
    assert pushed["pushed"] == 1 and pushed["pushed_destination"].startswith(serving + "/")
    assert os.path.isfile(os.path.join(pushed["pushed_destination"], "saved_model.pb"))
    assert os.listdir(serving) == [os.path.basename(pushed["pushed_destination"])]


# --- 3. submission -------------------------------------------------------------------------------

class FakePipelineJob:
    """aiplatform.PipelineJob's surface the runner uses; records how it was called."""

    instances = []

    def __init__(self, **kwargs):
        self.kwargs, self.submit_kwargs = kwargs, None
        self.resource_name = "projects/1/locations/europe-west4/pipelineJobs/intel-scenes-1"
        FakePipelineJob.instances.append(self)

    def submit(self, **kwargs):
        self.submit_kwargs = kwargs


def test_submit_builds_the_pipeline_job(tmp_path, monkeypatch, capsys):
    from google.cloud import aiplatform

    inits = []
    monkeypatch.setattr(aiplatform, "init", lambda **kwargs: inits.append(kwargs))
    monkeypatch.setattr(aiplatform, "PipelineJob", FakePipelineJob)
    FakePipelineJob.instances = []
    out = str(tmp_path / "job.json")
    assert runner.main([*PROD_FLAGS, "--submit", "--output-file", out, "--labels", "team=vision,env=dev",
                        "--service-account", "runner@test-proj.iam.gserviceaccount.com"]) == 0

    assert inits == [{"project": "test-proj", "location": "europe-west4"}]
    [job] = FakePipelineJob.instances
    assert job.kwargs == {
        "display_name": "intel-scenes", "template_path": out,
        "pipeline_root": "gs://test-bucket/pipelines/intel-scenes", "enable_caching": True,
        "labels": {"team": "vision", "env": "dev"}, "project": "test-proj", "location": "europe-west4"}
    assert job.submit_kwargs == {"service_account": "runner@test-proj.iam.gserviceaccount.com"}
    with open(out) as f:
        assert json.load(f)["pipelineSpec"]["pipelineInfo"]["name"] == "intel-scenes"
    assert f"Submitted {job.resource_name}" in capsys.readouterr().out


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
