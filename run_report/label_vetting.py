"""The label vetting part of the report: per class, the latest blessed model's agreement with the
labels of its own eval data and with this run's labels, where its disagreements went, and the
LabelVetter's verdict (components/label_vetter/vetting.py wrote it as label_vetting.json).

A run the LabelVetter stopped publishes no artifact and TFX removes its output folder; the
LabelVetter also wrote its record in the execution's stateful working dir, which TFX keeps after a
failure (pipeline_names.TFX_STATEFUL_WORKING_DIRS), and it is found there by the run id.
"""
import glob
import html
import os
from typing import Callable, Dict, Optional

from common import pipeline_names, store
from components.label_vetter import vetting

SECTION_ID = "label-vetting"
TITLE = "Label vetting"


def _read(path: str) -> vetting.Vetting:
    with open(path) as f:
        return vetting.from_json(f.read())


def collect(nodes: Dict[str, store.NodeRun], run_id: str) -> Optional[vetting.Vetting]:
    """What the run's LabelVetter recorded; None without one (a Kubeflow run) or its record."""
    node = nodes.get(pipeline_names.LABEL_VETTER_NODE)
    if node is None:
        return None
    uri = node.uri(pipeline_names.LABEL_VETTING_OUTPUT)
    if uri is not None:
        path = os.path.join(uri, pipeline_names.LABEL_VETTING_FILE)
        return _read(path) if os.path.exists(path) else None
    root = store.pipeline_root(nodes)
    if node.state != "FAILED" or not root:
        return None
    pattern = os.path.join(root, pipeline_names.LABEL_VETTER_NODE, pipeline_names.TFX_STATEFUL_WORKING_DIRS, "*",
                           pipeline_names.LABEL_VETTING_FILE)
    found = [v for v in map(_read, sorted(glob.glob(pattern))) if v.run_id == run_id]
    return found[-1] if found else None


def _pct(value: Optional[float]) -> str:
    return "" if value is None else f"{100.0 * value:.0f} %"


def _points(value: float) -> str:
    return f"{100.0 * value:.0f} points"


def section_html(result: Optional[vetting.Vetting], state: Optional[str], table: Callable) -> str:
    """The section's body: the verdict, and one row per class."""
    if result is None:
        return "<p>No label vetting in this run (a Kubeflow run, or the step did not run).</p>"
    e = html.escape
    if not result.compared:
        return f"<p>{e(result.note)}.</p>"
    if result.anomalies:
        verdict = ("STOPPED: the run stopped before training" if result.stops
                   else "WARNING (--label-vetting-warn-only): the run went on")
        body = (f'<p class="verdict {"bad" if result.stops else "neutral"}">{e(verdict)}: '
                + e("; ".join(result.finding_lines())) + "</p>")
    else:
        body = f'<p class="verdict ok">{e(result.summary())}.</p>'
    if state == "CACHED":
        body += '<p class="muted">LabelVetter CACHED: the figures of an earlier run with the same inputs.</p>'
    knobs = result.knobs
    body += (f"<p class='muted'>Blessed model <code>{e(result.baseline_model)}</code>; reference: its agreement "
             f"with the labels of the eval split it was trained beside (<code>{e(result.reference_examples_uri)}"
             f"</code>); new: this run's eval split and the first train images. An anomaly: agreement more than "
             f"{_points(knobs.max_drop)} below the reference, or at least {_pct(knobs.concentration)} of the "
             f"disagreements on one class with a drop over {_points(knobs.concentration_min_drop)}; classes "
             f"with fewer than {knobs.min_examples} images are not compared. {result.unscored} new images could "
             "not be classified (skipped).</p>")
    rows = [(c.name, c.reference_examples, _pct(c.reference), c.examples, _pct(c.agreement),
             "" if c.drop is None else f"{-100.0 * c.drop:+.0f}", c.top_other, _pct(c.top_other_share) if c.top_other else "",
             c.anomaly or c.note)
            for c in result.classes]
    return body + table(["class", "reference images", "reference agreement", "new images", "new agreement",
                         "change (points)", "most disagreements predicted", "share", "anomaly"],
                        rows, numeric_columns={1, 2, 3, 4, 5, 7})
