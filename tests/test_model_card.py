"""The model card of a pushed version (common/model_card.py, model_card_pages.py).

The slow test reads the card run A of the session's pipeline runs pushed (tests/pipeline_runs.py)
and checks every figure on its Markdown page against the run's artifacts, read here on their own
terms: TFMA's files through TFMA's API, the ingest report, history.json, the edge evaluation, the
push marker and ML Metadata. The fast tests check the interval, the page's layout in a browser,
and a card without inputs.
"""
import html.parser
import json
import math
import os
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow_model_analysis as tfma
from PIL import Image
from tensorflow_model_analysis.slicer import slicer_lib

import pipeline_runs
from common import model_card, model_card_pages, pipeline_names, store
from components.image_example_gen.driver import INPUT_FINGERPRINT_KEY
from trainer_module import names

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]


def test_wilson_interval():
    # 96 of 120: centre (0.8 + 1.96^2/240) / (1 + 1.96^2/120) = 0.7907, half width
    # 1.96 * sqrt(0.8 * 0.2 / 120 + 1.96^2 / 57600) / 1.0320 = 0.0711 (by hand); and the edges of the range.
    low, high = model_card.wilson_interval(96, 120)
    assert (round(low, 4), round(high, 4)) == (0.7196, 0.8618)
    assert model_card.wilson_interval(0, 10)[0] == 0.0 and model_card.wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert model_card.wilson_interval(0, 0) is None


# ---------------------------------------------------------------- the card of a real push (slow)

def _tables(markdown):
    """{header tuple: [row tuples]} of every table of a Markdown page."""
    tables, lines = {}, markdown.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            header = tuple(c.strip() for c in line.strip("|").split(" | "))
            rows, j = [], i + 2
            while j < len(lines) and lines[j].startswith("| "):
                rows.append(tuple(c.strip().replace("\\|", "|") for c in lines[j][2:-2].split(" | ")))
                j += 1
            tables[header] = rows
    return tables


def _items(markdown):
    """Every list item and plain paragraph of the page (the text that is not a table or heading)."""
    return [line[2:] if line.startswith("- ") else line for line in markdown.splitlines()
            if line and not line.startswith(("#", "|", "**"))]


def _tfma(evaluation_uri, class_names):
    """The candidate's figures as TFMA's API returns them (no project code)."""
    metrics, per_class = {}, {}
    for per_slice in tfma.load_metrics(evaluation_uri):
        slice_key = slicer_lib.deserialize_slice_key(per_slice.slice_key)
        for kv in per_slice.metric_keys_and_values:
            if kv.key.is_diff or not kv.value.HasField("double_value"):
                continue
            sub = kv.key.sub_key
            key = (kv.key.name, sub.class_id.value if sub.HasField("class_id") else None,
                   sub.k.value if sub.HasField("k") else None)
            (metrics if slice_key == () else per_class.setdefault(dict(slice_key)[names.CLASS_NAME_KEY], {}))[key] = \
                kv.value.double_value.value
    matrix, buckets = np.zeros((len(class_names), len(class_names)), int), []
    for per_slice in tfma.load_plots(evaluation_uri):
        if slicer_lib.deserialize_slice_key(per_slice.slice_key) != ():
            continue
        for kv in per_slice.plot_keys_and_values:
            plot = kv.value
            if plot.HasField("multi_class_confusion_matrix_at_thresholds"):
                for e in plot.multi_class_confusion_matrix_at_thresholds.matrices[0].entries:
                    if e.predicted_class_id >= 0:
                        matrix[e.actual_class_id, e.predicted_class_id] += int(e.num_weighted_examples)
            if plot.HasField("calibration_histogram_buckets"):
                buckets = [(b.lower_threshold_inclusive, b.upper_threshold_exclusive, b.num_weighted_examples.value,
                            b.total_weighted_label.value, b.total_weighted_refined_prediction.value)
                           for b in plot.calibration_histogram_buckets.buckets if b.num_weighted_examples.value > 0]
    return metrics, per_class, matrix, buckets


def f3(value):
    # TFMA's precision of a class nothing was predicted as is NaN; the card shows it as "–" (undefined)
    return "–" if value is None or math.isnan(value) else f"{value:.3f}"


def f2(value):
    return f"{value:.2f}"


@pytest.mark.slow
def test_every_figure_on_the_card_of_a_real_push_equals_the_runs_artifacts(gate_runs):
    runs = gate_runs
    version_dir = pipeline_runs.pushed_dir(runs)
    version = os.path.basename(version_dir)
    extra = os.path.join(version_dir, names.EXTRA_ASSETS_DIR)
    with open(os.path.join(extra, pipeline_names.MODEL_CARD_MD)) as f:
        markdown = f.read()
    with open(os.path.join(extra, pipeline_names.MODEL_CARD_JSON)) as f:
        card = json.load(f)
    with open(os.path.join(extra, pipeline_names.PUSH_SOURCE_FILE)) as f:
        marker = json.load(f)
    run_id, metadata = runs.run_ids[0], runs.cfg.metadata_path

    # ML Metadata: what the Pusher's execution read, and the data fingerprint ImageExampleGen recorded.
    inputs = store.node_inputs(metadata, run_id, pipeline_names.PUSHER_NODE)
    roles = {"model": "model", "model_run": "model_run", "examples": "examples", "evaluation": "evaluation",
             "blessing": "model_blessing", "edge_evaluation": "edge_evaluation", "data_validation": "data_validation"}
    artifacts = {role: inputs[key][0] for role, key in roles.items()}
    fingerprint = store.execution_property(metadata, run_id, pipeline_names.EXAMPLE_GEN_NODE, INPUT_FINGERPRINT_KEY)
    with open(os.path.join(artifacts["examples"].uri, pipeline_names.INGEST_REPORT_FILE)) as f:
        ingest = json.load(f)
    with open(os.path.join(artifacts["model_run"].uri, names.HISTORY_FILE)) as f:
        history = json.load(f)
    with open(os.path.join(artifacts["edge_evaluation"].uri, pipeline_names.EDGE_EVALUATION_FILE)) as f:
        edge = json.load(f)
    class_names = ingest["class_names"]
    metrics, per_class, matrix, buckets = _tfma(artifacts["evaluation"].uri, class_names)
    accuracy, examples = metrics[(pipeline_names.ACCURACY, None, None)], int(metrics[(pipeline_names.EXAMPLE_COUNT, None, None)])
    assert matrix.trace() == round(accuracy * examples)  # the matrix and the accuracy agree
    pushed_flavours = [f for f in names.TFLITE_FLAVOURS
                       if os.path.exists(os.path.join(version_dir, pipeline_names.PUSHED_EDGE_SUBDIR,
                                                      names.TFLITE_FILE.format(flavour=f)))]

    # The card's JSON names its sources: the push, and the artifacts by their ML Metadata ids.
    assert card["push"] == {"version": version, "destination": version_dir, "pushed_at": marker["pushed_at"],
                            "fingerprint": marker["fingerprint"]}
    assert card["lineage"] == {"pipeline": runs.cfg.pipeline_name, "run_id": run_id, "artifacts": {
        role: {"id": a.id, "uri": a.uri} for role, a in artifacts.items()}}
    tables = _tables(markdown)
    checked = set()

    def table(*header):
        checked.add(header)
        return tables[header]

    # Quality: overall, per class, confusion matrix, calibration buckets.
    recall = {c: metrics[("recall", i, None)] for i, c in enumerate(class_names)}
    f1 = [metrics[("f1_score", i, None)] for i in range(len(class_names))]
    n = examples
    z = 1.959963984540054
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    ece = sum(abs(b[4] - b[3]) for b in buckets) / sum(b[2] for b in buckets)
    ratio = metrics[(pipeline_names.CALIBRATION, None, 1)]
    assert table("overall", "value") == [
        ("accuracy", f3(accuracy)), ("accuracy, 95 % interval (Wilson)", f"{f3(low)} to {f3(high)}"),
        ("eval examples", str(examples)), ("macro-averaged F1", f3(sum(f1) / len(f1))),
        ("calibration: mean top-1 probability / accuracy (1 is ideal)", f3(ratio)),
        ("expected calibration error (top-1)", f3(ece))]
    assert table("class", "eval images", "precision", "recall", "F1") == [
        (c, str(int(per_class[c][(pipeline_names.EXAMPLE_COUNT, None, None)])), f3(metrics[("precision", i, None)]),
         f3(recall[c]), f3(f1[i])) for i, c in enumerate(class_names)]
    assert table("true \\ predicted", *class_names) == [(c, *map(str, matrix[i])) for i, c in enumerate(class_names)]
    assert table("top-1 probability", "eval images", "mean probability", "accuracy") == [
        (f"{f3(b[0])} to {f3(b[1])}", str(int(b[2])), f3(b[4] / b[2]), f3(b[3] / b[2])) for b in buckets]
    # Verdict: the thresholds TFMA applied (no baseline for the first model).
    assert table("metric", "threshold", "slice", "value", "bound", "status") == [
        (pipeline_names.ACCURACY, "lower bound", "overall", f3(accuracy), ">= 0", "passed")]
    # Edge models, as the EdgeEvaluator measured them; pushed = in the version's tflite/ folder.
    models = edge[pipeline_names.EDGE_MODELS]
    assert table("model", "accuracy", "size (MB)", "latency (ms, 1 image)", "latency (ms per image, batches of 32)",
                 "in this version") == [
        (m, f3(models[m]["accuracy"]), f2(models[m]["size_mb"]), f2(models[m]["latency_ms"]),
         f2(models[m]["batch_latency_ms"]),
         "reference" if m == pipeline_names.EDGE_SAVED_MODEL else ("pushed" if m in pushed_flavours else "held back"))
        for m in [pipeline_names.EDGE_SAVED_MODEL, *[f for f in models if f != pipeline_names.EDGE_SAVED_MODEL]]]
    # Data: examples per split and class, from the ingest report.
    counts = ingest["ingested_by_split_and_class"]
    splits = list(counts)
    assert table("class", *splits, "total") == [
        (c, *[str(counts[s][c]) for s in splits], str(sum(counts[s][c] for s in splits))) for c in class_names] + [
        ("total", *[str(sum(counts[s].values())) for s in splits], str(ingest["ingested"]))]
    # Training recipe: every knob of the Trainer's configuration.
    config = history[names.HISTORY_CONFIG]
    assert table("knob", "value") == [
        (k, ", ".join(map(str, v)) if isinstance(v, list) else str(v)) for k, v in sorted(config.items())]
    # Lineage: ML Metadata ids and URIs of the Pusher's inputs.
    assert table("artifact", "ML Metadata id", "uri") == [(r, str(a.id), a.uri) for r, a in artifacts.items()]
    assert set(tables) == checked, set(tables) - checked  # no table left unchecked
    assert not ingest["skipped_files"]  # (a skipped-files table would be checked above)

    # Every sentence with a figure.
    series = history[names.HISTORY_SERIES]
    bn = history[names.HISTORY_BN_RECALIBRATION]
    weakest = min(class_names, key=lambda c: (recall[c], c))
    off = [(matrix[i, j], i, j) for i in range(len(class_names)) for j in range(len(class_names)) if i != j and matrix[i, j]]
    confusions = sorted(off, key=lambda c: (-c[0], c[1], c[2]))[:3]
    gate = edge[pipeline_names.EDGE_GATE]
    tone = ("under-confident" if ratio < 1 else "over-confident") if abs(ratio - 1) >= 0.02 else "about right"
    expected = [
        f"Classify a photo of a scene into one of {len(class_names)} classes.",
        "Classes: " + ", ".join(class_names),
        f"Input: one encoded JPEG, PNG, GIF or BMP image (TF Serving's serving_default, input image_bytes); the model "
        f"resizes it to {config['resize_size']} px square and takes the centre {config['image_size']} px crop",
        "Output: a probability per class, the top class and its probability, or an error for an image it cannot read",
        f"Closed set: every image is put in one of the {len(class_names)} classes above; a photo of anything else "
        "(people, interiors, documents) still gets one of them, with no 'unknown' answer.",
        f"Measured on {examples} eval images from {ingest['data_root']}: accuracy {f3(accuracy)}, 95 % interval "
        f"{f3(low)} to {f3(high)} (Wilson); a smaller difference between two versions is within sampling noise.",
        "The eval images come from the same source as the training images: photos from other cameras, places or "
        "seasons are not measured.",
        f"Weakest class: {weakest} (recall {f3(recall[weakest])} on "
        f"{int(per_class[weakest][(pipeline_names.EXAMPLE_COUNT, None, None)])} images).",
        *([f"Most frequent confusion: {class_names[confusions[0][1]]} taken for {class_names[confusions[0][2]]} "
           f"({confusions[0][0]} of {matrix[confusions[0][1]].sum()} {class_names[confusions[0][1]]} images)."]
          if confusions else []),
        f"Probabilities: mean top-1 probability / accuracy {f3(ratio)} ({tone}), expected calibration error "
        f"{f3(ece)}: read a probability as a confidence only when the ratio is close to 1 and the error close to 0.",
        "Evaluator (TFMA) gate: BLESSED",
        "No baseline: no other model had been blessed, so the change threshold was not applied.",
        f"Data gate: passed ({store.custom_property(artifacts['data_validation'], pipeline_names.PROP_FINDINGS)} "
        f"finding(s), {store.custom_property(artifacts['data_validation'], pipeline_names.PROP_BLOCKING)} blocking).",
        *[f"Edge gate, {f}: {'passed' if gate[f]['passed'] else 'failed'}, accuracy drop {f3(gate[f]['drop'])} "
          f"(allowed {f3(gate[f]['max_drop'])}); " + ("pushed" if f in pushed_flavours else f"held back: {gate[f]['reason']}")
          for f in sorted(gate)],
        *(["Known confusions: " + "; ".join(
            f"{class_names[i]} taken for {class_names[j]} {k} times ({f3(k / matrix[i].sum())} of {class_names[i]})"
            for k, i, j in confusions) + "."] if confusions else []),
        f"Source: {ingest['data_root']} (split folders)",
        f"Fingerprint of the input files: {fingerprint}",
        f"Files: {ingest['files_seen']} seen, {ingest['ingested']} ingested, {ingest['skipped']} skipped",
        f"Ingest report: {os.path.join(artifacts['examples'].uri, pipeline_names.INGEST_REPORT_FILE)}",
        f"{len(series['loss'])} epochs on {history[names.HISTORY_TRAIN_EXAMPLES]} train images "
        f"({history[names.HISTORY_STEPS_PER_EPOCH]} steps per epoch), precision {history[names.HISTORY_PRECISION]}",
        "Last epoch: " + ", ".join(f"{k} {f3(series[k][-1])}" for k in ("loss", "accuracy", "val_loss", "val_accuracy")),
        *([f"BatchNorm statistics re-estimated on {bn['batches']} batches: train loss {f3(bn['train_loss_before'])} -> "
           f"{f3(bn['train_loss_after'])}, {'kept' if bn['kept'] else 'not kept'}; eval accuracy of the exported "
           f"model {f3(bn['eval']['accuracy'])}"] if bn else []),
        f"Pipeline {runs.cfg.pipeline_name}, run {run_id}",
        f"Pushed {marker['pushed_at']} to {version_dir}",
        f"Fingerprint of the pushed files: {marker['fingerprint']}",
    ]
    assert _items(markdown) == expected
    # The HTML page shows the same: its list items (the known confusions are a paragraph there) and
    # every table cell, headers included, in the same order.
    with open(os.path.join(extra, pipeline_names.MODEL_CARD_HTML)) as f:
        page = _HtmlText(f.read())
    assert page.items == [e for e in expected if not e.startswith("Known confusions: ")]
    assert page.cells == [cell for header, rows in tables.items() for row in [header, *rows] for cell in row]


class _HtmlText(html.parser.HTMLParser):
    """The list items and table cells (th, td) of a page, as text."""

    def __init__(self, text):
        super().__init__()
        self.items, self.cells, self._open = [], [], None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag in ("li", "td", "th"):
            self._open, self._text = tag, ""

    def handle_endtag(self, tag):
        if tag == self._open:
            (self.items if tag == "li" else self.cells).append(self._text)
            self._open = None

    def handle_data(self, data):
        if self._open:
            self._text += data


# ---------------------------------------------------------------- the page in a browser

def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("Chromium not installed (Debian: apt-get install -y chromium); browser check skipped")


_LAYOUT_CHECK = """<script>
window.addEventListener("load", () => {
  const tables = Array.from(document.querySelectorAll("table"));
  const wide = tables.filter(t => t.getBoundingClientRect().right > document.documentElement.clientWidth);
  document.body.setAttribute("data-tables", tables.length);
  document.body.setAttribute("data-wide-tables", wide.length);
  document.body.setAttribute("data-matrix-cells", document.querySelectorAll("td[style]").length);
});
</script>"""


def _sample_card():
    classes = ["buildings", "forest", "glacier", "mountain", "sea", "street"]
    matrix = [[18 if i == j else (2 if j == (i + 1) % 6 else 0) for j in range(6)] for i in range(6)]
    return {
        "card_format": 1, "push": {"version": "1765000001", "destination": "/srv/models/intel-scenes/1765000001",
                                   "pushed_at": "2025-12-06T10:00:00+00:00", "fingerprint": "ab" * 32},
        "intended_use": {"task": "Classify a photo of a scene into one of 6 classes.", "classes": classes,
                         "input": "one encoded image", "output": "a probability per class", "limits": ["Closed set."]},
        "data": {"data_root": "/data/intel", "split_mode": "folders", "fingerprint": "cd" * 32, "files_seen": 122,
                 "ingested": 120, "skipped": 2, "skipped_by_reason": {"empty_file": 2}, "ingest_report": "/r.json",
                 "skipped_files": [{"path": f"train/sea/{i}.jpg", "split": "train", "class_name": "sea",
                                    "reason": "empty_file", "detail": ""} for i in range(2)],
                 "examples": {"train": {c: 10 for c in classes}, "eval": {c: 10 for c in classes}}},
        "training": {"config": {"epochs": 5, "class_names": classes, "learning_rate": 0.03}, "epochs": 5,
                     "train_examples": 60, "eval_examples": 60, "steps_per_epoch": 1, "precision": "float32",
                     "final_epoch": {"loss": 0.5}, "bn_recalibration": None},
        "evaluation": {"examples": 120, "accuracy": 0.9, "accuracy_interval_95": [0.83, 0.94], "macro_f1": 0.9,
                       "calibration": 0.95, "ece": 0.04, "baseline": {"accuracy": 0.88, "change": 0.02},
                       "per_class": [{"class": c, "support": 20, "precision": 0.9, "recall": 0.9, "f1": 0.9}
                                     for c in classes],
                       "class_names": classes, "confusion_matrix": matrix,
                       "confusions": [{"true": "buildings", "predicted": "forest", "count": 2, "share": 0.1}],
                       "calibration_buckets": [{"lower": 0.9, "upper": 1.0, "count": 120, "mean_probability": 0.95,
                                                "accuracy": 0.9}]},
        "verdict": {"blessed": True, "validation_ok": True, "thresholds": [
            {"metric": "sparse_categorical_accuracy", "kind": "lower bound", "slice": "overall", "value": 0.9,
             "bound": ">= 0.5", "status": "passed", "message": ""}],
            "edge_gate": {"int8": {"passed": False, "drop": 0.05, "max_drop": 0.01, "reason": "too far below",
                                   "pushed": False}}, "data_gate": {"findings": 0, "blocking": 0,
                                                                    "proceeded_despite_anomalies": False}},
        "edge_models": [{"model": "saved_model", "accuracy": 0.9, "size_mb": 3.9, "latency_ms": 15.0,
                         "batch_latency_ms": 6.5, "pushed": None},
                        {"model": "int8", "accuracy": 0.85, "size_mb": 1.2, "latency_ms": 4.2,
                         "batch_latency_ms": 2.0, "pushed": False}],
        "lineage": {"pipeline": "intel-scenes", "run_id": "2025-12-06T09:50:00", "artifacts": {
            "model": {"id": 11, "uri": "/pipelines/intel-scenes/Trainer/model/10" + "/x" * 40}}},
    }


def test_the_card_page_renders_in_headless_chromium(tmp_path):
    chromium = _chromium()
    page = model_card_pages.html(_sample_card())
    checked = tmp_path / "card.html"
    checked.write_text(page.replace("</body>", _LAYOUT_CHECK + "</body>"))

    def run(*args):
        return subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / f'profile-{len(args)}'}",
                               *args], capture_output=True, text=True, timeout=180, check=True)

    dom = run("--window-size=1200,2400", "--virtual-time-budget=5000", "--dump-dom", checked.as_uri()).stdout
    n_tables = page.count("<table>")
    assert f'data-tables="{n_tables}"' in dom and n_tables == 10
    assert 'data-wide-tables="0"' in dom  # a long URI wraps instead of pushing a table off the page
    assert 'data-matrix-cells="36"' in dom  # the confusion matrix's shaded cells
    shot = tmp_path / "card.png"
    run("--window-size=1200,2400", f"--screenshot={shot}", checked.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (2400, 1200)
    assert 0.02 < (pixels < 245).any(axis=2).mean() < 0.9  # text and tables: neither blank nor a block
    # The diagonal's blue shading is on the page (rgba(44, 93, 143) over white, deepest for 18 of 20).
    blue = (pixels[:, :, 2] > pixels[:, :, 0] + 60) & (pixels[:, :, 2] > 120)
    assert blue.sum() > 2000
