"""The model card of a pushed version: what it is, read from the run's artifacts (and nothing else).

The Pusher builds it (collect) from its input artifacts while it pushes, and writes it with the
version (card_files: pipeline_names.MODEL_CARD_JSON, _MD and _HTML in the version's assets.extra/),
inside the same atomic step as the model. The JSON object is the card; the Markdown and HTML pages
(common/model_card_pages.py) show it. Its keys:

    card_format     MODEL_CARD_FORMAT
    push            version, destination, pushed_at (ISO 8601 UTC), fingerprint (push_source.json's)
    intended_use    task, classes, input, output, limits (sentences, with their figures)
    data            data_root, split_mode, fingerprint (ImageExampleGen's input fingerprint; null
                    where no driver ran), files_seen, ingested, skipped, skipped_by_reason,
                    skipped_files (the first MAX_SKIPPED_LISTED: path, split, class_name, reason,
                    detail), examples {split: {class: n}}
    training        config (the Trainer's TrainConfig, from history.json), epochs, train_examples,
                    eval_examples, steps_per_epoch, precision, final_epoch {loss, accuracy,
                    val_loss, val_accuracy}, bn_recalibration (history.json's, null when absent)
    evaluation      examples, accuracy, accuracy_interval_95 [low, high] (Wilson), macro_f1,
                    calibration (mean top-1 probability / accuracy), ece, baseline (null, or
                    {accuracy, change}), per_class [{class, support, precision, recall, f1}],
                    confusion_matrix [[true i predicted j]], class_names, confusions (the largest
                    off-diagonal cells: true, predicted, count, share of the true class),
                    calibration_buckets [{lower, upper, count, mean_probability, accuracy}]
    verdict         blessed, validation_ok, thresholds [{metric, kind, slice, value, bound, status,
                    message}], edge_gate {flavour: {passed, drop, max_drop, reason, pushed}},
                    data_gate (null, or {findings, blocking, proceeded_despite_anomalies})
    edge_models     [{model, accuracy, size_mb, latency_ms, batch_latency_ms, pushed}] (SavedModel
                    first, the reference of the edge gate; empty without an EdgeEvaluation)
    lineage         pipeline, run_id, artifacts {role: {id, uri}} (ML Metadata artifact ids)

A section whose artifact the Pusher did not get is null (a pipeline without it, or a test).

Why not the Model Card Toolkit: model-card-toolkit 2.0.0 (its latest release) requires
tensorflow-model-analysis < 0.42 and absl-py < 1.1, and 1.3.x needs ml-metadata 1.5 (no Python 3.10
wheel): none installs beside TFMA 0.47 / TFX 1.16 (uv's resolution, in docs/releases.md). The card
is therefore plain JSON with Markdown and HTML pages written here.
"""
import dataclasses
import json
import math
import os
from typing import Any, Dict, List, Optional, Sequence

from common import ingest_report, pipeline_names
from trainer_module import names

MODEL_CARD_FORMAT = 1
MAX_SKIPPED_LISTED = 20  # skipped files listed by name; ingest_report.json has them all
MAX_CONFUSIONS = 3  # the largest off-diagonal cells of the confusion matrix, named as known confusions
_Z95 = 1.959963984540054  # the normal quantile of a two-sided 95 % interval


@dataclasses.dataclass(frozen=True)
class ArtifactRef:
    """One input artifact of the Pusher: its ML Metadata id (None before it is recorded), URI and
    custom properties."""
    id: Optional[int]
    uri: str
    properties: Dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class CardSources:
    """What the Pusher hands the card: its input artifacts and where it runs. Only model and
    blessing are required."""
    pipeline_name: str
    run_id: Optional[str]
    model: ArtifactRef
    blessing: ArtifactRef
    evaluation: Optional[ArtifactRef] = None  # the Evaluator's ModelEvaluation (TFMA's output)
    examples: Optional[ArtifactRef] = None  # ImageExampleGen's Examples
    model_run: Optional[ArtifactRef] = None  # the Trainer's ModelRun (history.json)
    edge_evaluation: Optional[ArtifactRef] = None  # the EdgeEvaluator's EdgeEvaluation
    data_validation: Optional[ArtifactRef] = None  # the DataGate's DataValidationResult
    edge_pushed: Sequence[str] = ()  # the TFLite flavours pushed with this version
    edge_held_back: Dict[str, str] = dataclasses.field(default_factory=dict)  # {flavour: why not}


def _read_json(path: str) -> Optional[Any]:
    import tensorflow as tf  # gs:// artifacts on Vertex AI

    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def wilson_interval(successes: int, n: int, z: float = _Z95) -> Optional[List[float]]:
    """The Wilson score interval of a proportion (None for n = 0): honest near 0 and 1, where the
    normal approximation runs outside [0, 1] on a small eval split."""
    if n <= 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def _finite(value: Optional[float]) -> Optional[float]:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


# ---------------------------------------------------------------- sections

def data_section(examples: Optional[ArtifactRef]) -> Optional[Dict[str, Any]]:
    """What the model was trained and evaluated on, from the ingest report beside the examples."""
    if examples is None:
        return None
    path = examples.properties.get(pipeline_names.PROP_INGEST_REPORT) or os.path.join(
        examples.uri, pipeline_names.INGEST_REPORT_FILE)
    report_json = _read_json(path)
    if report_json is None:
        return None
    report = ingest_report.IngestReport.from_dict(report_json)
    return {
        "data_root": report.data_root, "split_mode": report.split_mode,
        "fingerprint": examples.properties.get(pipeline_names.PROP_INPUT_FINGERPRINT) or None,
        "files_seen": report.files_seen, "ingested": report.ingested, "skipped": report.skipped,
        "skipped_by_reason": dict(report.skipped_by_reason),
        "skipped_files": [dataclasses.asdict(s) for s in report.skipped_files[:MAX_SKIPPED_LISTED]],
        "examples": {split: dict(counts) for split, counts in report.ingested_by_split_and_class.items()},
        "ingest_report": path,
    }


def training_section(model_run: Optional[ArtifactRef]) -> Optional[Dict[str, Any]]:
    """The recipe the Trainer ran (its TrainConfig) and how training went, from history.json."""
    history = _read_json(os.path.join(model_run.uri, names.HISTORY_FILE)) if model_run else None
    if history is None:
        return None
    series = history.get(names.HISTORY_SERIES, {})
    final = {k: series[k][-1] for k in ("loss", "accuracy", "val_loss", "val_accuracy") if series.get(k)}
    return {
        "config": history.get(names.HISTORY_CONFIG), "epochs": len(series.get("loss", [])),
        "train_examples": history.get(names.HISTORY_TRAIN_EXAMPLES),
        "eval_examples": history.get(names.HISTORY_EVAL_EXAMPLES),
        "steps_per_epoch": history.get(names.HISTORY_STEPS_PER_EPOCH),
        "precision": history.get(names.HISTORY_PRECISION), "final_epoch": final,
        "bn_recalibration": history.get(names.HISTORY_BN_RECALIBRATION) or None,
    }


def _confusions(matrix: List[List[float]], class_names: Sequence[str]) -> List[Dict[str, Any]]:
    cells = [(matrix[i][j], i, j) for i in range(len(matrix)) for j in range(len(matrix)) if i != j and matrix[i][j] > 0]
    out = []
    for count, i, j in sorted(cells, key=lambda c: (-c[0], c[1], c[2]))[:MAX_CONFUSIONS]:
        row_total = sum(matrix[i])
        out.append({"true": class_names[i], "predicted": class_names[j], "count": int(count),
                    "share": count / row_total if row_total else None})
    return out


def evaluation_section(evaluation: Optional[ArtifactRef], class_names: Sequence[str]) -> Optional[Dict[str, Any]]:
    """Overall and per-class quality, confusions and calibration, as TFMA wrote them."""
    from common import tfma_results  # TFMA: only when there are results to read

    if evaluation is None or not tfma_results.has_results(evaluation.uri):
        return None
    results = tfma_results.load(evaluation.uri, len(class_names))
    rows = tfma_results.class_rows(results, class_names)
    accuracy = _finite(results.metric(pipeline_names.ACCURACY))
    examples = tfma_results.as_count(results.metric(pipeline_names.EXAMPLE_COUNT))
    matrix = results.confusion.get(results.candidate)
    matrix_list = [[int(v) for v in row] for row in matrix.tolist()] if matrix is not None else None
    buckets = results.calibration.get(results.candidate, [])
    baseline = None
    if results.baseline is not None:
        baseline = {"accuracy": _finite(results.metric(pipeline_names.ACCURACY, results.baseline)),
                    "change": _finite(results.metric(pipeline_names.ACCURACY, diff=True))}
    correct = sum(matrix_list[i][i] for i in range(len(matrix_list))) if matrix_list else None
    return {
        "examples": examples, "accuracy": accuracy,
        # From the confusion matrix's counts, which give accuracy (correct / examples) exactly.
        "accuracy_interval_95": wilson_interval(correct, examples) if correct is not None and examples else None,
        "macro_f1": tfma_results.macro_f1(rows),
        "calibration": _finite(results.metric(pipeline_names.CALIBRATION, sub_key=tfma_results.TOP1)),
        "ece": tfma_results.expected_calibration_error(buckets),
        "baseline": baseline,
        "per_class": [{"class": r.name, "support": r.support, "precision": _finite(r.precision),
                       "recall": _finite(r.recall), "f1": _finite(r.f1)} for r in rows],
        "class_names": list(class_names), "confusion_matrix": matrix_list,
        "confusions": _confusions(matrix_list, class_names) if matrix_list else [],
        "calibration_buckets": [{"lower": b.lower, "upper": b.upper, "count": int(b.count),
                                 "mean_probability": b.total_prediction / b.count,
                                 "accuracy": b.total_label / b.count} for b in buckets if b.count],
        "validation_ok": results.validation_ok,
        "thresholds": [{"metric": t.metric, "kind": t.kind, "slice": t.slice_desc, "value": _finite(t.value),
                        "bound": t.bound, "status": t.status, "message": t.message} for t in results.thresholds],
    }


def edge_sections(edge_evaluation: Optional[ArtifactRef], pushed: Sequence[str], held_back: Dict[str, str]):
    """(edge_models rows, edge_gate verdicts) from the EdgeEvaluator's file; ([], None) without one."""
    evaluation = _read_json(os.path.join(edge_evaluation.uri, pipeline_names.EDGE_EVALUATION_FILE)) if edge_evaluation else None
    if evaluation is None:
        return [], None
    models = evaluation.get(pipeline_names.EDGE_MODELS, {})
    rows = []
    for model in [pipeline_names.EDGE_SAVED_MODEL] + [m for m in models if m != pipeline_names.EDGE_SAVED_MODEL]:
        if model not in models:
            continue
        entry = models[model]
        rows.append({"model": model, "accuracy": entry.get(pipeline_names.EDGE_ACCURACY),
                     "size_mb": entry.get(pipeline_names.EDGE_SIZE_MB),
                     "latency_ms": entry.get(pipeline_names.EDGE_LATENCY_MS),
                     "batch_latency_ms": entry.get(pipeline_names.EDGE_BATCH_LATENCY_MS),
                     "pushed": None if model == pipeline_names.EDGE_SAVED_MODEL else model in pushed})
    gate = {}
    for flavour, verdict in evaluation.get(pipeline_names.EDGE_GATE, {}).items():
        gate[flavour] = {"passed": verdict.get(pipeline_names.EDGE_PASSED), "drop": verdict.get(pipeline_names.EDGE_DROP),
                         "max_drop": verdict.get(pipeline_names.EDGE_MAX_DROP),
                         "reason": held_back.get(flavour) or verdict.get(pipeline_names.EDGE_REASON) or "",
                         "pushed": flavour in pushed}
    return rows, gate


def data_gate_section(result: Optional[ArtifactRef]) -> Optional[Dict[str, Any]]:
    if result is None:
        return None
    props = result.properties
    return {"findings": props.get(pipeline_names.PROP_FINDINGS), "blocking": props.get(pipeline_names.PROP_BLOCKING),
            "proceeded_despite_anomalies": bool(props.get(pipeline_names.PROP_OVERRIDDEN))}


def _limits(card: Dict[str, Any]) -> List[str]:
    """The known limits, each with the figures that bound it."""
    classes = card["intended_use"]["classes"]
    limits = [f"Closed set: every image is put in one of the {len(classes)} classes above; a photo of anything "
              "else (people, interiors, documents) still gets one of them, with no 'unknown' answer."]
    data, evaluation = card["data"], card["evaluation"]
    if evaluation and evaluation["accuracy"] is not None:
        interval = evaluation["accuracy_interval_95"]
        source = f" from {data['data_root']}" if data else ""
        limits.append(f"Measured on {evaluation['examples']} eval images{source}: accuracy "
                      f"{evaluation['accuracy']:.3f}, 95 % interval {interval[0]:.3f} to {interval[1]:.3f} "
                      "(Wilson); a smaller difference between two versions is within sampling noise."
                      if interval else f"Measured on {evaluation['examples']} eval images{source}.")
        limits.append("The eval images come from the same source as the training images: photos from other "
                      "cameras, places or seasons are not measured.")
        scored = [r for r in evaluation["per_class"] if r["recall"] is not None]
        if scored:
            weakest = min(scored, key=lambda r: (r["recall"], r["class"]))
            limits.append(f"Weakest class: {weakest['class']} (recall {weakest['recall']:.3f} on "
                          f"{weakest['support']} images).")
        for c in evaluation["confusions"][:1]:
            limits.append(f"Most frequent confusion: {c['true']} taken for {c['predicted']} "
                          f"({c['count']} of {sum(evaluation['confusion_matrix'][classes.index(c['true'])])} "
                          f"{c['true']} images).")
        if evaluation["calibration"] is not None and evaluation["ece"] is not None:
            ratio = evaluation["calibration"]
            tone = ("under-confident" if ratio < 1 else "over-confident") if abs(ratio - 1) >= 0.02 else "about right"
            limits.append(f"Probabilities: mean top-1 probability / accuracy {ratio:.3f} ({tone}), expected "
                          f"calibration error {evaluation['ece']:.3f}: read a probability as a confidence only "
                          "when the ratio is close to 1 and the error close to 0.")
    return limits


def collect(sources: CardSources) -> Dict[str, Any]:
    """The card's sections from the Pusher's input artifacts (all but `push`: see card_files)."""
    class_names = json.loads(sources.examples.properties.get(pipeline_names.PROP_CLASS_NAMES) or "[]") \
        if sources.examples else []
    training = training_section(sources.model_run)
    if not class_names and training and training["config"]:
        class_names = list(training["config"].get("class_names") or [])
    edge_rows, edge_gate = edge_sections(sources.edge_evaluation, sources.edge_pushed, sources.edge_held_back)
    artifacts = {role: {"id": ref.id, "uri": ref.uri} for role, ref in (
        ("model", sources.model), ("model_run", sources.model_run), ("examples", sources.examples),
        ("evaluation", sources.evaluation), ("blessing", sources.blessing),
        ("edge_evaluation", sources.edge_evaluation), ("data_validation", sources.data_validation)) if ref}
    evaluation = evaluation_section(sources.evaluation, class_names)
    # The gate's part of TFMA's results goes to the verdict.
    thresholds = evaluation.pop("thresholds") if evaluation else []
    validation_ok = evaluation.pop("validation_ok") if evaluation else None
    config = (training or {}).get("config") or {}
    card = {
        "card_format": MODEL_CARD_FORMAT,
        "intended_use": {
            "task": f"Classify a photo of a scene into one of {len(class_names)} classes.",
            "classes": class_names,
            "input": (f"one encoded JPEG, PNG, GIF or BMP image (TF Serving's {names.SERVING_BYTES_SIGNATURE}, input "
                      f"{names.SERVING_BYTES_INPUT}); the model resizes it to {config.get('resize_size', '?')} px "
                      f"square and takes the centre {config.get('image_size', '?')} px crop"),
            "output": "a probability per class, the top class and its probability, or an error for an image "
                      "it cannot read",
        },
        "data": data_section(sources.examples),
        "training": training,
        "evaluation": evaluation,
        "verdict": {
            "blessed": bool(sources.blessing.properties.get(pipeline_names.PROP_BLESSED)),
            "validation_ok": validation_ok,
            "thresholds": thresholds,
            "edge_gate": edge_gate,
            "data_gate": data_gate_section(sources.data_validation),
        },
        "edge_models": edge_rows,
        "lineage": {"pipeline": sources.pipeline_name, "run_id": sources.run_id, "artifacts": artifacts},
    }
    card["intended_use"]["limits"] = _limits(card)
    return card


def with_push(card: Dict[str, Any], version: str, destination: str, pushed_at: str, fingerprint: str) -> Dict[str, Any]:
    """The card of one pushed version: collect()'s sections and the push."""
    return {"card_format": card["card_format"],
            "push": {"version": version, "destination": destination, "pushed_at": pushed_at,
                     "fingerprint": fingerprint},
            **{k: v for k, v in card.items() if k != "card_format"}}


def card_files(card: Dict[str, Any]) -> Dict[str, bytes]:
    """{path relative to the version: bytes} of the card: JSON, Markdown, HTML in assets.extra/."""
    from common import model_card_pages

    extra = names.EXTRA_ASSETS_DIR
    return {f"{extra}/{pipeline_names.MODEL_CARD_JSON}": json.dumps(card, indent=1, sort_keys=True).encode("utf-8"),
            f"{extra}/{pipeline_names.MODEL_CARD_MD}": model_card_pages.markdown(card).encode("utf-8"),
            f"{extra}/{pipeline_names.MODEL_CARD_HTML}": model_card_pages.html(card).encode("utf-8")}


def write_card_files(card: Dict[str, Any], folder: str) -> str:
    """Writes the card files under folder (local or gs://: a push where no atomic rename exists);
    returns the HTML page's path."""
    import tensorflow as tf

    for rel, data in card_files(card).items():
        tf.io.gfile.makedirs(os.path.dirname(os.path.join(folder, rel)))
        with tf.io.gfile.GFile(os.path.join(folder, rel), "wb") as f:
            f.write(data)
    return os.path.join(folder, names.EXTRA_ASSETS_DIR, pipeline_names.MODEL_CARD_HTML)


def read_card(version_dir: str) -> Optional[Dict[str, Any]]:
    """The card JSON of a pushed version folder, or None (pushed before cards, or unreadable)."""
    try:
        with open(os.path.join(version_dir, names.EXTRA_ASSETS_DIR, pipeline_names.MODEL_CARD_JSON)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
