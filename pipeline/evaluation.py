"""The Evaluator's TFMA configuration: the metrics users read and the thresholds that gate a push.

Metric keys (what run_report/ reads back with tfma.load_metrics / load_plots):
  overall, no sub key:   example_count, sparse_categorical_accuracy (gated),
                         multi_class_confusion_matrix_plot (a plot)
  sub key class_id=i, top_k=1:  precision, recall, f1_score of class i, where "predicted i" means
                         i is the top-1 class (argmax), as a user reads a classifier
  sub key k=1:           calibration (mean top-1 probability / top-1 accuracy; 1.0 is calibrated)
                         and calibration_plot (reliability buckets of the top-1 probability, from
                         which the report derives the expected calibration error; TFMA has no
                         ECE metric)
Each is computed overall and per true class (slice `class_name`); with a baseline model TFMA
adds the baseline's values and the candidate-minus-baseline diffs.

The gate (TFMA thresholds, TFMA's verdict): accuracy on the overall slice, and every class's recall,
which is the accuracy on the slice of its true class (one slice spec per class, so a class without
eval examples is a missing slice, a failure, not a class nobody checked); each with a floor and a
largest drop against the baseline. failure_lines puts TFMA's validation result in words.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.slicer import slicer_lib
from tensorflow_model_analysis.writers import eval_config_writer

# The metric keys are defined in common/pipeline_names.py (readers below this level use them too)
# and offered here with the config that computes them.
from common.pipeline_names import (ACCURACY, CALIBRATION, CALIBRATION_PLOT, CONFUSION_MATRIX_PLOT,
                                   EXAMPLE_COUNT, PER_CLASS_METRICS)
from pipeline.configs import PipelineConfig
from trainer_module import calibration, names

__all__ = ["ACCURACY", "CALIBRATION", "CALIBRATION_BUCKETS", "CALIBRATION_PLOT", "CONFUSION_MATRIX_PLOT",
           "EXAMPLE_COUNT", "PER_CLASS_METRICS", "class_recall_threshold", "class_slicing_spec", "describe_failure",
           "failure_lines", "make_eval_config", "slice_subject", "verdict_line"]
CALIBRATION_BUCKETS = calibration.ECE_BUCKETS  # the Trainer measures the calibration error alike


def class_slicing_spec(class_name: str) -> tfma.SlicingSpec:
    """The slice of the examples whose true class is class_name."""
    return tfma.SlicingSpec(feature_values={names.CLASS_NAME_KEY: class_name})


def class_recall_threshold(cfg: PipelineConfig) -> Optional[tfma.MetricThreshold]:
    """The threshold of each class's recall: the floor (unless 0) and the largest drop against the
    baseline (unless 1); None when both are off."""
    threshold = tfma.MetricThreshold()
    if cfg.class_recall_lower_bound > 0:
        threshold.value_threshold.lower_bound.value = cfg.class_recall_lower_bound
    if cfg.class_recall_max_drop < 1:
        threshold.change_threshold.direction = tfma.MetricDirection.HIGHER_IS_BETTER
        threshold.change_threshold.absolute.value = -cfg.class_recall_max_drop
    return threshold if threshold.ListFields() else None


def make_eval_config(cfg: PipelineConfig, class_names: Sequence[str]) -> tfma.EvalConfig:
    """TFMA config: overall accuracy and each class's recall gated absolutely and against the
    baseline; per-class precision, recall and F1; everything also sliced by true class.

    The change threshold only applies when the Evaluator gets a baseline model (TFX drops it on
    the first run).
    """
    if not class_names:
        raise ValueError("make_eval_config needs the class names (per-class metrics use their ids)")
    accuracy_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": cfg.accuracy_lower_bound}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -cfg.accuracy_max_drop}))
    # The overall threshold on the overall slice only (without slicing specs it would apply to every
    # slice); the class thresholds on each class's slice, with their own knobs.
    accuracy_thresholds = [tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()],
                                                        threshold=accuracy_threshold)]
    class_threshold = class_recall_threshold(cfg)
    if class_threshold is not None:
        accuracy_thresholds.append(tfma.PerSliceMetricThreshold(
            slicing_specs=[class_slicing_spec(name) for name in class_names], threshold=class_threshold))
    metrics_specs = [
        tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            tfma.MetricConfig(class_name="SparseCategoricalAccuracy", per_slice_thresholds=accuracy_thresholds),
            tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
        ]),
        # k=1: the top-1 probability against "the top-1 class is the label" (top-label calibration).
        tfma.MetricsSpec(binarize=tfma.BinarizationOptions(k_list={"values": [1]}), metrics=[
            tfma.MetricConfig(class_name="Calibration"),
            tfma.MetricConfig(class_name="CalibrationPlot",
                              config=f'{{"num_buckets": {CALIBRATION_BUCKETS}}}'),
        ]),
        # top_k=1 with threshold 0: class i counts as predicted iff it is the argmax. (Binarizing
        # alone thresholds each probability at 0.5; top_k alone has a -inf threshold that, in
        # TFMA 0.47, counts every example as predicted for a class that is never the argmax.)
        tfma.MetricsSpec(
            binarize=tfma.BinarizationOptions(class_ids={"values": list(range(len(class_names)))}),
            metrics=[tfma.MetricConfig(class_name=name, config='{"top_k": 1, "thresholds": [0.0]}')
                     for name in ("Precision", "Recall", "F1Score")]),
    ]
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name=names.SERVING_EXAMPLES_SIGNATURE,
                                    label_key=names.LABEL_KEY,
                                    prediction_key=names.PROBABILITIES_OUTPUT)],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[names.CLASS_NAME_KEY])],
        metrics_specs=metrics_specs)


# ---------------------------------------------------------------- TFMA's verdict in words

def slice_subject(slice_key: Tuple) -> str:
    """What a slice's accuracy is, in words: "accuracy" overall, "class forest: recall" for the
    slice of a true class."""
    if not slice_key:
        return "accuracy"
    values = dict(slice_key)
    if set(values) == {names.CLASS_NAME_KEY}:
        return f"class {values[names.CLASS_NAME_KEY]}: recall"
    return f"{slicer_lib.stringify_slice_key(slice_key)}: accuracy"


def _spec_place(spec: tfma.SlicingSpec) -> str:
    """Where a slice spec points, in words: "class forest", or TFMA's slice text."""
    values = dict(spec.feature_values)
    if set(values) == {names.CLASS_NAME_KEY}:
        return f"class {values[names.CLASS_NAME_KEY]}"
    return slicer_lib.stringify_slice_key(tuple(sorted(values.items()))) or "the overall slice"


def _values(output_uri: str) -> Dict[Tuple[Tuple, str, str, bool], float]:
    """{(slice key, model name, metric, is_diff): value} of the sub-key-free metrics TFMA wrote."""
    values = {}
    for per_slice in tfma.load_metrics(output_uri):
        slice_key = slicer_lib.deserialize_slice_key(per_slice.slice_key)
        for kv in per_slice.metric_keys_and_values:
            if not kv.key.HasField("sub_key") and kv.value.HasField("double_value"):
                values[(slice_key, kv.key.model_name, kv.key.name, kv.key.is_diff)] = kv.value.double_value.value
    return values


def _number(value: Optional[float]) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def describe_failure(slice_key: Tuple, failure, values: Dict, baseline: Optional[str]) -> str:
    """One failed threshold of TFMA's validation result in words, e.g.
    "class forest: recall 0.960 -> 0.030 (-0.930; the largest drop allowed is 0.1)"."""
    subject, key = slice_subject(slice_key), failure.metric_key
    value = failure.metric_value.double_value.value if failure.metric_value.HasField("double_value") else None
    if failure.message and value is None:  # e.g. "Metric not found."
        return f"{subject}: {failure.message.strip()}"
    threshold = failure.metric_threshold
    if threshold.HasField("change_threshold"):
        candidate = values.get((slice_key, key.model_name, key.name, False))
        previous = values.get((slice_key, baseline, key.name, False)) if baseline is not None else None
        allowed = abs(threshold.change_threshold.absolute.value)
        return (f"{subject} {_number(previous)} -> {_number(candidate)} "
                f"({'n/a' if value is None or math.isnan(value) else f'{value:+.3f}'}; the largest drop "
                f"allowed is {allowed:g})")
    bound = threshold.value_threshold
    if bound.HasField("lower_bound") and not (value is not None and value >= bound.lower_bound.value):
        return f"{subject} {_number(value)} is below the lower bound {bound.lower_bound.value:g}"
    return f"{subject} {_number(value)} is above the upper bound {bound.upper_bound.value:g}"


def failure_lines(output_uri: str) -> List[str]:
    """Every threshold the candidate failed in the Evaluator output at output_uri, one line each,
    naming the slice (the class), the metric, its value (and the baseline's) and the bound."""
    validation = tfma.load_validation_result(output_uri)
    eval_config = eval_config_writer.load_eval_run(output_uri)[0]
    baseline = next((s.name for s in eval_config.model_specs if s.is_baseline), None)
    values = _values(output_uri)
    lines = [describe_failure(slicer_lib.deserialize_slice_key(per_slice.slice_key), f, values, baseline)
             for per_slice in validation.metric_validations_per_slice for f in per_slice.failures]
    lines += [f"{_spec_place(spec)}: no examples of it in the evaluation data, so its recall cannot be checked"
              for spec in validation.missing_slices]
    if validation.missing_thresholds:
        lines.append("no threshold was configured")
    return lines


def verdict_line(output_uri: str, blessed: bool) -> str:
    """The Evaluator's console figures: BLESSED with the accuracy and the weakest class's recall,
    or NOT blessed with every failed threshold."""
    if not blessed:
        failures = failure_lines(output_uri)
        return "NOT blessed: " + ("; ".join(failures) if failures else "see the report")
    eval_config = eval_config_writer.load_eval_run(output_uri)[0]
    candidate = next(s.name for s in eval_config.model_specs if not s.is_baseline)
    values = _values(output_uri)
    text = f"BLESSED: accuracy {_number(values.get(((), candidate, ACCURACY, False)))}"
    recalls = {dict(k[0])[names.CLASS_NAME_KEY]: v for k, v in values.items()
               if k[1:] == (candidate, ACCURACY, False) and len(k[0]) == 1 and k[0][0][0] == names.CLASS_NAME_KEY}
    if recalls:
        weakest = min(recalls, key=recalls.get)
        text += f", weakest class {weakest} (recall {_number(recalls[weakest])})"
    return text
