"""The `tfx` CLI flows on this repository: registering the local pipeline runs nothing and writes
nothing but the CLI's own record; compiling for Vertex writes the spec where documented."""
import json
import os
import subprocess
import sys

import pytest

from common import output_dir

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.dirname(sys.executable)


def _tfx(args, cwd, **env):
    """Runs the venv's tfx CLI as README says (venv activated: its bin first on PATH)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("INTEL_SCENES_")}
    environ.update(PATH=VENV_BIN + os.pathsep + environ["PATH"], HOME=str(cwd / "home"), **env)
    os.makedirs(environ["HOME"], exist_ok=True)
    done = subprocess.run([os.path.join(VENV_BIN, "tfx"), *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout + done.stderr


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_local_pipeline_create_registers_without_running_or_writing(tmp_path):
    out = tmp_path / "out"
    code, text = _tfx(["pipeline", "create", "--engine", "local", "--pipeline_path",
                       os.path.join(REPO, "local_runner.py")], tmp_path, INTEL_SCENES_OUTPUT_DIR=str(out))
    assert code == 0, text
    assert 'Pipeline "intel-scenes" created successfully.' in text
    assert "tfx run create --engine local --pipeline_name intel-scenes" in text
    assert not out.exists()  # no demo data, no outputs/, no database, no lock
    with open(tmp_path / "home" / "tfx" / "local" / "intel-scenes" / "pipeline_args.json") as f:
        recorded = json.load(f)
    assert recorded["pipeline_root"] == os.path.join(str(out), output_dir.PIPELINES_DIR, "intel-scenes")
    assert "Component " not in text  # nothing ran


def test_vertex_compile_and_create_write_the_spec_where_documented(tmp_path):
    runner = os.path.join(REPO, "kubeflow_v2_runner.py")
    code, text = _tfx(["pipeline", "compile", "--engine", "vertex", "--pipeline_path", runner], tmp_path,
                      INTEL_SCENES_PROJECT="demo-project")
    assert code == 0, text
    spec = tmp_path / "intel-scenes_pipeline.json"
    assert f"Compiled {spec}" in text and "Pipeline intel-scenes compiled successfully." in text
    assert json.loads(spec.read_text())["displayName"] == "intel-scenes"
    code, text = _tfx(["pipeline", "create", "--engine", "vertex", "--pipeline_path", runner], tmp_path,
                      INTEL_SCENES_PROJECT="demo-project")
    assert code == 0, text
    created = tmp_path / "home" / "tfx" / "vertex" / "intel-scenes" / "pipeline.json"
    assert f"Compiled {created}" in text  # the file `tfx run create --engine vertex` reads
    assert json.loads(created.read_text())["displayName"] == "intel-scenes"
    written = [f for f in _files(tmp_path) if not f.startswith(os.path.join("home", "."))]
    assert written == [os.path.join("home", "tfx", "vertex", "intel-scenes", "pipeline.json"),
                       "intel-scenes_pipeline.json"]


def test_vertex_compile_without_a_project_is_one_clear_line(tmp_path):
    code, text = _tfx(["pipeline", "compile", "--engine", "vertex", "--pipeline_path",
                       os.path.join(REPO, "kubeflow_v2_runner.py")], tmp_path)
    assert code == 2
    assert "error: --project is required (or set GOOGLE_CLOUD_PROJECT, or project in the settings)" in text
