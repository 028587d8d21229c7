"""run_report: the HTML report of a run, its numbers, its figures, and its rendering in a real browser.

Fast tests read a small ML Metadata database written here and hand-made TFMA results; the slow
ones report the session's pipeline runs (tests/pipeline_runs.py; A: first model, blessed;
C: weak candidate against A, not blessed). The browser test needs Debian's `chromium` (.ci/run
installs it) and skips without.
"""
import base64
import html.parser
import io
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from PIL import Image
from tfx.dsl.compiler import constants as tfx_constants

from common import dataset, ingest_report, output_dir, pipeline_names, store, tfma_results
from pipeline import evaluation
from run_report import edge_models, html_page, label_vetting, plots, run_data, tables, writer
from run_report.__main__ import main as report_main
from trainer_module import names

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]


# ---------------------------------------------------------------- ML Metadata queries (fast)

def test_find_metadata_from_output_dir_pipeline_root_or_file(tmp_path):
    db = tmp_path / "metadata" / "p" / output_dir.METADATA_FILE
    db.parent.mkdir(parents=True)
    db.write_bytes(b"")
    (tmp_path / "pipelines" / "p").mkdir(parents=True)
    assert store.find_metadata(str(tmp_path)) == str(db)
    assert store.find_metadata(str(tmp_path / "pipelines" / "p")) == str(db)
    assert store.find_metadata(str(db)) == str(db)
    with pytest.raises(FileNotFoundError):
        store.find_metadata(str(tmp_path / "pipelines"))
    (tmp_path / "metadata" / "q").mkdir()
    (tmp_path / "metadata" / "q" / output_dir.METADATA_FILE).write_bytes(b"")
    with pytest.raises(ValueError, match="several pipelines"):
        store.find_metadata(str(tmp_path))


def _put_run(mlmd, pipeline: str, run_id: str, root: str, eval_config_json: str):
    """A run as TFX records it: Trainer (model_run) and Evaluator (evaluation, with its eval config)."""
    contexts = {}
    for type_name, name in ((tfx_constants.PIPELINE_CONTEXT_TYPE_NAME, pipeline),
                            (tfx_constants.PIPELINE_RUN_CONTEXT_TYPE_NAME, run_id)):
        type_id = mlmd.put_context_type(metadata_store_pb2.ContextType(name=type_name))
        found = mlmd.get_context_by_type_and_name(type_name, name)
        contexts[type_name] = found or metadata_store_pb2.Context(type_id=type_id, name=name)
    node_type = mlmd.put_context_type(
        metadata_store_pb2.ContextType(name=tfx_constants.NODE_CONTEXT_TYPE_NAME))
    execution_type = mlmd.put_execution_type(metadata_store_pb2.ExecutionType(name="component"))
    artifact_type = mlmd.put_artifact_type(metadata_store_pb2.ArtifactType(name="Artifact"))
    for node_id, key, properties in ((pipeline_names.TRAINER_NODE, pipeline_names.MODEL_RUN_OUTPUT, {}),
                                     (pipeline_names.EVALUATOR_NODE, pipeline_names.EVALUATION_OUTPUT,
                                      {pipeline_names.EVAL_CONFIG_EXEC_PROPERTY: eval_config_json})):
        node_name = f"{pipeline}.{node_id}"
        node = (mlmd.get_context_by_type_and_name(tfx_constants.NODE_CONTEXT_TYPE_NAME, node_name)
                or metadata_store_pb2.Context(type_id=node_type, name=node_name))
        execution = metadata_store_pb2.Execution(
            type_id=execution_type, last_known_state=metadata_store_pb2.Execution.COMPLETE)
        for name, value in properties.items():
            execution.custom_properties[name].string_value = value
        artifact = metadata_store_pb2.Artifact(type_id=artifact_type, uri=f"{root}/{node_id}/{key}/7")
        event = metadata_store_pb2.Event(type=metadata_store_pb2.Event.OUTPUT)
        event.path.steps.add().key = key
        event.path.steps.add().index = 0
        mlmd.put_execution(execution, [(artifact, event)], [*contexts.values(), node],
                           reuse_context_if_already_exist=True)


@pytest.fixture()
def metadata_path(tmp_path):
    """Two runs of pipeline "p"; only the second Evaluator's config slices by class."""
    path = str(tmp_path / output_dir.METADATA_FILE)
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    mlmd = metadata_store.MetadataStore(config)
    by_class = tfma.EvalConfig(slicing_specs=[tfma.SlicingSpec(feature_keys=[names.CLASS_NAME_KEY])])
    for run_id, eval_config in (("run-1", tfma.EvalConfig()), ("run-2", by_class)):
        _put_run(mlmd, "p", run_id, str(tmp_path / "root"), json_format.MessageToJson(eval_config))
    return path


def test_runs_nodes_and_eval_config_read_back_from_ml_metadata(metadata_path, tmp_path):
    assert store.run_ids(metadata_path) == ["run-1", "run-2"]
    nodes = store.read_run(metadata_path)  # the latest
    assert sorted(nodes) == [pipeline_names.EVALUATOR_NODE, pipeline_names.TRAINER_NODE]
    assert nodes[pipeline_names.TRAINER_NODE].state == "COMPLETE"
    assert nodes[pipeline_names.EVALUATOR_NODE].uri(pipeline_names.EVALUATION_OUTPUT) == \
        f"{tmp_path}/root/{pipeline_names.EVALUATOR_NODE}/{pipeline_names.EVALUATION_OUTPUT}/7"
    assert store.pipeline_root(nodes) == f"{tmp_path}/root"
    assert store.pipeline_name(metadata_path, "run-1") == "p"
    configured = {run_id: tfma_results.parse_eval_config(
        store.configured_eval_config_json(metadata_path, run_id)) for run_id in ("run-1", "run-2")}
    assert not configured["run-1"].slicing_specs
    assert list(configured["run-2"].slicing_specs[0].feature_keys) == [names.CLASS_NAME_KEY]
    with pytest.raises(LookupError, match="run-3"):
        store.read_run(metadata_path, "run-3")


def test_cli_lists_the_runs_oldest_first(metadata_path, capsys):
    assert report_main([metadata_path, "--list"]) == 0
    assert capsys.readouterr().out.split() == ["run-1", "run-2"]


def test_custom_and_output_properties():
    artifact = metadata_store_pb2.Artifact(uri="/x")
    artifact.custom_properties[pipeline_names.PROP_BLESSED].int_value = 1
    artifact.custom_properties[pipeline_names.PROP_BASELINE_MODEL].string_value = "/models/3"
    node = store.NodeRun(pipeline_names.EVALUATOR_NODE, "COMPLETE", {pipeline_names.BLESSING_OUTPUT: [artifact]})
    assert store.custom_property(artifact, pipeline_names.PROP_BLESSED) == 1
    assert store.output_property(node, pipeline_names.BLESSING_OUTPUT,
                                 pipeline_names.PROP_BASELINE_MODEL) == "/models/3"
    assert store.output_property(node, pipeline_names.BLESSING_OUTPUT, pipeline_names.PROP_PUSHED) is None
    assert store.output_property(None, pipeline_names.BLESSING_OUTPUT, pipeline_names.PROP_BLESSED) is None


# ---------------------------------------------------------------- numbers and tables (fast)

def test_expected_calibration_error():
    buckets = [tfma_results.CalibrationBucket(0.4, 0.5, count=10, total_label=5, total_prediction=4.5),
               tfma_results.CalibrationBucket(0.9, 1.0, count=30, total_label=24, total_prediction=28.5)]
    # (|4.5 - 5| + |28.5 - 24|) / 40
    assert tfma_results.expected_calibration_error(buckets) == pytest.approx(5.0 / 40)
    assert tfma_results.expected_calibration_error([]) is None


def _results(baseline: bool) -> tfma_results.EvalResults:
    """Three classes; "c" has no eval example (no slice) and was never predicted (F1 NaN)."""
    metrics = {}

    def put(model, name, value, slice_key=(), sub_key=(), diff=False):
        metrics[(slice_key, model, name, sub_key, diff)] = value

    models = {"cand": (0.8, (0.9, 0.6, 0.72), (0.5, 1.0, 2 / 3), 1.1)}
    if baseline:
        models["base"] = (0.7, (0.6, 0.6, 0.6), (0.4, 0.8, 0.5), 1.3)
        put("cand", evaluation.ACCURACY, 0.1, diff=True)
        put("cand", evaluation.CALIBRATION, -0.2, sub_key=tables.TOP1, diff=True)
    for model, (accuracy, a, b, calibration) in models.items():
        put(model, evaluation.ACCURACY, accuracy)
        put(model, evaluation.EXAMPLE_COUNT, 10.0)
        put(model, evaluation.CALIBRATION, calibration, sub_key=tables.TOP1)
        for class_id, values in enumerate((a, b, (float("nan"),) * 3)):
            for name, value in zip(evaluation.PER_CLASS_METRICS, values):
                put(model, name, value, sub_key=tables.argmax_class(class_id))
        put(model, evaluation.EXAMPLE_COUNT, 6.0, slice_key=tfma_results.class_slice("a"))
        put(model, evaluation.EXAMPLE_COUNT, 4.0, slice_key=tfma_results.class_slice("b"))
    calibration = {"cand": [tfma_results.CalibrationBucket(0.9, 1.0, 10, 8, 9.5)]}
    return tfma_results.EvalResults(tfma.EvalConfig(), "cand", "base" if baseline else None, metrics,
                                    {}, calibration, True, [])


def test_class_rows_come_from_tfma_per_class_metrics():
    rows = tables.class_rows(_results(baseline=False), ["a", "b", "c"])
    assert [(r.name, r.support, r.precision, r.recall, r.f1) for r in rows[:2]] == [
        ("a", 6, 0.9, 0.6, 0.72), ("b", 4, 0.5, 1.0, 2 / 3)]
    assert rows[2].support == 0 and np.isnan(rows[2].f1)  # no eval example: no TFMA slice
    assert tables.macro_f1(rows) == pytest.approx((0.72 + 2 / 3) / 2)  # NaN left out
    assert tables.macro_f1([]) is None


def test_overall_rows_with_and_without_a_baseline():
    rows = {r[0]: r[1:] for r in tables.overall_rows(_results(baseline=True), ["a", "b", "c"])}
    assert rows["Accuracy (gated)"] == (0.8, 0.7, 0.1)  # TFMA's diff
    assert rows["Examples"] == (10, 10, None) and isinstance(rows["Examples"][0], int)  # no change
    candidate_f1, baseline_f1, change = rows["Macro-averaged F1"]
    assert (candidate_f1, baseline_f1) == pytest.approx(((0.72 + 2 / 3) / 2, (0.6 + 0.5) / 2))
    assert change == pytest.approx(candidate_f1 - baseline_f1)
    assert rows["Calibration (mean top-1 probability / accuracy; 1 is ideal)"] == (1.1, 1.3, -0.2)
    ece = rows["Expected calibration error (top-1, from TFMA's calibration plot)"]
    assert ece == (pytest.approx(0.15), None, None)  # no calibration plot for the baseline
    alone = tables.overall_rows(_results(baseline=False), ["a", "b", "c"])
    assert [r[2:] for r in alone] == [(None, None)] * len(alone)


def test_ingest_rows_count_per_split_and_total():
    report = ingest_report.IngestReport.from_dict({
        "data_root": "/d", "split_mode": "folders", "class_names": ["a", "b"], "files_seen": 9, "ingested": 9,
        "skipped": 0, "ingested_by_split_and_class": {"train": {"a": 4, "b": 2}, "eval": {"a": 2, "b": 1}}})
    assert tables.ingest_rows(report) == (["train", "eval"], [("a", 4, 2, 6), ("b", 2, 1, 3),
                                                              ("total", 6, 3, 9)])


def test_table_formats_only_its_numeric_columns():
    page = html_page.table(["setting", "value", "score"],
                           [("learning_rate", 1e-06, 0.12345), ("<b>", "x", float("nan")),
                            ("epochs", 2, 12)], numeric_columns={2})
    cells = re.findall(r"<td( class=\"num\")?>(.*?)</td>", page)
    assert cells == [("", "learning_rate"), ("", "1e-06"), (' class="num"', "0.123"),
                     ("", "&lt;b&gt;"), ("", "x"), (' class="num"', "n/a"),
                     ("", "epochs"), ("", "2"), (' class="num"', "12")]
    assert html_page.format_number(None) == "–" and html_page.format_number(2.0) == "2.000"
    with pytest.raises(ValueError, match="outside the 2 columns"):
        html_page.table(["file", "reason"], [("x", "y")], numeric_columns={5})
    # Text in a numeric column (a number formatted by the caller, a verdict) is right-aligned as it is.
    page = html_page.table(["", "m"], [("drop", "0.0006"), ("gate", html_page.Markup("<b>ok</b>")),
                                       ("<", "<")], numeric_columns={1})
    assert re.findall(r'<td class="num">(.*?)</td>', page) == ["0.0006", "<b>ok</b>", "&lt;"]


def _artifact(uri: str, **properties) -> metadata_store_pb2.Artifact:
    artifact = metadata_store_pb2.Artifact(uri=uri)
    for name, value in properties.items():
        if isinstance(value, int):
            artifact.custom_properties[name].int_value = value
        else:
            artifact.custom_properties[name].string_value = value
    return artifact


def test_page_of_a_rejected_candidate(tmp_path):
    """Every section from hand-made results: verdict, numbers, figures, skipped files, components."""
    results = _results(baseline=True)
    results.confusion = {"cand": np.eye(3) * 4, "base": np.ones((3, 3))}
    results.thresholds = [tfma_results.ThresholdCheck(evaluation.ACCURACY, "lower bound", "overall", 0.8,
                                                      ">= 0.9", "FAILED")]
    blessing = _artifact("/root/Evaluator/blessing/9", **{pipeline_names.PROP_BLESSED: 0,
                                                          pipeline_names.PROP_BASELINE_MODEL: "/root/Trainer/model/2"})
    pushed = _artifact("/root/Pusher/pushed_model/10", **{pipeline_names.PROP_PUSHED: 0})
    nodes = {pipeline_names.EVALUATOR_NODE: store.NodeRun(pipeline_names.EVALUATOR_NODE, "COMPLETE",
                                                 {pipeline_names.BLESSING_OUTPUT: [blessing]}),
             pipeline_names.PUSHER_NODE: store.NodeRun(pipeline_names.PUSHER_NODE, "COMPLETE",
                                              {pipeline_names.PUSHED_MODEL_OUTPUT: [pushed]})}
    ingest = ingest_report.IngestReport.from_dict({"data_root": "/data", "split_mode": "folders", "files_seen": 10,
                                                   "ingested": 9,
              "skipped": 1, "class_names": ["a", "b", "c"], "skipped_by_reason": {"corrupt": 1},
              "skipped_files": [{"path": "a/x.jpg", "split": "train", "class_name": "a",
                                 "reason": "corrupt"}],
              "ingested_by_split_and_class": {"train": {"a": 3, "b": 2, "c": 1},
                                              "eval": {"a": 1, "b": 1, "c": 1}}})
    history = {names.HISTORY_CONFIG: {"epochs": 2, "learning_rate": 1e-06}, names.HISTORY_TRAIN_EXAMPLES: 6,
               names.HISTORY_SERIES: {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}}
    lr_png = plots.training_curves({"lr": [0.1, 0.2]})  # any PNG stands in for the Trainer's
    data = run_data.RunData("/m.sqlite", "p", "run-3", nodes, "/root", ["a", "b", "c"], ingest, history,
                            {names.LR_SCHEDULE_PLOT: lr_png}, results)
    page, figures = html_page.render(data)
    parsed = _Page(page)
    assert parsed.ids == list(html_page.SECTION_IDS)
    assert "NOT BLESSED" in parsed.text
    assert f"{evaluation.ACCURACY} lower bound overall 0.800 >= 0.9 FAILED" in parsed.text
    assert "Accuracy (gated) 0.800 0.700 0.100" in parsed.text
    assert "a 6 0.900 0.600 0.720 b 4 0.500 1.000 0.667 c 0 n/a n/a n/a" in parsed.text
    assert "the candidate, /root/Trainer/model/2" in parsed.text
    assert "epochs 2 learning_rate 1e-06 train examples 6" in parsed.text
    assert "10 files seen, 9 ingested, 1 skipped" in parsed.text
    assert "a 3 1 4 b 2 1 3 c 1 1 2 total 6 3 9" in parsed.text
    assert "corrupt 1 file split class reason detail a/x.jpg train a corrupt" in parsed.text
    assert f"{pipeline_names.PUSHER_NODE} COMPLETE {pipeline_names.PUSHED_MODEL_OUTPUT}: {pushed.uri}" in parsed.text
    assert set(figures) == {html_page.CONFUSION_MATRIX_PNG, html_page.BASELINE_CONFUSION_MATRIX_PNG,
                            html_page.RELIABILITY_PNG, html_page.TRAINING_CURVES_PNG,
                            html_page.EXAMPLES_PER_CLASS_PNG, names.LR_SCHEDULE_PLOT}
    assert figures[names.LR_SCHEDULE_PLOT] == lr_png
    assert len(_decoded_images(parsed)) == len(figures)


# ---------------------------------------------------------------- edge models (fast)

EDGE_DESTINATION = "/serving/p/1700000000"
INT8_REASON = ("int8 accuracy 0.897 is 1.7 points below the SavedModel's 0.913 on the same 300 eval images "
               "(margin 1.0 point): not pushed")


def _edge_evaluation() -> dict:
    """An EdgeEvaluator file as names.py documents it: float16 within its margin, int8 not."""
    def model(accuracy, recall, size, latency, batch_latency, path):
        return {pipeline_names.EDGE_ACCURACY: accuracy, pipeline_names.EDGE_RECALL: dict(zip("ab", recall)),
                pipeline_names.EDGE_SIZE_MB: size, pipeline_names.EDGE_LATENCY_MS: latency,
                pipeline_names.EDGE_BATCH_LATENCY_MS: batch_latency, pipeline_names.EDGE_PATH: path}

    model_uri = "/root/Trainer/model/5"
    return {
        pipeline_names.EDGE_EXAMPLES: 300, pipeline_names.EDGE_CLASS_NAMES: ["a", "b"],
        pipeline_names.EDGE_MODELS: {
            pipeline_names.EDGE_SAVED_MODEL: model(0.9133, (0.95, 0.876), 16.2, 21.4, 6.12,
                                                   f"{model_uri}/Format-Serving"),
            "float16": model(0.9127, (0.95, 0.875), 8.1, 9.87, 5.43, f"{model_uri}/Format-TFLite/model_float16.tflite"),
            "int8": model(0.8967, (0.93, 0.863), 4.374, 4.56, 2.1, f"{model_uri}/Format-TFLite/model_int8.tflite")},
        pipeline_names.EDGE_GATE: {
            "float16": {pipeline_names.EDGE_MAX_DROP: 0.002, pipeline_names.EDGE_DROP: 0.0006,
                        pipeline_names.EDGE_PASSED: True,
                        pipeline_names.EDGE_REASON: "float16 accuracy 0.913 is 0.1 points below the SavedModel's "
                                           "0.913 on the same 300 eval images (margin 0.2 points): pushed "
                                           "beside the SavedModel when it is blessed"},
            "int8": {pipeline_names.EDGE_MAX_DROP: 0.01, pipeline_names.EDGE_DROP: 0.0166,
                     pipeline_names.EDGE_PASSED: False,
                     pipeline_names.EDGE_REASON: INT8_REASON}}}


def _put_node(mlmd, pipeline: str, run_id: str, node_id: str, key: str, artifact, state="COMPLETE"):
    """One execution of node_id in the run, with `artifact` as its output `key` (as TFX records it)."""
    contexts = []
    for type_name, name in ((tfx_constants.PIPELINE_CONTEXT_TYPE_NAME, pipeline),
                            (tfx_constants.PIPELINE_RUN_CONTEXT_TYPE_NAME, run_id),
                            (tfx_constants.NODE_CONTEXT_TYPE_NAME, f"{pipeline}.{node_id}")):
        type_id = mlmd.put_context_type(metadata_store_pb2.ContextType(name=type_name))
        contexts.append(mlmd.get_context_by_type_and_name(type_name, name)
                        or metadata_store_pb2.Context(type_id=type_id, name=name))
    execution = metadata_store_pb2.Execution(
        type_id=mlmd.put_execution_type(metadata_store_pb2.ExecutionType(name=node_id)),
        last_known_state=metadata_store_pb2.Execution.State.Value(state))
    artifact.type_id = mlmd.put_artifact_type(metadata_store_pb2.ArtifactType(name="Artifact"))
    event = metadata_store_pb2.Event(type=metadata_store_pb2.Event.OUTPUT)
    event.path.steps.add().key = key
    event.path.steps.add().index = 0
    mlmd.put_execution(execution, [(artifact, event)], contexts, reuse_context_if_already_exist=True)


def _edge_metadata(tmp_path, with_edge: bool = True) -> str:
    """A run "r" with a pushing Pusher (float16 pushed, int8 held back) and, with_edge, an
    EdgeEvaluator whose artifact holds _edge_evaluation()."""
    path = str(tmp_path / output_dir.METADATA_FILE)
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    mlmd = metadata_store.MetadataStore(config)
    root = tmp_path / "root"
    if with_edge:
        edge_dir = root / pipeline_names.EDGE_EVALUATOR_NODE / pipeline_names.EDGE_EVALUATION_OUTPUT / "8"
        edge_dir.mkdir(parents=True)
        (edge_dir / pipeline_names.EDGE_EVALUATION_FILE).write_text(json.dumps(_edge_evaluation()))
        _put_node(mlmd, "p", "r", pipeline_names.EDGE_EVALUATOR_NODE, pipeline_names.EDGE_EVALUATION_OUTPUT,
                  _artifact(str(edge_dir)))
    pushed = _artifact(f"{root}/{pipeline_names.PUSHER_NODE}/{pipeline_names.PUSHED_MODEL_OUTPUT}/9", **{
        pipeline_names.PROP_PUSHED: 1, pipeline_names.PROP_PUSHED_DESTINATION: EDGE_DESTINATION,
        pipeline_names.PROP_PUSHED_EDGE_MODELS: "float16", pipeline_names.PROP_EDGE_HELD_BACK: json.dumps({"int8": INT8_REASON})})
    _put_node(mlmd, "p", "r", pipeline_names.PUSHER_NODE, pipeline_names.PUSHED_MODEL_OUTPUT, pushed)
    return path


def test_edge_section_shows_the_comparison_and_the_gate_from_ml_metadata(tmp_path):
    data = run_data.collect(_edge_metadata(tmp_path))
    assert data.edge.uri == str(tmp_path / "root" / pipeline_names.EDGE_EVALUATOR_NODE / pipeline_names.EDGE_EVALUATION_OUTPUT / "8")
    assert (data.edge.pushed, data.edge.pushed_flavours, data.edge.held_back) == (
        True, ["float16"], {"int8": INT8_REASON})
    page, _ = html_page.render(data)
    parsed = _Page(page)
    assert parsed.ids == ["verdict", edge_models.SECTION_ID, "training", "data", "components"]
    assert "Edge models (TFLite)" in parsed.text
    table_text = (
        "SavedModel float16 int8 "
        "accuracy (300 eval images) 0.9133 0.9127 0.8967 "
        "accuracy drop vs the SavedModel – 0.0006 0.0166 "
        "margin (largest drop allowed) – 0.0020 0.0100 "
        "recall: a 0.950 0.950 0.930 recall: b 0.876 0.875 0.863 "
        "size (MB; SavedModel: its variables) 16.20 8.10 4.37 "
        "size vs the SavedModel 1.00× 0.50× 0.27× "
        "CPU latency per image, one image per call (ms) 21.40 9.87 4.56 "
        "CPU latency per image, in batches of 32 (ms) 6.12 5.43 2.10 "
        "edge gate reference pushed held back")
    assert table_text in parsed.text
    assert f"int8 : held back : {INT8_REASON}" in parsed.text  # (the parser puts spaces between tags)
    assert "float16 : pushed : float16 accuracy 0.913 is 0.1 points below" in parsed.text
    edge_dir = f"{EDGE_DESTINATION}/{pipeline_names.PUSHED_EDGE_SUBDIR}"
    assert (f"Pushed beside the SavedModel: {edge_dir}/model_float16.tflite , "
            f"{edge_dir}/{names.TFLITE_LABELS_FILE} .") in parsed.text


def test_a_run_without_an_edge_evaluator_has_no_edge_section(tmp_path):
    data = run_data.collect(_edge_metadata(tmp_path, with_edge=False))
    assert data.edge is None
    parsed = _Page(html_page.render(data)[0])
    assert parsed.ids == ["verdict", "training", "data", "components"]
    assert "Edge models" not in parsed.text and "TFLite" not in parsed.text
    # An EdgeEvaluator whose file is missing (a failed execution) shows nothing either.
    node = store.NodeRun(pipeline_names.EDGE_EVALUATOR_NODE, "FAILED",
                         {pipeline_names.EDGE_EVALUATION_OUTPUT: [_artifact(str(tmp_path / "empty"))]})
    assert edge_models.collect({pipeline_names.EDGE_EVALUATOR_NODE: node}) is None


def _edge_view(**overrides) -> edge_models.EdgeView:
    fields = dict(evaluation=_edge_evaluation(), uri="/e", state="COMPLETE", pushed=True,
                  destination=EDGE_DESTINATION, pushed_flavours=["float16"], held_back={"int8": INT8_REASON})
    return edge_models.EdgeView(**{**fields, **overrides})


def test_edge_verdicts_follow_the_pusher_then_the_gate():
    view = _edge_view()
    assert edge_models.verdict(view, "float16")[0] == edge_models.PUSHED
    assert edge_models.verdict(view, "int8") == (edge_models.HELD_BACK, INT8_REASON)
    # SavedModel not pushed (not blessed): float16 passed its gate but was not pushed; int8 failed it.
    unpushed = _edge_view(pushed=False, destination=None, pushed_flavours=[], held_back={})
    status, reason = edge_models.verdict(unpushed, "float16")
    assert status == edge_models.NOT_PUSHED and reason.startswith(
        "passed the edge gate, but the SavedModel was not pushed (float16 accuracy 0.913")
    assert edge_models.verdict(unpushed, "int8") == (edge_models.HELD_BACK, INT8_REASON)
    assert edge_models.pushed_paths(unpushed) == []
    assert "No edge model was pushed in this run." in edge_models.section_html(
        unpushed, html_page.table, html_page.Markup)
    assert edge_models.pushed_flavours("float16, int8") == ["float16", "int8"]
    assert edge_models.pushed_flavours("") == [] and edge_models.held_back(None) == {}


# ---------------------------------------------------------------- reports of real runs (slow)

class _Page(html.parser.HTMLParser):
    """Section ids, <img> sources and visible text of a report."""

    def __init__(self, text: str):
        super().__init__()
        self.ids, self.images, self.chunks = [], [], []
        self.feed(text)
        self.text = " ".join(" ".join(self.chunks).split())

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.ids.append(attrs.get("id"))
        if tag == "img":
            self.images.append(attrs.get("src", ""))

    def handle_data(self, data):
        self.chunks.append(data)


def _decoded_images(page: _Page):
    images = []
    for src in page.images:
        assert src.startswith("data:image/png;base64,"), src[:60]
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        image.load()  # decodes every pixel: a truncated PNG fails here
        images.append(image)
    return images


@pytest.fixture(scope="module")
def runs(gate_runs):
    return gate_runs


def _section_ids(nodes) -> list:
    """The report's section ids for a run: the edge models' after calibration when it has an EdgeEvaluator."""
    ids = list(html_page.SECTION_IDS)
    if pipeline_names.EDGE_EVALUATOR_NODE in nodes:
        ids.insert(ids.index("calibration") + 1, edge_models.SECTION_ID)
    if pipeline_names.LABEL_VETTER_NODE in nodes:
        ids.insert(ids.index("data") + 1, label_vetting.SECTION_ID)
    return ids


@pytest.fixture(scope="module")
def weak_report(runs):
    """The report of run C, in the default place (under the pipeline root)."""
    return writer.write_report(runs.cfg.metadata_path, run_id=runs.run_ids[2])


@pytest.mark.slow
def test_report_of_a_rejected_candidate(runs, weak_report):
    assert weak_report.startswith(os.path.join(runs.cfg.pipeline_root, writer.REPORTS_DIR) + os.sep)
    with open(weak_report) as f:
        page = _Page(f.read())
    assert page.ids == _section_ids(runs.nodes[2])
    assert "NOT BLESSED" in page.text and "nothing was pushed" in page.text
    # C exports no TFLite model (tests/pipeline_runs.py): its EdgeEvaluator scores the SavedModel alone.
    assert re.search(r"SavedModel accuracy \(\d+ eval images\) [0-9.]+ ", page.text)
    assert "edge gate reference" in page.text and "No edge model was pushed in this run." in page.text
    # The failed absolute bound and the change threshold against A, each with value and bound.
    assert re.search(r"sparse_categorical_accuracy lower bound overall [0-9.]+ >= 0\.5 FAILED", page.text)
    assert re.search(r"sparse_categorical_accuracy change vs baseline overall -?[0-9.]+ "
                     r"candidate - baseline >= -0\.02", page.text)
    baseline_uri = runs.nodes[0][pipeline_names.TRAINER_NODE].uri(pipeline_names.MODEL_OUTPUT)
    assert f"Baseline: the latest blessed model other than the candidate, {baseline_uri}" in page.text
    for class_name in dataset.INTEL_CLASS_NAMES:
        assert f"{names.CLASS_NAME_KEY}={class_name}" in page.text
    assert "Expected calibration error" in page.text
    assert "learning_rate 1e-06" in page.text
    assert "180 files seen, 180 ingested, 0 skipped" in page.text
    images = _decoded_images(page)
    # Confusion matrices (candidate, baseline), reliability, training curves, LR schedule, data.
    assert len(images) >= 5
    report_dir = os.path.dirname(weak_report)
    pngs = sorted(f for f in os.listdir(report_dir) if f.endswith(".png"))
    assert {html_page.CONFUSION_MATRIX_PNG, html_page.BASELINE_CONFUSION_MATRIX_PNG,
            html_page.TRAINING_CURVES_PNG, html_page.EXAMPLES_PER_CLASS_PNG,
            html_page.RELIABILITY_PNG, names.LR_SCHEDULE_PLOT} <= set(pngs)
    # The Trainer's schedule plot, as it wrote it: beside the report and embedded in it.
    with open(os.path.join(runs.nodes[2][pipeline_names.TRAINER_NODE].uri(pipeline_names.MODEL_RUN_OUTPUT),
                           names.LR_SCHEDULE_PLOT), "rb") as f:
        lr_png = f.read()
    with open(os.path.join(report_dir, names.LR_SCHEDULE_PLOT), "rb") as f:
        assert f.read() == lr_png
    assert "data:image/png;base64," + base64.b64encode(lr_png).decode("ascii") in page.images


@pytest.mark.slow
def test_report_of_the_first_run_from_the_command_line(runs, tmp_path, capsys):
    out = tmp_path / "first"
    assert report_main([runs.cfg.output_dir, "--run-id", runs.run_ids[0], "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out / writer.REPORT_FILE)
    page = _Page((out / writer.REPORT_FILE).read_text())
    assert "BLESSED: the candidate passed every threshold; pushed to" in page.text
    assert re.search(r"change vs baseline overall – candidate - baseline >= -0\.02 \(higher is better\) "
                     r"not applied no baseline", page.text)
    assert "No baseline: no other model had been blessed" in page.text
    _decoded_images(page)
    assert report_main([runs.cfg.output_dir, "--list"]) == 0
    assert capsys.readouterr().out.split() == runs.run_ids


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("Chromium not installed (Debian: apt-get install -y chromium); browser check skipped")


# Marks the page once everything has loaded: how many images, how many failed to decode.
_IMAGE_CHECK = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const broken = images.filter(i => !i.complete || i.naturalWidth === 0);
  broken.forEach(i => i.setAttribute("data-broken", "1"));
  document.body.setAttribute("data-images", images.length);
  document.body.setAttribute("data-broken-images", broken.length);
});
</script>"""


def _run_chromium(tmp_path, *args) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    return subprocess.run([_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=180, check=True)


@pytest.mark.slow
def test_report_renders_in_headless_chromium(weak_report, tmp_path):
    _chromium()
    with open(weak_report) as f:
        page = f.read()
    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("</body>", _IMAGE_CHECK + "</body>"))
    dom = _run_chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", checked.as_uri()).stdout
    n_images = len(_Page(page).images)
    assert f'data-images="{n_images}"' in dom, dom[-500:]
    assert 'data-broken-images="0"' in dom
    shot = tmp_path / "shot.png"
    _run_chromium(tmp_path, "--window-size=1200,2400", f"--screenshot={shot}", checked.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (2400, 1200)
    not_white = (pixels < 245).any(axis=2).mean()
    assert 0.02 < not_white < 0.9, not_white  # text, tables and figures: neither blank nor a block
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # heat maps and plots, not flat text


# Marks the page once laid out: the edge table's rows, height, and whether it fits the window.
_EDGE_TABLE_CHECK = """<script>
window.addEventListener("load", () => {
  const box = document.querySelector("#edge-models table").getBoundingClientRect();
  document.body.setAttribute("data-edge-rows", document.querySelector("#edge-models table").rows.length);
  document.body.setAttribute("data-edge-height", Math.round(box.height));
  document.body.setAttribute("data-edge-fits", box.right <= document.documentElement.clientWidth ? 1 : 0);
});
</script>"""


def test_edge_section_renders_in_headless_chromium(tmp_path):
    _chromium()
    page, _ = html_page.render(run_data.collect(_edge_metadata(tmp_path)))
    checked = tmp_path / "edge.html"
    checked.write_text(page.replace("</body>", _EDGE_TABLE_CHECK + "</body>"))
    dom = _run_chromium(tmp_path, "--window-size=1200,2400", "--virtual-time-budget=5000", "--dump-dom",
                        checked.as_uri()).stdout
    rows = 1 + len(edge_models.comparison_rows(_edge_view())) + 1  # header, numbers, the gate
    assert f'data-edge-rows="{rows}"' in dom, dom[-500:]
    assert 'data-edge-fits="1"' in dom  # no column pushed off the page
    height = int(re.search(r'data-edge-height="(\d+)"', dom).group(1))
    assert height > rows * 15  # every row laid out, none collapsed
    assert f"int8 : held back : {INT8_REASON}" in _Page(dom).text
