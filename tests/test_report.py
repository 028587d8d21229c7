"""run_report: the HTML report of a run, its numbers, its figures, and its rendering in a real browser.

Fast tests read a small ML Metadata database written here and hand-made TFMA results; the slow
ones report the session's pipeline runs (tests/pipeline_runs.py; A: first model, blessed;
C: weak candidate against A, not blessed). The browser test needs Debian's `chromium` (.ci/run
installs it) and skips without.
"""
import base64
import html.parser
import io
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

from pipeline import configs, evaluation
from run_report import html_page, plots, run_data, store, tables, tfma_results, writer
from run_report.__main__ import main as report_main
from trainer_module import names

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]


# ---------------------------------------------------------------- ML Metadata queries (fast)

def test_find_metadata_from_output_dir_pipeline_root_or_file(tmp_path):
    db = tmp_path / "metadata" / "p" / configs.METADATA_FILE
    db.parent.mkdir(parents=True)
    db.write_bytes(b"")
    (tmp_path / "pipelines" / "p").mkdir(parents=True)
    assert store.find_metadata(str(tmp_path)) == str(db)
    assert store.find_metadata(str(tmp_path / "pipelines" / "p")) == str(db)
    assert store.find_metadata(str(db)) == str(db)
    with pytest.raises(FileNotFoundError):
        store.find_metadata(str(tmp_path / "pipelines"))
    (tmp_path / "metadata" / "q").mkdir()
    (tmp_path / "metadata" / "q" / configs.METADATA_FILE).write_bytes(b"")
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
    for node_id, key, properties in ((names.TRAINER_NODE, names.MODEL_RUN_OUTPUT, {}),
                                     (names.EVALUATOR_NODE, names.EVALUATION_OUTPUT,
                                      {names.EVAL_CONFIG_EXEC_PROPERTY: eval_config_json})):
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
    path = str(tmp_path / configs.METADATA_FILE)
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
    assert sorted(nodes) == [names.EVALUATOR_NODE, names.TRAINER_NODE]
    assert nodes[names.TRAINER_NODE].state == "COMPLETE"
    assert nodes[names.EVALUATOR_NODE].uri(names.EVALUATION_OUTPUT) == \
        f"{tmp_path}/root/{names.EVALUATOR_NODE}/{names.EVALUATION_OUTPUT}/7"
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
    artifact.custom_properties[names.PROP_BLESSED].int_value = 1
    artifact.custom_properties[names.PROP_BASELINE_MODEL].string_value = "/models/3"
    node = store.NodeRun(names.EVALUATOR_NODE, "COMPLETE", {names.BLESSING_OUTPUT: [artifact]})
    assert store.custom_property(artifact, names.PROP_BLESSED) == 1
    assert store.output_property(node, names.BLESSING_OUTPUT, names.PROP_BASELINE_MODEL) == "/models/3"
    assert store.output_property(node, names.BLESSING_OUTPUT, names.PROP_PUSHED) is None
    assert store.output_property(None, names.BLESSING_OUTPUT, names.PROP_BLESSED) is None


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
    report = {"class_names": ["a", "b"], "ingested": 9,
              "ingested_by_split_and_class": {"train": {"a": 4, "b": 2}, "eval": {"a": 2, "b": 1}}}
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
    blessing = _artifact("/root/Evaluator/blessing/9", **{names.PROP_BLESSED: 0,
                                                          names.PROP_BASELINE_MODEL: "/root/Trainer/model/2"})
    pushed = _artifact("/root/Pusher/pushed_model/10", **{names.PROP_PUSHED: 0})
    nodes = {names.EVALUATOR_NODE: store.NodeRun(names.EVALUATOR_NODE, "COMPLETE",
                                                 {names.BLESSING_OUTPUT: [blessing]}),
             names.PUSHER_NODE: store.NodeRun(names.PUSHER_NODE, "COMPLETE",
                                              {names.PUSHED_MODEL_OUTPUT: [pushed]})}
    ingest = {"data_root": "/data", "split_mode": "folders", "files_seen": 10, "ingested": 9,
              "skipped": 1, "class_names": ["a", "b", "c"], "skipped_by_reason": {"corrupt": 1},
              "skipped_files": [{"path": "a/x.jpg", "split": "train", "class_name": "a",
                                 "reason": "corrupt"}],
              "ingested_by_split_and_class": {"train": {"a": 3, "b": 2, "c": 1},
                                              "eval": {"a": 1, "b": 1, "c": 1}}}
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
    assert f"{names.PUSHER_NODE} COMPLETE {names.PUSHED_MODEL_OUTPUT}: {pushed.uri}" in parsed.text
    assert set(figures) == {html_page.CONFUSION_MATRIX_PNG, html_page.BASELINE_CONFUSION_MATRIX_PNG,
                            html_page.RELIABILITY_PNG, html_page.TRAINING_CURVES_PNG,
                            html_page.EXAMPLES_PER_CLASS_PNG, names.LR_SCHEDULE_PLOT}
    assert figures[names.LR_SCHEDULE_PLOT] == lr_png
    assert len(_decoded_images(parsed)) == len(figures)


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


@pytest.fixture(scope="module")
def weak_report(runs):
    """The report of run C, in the default place (under the pipeline root)."""
    return writer.write_report(runs.cfg.metadata_path, run_id=runs.run_ids[2])


@pytest.mark.slow
def test_report_of_a_rejected_candidate(runs, weak_report):
    assert weak_report.startswith(os.path.join(runs.cfg.pipeline_root, writer.REPORTS_DIR) + os.sep)
    with open(weak_report) as f:
        page = _Page(f.read())
    assert page.ids == list(html_page.SECTION_IDS)
    assert "NOT BLESSED" in page.text and "nothing was pushed" in page.text
    # The failed absolute bound and the change threshold against A, each with value and bound.
    assert re.search(r"sparse_categorical_accuracy lower bound overall [0-9.]+ >= 0\.5 FAILED", page.text)
    assert re.search(r"sparse_categorical_accuracy change vs baseline overall -?[0-9.]+ "
                     r"candidate - baseline >= -0\.02", page.text)
    baseline_uri = runs.nodes[0][names.TRAINER_NODE].uri(names.MODEL_OUTPUT)
    assert f"Baseline: the latest blessed model other than the candidate, {baseline_uri}" in page.text
    for class_name in names.INTEL_CLASS_NAMES:
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
    with open(os.path.join(runs.nodes[2][names.TRAINER_NODE].uri(names.MODEL_RUN_OUTPUT),
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
