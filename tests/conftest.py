"""Test set-up: Keras 2 before TensorFlow loads, and tests/ importable (image_factory)."""
import os
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
