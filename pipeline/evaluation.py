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
"""
from typing import Sequence

import tensorflow_model_analysis as tfma

# The metric keys are defined in common/pipeline_names.py (readers below this level use them too)
# and offered here with the config that computes them.
from common.pipeline_names import (ACCURACY, CALIBRATION, CALIBRATION_PLOT, CONFUSION_MATRIX_PLOT,
                                   EXAMPLE_COUNT, PER_CLASS_METRICS)
from pipeline.configs import PipelineConfig
from trainer_module import names

__all__ = ["ACCURACY", "CALIBRATION", "CALIBRATION_BUCKETS", "CALIBRATION_PLOT", "CONFUSION_MATRIX_PLOT",
           "EXAMPLE_COUNT", "PER_CLASS_METRICS", "make_eval_config"]
CALIBRATION_BUCKETS = 10


def make_eval_config(cfg: PipelineConfig, class_names: Sequence[str]) -> tfma.EvalConfig:
    """TFMA config: overall accuracy gated absolutely and against the baseline; per-class precision,
    recall and F1; everything also sliced by true class.

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
    metrics_specs = [
        tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            # Gated on the overall slice only: a threshold without slicing specs would apply to
            # every slice, failing the gate on the noise of a few examples of one class.
            tfma.MetricConfig(class_name="SparseCategoricalAccuracy", per_slice_thresholds=[
                tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()],
                                             threshold=accuracy_threshold)]),
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
