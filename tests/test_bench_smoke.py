"""Smoke tests of bench/: the helpers run quickly; whole scripts are `slow`.

The benches measure, they do not assert performance: these tests only check that they run on
generated images (tests/image_factory) at tiny sizes and print their tables.
"""
import os
import subprocess
import sys

import pytest
import tensorflow as tf

import image_factory

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench")
sys.path.insert(0, BENCH)

import benchlib  # noqa: E402


def _run(script, *args, timeout=600):
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, os.path.join(BENCH, script), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout


def test_raw_examples_are_image_example_gen_records(tmp_path):
    image_factory.make_image_tree(tmp_path / "data", {"train": {"a": 3, "b": 2}}, size=(40, 30))
    image_factory.write_file(tmp_path / "data" / "train" / "a" / "broken.jpg", b"not an image")
    info = benchlib.write_raw_examples(str(tmp_path / "data" / "train"), 7, str(tmp_path / "raw"), shards=2)
    assert info["n"] == 7 and info["classes"] == ["a", "b"] and info["skipped"] >= 1
    assert info["make_example"] == "components.image_example_gen.make_example"
    records = list(tf.data.TFRecordDataset(info["files"], compression_type="GZIP"))
    assert len(records) == 7
    parsed = tf.io.parse_example(tf.stack(records), benchlib.raw_feature_spec())
    assert set(parsed["label"].numpy().tolist()) == {0, 1}
    assert tf.io.decode_jpeg(parsed["image"][0]).shape == (30, 40, 3)


def test_table_and_machine_line():
    table = benchlib.format_table(["a", "b"], [["x", 1234.5], ["y", 0.123]])
    assert table.splitlines()[0].startswith("| a") and "1,234" in table and "0.12" in table
    assert "cores" in benchlib.machine_line()


@pytest.mark.slow
def test_gpu_check_runs_on_cpu_without_tft():
    out = _run("gpu_check.py", "--allow-cpu", "--tiny", "--synthetic", "--no-tft", "--precisions", "float32")
    assert "ALL CHECKS PASSED" in out and "in-memory tensors (model-bound limit)" in out


@pytest.mark.slow
def test_transform_throughput_tiny():
    out = _run("transform_throughput.py", "--synthetic", "--n", "8")
    assert "| ours" in out and "| anchor" in out and "bytes per example the Trainer reads" in out
