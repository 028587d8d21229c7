"""End-to-end: the whole pipeline through LocalDagRunner on the demo data (runs A and B of
tests/pipeline_runs.py: the CutMix + warmup-cosine recipe, then the unchanged pipeline again)."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import image_factory
from common import dataset, pipeline_names, store
from pipeline_runs import pushed_dir
from trainer_module import names

pytestmark = pytest.mark.slow


def test_every_component_executed(gate_runs):
    nodes = gate_runs.nodes[0]
    expected = {pipeline_names.EXAMPLE_GEN_NODE, pipeline_names.SCHEMA_GEN_NODE, pipeline_names.STATISTICS_GEN_NODE,
                pipeline_names.EXAMPLE_VALIDATOR_NODE, pipeline_names.SKEW_VALIDATOR_NODE, pipeline_names.STATISTICS_RESOLVER_NODE,
                pipeline_names.DRIFT_VALIDATOR_NODE, pipeline_names.DATA_GATE_NODE, "Transform",
                pipeline_names.LABEL_VETTING_RESOLVER_NODE, pipeline_names.LABEL_VETTER_NODE, pipeline_names.TRAINER_NODE,
                pipeline_names.RESOLVER_NODE, pipeline_names.EVALUATOR_NODE, pipeline_names.EDGE_EVALUATOR_NODE, pipeline_names.PUSHER_NODE}
    assert set(nodes) == expected
    assert {n: node.state for n, node in nodes.items()} == {n: "COMPLETE" for n in expected}


def test_closing_log_says_where_outputs_are(gate_runs):
    nodes, summary = gate_runs.nodes[0], gate_runs.summaries[0]
    pushed = pushed_dir(gate_runs)
    assert f"Pushed model:       {pushed}" in summary
    assert nodes[pipeline_names.EVALUATOR_NODE].uri(pipeline_names.EVALUATION_OUTPUT) in summary
    report = os.path.join(nodes[pipeline_names.EXAMPLE_GEN_NODE].uri(pipeline_names.EXAMPLES_OUTPUT),
                          pipeline_names.INGEST_REPORT_FILE)
    assert report in summary and os.path.exists(report)
    assert pushed.startswith(gate_runs.cfg.serving_model_dir)


def test_ingest_report_counts_the_demo_data(gate_runs):
    examples = gate_runs.nodes[0][pipeline_names.EXAMPLE_GEN_NODE].outputs[pipeline_names.EXAMPLES_OUTPUT][0]
    with open(store.custom_property(examples, pipeline_names.PROP_INGEST_REPORT)) as f:
        report = json.load(f)
    assert report["files_seen"] == 6 * (24 + 6) == report["ingested"]
    assert report["skipped"] == 0
    assert report["ingested_by_split_and_class"]["train"] == {c: 24 for c in dataset.INTEL_CLASS_NAMES}
    assert store.custom_property(examples, pipeline_names.PROP_INGESTED) == report["ingested"]


def test_pushed_model_classifies_raw_jpeg_bytes(gate_runs):
    pushed = pushed_dir(gate_runs)
    assert os.path.exists(os.path.join(pushed, pipeline_names.SAVED_MODEL_FILE))
    serve = tf.saved_model.load(pushed).signatures[names.SERVING_BYTES_SIGNATURE]
    images = [image_factory.jpeg_bytes(150, 150, seed=1), image_factory.png_bytes(40, 90, mode="L"),
              image_factory.jpeg_bytes(17, 301, seed=2)]
    out = serve(**{names.SERVING_BYTES_INPUT: tf.constant(images)})
    assert set(out) == set(names.SERVING_OUTPUTS)
    probabilities = out[names.PROBABILITIES_OUTPUT].numpy()
    assert probabilities.shape == (3, 6)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    class_names = [n.decode() for n in out[names.CLASS_NAMES_OUTPUT].numpy()[0]]
    assert class_names == list(dataset.INTEL_CLASS_NAMES)
    top = [n.decode() for n in out[names.PREDICTED_CLASS_OUTPUT].numpy()]
    assert top == [class_names[i] for i in probabilities.argmax(axis=1)]
    np.testing.assert_allclose(out[names.PREDICTED_PROBABILITY_OUTPUT].numpy(), probabilities.max(axis=1))


def test_trainer_writes_schedule_plot_history_and_tensorboard(gate_runs):
    run_dir = gate_runs.nodes[0][pipeline_names.TRAINER_NODE].uri(pipeline_names.MODEL_RUN_OUTPUT)
    assert f"LR schedule plot:   {run_dir}/{names.LR_SCHEDULE_PLOT}" in gate_runs.summaries[0]
    assert tf.io.gfile.glob(f"{run_dir}/{names.TENSORBOARD_DIR}/train/events.out.tfevents.*")
    with open(os.path.join(run_dir, names.HISTORY_FILE)) as f:
        history = json.load(f)
    assert history[names.HISTORY_CONFIG]["schedule"] == "warmup_cosine" and history[names.HISTORY_CONFIG]["cutmix_probability"] == 0.5
    assert len(history[names.HISTORY_SERIES]["loss"]) == 2
    png = tf.io.read_file(os.path.join(run_dir, names.LR_SCHEDULE_PLOT))
    assert tf.io.decode_png(png).shape[-1] in (3, 4)


def test_second_run_reuses_the_cache(gate_runs):
    nodes, summary = gate_runs.nodes[1], gate_runs.summaries[1]
    for node in (pipeline_names.EXAMPLE_GEN_NODE, "Transform", pipeline_names.TRAINER_NODE):
        assert nodes[node].state == "CACHED", (node, nodes[node].state)
    assert "CACHED" in summary
