"""The key figures of a finished component, for its progress line: what a person watching the run
wants to know at that point (files ingested and skipped, epochs and accuracy, the temperature and
the calibration error before and after, the verdict with each failed threshold, on the eval split
and on the reference set, the edge gate per TFLite flavour, the pushed version and TFLite models),
read from what the run recorded in ML Metadata."""
import json
import logging
import os
from typing import Callable, Dict

from common import ingest_report, pipeline_names, store
from trainer_module import names

log = logging.getLogger(__name__)


def _example_gen(node: store.NodeRun) -> str:
    report = ingest_report.read(
        store.output_property(node, pipeline_names.EXAMPLES_OUTPUT, pipeline_names.PROP_INGEST_REPORT))
    skipped = ", ".join(f"{n} {reason}" for reason, n in report.skipped_by_reason.items()) or "none"
    return (f"{report.files_seen} files, {report.ingested} ingested "
            f"({', '.join(f'{split} {n}' for split, n in report.per_split().items())}), {report.skipped} skipped "
            f"({skipped})")


def _trainer(node: store.NodeRun) -> str:
    with open(os.path.join(node.uri(pipeline_names.MODEL_RUN_OUTPUT), names.HISTORY_FILE)) as f:
        history = json.load(f)
    series = history[names.HISTORY_SERIES]
    epochs = len(series["loss"])
    text = f"{epochs} epoch{'s' if epochs != 1 else ''}, last: loss {series['loss'][-1]:.3f}"
    if "val_accuracy" in series:
        text += f", val_accuracy {series['val_accuracy'][-1]:.3f}"
    after = (history.get(names.HISTORY_BN_RECALIBRATION) or {}).get("eval") or {}
    if "accuracy" in after:
        text += f"; after BatchNorm re-estimation: val_accuracy {after['accuracy']:.3f}"
    calibrated = history.get(names.HISTORY_CALIBRATION) or {}
    if calibrated:
        text += (f"; temperature {calibrated[names.CALIBRATION_TEMPERATURE]:.3f}: expected calibration error "
                 f"{calibrated[names.CALIBRATION_ECE_BEFORE]:.3f} -> {calibrated[names.CALIBRATION_ECE_AFTER]:.3f} "
                 f"on {calibrated[names.CALIBRATION_EXAMPLES]} eval images")
    return text


def _evaluator(node: store.NodeRun) -> str:
    """BLESSED with the accuracy and the weakest class, or NOT blessed with each failed threshold:
    which class, which figure, against which bound (pipeline/evaluation.py reads TFMA's verdict)."""
    from pipeline import evaluation  # TFMA: loaded by the Evaluator that just ran in this process

    blessed = store.output_property(node, pipeline_names.BLESSING_OUTPUT, pipeline_names.PROP_BLESSED) == 1
    try:
        return evaluation.verdict_line(node.uri(pipeline_names.EVALUATION_OUTPUT), blessed)
    except Exception:  # noqa: BLE001 - the verdict without its figures
        log.debug("no TFMA figures for %s", node.uri(pipeline_names.EVALUATION_OUTPUT), exc_info=True)
        return "BLESSED" if blessed else "NOT blessed (see the report for the failed threshold)"


def _edge_evaluator(node: store.NodeRun) -> str:
    with open(os.path.join(node.uri(pipeline_names.EDGE_EVALUATION_OUTPUT), pipeline_names.EDGE_EVALUATION_FILE)) as f:
        evaluation = json.load(f)
    models, gate = evaluation[pipeline_names.EDGE_MODELS], evaluation[pipeline_names.EDGE_GATE]
    parts = [f"SavedModel accuracy {models[pipeline_names.EDGE_SAVED_MODEL][pipeline_names.EDGE_ACCURACY]:.3f}"]
    for flavour, verdict in gate.items():
        state = "passed" if verdict[pipeline_names.EDGE_PASSED] else "FAILED"
        parts.append(f"{flavour} {models[flavour][pipeline_names.EDGE_ACCURACY]:.3f} ({state}: drop "
                     f"{verdict[pipeline_names.EDGE_DROP] * 100:.1f} points, "
                     f"margin {verdict[pipeline_names.EDGE_MAX_DROP] * 100:.1f})")
    if not gate:
        parts.append("no TFLite models")
    return f"{evaluation[pipeline_names.EDGE_EXAMPLES]} eval images; " + "; ".join(parts)


def _pusher(node: store.NodeRun) -> str:
    def pushed(name: str):
        return store.output_property(node, pipeline_names.PUSHED_MODEL_OUTPUT, name)

    if pushed(pipeline_names.PROP_PUSHED) != 1:
        return "nothing pushed"
    text = f"pushed {pushed(pipeline_names.PROP_PUSHED_DESTINATION)}"
    edge = pushed(pipeline_names.PROP_PUSHED_EDGE_MODELS)
    held_back = json.loads(pushed(pipeline_names.PROP_EDGE_HELD_BACK) or "{}")
    if edge:
        text += f" with TFLite {edge.replace(',', ', ')}"
    if held_back:
        text += f"; TFLite held back: {', '.join(sorted(held_back))} (edge gate)"
    release = store.output_property(node, pipeline_names.PUSHED_MODEL_OUTPUT, pipeline_names.PROP_RELEASE)
    if release:
        text += f"; release: {release}"
    return text


def _label_vetter(node: store.NodeRun) -> str:
    """Nothing to compare (and why), or each class's agreement: its own eval data -> the new data."""
    from components.label_vetter import vetting

    with open(os.path.join(node.uri(pipeline_names.LABEL_VETTING_OUTPUT), pipeline_names.LABEL_VETTING_FILE)) as f:
        result = vetting.from_json(f.read())
    if not result.compared:
        return result.note.replace("label vetting: ", "")
    classes = ", ".join(f"{c.name} {100 * c.reference:.0f} -> {100 * c.agreement:.0f} %" for c in result.classes
                        if c.drop is not None)
    verdict = ("; ".join(result.finding_lines()) + " (--label-vetting-warn-only: going on)" if result.anomalies
               else "no anomaly")
    return f"the blessed model's agreement with the labels, its eval data -> this data: {classes or 'none compared'}; {verdict}"


_FIGURES: Dict[str, Callable[[store.NodeRun], str]] = {
    pipeline_names.LABEL_VETTER_NODE: _label_vetter,
    pipeline_names.EXAMPLE_GEN_NODE: _example_gen, pipeline_names.TRAINER_NODE: _trainer,
    pipeline_names.EVALUATOR_NODE: _evaluator, pipeline_names.EDGE_EVALUATOR_NODE: _edge_evaluator,
    pipeline_names.PUSHER_NODE: _pusher,
    pipeline_names.REFERENCE_EXAMPLE_GEN_NODE: _example_gen, pipeline_names.REFERENCE_EVALUATOR_NODE: _evaluator}


def key_figures(metadata_path: str, run_id: str, node_id: str) -> str:
    """'cached', or the node's key figures ('' when it has none or they cannot be read)."""
    try:
        node = store.read_run(metadata_path, run_id).get(node_id)
        if node is None:
            return ""
        if node.state == "CACHED":
            return "cached"
        figures = _FIGURES.get(node_id)
        return figures(node) if figures else ""
    except Exception:  # noqa: BLE001 - a progress line must never stop a run
        log.debug("no key figures for %s", node_id, exc_info=True)
        return ""
