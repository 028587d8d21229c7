"""TFMA results of one Evaluator output, as plain Python values for the run report and the model card.

Reads only what TFMA wrote (tfma.load_metrics / load_plots / load_validation_result and the
eval config TFMA saved beside them), so the report shows exactly what the gate decided on.
"""
import dataclasses
import math
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow loads: TFMA needs Keras 2
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from tensorflow_model_analysis.slicer import slicer_lib
from tensorflow_model_analysis.writers import eval_config_writer

from common import pipeline_names
from trainer_module import names

SliceKey = Tuple[Tuple[str, object], ...]  # () is the overall slice
SubKey = Tuple[Tuple[str, int], ...]  # e.g. (("class_id", 2), ("top_k", 1)); () for none
OVERALL: SliceKey = ()
# The eval config TFMA saves beside its metrics, plots and validation (eval_config.json).
_EVAL_CONFIG_FILE = f"{eval_config_writer.EVAL_CONFIG_FILE}.{eval_config_writer.EVAL_CONFIG_FILE_FORMAT}"


def class_slice(class_name: str) -> SliceKey:
    """The slice of the examples whose true class is class_name (the config slices by it)."""
    return ((names.CLASS_NAME_KEY, class_name),)


@dataclasses.dataclass
class ThresholdCheck:
    """One threshold of the gate: what was compared with what, and TFMA's verdict."""
    metric: str
    kind: str  # "lower bound", "upper bound", "change vs baseline"
    slice_desc: str
    value: Optional[float]
    bound: str
    status: str  # "passed", "FAILED", "not applied"
    message: str = ""
    slice_key: Optional[SliceKey] = None  # the one slice it applies to (() overall); None: several


@dataclasses.dataclass
class CalibrationBucket:
    """One probability bucket of TFMA's calibration plot: its range, examples and sums."""
    lower: float
    upper: float
    count: float
    total_label: float
    total_prediction: float


@dataclasses.dataclass
class EvalResults:
    """Metrics by (slice, model, name, sub key, is_diff), plots by model, and the validation."""
    eval_config: tfma.EvalConfig
    candidate: str  # model name in the metric keys ("" without a baseline)
    baseline: Optional[str]  # None when the Evaluator had no baseline model
    metrics: Dict[Tuple[SliceKey, str, str, SubKey, bool], float]
    confusion: Dict[str, np.ndarray]  # model name -> [actual, predicted] counts
    calibration: Dict[str, List[CalibrationBucket]]  # model name -> top-1 reliability buckets
    validation_ok: bool
    thresholds: List[ThresholdCheck]

    def metric(self, name: str, model: Optional[str] = None, slice_key: SliceKey = OVERALL,
               sub_key: SubKey = (), diff: bool = False) -> Optional[float]:
        """A metric's value (None when absent); model defaults to the candidate."""
        model = self.candidate if model is None else model
        return self.metrics.get((slice_key, model, name, sub_key, diff))

    def class_slices(self) -> List[SliceKey]:
        """The per-true-class slices, sorted by class name."""
        return sorted({k[0] for k in self.metrics if k[0]}, key=lambda s: [str(v) for _, v in s])


def _sub_key(pb) -> SubKey:
    return tuple((field, getattr(pb, field).value) for field in ("class_id", "k", "top_k")
                 if pb.HasField(field))


def _double(value_pb) -> Optional[float]:
    return value_pb.double_value.value if value_pb.HasField("double_value") else None


def _read_metrics(output_uri: str):
    metrics = {}
    for per_slice in tfma.load_metrics(output_uri):
        slice_key = slicer_lib.deserialize_slice_key(per_slice.slice_key)
        for kv in per_slice.metric_keys_and_values:
            value = _double(kv.value)
            if value is not None:
                key = kv.key
                metrics[(slice_key, key.model_name, key.name, _sub_key(key.sub_key), key.is_diff)] = value
    return metrics


def _confusion_matrix(plot_pb, num_classes: int) -> np.ndarray:
    """[actual, predicted] counts from TFMA's multi-class confusion matrix (first threshold)."""
    matrix = np.zeros((num_classes, num_classes))
    matrices = plot_pb.multi_class_confusion_matrix_at_thresholds.matrices
    for entry in (matrices[0].entries if matrices else []):
        # predicted_class_id -1 means "no class above the threshold": not a cell of the matrix.
        if 0 <= entry.actual_class_id < num_classes and 0 <= entry.predicted_class_id < num_classes:
            matrix[entry.actual_class_id, entry.predicted_class_id] += entry.num_weighted_examples
    return matrix


def _calibration_buckets(plot_pb) -> List[CalibrationBucket]:
    buckets = []
    for b in plot_pb.calibration_histogram_buckets.buckets:
        if b.num_weighted_examples.value > 0:
            buckets.append(CalibrationBucket(
                b.lower_threshold_inclusive, b.upper_threshold_exclusive, b.num_weighted_examples.value,
                b.total_weighted_label.value, b.total_weighted_refined_prediction.value))
    return buckets


def _read_plots(output_uri: str, num_classes: int):
    confusion, calibration = {}, {}
    for per_slice in tfma.load_plots(output_uri):
        if slicer_lib.deserialize_slice_key(per_slice.slice_key) != OVERALL:
            continue
        for kv in per_slice.plot_keys_and_values:
            if kv.value.HasField("multi_class_confusion_matrix_at_thresholds"):
                confusion[kv.key.model_name] = _confusion_matrix(kv.value, num_classes)
            elif kv.value.HasField("calibration_histogram_buckets"):
                calibration[kv.key.model_name] = _calibration_buckets(kv.value)
    return confusion, calibration


def expected_calibration_error(buckets: Sequence[CalibrationBucket]) -> Optional[float]:
    """ECE of the top-1 probability: sum over buckets of |mean prob - accuracy| x bucket share."""
    total = sum(b.count for b in buckets)
    if not total:
        return None
    return sum(abs(b.total_prediction - b.total_label) for b in buckets) / total


def _bound_text(threshold) -> Tuple[str, str]:
    """(kind, bound) of a GenericValueThreshold or GenericChangeThreshold."""
    if isinstance(threshold, tfma.GenericChangeThreshold):
        direction = tfma.MetricDirection.Name(threshold.direction).lower().replace("_", " ")
        parts = []
        if threshold.HasField("absolute"):
            parts.append(f"candidate - baseline >= {threshold.absolute.value:g}"
                         if threshold.direction == tfma.MetricDirection.HIGHER_IS_BETTER
                         else f"candidate - baseline <= {threshold.absolute.value:g}")
        if threshold.HasField("relative"):
            parts.append(f"relative change {threshold.relative.value:g}")
        return "change vs baseline", "; ".join(parts) + f" ({direction})"
    parts = []
    if threshold.HasField("lower_bound"):
        parts.append(f">= {threshold.lower_bound.value:g}")
    if threshold.HasField("upper_bound"):
        parts.append(f"<= {threshold.upper_bound.value:g}")
    return ("lower bound" if threshold.HasField("lower_bound") else "upper bound"), " and ".join(parts)


def _slice_desc(slice_spec) -> str:
    if slice_spec is None:
        return "every slice"
    single = _single_slice(slice_spec)
    if single == OVERALL:
        return "overall"
    if single is not None:
        return ", ".join(f"{k}={v}" for k, v in single)  # e.g. class_name=forest
    return str(slice_spec).replace("\n", " ")


def _single_slice(slice_spec) -> Optional[SliceKey]:
    """The one slice key a spec selects (() for the overall slice, ((feature, value),) for
    feature_values); None for a spec that selects several (feature_keys) or none given."""
    if not isinstance(slice_spec, tfma.SlicingSpec) or slice_spec.feature_keys or slice_spec.slice_keys_sql:
        return None
    return tuple(sorted(slice_spec.feature_values.items()))


def _applies(slice_spec, slice_key: SliceKey) -> bool:
    if slice_spec is None:
        return True
    if not isinstance(slice_spec, tfma.SlicingSpec):
        return False
    return slicer_lib.SingleSliceSpec(spec=slice_spec).is_slice_applicable(slice_key)


def _failures(validation) -> Dict[Tuple[str, str, SubKey, bool], List]:
    """{(name, model, sub key, is_diff): [(slice key, failure)]} from TFMA's validation result."""
    failures: Dict[Tuple[str, str, SubKey, bool], List] = {}
    for per_slice in validation.metric_validations_per_slice:
        slice_key = slicer_lib.deserialize_slice_key(per_slice.slice_key)
        for f in per_slice.failures:
            key = (f.metric_key.name, f.metric_key.model_name, _sub_key(f.metric_key.sub_key),
                   f.metric_key.is_diff)
            failures.setdefault(key, []).append((slice_key, f))
    return failures


def _threshold_checks(eval_config: tfma.EvalConfig, candidate: str, metrics, validation
                      ) -> List[ThresholdCheck]:
    """Every threshold TFMA applied to the candidate, one per slice spec (the overall slice, each
    class's slice), with the value on that slice and TFMA's verdict there."""
    failures = _failures(validation)
    missing = {_single_slice(spec) for spec in validation.missing_slices}
    checks = []
    thresholds = tfma.metrics.metric_thresholds_from_metrics_specs(eval_config.metrics_specs,
                                                                    eval_config=eval_config)
    # TFMA lists the baseline's keys too, but validates only the candidate's.
    candidate_thresholds = [(k, t) for k, t in thresholds.items() if k.model_name == candidate]
    for key, slice_thresholds in sorted(candidate_thresholds, key=lambda kt: (kt[0].name, kt[0].is_diff)):
        sub_key = tuple((f, v) for f, v in zip(("class_id", "k", "top_k"), key.sub_key or ())
                        if v is not None)
        failed_on = failures.get((key.name, key.model_name, sub_key, key.is_diff), [])
        for slice_spec, threshold in slice_thresholds:
            kind, bound = _bound_text(threshold)
            single = _single_slice(slice_spec)
            value = metrics.get((OVERALL if single is None else single, key.model_name, key.name, sub_key,
                                 key.is_diff))
            failed = [(s, f) for s, f in failed_on if _applies(slice_spec, s)]
            messages = [f"{slicer_lib.stringify_slice_key(s)}: {_double(f.metric_value):.4g}"
                        for s, f in failed if _double(f.metric_value) is not None]
            if single is not None and single in missing:
                status, message = "FAILED", "no examples of this slice in the evaluation data"
            else:  # a single slice's value is in the row already
                status = "FAILED" if failed else "passed"
                message = ("failed on " + ", ".join(messages)) if messages and single is None else ""
            checks.append(ThresholdCheck(metric=key.name, kind=kind, slice_desc=_slice_desc(slice_spec), value=value,
                                         bound=bound, status=status, message=message, slice_key=single))
    if validation.missing_thresholds:
        checks.append(ThresholdCheck("(some metric)", "threshold", "", None, "", "FAILED",
                                     "a thresholded metric is missing from the results"))
    listed = {c.slice_key for c in checks}
    for spec in validation.missing_slices:
        if _single_slice(spec) not in listed:
            checks.append(ThresholdCheck("(all)", "threshold", _slice_desc(spec), None, "", "FAILED",
                                         "slice missing from the evaluation data"))
    return checks


def _unapplied_change_thresholds(configured: Optional[tfma.EvalConfig]) -> List[ThresholdCheck]:
    """Change thresholds of the configured eval config, which TFX drops without a baseline."""
    if configured is None:
        return []
    thresholds = tfma.metrics.metric_thresholds_from_metrics_specs(configured.metrics_specs,
                                                                    eval_config=configured)
    return [ThresholdCheck(key.name, kind, _slice_desc(slice_spec), None, bound, "not applied",
                           "no baseline: no other model was blessed before", _single_slice(slice_spec))
            for key, slice_thresholds in thresholds.items() if key.is_diff
            for slice_spec, threshold in slice_thresholds
            for kind, bound in [_bound_text(threshold)]]


def has_results(output_uri: Optional[str]) -> bool:
    """Whether TFMA wrote results in output_uri (not when the Evaluator failed before writing)."""
    return bool(output_uri) and tf.io.gfile.exists(os.path.join(output_uri, _EVAL_CONFIG_FILE))


def parse_eval_config(text: Optional[str]) -> Optional[tfma.EvalConfig]:
    """An EvalConfig from its JSON text (as TFX records it in ML Metadata); None for None."""
    return None if text is None else json_format.Parse(text, tfma.EvalConfig())


def load(output_uri: str, num_classes: int,
         configured_eval_config: Optional[tfma.EvalConfig] = None) -> EvalResults:
    """Everything the report needs from one Evaluator output directory.

    configured_eval_config: the config the Evaluator was given (its execution property); only
    used to list the change thresholds that were not applied because there was no baseline.
    """
    eval_config = eval_config_writer.load_eval_run(output_uri)[0]
    candidate = next(s.name for s in eval_config.model_specs if not s.is_baseline)
    baseline = next((s.name for s in eval_config.model_specs if s.is_baseline), None)
    metrics = _read_metrics(output_uri)
    confusion, calibration = _read_plots(output_uri, num_classes)
    validation = tfma.load_validation_result(output_uri)
    checks = _threshold_checks(eval_config, candidate, metrics, validation)
    if baseline is None:
        checks += _unapplied_change_thresholds(configured_eval_config)
    return EvalResults(eval_config, candidate, baseline, metrics, confusion, calibration,
                       validation.validation_ok, checks)


def nan_to_none(value: Optional[float]) -> Optional[float]:
    """None for a missing or NaN metric (TFMA reports 0/0 as NaN)."""
    return None if value is None or math.isnan(value) else value


# ---------------------------------------------------------------- per-class rows
# Sub keys of the metrics pipeline/evaluation.py configures: per-class metrics binarized by class
# id with top_k=1 (class i is predicted when it is the argmax), calibration binarized with k=1.
TOP1: SubKey = (("k", 1),)


def argmax_class(class_id: int) -> SubKey:
    """The sub key of class class_id's per-class precision, recall and F1."""
    return (("class_id", class_id), ("top_k", 1))


@dataclasses.dataclass
class ClassRow:
    """One class: eval examples of that true class, and TFMA's argmax precision, recall and F1."""
    name: str
    support: int
    precision: Optional[float]
    recall: Optional[float]
    f1: Optional[float]


def as_count(value: Optional[float]) -> Optional[int]:
    """A count as an int (TFMA reports example counts as floats)."""
    return None if value is None else int(value)


def class_rows(results: EvalResults, class_names: Sequence[str],
               model: Optional[str] = None) -> List[ClassRow]:
    """Per-class rows of one model (default: the candidate) from TFMA's per-class metrics."""
    rows = []
    for i, name in enumerate(class_names):
        precision, recall, f1 = (results.metric(m, model, sub_key=argmax_class(i))
                                 for m in pipeline_names.PER_CLASS_METRICS)
        # TFMA writes no slice for a class without eval examples.
        support = as_count(results.metric(pipeline_names.EXAMPLE_COUNT, model,
                                        slice_key=class_slice(name))) or 0
        rows.append(ClassRow(name, support, precision, recall, f1))
    return rows


def macro_f1(rows: Sequence[ClassRow]) -> Optional[float]:
    """Mean F1 over the classes whose F1 is defined (TFMA reports 0/0 as NaN); None if none is."""
    values = [r.f1 for r in rows if nan_to_none(r.f1) is not None]
    return sum(values) / len(values) if values else None
