"""Settings a user keeps: a JSON file and INTEL_SCENES_<KNOB> variables, read by both runners;
flags win over the environment, which wins over the file (pipeline/flags.py)."""
import json

import pytest

import kubeflow_v2_runner
import local_runner
from pipeline import flags

SETTINGS = {"epochs": 3, "data_dir": "/data/x", "class_names": ["cat", "dog"], "enable_cache": False,
            "schedule": "step", "project": "p-from-file"}


@pytest.fixture
def settings_file(tmp_path, monkeypatch):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(SETTINGS))
    monkeypatch.setenv(flags.CONFIG_FILE_ENV, str(path))
    return str(path)


def test_local_runner_reads_the_file_then_the_environment_then_flags(settings_file, monkeypatch):
    monkeypatch.setenv("INTEL_SCENES_EPOCHS", "4")
    monkeypatch.setenv("INTEL_SCENES_LEARNING_RATE", "0.5")
    cfg, train = local_runner.parse_args(["--learning-rate", "0.25"])
    assert (cfg.data_dir, cfg.class_names, cfg.enable_cache) == ("/data/x", ("cat", "dog"), False)
    assert (train["epochs"], train["schedule"], train["learning_rate"]) == (4, "step", 0.25)


def test_the_kubeflow_runner_reads_the_same_file(settings_file, monkeypatch):
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    cfg = kubeflow_v2_runner.parse_args([])
    assert (cfg.vertex.project, cfg.train.epochs, cfg.pipeline.class_names) == ("p-from-file", 3, ("cat", "dog"))
    assert cfg.vertex.data_dir == "/data/x" and not cfg.pipeline.enable_cache


def test_config_flag_names_the_file(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"epochs": 7}))
    assert local_runner.parse_args(["--config", str(path)])[1]["epochs"] == 7


@pytest.mark.parametrize("content,env,message", [
    ({"epoch": 2}, {}, r"epoch in .*: no knob is called 'epoch'"),
    ({}, {"INTEL_SCENES_EPOCS": "2"}, "INTEL_SCENES_EPOCS: no knob is called 'epocs'"),
    ({}, {"INTEL_SCENES_EPOCHS": "two"}, r"INTEL_SCENES_EPOCHS='two': invalid literal"),
    ({}, {"INTEL_SCENES_ENABLE_CACHE": "maybe"}, "INTEL_SCENES_ENABLE_CACHE='maybe': expected one of"),
    ({"schedule": "cosine"}, {}, r"schedule in .*='cosine': must be one of"),
    ([1, 2], {}, r"must hold a JSON object"),
])
def test_a_bad_setting_is_one_line_and_exit_2(content, env, message, tmp_path, monkeypatch, capsys):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(content))
    monkeypatch.setenv(flags.CONFIG_FILE_ENV, str(path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert local_runner.main(["--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert __import__("re").search(message, err[0]), err[0]
    assert not (tmp_path / "out").exists()


def test_a_knob_of_the_other_runner_is_ignored_not_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("INTEL_SCENES_DATAFLOW", "true")  # a Vertex-only knob
    monkeypatch.setenv("INTEL_SCENES_EPOCHS", "2")
    assert local_runner.parse_args([])[1]["epochs"] == 2
