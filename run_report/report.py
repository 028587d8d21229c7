"""A self-contained HTML report of one pipeline run, with its figures as PNG files beside it.

    python -m pipeline.report outputs                       # the latest run
    python -m pipeline.report outputs --list                # the run ids
    python -m pipeline.report outputs/metadata/intel-scenes/metadata.sqlite --run-id ID --out DIR

The path is the pipeline's output dir (--output-dir), its pipeline root, or the ML Metadata
database. Sections: verdict (each threshold with its value and bound, from TFMA's validation
result), overall and per-class metrics, confusion matrix, comparison with the baseline,
calibration, training curves (history.json, lr_schedule.png) and data (ingest_report.json).
Artifacts are found through ML Metadata, so any past run can be reported; a CACHED component
shows the outputs it reused.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow loads (TFMA needs Keras 2)

import argparse  # noqa: E402
import base64  # noqa: E402
import dataclasses  # noqa: E402
import datetime  # noqa: E402
import glob  # noqa: E402
import html  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
from typing import Dict, List, Optional, Sequence, Tuple  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_model_analysis as tfma  # noqa: E402
from google.protobuf import json_format  # noqa: E402
from ml_metadata import metadata_store  # noqa: E402
from ml_metadata.proto import metadata_store_pb2  # noqa: E402

from pipeline import evaluation
from run_report import plots as report_plots, store as run_summary, tfma_results as report_tfma  # noqa: E402
from run_report.tfma_results import EvalResults  # noqa: E402

REPORT_FILE = "report.html"
REPORTS_DIR = "reports"  # under the pipeline root
LR_SCHEDULE_GLOB = "lr_schedule*.png"  # lr_schedule.png, plus lr_schedule_<phase>.png per phase
HISTORY_FILE = "history.json"
MAX_SKIPPED_ROWS = 200
SECTION_IDS = ("verdict", "overall-metrics", "per-class-metrics", "confusion-matrix", "baseline",
               "calibration", "training", "data", "components")


# ---------------------------------------------------------------- finding the run's artifacts

def find_metadata(path: str) -> str:
    """The ML Metadata database for an output dir, a pipeline root or the database itself."""
    if os.path.isfile(path):
        return path
    candidates = [os.path.join(path, "metadata.sqlite")]
    candidates += sorted(glob.glob(os.path.join(path, "metadata", "*", "metadata.sqlite")))
    # <output>/pipelines/<name> (the pipeline root) -> <output>/metadata/<name>/metadata.sqlite
    parent, name = os.path.split(os.path.normpath(path))
    if os.path.basename(parent) == "pipelines":
        candidates.append(os.path.join(os.path.dirname(parent), "metadata", name, "metadata.sqlite"))
    found = [c for c in candidates if os.path.isfile(c)]
    if not found:
        raise FileNotFoundError(f"no ML Metadata database (metadata.sqlite) for {path}")
    if len(set(found)) > 1:
        raise ValueError(f"{path} holds several pipelines; pass one database: {sorted(set(found))}")
    return found[0]


def _store(metadata_path: str) -> metadata_store.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def _run_details(metadata_path: str, run_id: str) -> Tuple[str, Optional[tfma.EvalConfig]]:
    """(pipeline name, the eval config the Evaluator was given) of a run, from ML Metadata.

    The configured eval config still holds the change thresholds that TFX drops when there is
    no baseline; the one TFMA saves beside its results does not.
    """
    store = _store(metadata_path)
    run = store.get_context_by_type_and_name("pipeline_run", run_id)
    pipeline_type, node_type = store.get_context_type("pipeline").id, store.get_context_type("node").id
    pipeline_name, eval_config = "", None
    for execution in store.get_executions_by_context(run.id):
        for context in store.get_contexts_by_execution(execution.id):
            if context.type_id == pipeline_type:
                pipeline_name = context.name
            if context.type_id == node_type and context.name.endswith(".Evaluator") \
                    and "eval_config" in execution.custom_properties:
                eval_config = json_format.Parse(
                    execution.custom_properties["eval_config"].string_value, tfma.EvalConfig())
    return pipeline_name, eval_config


def pipeline_root(nodes: Dict[str, run_summary.NodeRun]) -> Optional[str]:
    """The pipeline root, from any artifact a component wrote as <root>/<node>/<key>/<id>."""
    for node_id, node in sorted(nodes.items()):
        for key, artifacts in node.outputs.items():
            for artifact in artifacts:
                parts = artifact.uri.rstrip("/").split("/")
                if len(parts) > 3 and parts[-3] == node_id and parts[-2] == key:
                    return "/".join(parts[:-3])
    return None


@dataclasses.dataclass
class RunData:
    """Everything one report shows, gathered from ML Metadata and the artifacts."""
    metadata_path: str
    pipeline_name: str
    run_id: str
    nodes: Dict[str, run_summary.NodeRun]
    root: Optional[str]
    class_names: List[str]
    ingest: Optional[dict]
    history: Optional[dict]
    lr_schedules: Dict[str, bytes]  # file name -> PNG written by the Trainer
    evaluation: Optional[EvalResults]


def _read_json(path: Optional[str]) -> Optional[dict]:
    if not path or not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def _read_bytes(path: Optional[str]) -> Optional[bytes]:
    if not path or not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


def _prop(node: Optional[run_summary.NodeRun], key: str, name: str):
    artifacts = node.outputs.get(key) if node else None
    return run_summary.custom_property(artifacts[0], name) if artifacts else None


def collect(metadata_path: str, run_id: Optional[str] = None) -> RunData:
    """Reads one run (default: the latest) from ML Metadata and its artifacts."""
    if run_id is None:
        ids = run_summary.run_ids(metadata_path)
        if not ids:
            raise LookupError(f"no pipeline run recorded in {metadata_path}")
        run_id = ids[-1]
    nodes = run_summary.read_run(metadata_path, run_id)
    pipeline_name, configured_eval_config = _run_details(metadata_path, run_id)
    examples = nodes.get("ImageExampleGen")
    ingest = _read_json(_prop(examples, "examples", "ingest_report"))
    class_names = json.loads(_prop(examples, "examples", "class_names") or "[]")
    trainer = nodes.get("Trainer")
    model_run = trainer.uri("model_run") if trainer else None
    history = _read_json(model_run and os.path.join(model_run, HISTORY_FILE))
    lr_pngs = {os.path.basename(p): _read_bytes(p) for p in
               sorted(tf.io.gfile.glob(os.path.join(model_run, LR_SCHEDULE_GLOB)) if model_run else [])}
    evaluator = nodes.get("Evaluator")
    eval_uri = evaluator.uri("evaluation") if evaluator else None
    results = None
    if eval_uri and tf.io.gfile.exists(os.path.join(eval_uri, "eval_config.json")):
        results = report_tfma.load(eval_uri, len(class_names), configured_eval_config)
    return RunData(metadata_path, pipeline_name, run_id, nodes, pipeline_root(nodes), class_names,
                   ingest, history, lr_pngs, results)


# ---------------------------------------------------------------- numbers derived for tables

@dataclasses.dataclass
class ClassRow:
    name: str
    support: Optional[float]
    precision: Optional[float]
    recall: Optional[float]
    f1: Optional[float]


def _from_matrix(matrix: np.ndarray, i: int) -> Tuple[float, float, float]:
    """(precision, recall, F1) of class i with argmax predictions, NaN for 0/0 as TFMA reports it.

    The fallback when the eval config has no per-class metrics (make_eval_config without
    class_names); the confusion matrix TFMA always computes holds the same information.
    """
    tp, predicted, actual = matrix[i, i], matrix[:, i].sum(), matrix[i, :].sum()
    precision = tp / predicted if predicted else float("nan")
    recall = tp / actual if actual else float("nan")
    f1 = 2 * tp / (predicted + actual) if predicted + actual else float("nan")
    return precision, recall, f1


def class_rows(results: EvalResults, class_names: Sequence[str], model: Optional[str] = None
               ) -> Tuple[List[ClassRow], str]:
    """Per-class rows and where they come from (TFMA's per-class metrics or its matrix)."""
    model = results.candidate if model is None else model
    rows, source = [], "TFMA per-class metrics (argmax predictions)"
    matrix = results.confusion.get(model)
    for i, name in enumerate(class_names):
        sub_key = (("class_id", i), ("top_k", 1))
        values = [results.metric(m, model, sub_key=sub_key) for m in evaluation.PER_CLASS_METRICS]
        if values[0] is None and values[1] is None and matrix is not None:
            values = list(_from_matrix(matrix, i))
            source = "derived from TFMA's confusion matrix (per-class metrics not configured)"
        support = results.metric(evaluation.EXAMPLE_COUNT, model, slice_key=(("class_name", name),))
        if support is None and matrix is not None:
            support = float(matrix[i].sum())
        rows.append(ClassRow(name, support, *values))
    return rows, source


def macro_f1(rows: Sequence[ClassRow]) -> Optional[float]:
    values = [r.f1 for r in rows if report_tfma.nan_to_none(r.f1) is not None]
    return sum(values) / len(values) if values else None


def overall_rows(results: EvalResults, class_names: Sequence[str]):
    """[(label, candidate, baseline, diff)] of the headline metrics."""
    models = [results.candidate] + ([results.baseline] if results.baseline is not None else [])
    ece = {m: report_tfma.expected_calibration_error(results.calibration.get(m, [])) for m in models}
    f1 = {m: macro_f1(class_rows(results, class_names, m)[0]) for m in models}
    top1 = (("k", 1),)
    # (label, value of a model, TFMA's candidate-minus-baseline diff, whether a change is meaningful)
    specs = [
        ("Accuracy (gated)", lambda m: results.metric(evaluation.ACCURACY, m),
         results.metric(evaluation.ACCURACY, diff=True), True),
        ("Examples", lambda m: results.metric(evaluation.EXAMPLE_COUNT, m), None, False),
        ("Macro-averaged F1", lambda m: f1[m], None, True),
        ("Calibration (mean top-1 probability / accuracy; 1 is ideal)",
         lambda m: results.metric(evaluation.CALIBRATION, m, sub_key=top1),
         results.metric(evaluation.CALIBRATION, sub_key=top1, diff=True), True),
        ("Expected calibration error (top-1, from TFMA's calibration plot)", lambda m: ece[m], None, True),
    ]
    rows = []
    for label, value, delta, has_change in specs:
        candidate = value(results.candidate)
        baseline = value(results.baseline) if results.baseline is not None else None
        if delta is None and has_change and candidate is not None and baseline is not None:
            delta = candidate - baseline
        rows.append((label, candidate, baseline, delta))
    return rows


# ---------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1100px;
 padding:0 1em;color:#1d2327;background:#fff}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #e3e6e8;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0} th,td{border:1px solid #d5d9dc;padding:.3em .6em;text-align:left}
th{background:#f3f5f6} td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{padding:1em 1.2em;border-radius:6px;font-size:1.25em;font-weight:600}
.ok{background:#e3f5e6;border:1px solid #4caf50} .bad{background:#fdecea;border:1px solid #e53935}
.neutral{background:#f3f5f6;border:1px solid #b0b7bc}
.passed{color:#2e7d32;font-weight:600} .FAILED{color:#c62828;font-weight:600} .muted{color:#69737a}
img{max-width:100%;height:auto;border:1px solid #eee} code{font-size:.9em}
"""


def _e(value) -> str:
    return html.escape(str(value))


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and np.isnan(value):
        return "n/a"
    if isinstance(value, (int, np.integer)) or (value.is_integer() and abs(value) >= 2):
        return str(int(value))  # counts (TFMA reports them as floats)
    return f"{value:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{_fmt(c)}</td>' if i >= numeric_from and not isinstance(c, str)
                         else f"<td>{c if isinstance(c, _Raw) else _e(c)}</td>" for i, c in enumerate(row))
        + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class _Raw(str):
    """Already-escaped HTML for a table cell."""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _section(section_id: str, title: str, body: str) -> str:
    return f'<section id="{section_id}"><h2>{_e(title)}</h2>\n{body}\n</section>'


def _verdict(data: RunData) -> str:
    evaluator, pusher = data.nodes.get("Evaluator"), data.nodes.get("Pusher")
    if evaluator is None or data.evaluation is None:
        return _section("verdict", "Verdict", '<p class="verdict neutral">No evaluation in this run '
                        "(the pipeline stopped before the Evaluator).</p>")
    blessed = _prop(evaluator, "blessing", "blessed") == 1
    pushed = _prop(pusher, "pushed_model", "pushed") == 1
    destination = _prop(pusher, "pushed_model", "pushed_destination")
    if blessed:
        where = (f"pushed to <code>{_e(destination)}</code>" if pushed else "not pushed")
        if pusher is not None and pusher.state == "CACHED":
            where += " (Pusher CACHED: pushed by an earlier run, nothing new pushed)"
        banner = f'<p class="verdict ok">BLESSED: the candidate passed every threshold; {where}.</p>'
    else:
        banner = ('<p class="verdict bad">NOT BLESSED: the candidate failed the gate; nothing was '
                  "pushed and the served model is unchanged.</p>")
    if evaluator.state == "CACHED":
        banner += ('<p class="muted">Evaluator CACHED: the same candidate and baseline were '
                   "evaluated by an earlier run; these are that run's results.</p>")
    rows = [(t.metric, t.kind, t.slice_desc, t.value, t.bound,
             _Raw(f'<span class="{_e(t.status.split()[0])}">{_e(t.status)}</span>'), t.message)
            for t in data.evaluation.thresholds]
    table = _table(["metric", "threshold", "slice", "value", "bound", "result", "details"], rows, 3)
    tfma_note = (f'<p class="muted">TFMA validation_ok = {str(data.evaluation.validation_ok).lower()}; '
                 f"change values are candidate minus baseline.</p>")
    return _section("verdict", "Verdict", banner + table + tfma_note)


def _overall(data: RunData) -> str:
    results = data.evaluation
    rows = overall_rows(results, data.class_names)
    if results.baseline is None:
        body = _table(["metric", "candidate"], [r[:2] for r in rows])
    else:
        body = _table(["metric", "candidate", "baseline", "change"], rows)
    return _section("overall-metrics", "Overall metrics (eval split)", body)


def _per_class(data: RunData) -> str:
    rows, source = class_rows(data.evaluation, data.class_names)
    table = _table(["class", "examples", "precision", "recall", "F1"],
                   [(r.name, r.support, r.precision, r.recall, r.f1) for r in rows])
    return _section("per-class-metrics", "Per-class metrics",
                    table + f'<p class="muted">Source: {_e(source)}. Precision n/a: no example was '
                    "predicted as that class.</p>")


def _confusion(data: RunData, figures: Dict[str, bytes]) -> str:
    matrix = data.evaluation.confusion.get(data.evaluation.candidate)
    if matrix is None:
        return _section("confusion-matrix", "Confusion matrix", "<p>No confusion matrix in the results.</p>")
    png = report_plots.confusion_matrix(matrix, data.class_names, "Candidate: eval split")
    figures["confusion_matrix.png"] = png
    return _section("confusion-matrix", "Confusion matrix",
                    _img(png, "confusion matrix heat map") + '<p class="muted">Rows: true class; '
                    "columns: predicted (argmax) class; colour: share of the row.</p>")


def _baseline(data: RunData, figures: Dict[str, bytes]) -> str:
    results = data.evaluation
    if results.baseline is None:
        return _section("baseline", "Comparison with the baseline",
                        "<p>No baseline: no other model had been blessed, so only the absolute "
                        "thresholds applied (first blessed model).</p>")
    blessing = data.nodes["Evaluator"].outputs["blessing"][0]
    baseline_uri = run_summary.custom_property(blessing, "baseline_model")
    rows = []
    for slice_key in [report_tfma.OVERALL] + results.class_slices():
        label = "overall" if not slice_key else ", ".join(f"{k}={v}" for k, v in slice_key)
        rows.append((label, results.metric(evaluation.ACCURACY, slice_key=slice_key),
                     results.metric(evaluation.ACCURACY, results.baseline, slice_key=slice_key),
                     results.metric(evaluation.ACCURACY, slice_key=slice_key, diff=True)))
    body = (f"<p>Baseline: the latest blessed model other than the candidate, "
            f"<code>{_e(baseline_uri)}</code>.</p>"
            + _table(["accuracy on", "candidate", "baseline", "change"], rows))
    matrix = results.confusion.get(results.baseline)
    if matrix is not None:
        png = report_plots.confusion_matrix(matrix, data.class_names, "Baseline: eval split")
        figures["baseline_confusion_matrix.png"] = png
        body += _img(png, "baseline confusion matrix heat map")
    return _section("baseline", "Comparison with the baseline", body)


def _calibration(data: RunData, figures: Dict[str, bytes]) -> str:
    results = data.evaluation
    curves = {name: results.calibration[model] for name, model in
              (("candidate", results.candidate), ("baseline", results.baseline))
              if model is not None and results.calibration.get(model)}
    if not curves:
        return _section("calibration", "Calibration", "<p>No calibration plot in the results.</p>")
    png = report_plots.reliability(curves)
    figures["reliability.png"] = png
    return _section("calibration", "Calibration", _img(png, "reliability diagram") +
                    '<p class="muted">Expected calibration error = sum over probability buckets of '
                    "|mean top-1 probability - top-1 accuracy| weighted by the bucket's share.</p>")


def _training(data: RunData, figures: Dict[str, bytes]) -> str:
    if data.history is None:
        return _section("training", "Training", "<p>No history.json in the Trainer's output.</p>")
    config = data.history.get("config", {})
    keys = ("epochs", "batch_size", "learning_rate", "optimizer", "schedule", "image_size",
            "model_variant", "weights")
    facts = [(k, config[k]) for k in keys if k in config]
    facts += [("train examples", data.history.get("train_examples")),
              ("steps per epoch", data.history.get("steps_per_epoch")),
              ("precision policy", data.history.get("precision")),
              ("replicas", data.history.get("replicas"))]
    body = _table(["setting", "value"], [(k, _Raw(_e(v))) for k, v in facts if v is not None])
    series = {k: v for k, v in data.history.get("history", {}).items() if isinstance(v, list) and v}
    if series:
        png = report_plots.training_curves(series)
        figures["training_curves.png"] = png
        body += _img(png, "training curves")
    if data.lr_schedules:
        body += "<h3>Learning-rate schedule</h3>"
    for name, png in data.lr_schedules.items():
        figures[name] = png
        body += _img(png, f"learning-rate schedule ({name})")
    return _section("training", "Training", body)


def _data(data: RunData, figures: Dict[str, bytes]) -> str:
    report = data.ingest
    if report is None:
        return _section("data", "Data", "<p>No ingest report in this run.</p>")
    counts = report["ingested_by_split_and_class"]
    splits = list(counts)
    rows = [(c, *[counts[s].get(c, 0) for s in splits], sum(counts[s].get(c, 0) for s in splits))
            for c in report["class_names"]]
    rows.append(("total", *[sum(counts[s].values()) for s in splits], report["ingested"]))
    body = (f"<p>Data root <code>{_e(report['data_root'])}</code> ({_e(report['split_mode'])} split): "
            f"{report['files_seen']} files seen, {report['ingested']} ingested, "
            f"{report['skipped']} skipped.</p>"
            + _table(["class", *splits, "total"], rows))
    png = report_plots.examples_per_class(counts)
    figures["examples_per_class.png"] = png
    body += _img(png, "examples per class and split")
    body += "<h3>Skipped files by reason</h3>"
    if report["skipped_by_reason"]:
        body += _table(["reason", "files"], sorted(report["skipped_by_reason"].items()))
        skipped = report["skipped_files"]
        body += _table(["file", "split", "class", "reason", "detail"],
                       [(s["path"], s["split"], s["class_name"], s["reason"], s.get("detail", ""))
                        for s in skipped[:MAX_SKIPPED_ROWS]], numeric_from=5)
        if len(skipped) > MAX_SKIPPED_ROWS:
            body += (f"<p class='muted'>... and {len(skipped) - MAX_SKIPPED_ROWS} more "
                     "(ingest_report.json).</p>")
    else:
        body += "<p>None.</p>"
    return _section("data", "Data", body)


def _components(data: RunData) -> str:
    rows = [(node_id, node.state, ", ".join(f"{k}: {a.uri}" for k, arts in sorted(node.outputs.items())
                                            for a in arts))
            for node_id, node in sorted(data.nodes.items())]
    return _section("components", "Components of this run",
                    _table(["component", "state", "outputs"], rows, numeric_from=9))


def render(data: RunData) -> Tuple[str, Dict[str, bytes]]:
    """(HTML, {PNG file name: bytes}); every figure is also embedded in the HTML."""
    figures: Dict[str, bytes] = {}
    sections = [_verdict(data)]
    if data.evaluation is not None:
        sections += [_overall(data), _per_class(data), _confusion(data, figures),
                     _baseline(data, figures), _calibration(data, figures)]
    sections += [_training(data, figures), _data(data, figures), _components(data)]
    title = f"{data.pipeline_name or 'pipeline'} run {data.run_id}"
    generated = datetime.datetime.now().isoformat(timespec="seconds")
    page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n"
            f"<h1>{_e(title)}</h1><p class=\"muted\">Report generated {generated} from "
            f"<code>{_e(data.metadata_path)}</code>.</p>\n" + "\n".join(sections) + "\n</body></html>\n")
    return page, figures


# ---------------------------------------------------------------- entry points

def default_out_dir(data: RunData) -> str:
    if not data.root:
        raise ValueError("cannot locate the pipeline root of this run; pass out_dir")
    return os.path.join(data.root, REPORTS_DIR, re.sub(r"[^A-Za-z0-9._-]", "-", data.run_id))


def _check_not_in_data(out_dir: str, data: RunData) -> None:
    data_root = (data.ingest or {}).get("data_root")
    if data_root and "://" not in data_root:
        data_root, out = os.path.abspath(data_root), os.path.abspath(out_dir)
        if os.path.commonpath([data_root, out]) == data_root:
            raise ValueError(f"refusing to write the report inside the input data {data_root}")


def write_report(metadata_path: str, out_dir: Optional[str] = None, run_id: Optional[str] = None) -> str:
    """Writes report.html and its PNGs for one run (default: the latest); returns the HTML path.

    out_dir defaults to <pipeline root>/reports/<run id>.
    """
    data = collect(metadata_path, run_id)
    out_dir = out_dir or default_out_dir(data)
    _check_not_in_data(out_dir, data)
    page, figures = render(data)
    tf.io.gfile.makedirs(out_dir)
    for name, png in figures.items():
        with tf.io.gfile.GFile(os.path.join(out_dir, name), "wb") as f:
            f.write(png)
    path = os.path.join(out_dir, REPORT_FILE)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(page)
    return path


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", help="pipeline output dir, pipeline root, or metadata.sqlite")
    parser.add_argument("--run-id", help="the run to report (default: the latest)")
    parser.add_argument("--out", help="output folder (default: <pipeline root>/reports/<run id>)")
    parser.add_argument("--list", action="store_true", help="list the run ids, oldest first, and exit")
    args = parser.parse_args(argv)
    metadata_path = find_metadata(args.path)
    if args.list:
        print("\n".join(run_summary.run_ids(metadata_path)))
        return 0
    print(write_report(metadata_path, args.out, args.run_id))
    return 0


if __name__ == "__main__":
    sys.exit(main())
