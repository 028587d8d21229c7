"""ImageExampleGen and TFX's cache: its driver fingerprints the input files before the cache lookup.

Rerun unchanged: CACHED. Change one image file: ImageExampleGen runs again. For a folder and a
`file://` URI alike, and whichever runner built the pipeline (local_runner.build or the Kubeflow
runner's build_pipeline): the fingerprint is the component's own business, not its caller's.
Each built pipeline runs partially, ImageExampleGen alone (seconds, no training).
"""
import os

import pytest
from tfx import v1 as tfx
from tfx.dsl.compiler import compiler
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.proto.orchestration import executable_spec_pb2, pipeline_pb2

import image_factory
import kubeflow_v2_runner
import local_runner
from common import pipeline_names, store
from components.image_example_gen import driver
from pipeline import configs
from run_control import local_run

LAYOUT = {"train": {"a": 3, "b": 3}, "val": {"a": 1, "b": 1}}


def _local_runner_pipeline(data: str, work: str) -> tfx.dsl.Pipeline:
    cfg, overrides = local_runner.parse_args(["--output-dir", work, "--data-dir", data, "--image-size", "32",
                                              "--resize-size", "40"])
    local_run.check_output_dir(cfg)  # as a run does: the folders ML Metadata and logs go in
    data_root = local_run.resolve_data(cfg)
    return local_run.build(cfg, overrides, data_root, local_run.check_data(cfg, data_root))[0]


def _kubeflow_runner_pipeline(data: str, work: str) -> tfx.dsl.Pipeline:
    args = kubeflow_v2_runner.parse_args([
        "--project", "test-proj", "--bucket", "gs://test-bucket", "--data-dir", data, "--class-names", "a,b",
        "--pipeline-root", os.path.join(work, "pipelines", "intel-scenes"),
        "--output-file", os.path.join(work, "job.json")])
    pipeline = kubeflow_v2_runner.build_pipeline(args)
    # The cluster's backend owns ML Metadata; here a local store stands in for it.
    pipeline.metadata_connection_config = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        _metadata_path(work))
    return pipeline


def _metadata_path(work: str) -> str:
    return configs.PipelineConfig(output_dir=work).metadata_path


BUILDERS = {"local_runner": _local_runner_pipeline, "kubeflow_v2_runner": _kubeflow_runner_pipeline}


def _run_example_gen(build, data: str, work: str) -> str:
    """Builds the pipeline as the runner does, runs its ImageExampleGen alone; returns its state."""
    only = [pipeline_names.EXAMPLE_GEN_NODE]
    tfx.orchestration.LocalDagRunner().run(
        build(data, work), run_options=tfx_pipeline.RunOptions(from_nodes=only, to_nodes=only))
    return store.read_run(_metadata_path(work))[pipeline_names.EXAMPLE_GEN_NODE].state


@pytest.mark.parametrize("runner,uri", [("local_runner", False), ("kubeflow_v2_runner", True)],
                         ids=["local_runner-folder", "kubeflow_v2_runner-file_uri"])
def test_changed_image_reruns_example_gen_unchanged_is_cached(runner, uri, tmp_path):
    root = tmp_path / "data"
    image_factory.make_image_tree(root, LAYOUT, size=(16, 16))
    data = f"file://{root}" if uri else str(root)
    work = str(tmp_path / "work")
    build = BUILDERS[runner]
    assert _run_example_gen(build, data, work) == "COMPLETE"
    assert _run_example_gen(build, data, work) == "CACHED"
    changed = sorted((root / "train" / "a").iterdir())[0]
    changed.write_bytes(image_factory.jpeg_bytes(16, 16, seed=99))
    assert _run_example_gen(build, data, work) == "COMPLETE"
    assert _run_example_gen(build, data, work) == "CACHED"


def test_fingerprint_is_the_same_for_a_folder_and_its_file_uri(tmp_path):
    image_factory.make_image_tree(tmp_path, LAYOUT, size=(16, 16))
    def fingerprint(base: str) -> str:
        properties = {driver.INPUT_BASE_KEY: base, driver.CLASS_NAMES_KEY: "[]", driver.EVAL_FRACTION_KEY: 0.2}
        return driver.resolve_exec_properties(properties)[driver.INPUT_FINGERPRINT_KEY]

    folder = fingerprint(str(tmp_path))
    assert folder == fingerprint(f"file://{tmp_path}")
    (tmp_path / "train" / "b" / "new.jpg").write_bytes(image_factory.jpeg_bytes(8, 8))
    assert fingerprint(str(tmp_path)) != folder


def test_the_executor_ingests_the_listing_the_driver_fingerprinted(tmp_path):
    """In one process the data tree is listed once: the executor takes the driver's listing (a file
    added in between is not half-ingested: the next run sees it), and lists again without one."""
    image_factory.make_image_tree(tmp_path, LAYOUT, size=(16, 16))
    properties = {driver.INPUT_BASE_KEY: str(tmp_path), driver.CLASS_NAMES_KEY: "[]", driver.EVAL_FRACTION_KEY: 0.2}
    resolved = driver.resolve_exec_properties(properties)
    (tmp_path / "train" / "b" / "late.jpg").write_bytes(image_factory.jpeg_bytes(8, 8))
    listing = driver.take_listing(resolved)
    assert len(listing.files) == 8 and listing.fingerprint() == resolved[driver.INPUT_FINGERPRINT_KEY]
    assert len(driver.take_listing(resolved).files) == 9  # taken: another execution lists afresh


def test_the_compiled_pipeline_runs_the_driver_whoever_built_it(tmp_path):
    image_factory.make_image_tree(tmp_path / "data", LAYOUT, size=(16, 16))
    for build in BUILDERS.values():
        ir = compiler.Compiler().compile(build(str(tmp_path / "data"), str(tmp_path / "work")))
        deployment = pipeline_pb2.IntermediateDeploymentConfig()
        ir.deployment_config.Unpack(deployment)
        driver_spec = executable_spec_pb2.PythonClassExecutableSpec()
        deployment.custom_driver_specs[pipeline_names.EXAMPLE_GEN_NODE].Unpack(driver_spec)
        assert driver_spec.class_path == f"{driver.__name__}.Driver"
