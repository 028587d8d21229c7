"""The edge gate in plain Python: scores from predictions, the margins, and each flavour's verdict.

No TensorFlow: the executor computes predictions, this module turns them into the numbers and
sentences of pipeline_names.EDGE_EVALUATION_FILE (and the tests check them by hand).
"""
import json
import math
from typing import Dict, List, Optional, Sequence

from common import pipeline_names
from trainer_module import names

MB = 1e6  # sizes are reported in megabytes of 10^6 bytes, as file managers and app stores show them
_DROP_TOLERANCE = 1e-9  # a drop equal to the margin passes despite float rounding of count ratios


class EdgeGateError(ValueError):
    """The edge gate's configuration or input cannot be used."""


def parse_max_drops(text: str) -> Dict[str, float]:
    """{flavour: margin} from the JSON execution property; every flavour needs one in [0, 1]."""
    try:
        margins = json.loads(text)
    except ValueError as e:
        raise EdgeGateError(f"max_drops {text!r} is not JSON: {e}") from None
    if not isinstance(margins, dict):
        raise EdgeGateError(f"max_drops {text!r}: must be a JSON object {{flavour: margin}}")
    unknown = sorted(set(margins) - set(names.TFLITE_FLAVOURS))
    missing = sorted(set(names.TFLITE_FLAVOURS) - set(margins))
    if unknown or missing:
        raise EdgeGateError(f"max_drops {text!r}: needs exactly the flavours {list(names.TFLITE_FLAVOURS)} "
                            f"(unknown {unknown}, missing {missing})")
    for flavour, margin in margins.items():
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0.0 <= margin <= 1.0:
            raise EdgeGateError(f"max_drops[{flavour!r}]={margin!r}: must be a number in [0, 1]")
    return {flavour: float(margin) for flavour, margin in margins.items()}


def max_drops_json(float16: float, int8: float) -> str:
    """The execution property from the two PipelineConfig knobs."""
    return json.dumps({"float16": float(float16), "int8": float(int8)}, sort_keys=True)


def scores(labels: Sequence[int], predictions: Sequence[int], class_names: Sequence[str]) -> Dict:
    """{accuracy, recall: {class: recall, None for a class without eval images}} of predicted labels."""
    if len(labels) != len(predictions):
        raise EdgeGateError(f"{len(labels)} labels but {len(predictions)} predictions")
    if not labels:
        raise EdgeGateError("no eval images to score")
    recall = {}
    for index, name in enumerate(class_names):
        of_class = [p for y, p in zip(labels, predictions) if y == index]
        recall[name] = sum(p == index for p in of_class) / len(of_class) if of_class else None
    correct = sum(int(y == p) for y, p in zip(labels, predictions))
    return {pipeline_names.EDGE_ACCURACY: correct / len(labels), pipeline_names.EDGE_RECALL: recall}


def _points(value: float) -> str:
    text = f"{abs(value) * 100:.1f}"
    return f"{text} point" if text == "1.0" else f"{text} points"


def verdict(flavour: str, saved_correct: int, flavour_correct: int, examples: int, max_drop: float,
            problem: Optional[str] = None) -> Dict:
    """The gate entry of one flavour: max_drop, drop, passed and the reason in words.

    Counts of correct predictions on the same `examples` images, so the drop is exact.
    `problem`: why the model cannot be pushed whatever its accuracy (e.g. other labels).
    """
    saved, edge = saved_correct / examples, flavour_correct / examples
    drop = (saved_correct - flavour_correct) / examples
    passed = problem is None and drop <= max_drop + _DROP_TOLERANCE
    direction = "below" if drop > 0 else "above" if drop < 0 else "level with"
    gap = f"{_points(drop)} {direction}" if drop else direction
    reason = (f"{flavour} accuracy {edge:.3f} is {gap} the SavedModel's {saved:.3f} on the same {examples} "
              f"eval images (margin {_points(max_drop)})")
    if problem:
        reason += f", but {problem}: not pushed"
    else:
        reason += ": pushed beside the SavedModel when it is blessed" if passed else ": not pushed"
    return {pipeline_names.EDGE_MAX_DROP: max_drop, pipeline_names.EDGE_DROP: drop, pipeline_names.EDGE_PASSED: passed,
            pipeline_names.EDGE_REASON: reason}


def passed_flavours(evaluation: Dict) -> List[str]:
    """The flavours whose gate passed, in names.TFLITE_FLAVOURS order."""
    gate = evaluation.get(pipeline_names.EDGE_GATE) or {}
    return [f for f in names.TFLITE_FLAVOURS if (gate.get(f) or {}).get(pipeline_names.EDGE_PASSED)]


def held_back(evaluation: Dict) -> Dict[str, str]:
    """{flavour: reason} of the evaluated flavours whose gate failed."""
    gate = evaluation.get(pipeline_names.EDGE_GATE) or {}
    return {f: gate[f][pipeline_names.EDGE_REASON] for f in names.TFLITE_FLAVOURS
            if f in gate and not gate[f].get(pipeline_names.EDGE_PASSED)}


def summary_line(model: str, entry: Dict, gate_entry: Optional[Dict] = None) -> str:
    """One line per model for the log: accuracy, size, latencies and the gate's verdict."""
    line = (f"{model}: accuracy {entry[pipeline_names.EDGE_ACCURACY]:.3f}, "
            f"{entry[pipeline_names.EDGE_SIZE_MB]:.2f} MB, "
            f"{_ms(entry[pipeline_names.EDGE_LATENCY_MS])} ms/image alone, "
            f"{_ms(entry[pipeline_names.EDGE_BATCH_LATENCY_MS])} ms/image in batches of 32")
    if gate_entry is not None:
        verdict = "passed" if gate_entry[pipeline_names.EDGE_PASSED] else "FAILED"
        line += f"; gate {verdict}: {gate_entry[pipeline_names.EDGE_REASON]}"
    return line


def _ms(value: float) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.2f}"
