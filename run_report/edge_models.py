"""The report's Edge models (TFLite) section: the SavedModel and each TFLite flavour side by side
(accuracy, its drop against the SavedModel and the margin, recall per class, size, CPU latency)
and the edge gate's verdict per flavour, with where the pushed files are.

Read back from the EdgeEvaluator's artifact (pipeline_names.EDGE_EVALUATION_FILE, keys in names.py) and
the Pusher's properties (which flavours it pushed, which it held back and why), found through ML
Metadata like the Evaluator's. A run without an EdgeEvaluator has no such section.
"""
import dataclasses
import html
import json
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

from common import pipeline_names, store
from trainer_module import names

SECTION_ID = "edge-models"
TITLE = "Edge models (TFLite)"
MODEL_LABELS = {pipeline_names.EDGE_SAVED_MODEL: "SavedModel", **{f: f for f in names.TFLITE_FLAVOURS}}
# Verdicts of a flavour, and the CSS class html_page gives each.
PUSHED, HELD_BACK, NOT_PUSHED = "pushed", "held back", "not pushed"
_VERDICT_CLASS = {PUSHED: "passed", HELD_BACK: "FAILED", NOT_PUSHED: "muted"}


@dataclasses.dataclass
class EdgeView:
    """What the report shows of one run's edge models."""
    evaluation: dict  # EDGE_EVALUATION_FILE as written
    uri: str  # the EdgeEvaluator's artifact
    state: str  # the EdgeEvaluator's execution state (COMPLETE, CACHED)
    pushed: Optional[bool]  # whether the Pusher pushed the SavedModel; None: no Pusher output
    destination: Optional[str]  # the pushed version folder
    pushed_flavours: List[str]  # PROP_PUSHED_EDGE_MODELS
    held_back: Dict[str, str]  # PROP_EDGE_HELD_BACK: flavour -> reason

    @property
    def flavours(self) -> List[str]:
        """The TFLite flavours evaluated, in names.TFLITE_FLAVOURS order."""
        models = self.evaluation.get(pipeline_names.EDGE_MODELS, {})
        return [f for f in names.TFLITE_FLAVOURS if f in models]


def _read_json(path: str) -> Optional[dict]:
    import tensorflow as tf  # gfile: the artifact may be remote (gs://); the report loads TensorFlow anyway

    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def pushed_flavours(value: Optional[str]) -> List[str]:
    """PROP_PUSHED_EDGE_MODELS ("float16,int8", "" for none) as a list."""
    return [f.strip() for f in (value or "").split(",") if f.strip()]


def held_back(value: Optional[str]) -> Dict[str, str]:
    """PROP_EDGE_HELD_BACK (JSON {flavour: reason}; absent: {})."""
    return json.loads(value) if value else {}


def collect(nodes: Dict[str, store.NodeRun]) -> Optional[EdgeView]:
    """The run's edge models; None without an EdgeEvaluator output (or without its file)."""
    node = nodes.get(pipeline_names.EDGE_EVALUATOR_NODE)
    uri = node.uri(pipeline_names.EDGE_EVALUATION_OUTPUT) if node else None
    evaluation = _read_json(os.path.join(uri, pipeline_names.EDGE_EVALUATION_FILE)) if uri else None
    if evaluation is None:
        return None
    pusher = nodes.get(pipeline_names.PUSHER_NODE)

    def prop(name):
        return store.output_property(pusher, pipeline_names.PUSHED_MODEL_OUTPUT, name)

    pushed = prop(pipeline_names.PROP_PUSHED)
    return EdgeView(evaluation=evaluation, uri=uri, state=node.state,
                    pushed=None if pushed is None else pushed == 1,
                    destination=prop(pipeline_names.PROP_PUSHED_DESTINATION),
                    pushed_flavours=pushed_flavours(prop(pipeline_names.PROP_PUSHED_EDGE_MODELS)),
                    held_back=held_back(prop(pipeline_names.PROP_EDGE_HELD_BACK)))


# ---------------------------------------------------------------- numbers and verdicts

def verdict(view: EdgeView, flavour: str) -> Tuple[str, str]:
    """(PUSHED, HELD_BACK or NOT_PUSHED, the reason sentence) of one flavour.

    What the Pusher did decides; the gate's own entry explains a flavour the Pusher did not
    mention (the SavedModel was not pushed, or the run has no Pusher)."""
    gate = view.evaluation.get(pipeline_names.EDGE_GATE, {}).get(flavour, {})
    reason = gate.get(pipeline_names.EDGE_REASON, "")
    if flavour in view.pushed_flavours:
        return PUSHED, reason
    if flavour in view.held_back:
        return HELD_BACK, view.held_back[flavour]
    if gate and not gate.get(pipeline_names.EDGE_PASSED):
        return HELD_BACK, reason
    why = "the SavedModel was not pushed" if view.pushed is False else "no push recorded in this run"
    return NOT_PUSHED, f"passed the edge gate, but {why}" + (f" ({reason})" if reason else "")


def _number(value, digits: int) -> str:
    """A number as table text ("–" when absent, "n/a" when not finite): the table's own format has
    3 decimals, too few for drops against a 0.002 margin."""
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"


def _ratio(value, reference) -> str:
    return "–" if value is None or not reference else f"{value / reference:.2f}×"


def comparison_rows(view: EdgeView) -> List[Tuple[str, ...]]:
    """[(measure, SavedModel, flavour...)] as text: accuracy, drop, margin, recall per class,
    size and its ratio, latency single and batched."""
    models = view.evaluation.get(pipeline_names.EDGE_MODELS, {})
    columns = [pipeline_names.EDGE_SAVED_MODEL, *view.flavours]
    gate = view.evaluation.get(pipeline_names.EDGE_GATE, {})

    def model(key):
        return [models.get(c, {}).get(key) for c in columns]

    def flavour_gate(key):
        return [None] + [gate.get(f, {}).get(key) for f in view.flavours]

    saved_size = models.get(pipeline_names.EDGE_SAVED_MODEL, {}).get(pipeline_names.EDGE_SIZE_MB)
    examples = view.evaluation.get(pipeline_names.EDGE_EXAMPLES)
    rows = [(f"accuracy ({examples} eval images)" if examples else "accuracy",
             *(_number(v, 4) for v in model(pipeline_names.EDGE_ACCURACY))),
            ("accuracy drop vs the SavedModel", *(_number(v, 4) for v in flavour_gate(pipeline_names.EDGE_DROP))),
            ("margin (largest drop allowed)", *(_number(v, 4) for v in flavour_gate(pipeline_names.EDGE_MAX_DROP)))]
    class_names = view.evaluation.get(pipeline_names.EDGE_CLASS_NAMES) or sorted(
        {c for m in models.values() for c in m.get(pipeline_names.EDGE_RECALL, {})})
    for class_name in class_names:
        rows.append((f"recall: {class_name}",
                     *(_number(r.get(class_name) if r else None, 3) for r in model(pipeline_names.EDGE_RECALL))))
    sizes = model(pipeline_names.EDGE_SIZE_MB)
    rows += [("size (MB; SavedModel: its variables)", *(_number(v, 2) for v in sizes)),
             ("size vs the SavedModel", *(_ratio(v, saved_size) for v in sizes)),
             ("CPU latency per image, one image per call (ms)",
              *(_number(v, 2) for v in model(pipeline_names.EDGE_LATENCY_MS))),
             ("CPU latency per image, in batches of 32 (ms)",
              *(_number(v, 2) for v in model(pipeline_names.EDGE_BATCH_LATENCY_MS)))]
    return rows


def pushed_paths(view: EdgeView) -> List[str]:
    """Where the pushed files are: <version>/tflite/model_<flavour>.tflite and the labels file
    beside them ([] when none was pushed)."""
    if not view.destination or not view.pushed_flavours:
        return []
    folder = os.path.join(view.destination, pipeline_names.PUSHED_EDGE_SUBDIR)
    return [os.path.join(folder, name) for name in
            [*(names.TFLITE_FILE.format(flavour=f) for f in view.pushed_flavours), names.TFLITE_LABELS_FILE]]


# ---------------------------------------------------------------- rendering

def _e(value) -> str:
    return html.escape(str(value))


def _verdict_span(status: str) -> str:
    return f'<span class="{_VERDICT_CLASS[status]}">{_e(status)}</span>'


def _verdict_list(view: EdgeView) -> str:
    items = []
    for flavour in view.flavours:
        status, reason = verdict(view, flavour)
        items.append(f"<li><b>{_e(flavour)}</b>: {_verdict_span(status)}"
                     + (f": {_e(reason)}" if reason else "") + "</li>")
    return f"<ul>{''.join(items)}</ul>"


def _where(view: EdgeView) -> str:
    paths = pushed_paths(view)
    if paths:
        return ("<p>Pushed beside the SavedModel: "
                + ", ".join(f"<code>{_e(p)}</code>" for p in paths) + ".</p>")
    return "<p>No edge model was pushed in this run.</p>"


def section_html(view: EdgeView, table, markup) -> str:
    """The section's body (table and markup: html_page's table helper and its Markup class)."""
    header = ["", *(MODEL_LABELS[c] for c in [pipeline_names.EDGE_SAVED_MODEL, *view.flavours])]
    rows: List[Sequence] = comparison_rows(view)
    rows.append(("edge gate", "reference",
                 *(markup(_verdict_span(verdict(view, f)[0])) for f in view.flavours)))
    body = (f"<p>The SavedModel and each TFLite model scored on the same eval images by the same code "
            f"(the EdgeEvaluator, <code>{_e(view.uri)}</code>"
            + (", CACHED: an earlier run's results" if view.state == "CACHED" else "") + ").</p>"
            + table(header, rows, numeric_columns=range(1, len(header))))
    body += _verdict_list(view) + _where(view)
    body += ('<p class="muted">Latency: median CPU time per image from the encoded bytes to the probabilities '
             "(the SavedModel through serving_default, a TFLite model through the app's preprocessing and "
             "the interpreter) on the machine that ran the EdgeEvaluator. A flavour passes the edge gate "
             "when its accuracy is at most the margin below the SavedModel's; the Pusher copies those that "
             "passed beside the SavedModel it pushes.</p>")
    return body
