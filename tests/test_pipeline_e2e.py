"""End-to-end: the whole pipeline through LocalDagRunner on tiny generated data, run twice."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import image_factory
import local_runner
from run_report import store as run_summary

pytestmark = pytest.mark.slow

# Small images and model input keep a CPU run to about two minutes. The recipe under test:
# CutMix + warmup-cosine; the step-decay recipe has its own run below.
FLAGS = ["--epochs", "2", "--image-size", "64", "--resize-size", "72", "--batch-size", "16",
         "--demo-train-per-class", "24", "--demo-eval-per-class", "6", "--accuracy-lower-bound", "0.0",
         "--cutmix-probability", "0.5", "--schedule", "warmup_cosine", "--warmup-epochs", "0.5"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Runs the unchanged pipeline twice on the demo data; returns (config, [summary, summary])."""
    out = str(tmp_path_factory.mktemp("e2e"))
    argv = ["--output-dir", out, *FLAGS]
    cfg, _ = local_runner.parse_args(argv)
    summaries = []
    for _ in range(2):
        assert local_runner.main(argv) == 0
        summaries.append((run_summary.read_run(cfg.metadata_path), local_runner.summarize(cfg)))
    return cfg, summaries


def test_every_component_executed(runs):
    _, [(nodes, _), _] = runs
    expected = {"ImageExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform",
                "Trainer", "latest_blessed_model_resolver", "Evaluator", "Pusher"}
    assert set(nodes) == expected
    assert {n: node.state for n, node in nodes.items()} == {n: "COMPLETE" for n in expected}


def test_closing_log_says_where_outputs_are(runs):
    cfg, [(nodes, summary), _] = runs
    pushed = run_summary.custom_property(nodes["Pusher"].outputs["pushed_model"][0], "pushed_destination")
    assert f"Pushed model:       {pushed}" in summary
    assert nodes["Evaluator"].uri("evaluation") in summary
    report = os.path.join(nodes["ImageExampleGen"].uri("examples"), "ingest_report.json")
    assert report in summary and os.path.exists(report)
    assert pushed.startswith(cfg.serving_model_dir)


def test_ingest_report_counts_the_demo_data(runs):
    _, [(nodes, _), _] = runs
    with open(os.path.join(nodes["ImageExampleGen"].uri("examples"), "ingest_report.json")) as f:
        report = json.load(f)
    assert report["files_seen"] == 6 * (24 + 6) == report["ingested"]
    assert report["skipped"] == 0
    assert report["ingested_by_split_and_class"]["train"] == {c: 24 for c in report["class_names"]}


def _assert_serves_raw_jpeg_bytes(nodes):
    pushed = run_summary.custom_property(nodes["Pusher"].outputs["pushed_model"][0], "pushed_destination")
    assert os.path.exists(os.path.join(pushed, "saved_model.pb"))
    serve = tf.saved_model.load(pushed).signatures["serving_default"]
    images = [image_factory.jpeg_bytes(150, 150, seed=1), image_factory.png_bytes(40, 90, mode="L"),
              image_factory.jpeg_bytes(17, 301, seed=2)]
    out = serve(image_bytes=tf.constant(images))
    probabilities = out["probabilities"].numpy()
    assert probabilities.shape == (3, 6)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    names = [n.decode() for n in out["class_names"].numpy()[0]]
    assert names == ["buildings", "forest", "glacier", "mountain", "sea", "street"]
    top = [n.decode() for n in out["predicted_class"].numpy()]
    assert top == [names[i] for i in probabilities.argmax(axis=1)]


def test_pushed_model_classifies_raw_jpeg_bytes(runs):
    _, [(nodes, _), _] = runs
    _assert_serves_raw_jpeg_bytes(nodes)


def test_trainer_writes_schedule_plot_history_and_tensorboard(runs):
    _, [(nodes, summary), _] = runs
    run_dir = nodes["Trainer"].uri("model_run")
    assert f"LR schedule plot:   {run_dir}/lr_schedule.png" in summary
    assert tf.io.gfile.glob(f"{run_dir}/tensorboard/train/events.out.tfevents.*")
    with open(os.path.join(run_dir, "history.json")) as f:
        history = json.load(f)
    assert history["config"]["schedule"] == "warmup_cosine" and len(history["history"]["loss"]) == 2
    png = tf.io.read_file(os.path.join(run_dir, "lr_schedule.png"))
    assert tf.io.decode_png(png).shape[-1] in (3, 4)


def test_step_decay_recipe_trains_and_serves(tmp_path):
    argv = ["--output-dir", str(tmp_path), *FLAGS, "--schedule", "step", "--step-every-epochs", "1",
            "--step-factor", "0.5", "--cutmix-probability", "0.0"]
    assert local_runner.main(argv) == 0
    cfg, _ = local_runner.parse_args(argv)
    nodes = run_summary.read_run(cfg.metadata_path)
    _assert_serves_raw_jpeg_bytes(nodes)
    with open(os.path.join(nodes["Trainer"].uri("model_run"), "history.json")) as f:
        assert json.load(f)["config"]["schedule"] == "step"


def test_second_run_reuses_the_cache(runs):
    _, [_, (nodes, summary)] = runs
    for node in ("ImageExampleGen", "Transform", "Trainer"):
        assert nodes[node].state == "CACHED", (node, nodes[node].state)
    assert "CACHED" in summary
