"""Test set-up: Keras 2 before TensorFlow loads, tests/ importable, and the shared pipeline runs."""
import os
import subprocess
import sys

import pytest

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True, scope="session")
def _argv_without_pytest_options():
    """TFX's Beam executors parse sys.argv with absl (base_beam_executor.py: FLAGS(sys.argv, ...)),
    which reads pytest's own `-v` as absl's --verbosity and fails: run tests with a bare argv."""
    saved = sys.argv
    sys.argv = saved[:1]
    yield
    sys.argv = saved


@pytest.fixture(scope="session")
def gate_runs(tmp_path_factory):
    """Pipeline runs A (trains, blessed), B (unchanged: CACHED) and C (weak: not blessed), made once
    per session and shared by the end-to-end, gate, report and predict tests (tests/pipeline_runs.py)."""
    import pipeline_runs

    return pipeline_runs.run_gate_pipelines(str(tmp_path_factory.mktemp("gate")))


# The tests that read the shared pipeline runs run on one xdist worker (scripts/test.sh runs two),
# so the runs are made once while the other worker takes the rest of the suite.
PIPELINE_RUNS_GROUP = "pipeline_runs"
# Modules of long tests in child processes (local_runner, the tfx CLI): each goes to a worker as one
# unit. xdist hands out the bigger units first, so these start early; as single tests late in the
# collection they kept one worker busy for minutes after the other had finished.
EARLY_MODULES = ("test_stops", "test_tfx_cli")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        if "gate_runs" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group(PIPELINE_RUNS_GROUP))
        elif getattr(getattr(item, "module", None), "__name__", None) in EARLY_MODULES:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


@pytest.fixture()
def small_tmpfs(tmp_path):
    """mount(size_bytes) -> a fresh tmpfs of that size (root only); unmounted after the test."""
    mounted = []

    def mount(size_bytes):
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        point = tmp_path / "tmpfs"
        point.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes // 1024}k", "tmpfs",
                                 str(point)], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=True)
