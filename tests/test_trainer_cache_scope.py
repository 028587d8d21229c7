"""What invalidates the Transform and Trainer cache: trainer_module/ (the user module TFX packages and
hashes) and their parameters, never a name of the levels above.

TFX keys a component's cache on its execution properties (for Transform and Trainer, the user-module
wheel, named by a hash of trainer_module/'s files, and the custom_config) and its input artifacts.
A rename of a report-only name (common/pipeline_names.py) changes neither: the wheel of a project
copy with the rename has the same name, and the compiled Transform and Trainer nodes carry the same
properties. The same edit in trainer_module/ changes the wheel (so the check can fail).
"""
import os
import shutil

import pytest
from tfx.components.util import udf_utils

from common import pipeline_names
from pipeline import configs, pipeline as pipeline_module
from trainer_module.train_config import TrainConfig

RENAME = ('PUSH_SOURCE_FILE = "push_source.json"', 'PUSH_SOURCE_FILE = "pushed_from.json"')


def _copy(root, edit_path: str = "", old: str = "", new: str = ""):
    """A copy of trainer_module/ and common/ under root, with one edit."""
    for package in ("trainer_module", "common"):
        shutil.copytree(os.path.join(configs.REPO_ROOT, package), os.path.join(root, package),
                        ignore=shutil.ignore_patterns("__pycache__"))
    if edit_path:
        path = os.path.join(root, edit_path)
        with open(path) as f:
            text = f.read()
        assert old in text
        with open(path, "w") as f:
            f.write(text.replace(old, new))
    return root


def _wheel_name(root, tmp_path) -> str:
    _, user_module_path = udf_utils.package_user_module_file(
        "Trainer", os.path.join(root, "trainer_module", "trainer.py"), str(tmp_path / "wheels"))
    return os.path.basename(user_module_path.split("@", 1)[1])


def test_a_report_only_rename_keeps_the_user_module_wheel(tmp_path):
    original = _wheel_name(_copy(tmp_path / "a"), tmp_path)
    renamed = _wheel_name(_copy(tmp_path / "b", "common/pipeline_names.py", *RENAME), tmp_path)
    assert renamed == original
    edited = _wheel_name(_copy(tmp_path / "c", "trainer_module/names.py", 'HISTORY_FILE = "history.json"',
                               'HISTORY_FILE = "history.json"  # edited'), tmp_path)
    assert edited != original  # an edit in trainer_module/ re-runs Transform and the Trainer


def _trainer_and_transform_properties():
    pipeline = pipeline_module.create_pipeline(
        configs.PipelineConfig(pipeline_name="p"), TrainConfig(class_names=("a", "b")),
        pipeline_module.Platform(pipeline_root="/tmp/p", data_root="/tmp/data", serving_model_dir="/tmp/s"))
    nodes = {c.id: c for c in pipeline.components}
    return {node: {k: str(v) for k, v in nodes[node].exec_properties.items()}
            for node in (pipeline_names.TRANSFORM_NODE, pipeline_names.TRAINER_NODE)}


def test_a_report_only_rename_keeps_the_transform_and_trainer_properties(monkeypatch):
    before = _trainer_and_transform_properties()
    for name in ("PUSH_SOURCE_FILE", "EDGE_EVALUATION_FILE", "INGEST_REPORT_FILE", "PROP_SCHEMA_VERSION"):
        monkeypatch.setattr(pipeline_names, name, getattr(pipeline_names, name) + "_renamed")
    assert _trainer_and_transform_properties() == before


@pytest.mark.parametrize("knob", ["accuracy_lower_bound", "stop_on_skew", "tflite_int8_max_drop"])
def test_a_gate_knob_keeps_the_transform_and_trainer_properties(knob):
    """The gates decide after training: changing one re-evaluates, it does not retrain."""
    before = _trainer_and_transform_properties()
    default = getattr(configs.PipelineConfig, knob)
    changed = configs.PipelineConfig(pipeline_name="p", **{knob: (not default) if isinstance(default, bool)
                                                            else default / 2})
    pipeline = pipeline_module.create_pipeline(
        changed, TrainConfig(class_names=("a", "b")),
        pipeline_module.Platform(pipeline_root="/tmp/p", data_root="/tmp/data", serving_model_dir="/tmp/s"))
    nodes = {c.id: c for c in pipeline.components}
    after = {node: {k: str(v) for k, v in nodes[node].exec_properties.items()} for node in before}
    assert after == before
