"""The run report as one self-contained HTML page: its sections, tables and embedded figures.

Sections: verdict (each threshold with its value and bound, from TFMA's validation result, and
what failed in words), overall and per-class metrics with the per-class gate, confusion matrix,
comparison with the baseline, the reference set (only in a run with one), calibration (the
Trainer's temperature, the calibration error before and after), the
edge models (TFLite, only in a run with an EdgeEvaluator: run_report/edge_models.py),
training (history.json, the learning-rate schedule plots, the TensorBoard command) and data
(ingest_report.json; the data validation: run_report/data_validation.py).
(Named html_page, not html, so that it does not shadow the standard library's html module.)
"""
import base64
import datetime
import html
from typing import Collection, Dict, List, Optional, Sequence, Tuple

import numpy as np

from common import pipeline_names, store, tfma_results
from run_report import data_validation, edge_models, label_vetting, plots, tables, tensorboard_scalars
from run_report.run_data import RunData
from trainer_module import names

SECTION_IDS = ("verdict", "overall-metrics", "per-class-metrics", "confusion-matrix", "baseline",
               "calibration", "training", "data", "components")
# A run with an EdgeEvaluator also has edge_models.SECTION_ID, after "calibration"; a run with a
# fixed reference set has REFERENCE_SECTION_ID after "baseline"; a run with a LabelVetter has
# label_vetting.SECTION_ID after "data".
REFERENCE_SECTION_ID = "reference-set"
# Figures the report draws (the Trainer's learning-rate plots keep their own file names).
CONFUSION_MATRIX_PNG = "confusion_matrix.png"
BASELINE_CONFUSION_MATRIX_PNG = "baseline_confusion_matrix.png"
RELIABILITY_PNG = "reliability.png"
TRAINING_CURVES_PNG = "training_curves.png"
EXAMPLES_PER_CLASS_PNG = "examples_per_class.png"
MAX_SKIPPED_ROWS = 200
_TRAINING_SETTINGS = ("epochs", "batch_size", "learning_rate", "optimizer", "schedule", "image_size",
                      "model_variant", "weights")

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


class Markup(str):
    """Already-escaped HTML for a table cell."""


def _e(value) -> str:
    return html.escape(str(value))


def format_number(value, digits: int = 3) -> str:
    """A number for a table: "–" when absent, "n/a" for NaN, an integer (a count) as it is, any
    other number with 3 decimals."""
    if value is None:
        return "–"
    if isinstance(value, (int, np.integer)):
        return str(value)
    return "n/a" if np.isnan(value) else f"{value:.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence], numeric_columns: Collection[int] = ()) -> str:
    """An HTML table. Cells of numeric_columns (indices into header) are right-aligned: numbers or
    None formatted, text (a number formatted by the caller, a verdict in a row of numbers) as it
    is; other cells are text. Text is escaped unless it is Markup."""
    if any(not 0 <= i < len(header) for i in numeric_columns):
        raise ValueError(f"numeric columns {sorted(numeric_columns)} outside the {len(header)} columns")

    def text(value) -> str:
        return value if isinstance(value, Markup) else _e(value)

    def cell(i: int, value) -> str:
        if i in numeric_columns:
            return f'<td class="num">{text(value) if isinstance(value, str) else format_number(value)}</td>'
        return f"<td>{text(value)}</td>"

    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(i, c) for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _section(section_id: str, title: str, body: str) -> str:
    return f'<section id="{section_id}"><h2>{_e(title)}</h2>\n{body}\n</section>'


def _blessed(node) -> Optional[bool]:
    """An Evaluator node's verdict (None without the node)."""
    if node is None:
        return None
    return store.output_property(node, pipeline_names.BLESSING_OUTPUT, pipeline_names.PROP_BLESSED) == 1


def _failure_list(node) -> str:
    """TFMA's failed thresholds of an Evaluator node, in words (pipeline/evaluation.py), as a list."""
    from pipeline import evaluation

    uri = node.uri(pipeline_names.EVALUATION_OUTPUT) if node is not None else None
    try:
        lines = evaluation.failure_lines(uri) if uri else []
    except Exception:  # noqa: BLE001 - the thresholds table below says the same, less directly
        return ""
    return "<ul>" + "".join(f"<li>{_e(line)}</li>" for line in lines) + "</ul>" if lines else ""


def _thresholds_table(results) -> str:
    rows = [(t.metric, t.kind, t.slice_desc, t.value, t.bound,
             Markup(f'<span class="{_e(t.status.split()[0])}">{_e(t.status)}</span>'), t.message)
            for t in results.thresholds]
    return table(["metric", "threshold", "slice", "value", "bound", "result", "details"], rows,
                 numeric_columns={3})


def _verdict(data: RunData) -> str:
    evaluator, pusher = data.nodes.get(pipeline_names.EVALUATOR_NODE), data.nodes.get(pipeline_names.PUSHER_NODE)
    reference = data.nodes.get(pipeline_names.REFERENCE_EVALUATOR_NODE)
    if evaluator is None or data.evaluation is None:
        if data.validation is not None and data.validation.stopped:
            return _section("verdict", "Verdict", data_validation.verdict_html(data.validation)
                            + '<p>See <a href="#data">Data</a> for what the data validation found.</p>')
        if data.label_vetting is not None and data.label_vetting.stops:
            return _section("verdict", "Verdict", '<p class="verdict bad">STOPPED by label vetting before training '
                            "(nothing trained or pushed): " + _e("; ".join(data.label_vetting.finding_lines()))
                            + f'</p><p>See <a href="#{label_vetting.SECTION_ID}">{label_vetting.TITLE}</a>.</p>')
        return _section("verdict", "Verdict", '<p class="verdict neutral">No evaluation in this run '
                        "(the pipeline stopped before the Evaluator).</p>")
    blessed_eval, blessed_reference = _blessed(evaluator), _blessed(reference)
    blessed = blessed_eval and blessed_reference is not False
    pushed = store.output_property(pusher, pipeline_names.PUSHED_MODEL_OUTPUT, pipeline_names.PROP_PUSHED) == 1
    destination = store.output_property(pusher, pipeline_names.PUSHED_MODEL_OUTPUT,
                                        pipeline_names.PROP_PUSHED_DESTINATION)
    where_checked = " on the eval split and on the reference set" if reference is not None else ""
    if blessed:
        where = (f"pushed to <code>{_e(destination)}</code>" if pushed else "not pushed")
        if pusher is not None and pusher.state == "CACHED":
            where += " (Pusher CACHED: pushed by an earlier run, nothing new pushed)"
        banner = f'<p class="verdict ok">BLESSED: the candidate passed every threshold{where_checked}; {where}.</p>'
    else:
        failed_on = " and ".join(name for name, ok in (("the eval split", blessed_eval),
                                                       ("the reference set", blessed_reference)) if ok is False)
        banner = (f'<p class="verdict bad">NOT BLESSED: the candidate failed the gate on {failed_on}; nothing was '
                  "pushed and the served model is unchanged.</p>")
    if evaluator.state == "CACHED":
        banner += ('<p class="muted">Evaluator CACHED: the same candidate and baseline were '
                   "evaluated by an earlier run; these are that run's results.</p>")
    why = _failure_list(evaluator) if blessed_eval is False else ""
    if why:
        banner += "<p>Failed on the eval split:</p>" + why
    if blessed_reference is False:
        banner += ('<p>Failed on the reference set (see <a href="#reference-set">Reference set</a>):</p>'
                   + _failure_list(reference))
    tfma_note = (f'<p class="muted">TFMA validation_ok = {str(data.evaluation.validation_ok).lower()}; '
                 f"change values are candidate minus baseline; a class's recall is the accuracy on the "
                 f"slice of its true class.</p>")
    return _section("verdict", "Verdict", banner + _thresholds_table(data.evaluation) + tfma_note)


def _overall(data: RunData) -> str:
    rows = tables.overall_rows(data.evaluation, data.class_names)
    if data.evaluation.baseline is None:
        body = table(["metric", "candidate"], [r[:2] for r in rows], numeric_columns={1})
    else:
        body = table(["metric", "candidate", "baseline", "change"], rows, numeric_columns={1, 2, 3})
    return _section("overall-metrics", "Overall metrics (eval split)", body)


def _verdict_cell(status: str):
    return Markup(f'<span class="{_e(status.split()[0])}">{_e(status)}</span>') if status else "–"


def class_gate_table(results, class_names) -> str:
    """Each class's recall against the per-class gate (floor, largest drop), with the verdicts."""
    rows = [(r.name, r.recall, r.baseline_recall, r.change, _verdict_cell(r.floor), _verdict_cell(r.max_drop),
             r.details) for r in tables.class_gate_rows(results, class_names)]
    return table(["class", "recall", "baseline recall", "change", "floor", "largest drop", "details"], rows,
                 numeric_columns={1, 2, 3})


def _per_class(data: RunData) -> str:
    rows = tables.class_rows(data.evaluation, data.class_names)
    body = table(["class", "examples", "precision", "recall", "F1"],
                 [(r.name, r.support, r.precision, r.recall, r.f1) for r in rows],
                 numeric_columns={1, 2, 3, 4})
    body += ('<p class="muted">TFMA per-class metrics: a class is predicted when it is the '
             "top-1 (argmax) class. Precision n/a: no example was predicted as that class.</p>")
    body += "<h3>Per-class gate</h3>" + class_gate_table(data.evaluation, data.class_names)
    return _section("per-class-metrics", "Per-class metrics", body)


def _confusion(data: RunData, figures: Dict[str, bytes]) -> str:
    matrix = data.evaluation.confusion.get(data.evaluation.candidate)
    if matrix is None:
        return _section("confusion-matrix", "Confusion matrix", "<p>No confusion matrix in the results.</p>")
    png = plots.confusion_matrix(matrix, data.class_names, "Candidate: eval split")
    figures[CONFUSION_MATRIX_PNG] = png
    return _section("confusion-matrix", "Confusion matrix",
                    _img(png, "confusion matrix heat map") + '<p class="muted">Rows: true class; '
                    "columns: predicted (argmax) class; colour: share of the row.</p>")


def _baseline(data: RunData, figures: Dict[str, bytes]) -> str:
    results = data.evaluation
    if results.baseline is None:
        return _section("baseline", "Comparison with the baseline",
                        "<p>No baseline: no other model had been blessed, so only the absolute "
                        "thresholds applied (first blessed model).</p>")
    baseline_uri = store.output_property(data.nodes[pipeline_names.EVALUATOR_NODE], pipeline_names.BLESSING_OUTPUT,
                                         pipeline_names.PROP_BASELINE_MODEL)
    body = (f"<p>Baseline: the latest blessed model other than the candidate, "
            f"<code>{_e(baseline_uri)}</code>.</p>"
            + table(["accuracy on", "candidate", "baseline", "change"],
                    tables.accuracy_by_slice_rows(results), numeric_columns={1, 2, 3}))
    matrix = results.confusion.get(results.baseline)
    if matrix is not None:
        png = plots.confusion_matrix(matrix, data.class_names, "Baseline: eval split")
        figures[BASELINE_CONFUSION_MATRIX_PNG] = png
        body += _img(png, "baseline confusion matrix heat map")
    return _section("baseline", "Comparison with the baseline", body)


def _calibration(data: RunData, figures: Dict[str, bytes]) -> str:
    results = data.evaluation
    curves = {name: results.calibration[model] for name, model in
              (("candidate", results.candidate), ("baseline", results.baseline))
              if model is not None and results.calibration.get(model)}
    if not curves:
        return _section("calibration", "Calibration", "<p>No calibration plot in the results.</p>")
    png = plots.reliability(curves)
    figures[RELIABILITY_PNG] = png
    return _section("calibration", "Calibration", _temperature(data) + _img(png, "reliability diagram") +
                    '<p class="muted">Expected calibration error = sum over probability buckets of '
                    "|mean top-1 probability - top-1 accuracy| weighted by the bucket's share.</p>")


def _temperature(data: RunData) -> str:
    """The Trainer's temperature and the calibration error before and after it (history.json),
    beside what the Evaluator measured on the served model."""
    fitted = (data.history or {}).get(names.HISTORY_CALIBRATION) or {}
    if not fitted:
        return "<p>No temperature was fitted: the probabilities are served as the network was trained.</p>"
    results = data.evaluation
    rows = [("expected calibration error, eval split (Trainer)", fitted[names.CALIBRATION_ECE_BEFORE],
             fitted[names.CALIBRATION_ECE_AFTER]),
            ("mean top-1 probability, eval split (Trainer)", fitted[names.CALIBRATION_MEAN_TOP1_BEFORE],
             fitted[names.CALIBRATION_MEAN_TOP1_AFTER]),
            ("negative log-likelihood, eval split (Trainer)", fitted[names.CALIBRATION_NLL_BEFORE],
             fitted[names.CALIBRATION_NLL_AFTER]),
            ("top-1 accuracy, eval split (Trainer)", fitted[names.CALIBRATION_ACCURACY],
             fitted[names.CALIBRATION_ACCURACY]),
            ("expected calibration error, eval split (Evaluator, the served model)", None,
             tfma_results.expected_calibration_error(results.calibration.get(results.candidate, [])))]
    if data.reference is not None:
        rows.append(("expected calibration error, reference set (Evaluator, the served model)", None,
                     tfma_results.expected_calibration_error(
                         data.reference.calibration.get(data.reference.candidate, []))))
    bound = (" It stopped at its bound: the eval split has too few errors to calibrate on."
             if fitted.get(names.CALIBRATION_AT_BOUND) else "")
    return (f"<p>Temperature scaling: the served probabilities are softmax(logits / T) with "
            f"<b>T = {fitted[names.CALIBRATION_TEMPERATURE]:.3f}</b>, fitted by the Trainer on the "
            f"{fitted[names.CALIBRATION_EXAMPLES]} eval images (least negative log-likelihood); T &lt; 1 "
            f"sharpens an under-confident network. It changes no prediction's class.{_e(bound)}</p>"
            + table(["", "before (T = 1)", "after (served)"], rows, numeric_columns={1, 2})
            + '<p class="muted">The eval split both fits T and measures "after" there; the reference set, '
              "when given, is an independent check.</p>")


def _reference(data: RunData) -> str:
    """The fixed reference set: its version, the verdict on it, and the candidate against the
    baseline there."""
    node = data.nodes.get(pipeline_names.REFERENCE_EVALUATOR_NODE)
    ingest = data.reference_ingest
    where = (f"<p>Fixed reference set <code>{_e(ingest.data_root)}</code>: {ingest.ingested} images "
             f"({', '.join(f'{c} {n}' for c, n in _per_class_counts(ingest).items())}), version "
             f"(fingerprint of its files) <code>{_e((data.reference_fingerprint or '')[:16])}</code>. "
             "Candidate and baseline are scored on every image of it with the same thresholds as on the "
             "eval split; the model is pushed only if it passes on both.</p>" if ingest is not None else "")
    results = data.reference
    if results is None:
        return _section(REFERENCE_SECTION_ID, "Reference set",
                        where + "<p>No evaluation on the reference set in this run.</p>")
    blessed = _blessed(node)
    banner = (f'<p class="verdict {"ok" if blessed else "bad"}">'
              f'{"Passed" if blessed else "FAILED"} on the reference set.</p>')
    rows = tables.overall_rows(results, data.class_names)
    overall = (table(["metric", "candidate"], [r[:2] for r in rows], numeric_columns={1}) if results.baseline is None
               else table(["metric", "candidate", "baseline", "change"], rows, numeric_columns={1, 2, 3}))
    return _section(REFERENCE_SECTION_ID, "Reference set",
                    where + banner + _failure_list(node) + overall + "<h3>Per-class gate</h3>"
                    + class_gate_table(results, data.class_names) + "<h3>Thresholds</h3>"
                    + _thresholds_table(results))


def _per_class_counts(report) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for per_class in report.ingested_by_split_and_class.values():
        for name, n in per_class.items():
            counts[name] = counts.get(name, 0) + n
    return counts


def _tensorboard(data: RunData) -> str:
    log_dir = tensorboard_scalars.tensorboard_dir(data.nodes)
    if log_dir is None:
        return ""
    return (f"<p>TensorBoard: <code>{_e(tensorboard_scalars.tensorboard_command(log_dir))}</code> (loss, "
            "accuracy and learning rate per epoch, the learning rate per step, the exported model's "
            "evaluation after training (final/) and the Evaluator's metrics (evaluator/)).</p>")


def _training(data: RunData, figures: Dict[str, bytes]) -> str:
    if data.history is None:
        return _section("training", "Training", f"<p>No {names.HISTORY_FILE} in the Trainer's output.</p>"
                        + _tensorboard(data))
    config = data.history.get(names.HISTORY_CONFIG, {})
    facts = [(k, config[k]) for k in _TRAINING_SETTINGS if k in config]
    facts += [("train examples", data.history.get(names.HISTORY_TRAIN_EXAMPLES)),
              ("steps per epoch", data.history.get(names.HISTORY_STEPS_PER_EPOCH)),
              ("precision policy", data.history.get(names.HISTORY_PRECISION)),
              ("replicas", data.history.get(names.HISTORY_REPLICAS))]
    # Settings as written (a learning rate of 1e-06 must not read 0.000): a text column.
    body = table(["setting", "value"], [(k, v) for k, v in facts if v is not None])
    body += _tensorboard(data)
    series = {k: v for k, v in data.history.get(names.HISTORY_SERIES, {}).items() if isinstance(v, list) and v}
    if series:
        png = plots.training_curves(series)
        figures[TRAINING_CURVES_PNG] = png
        body += _img(png, "training curves")
    if data.lr_schedules:
        body += "<h3>Learning-rate schedule</h3>"
    for name, png in data.lr_schedules.items():
        figures[name] = png
        body += _img(png, f"learning-rate schedule ({name})")
    return _section("training", "Training", body)


def _data(data: RunData, figures: Dict[str, bytes]) -> str:
    report = data.ingest
    validation = data_validation.section_html(data.validation, figures, table, _img)
    if report is None:
        return _section("data", "Data", "<p>No ingest report in this run.</p>" + validation)
    splits, rows = tables.ingest_rows(report)
    body = (f"<p>Data root <code>{_e(report.data_root)}</code> ({_e(report.split_mode)} split): "
            f"{report.files_seen} files seen, {report.ingested} ingested, "
            f"{report.skipped} skipped.</p>"
            + table(["class", *splits, "total"], rows, numeric_columns=range(1, len(splits) + 2)))
    png = plots.examples_per_class(report.ingested_by_split_and_class)
    figures[EXAMPLES_PER_CLASS_PNG] = png
    body += _img(png, "examples per class and split")
    body += "<h3>Skipped files by reason</h3>"
    if not report.skipped_by_reason:
        return _section("data", "Data", body + "<p>None.</p>" + validation)
    body += table(["reason", "files"], sorted(report.skipped_by_reason.items()), numeric_columns={1})
    skipped = report.skipped_files
    body += table(["file", "split", "class", "reason", "detail"],
                  [(s.path, s.split, s.class_name, s.reason, s.detail)
                   for s in skipped[:MAX_SKIPPED_ROWS]])
    if len(skipped) > MAX_SKIPPED_ROWS:
        body += (f"<p class='muted'>... and {len(skipped) - MAX_SKIPPED_ROWS} more "
                 f"({pipeline_names.INGEST_REPORT_FILE}).</p>")
    return _section("data", "Data", body + validation)


def _label_vetting(data: RunData) -> str:
    node = data.nodes.get(pipeline_names.LABEL_VETTER_NODE)
    return _section(label_vetting.SECTION_ID, label_vetting.TITLE,
                    label_vetting.section_html(data.label_vetting, node.state if node else None, table))


def _edge_models(data: RunData) -> str:
    return _section(edge_models.SECTION_ID, edge_models.TITLE, edge_models.section_html(data.edge, table, Markup))


def _components(data: RunData) -> str:
    rows = [(node_id, node.state, ", ".join(f"{k}: {a.uri}" for k, arts in sorted(node.outputs.items())
                                            for a in arts))
            for node_id, node in sorted(data.nodes.items())]
    return _section("components", "Components of this run", table(["component", "state", "outputs"], rows))


def render(data: RunData) -> Tuple[str, Dict[str, bytes]]:
    """(HTML page, {PNG file name: bytes}); every figure is also embedded in the page."""
    figures: Dict[str, bytes] = {}
    sections: List[str] = [_verdict(data)]
    if data.evaluation is not None:
        sections += [_overall(data), _per_class(data), _confusion(data, figures), _baseline(data, figures)]
        if pipeline_names.REFERENCE_EVALUATOR_NODE in data.nodes:  # a run with a fixed reference set
            sections.append(_reference(data))
        sections.append(_calibration(data, figures))
    if data.edge is not None:  # only a run with an EdgeEvaluator: after the SavedModel's evaluation
        sections.append(_edge_models(data))
    sections += [_training(data, figures), _data(data, figures)]
    if pipeline_names.LABEL_VETTER_NODE in data.nodes:  # a local run: the served model vetted the labels
        sections.append(_label_vetting(data))
    sections.append(_components(data))
    title = f"{data.pipeline_name or 'pipeline'} run {data.run_id}"
    generated = datetime.datetime.now().isoformat(timespec="seconds")
    page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n"
            f"<h1>{_e(title)}</h1><p class=\"muted\">Report generated {generated} from "
            f"<code>{_e(data.metadata_path)}</code>.</p>\n" + "\n".join(sections) + "\n</body></html>\n")
    return page, figures
