"""The Evaluator's TFMA configuration: the metrics users read and the thresholds that gate a push."""
import tensorflow_model_analysis as tfma

from trainer_module import features


def make_eval_config(accuracy_lower_bound: float, accuracy_max_drop: float) -> tfma.EvalConfig:
    """TFMA config: accuracy gated absolutely and against the baseline, sliced by true class."""
    accuracy_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": accuracy_lower_bound}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -accuracy_max_drop}))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name=features.SERVING_EXAMPLES_SIGNATURE,
                                    label_key=features.LABEL_KEY,
                                    prediction_key=features.PROBABILITIES_OUTPUT)],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[features.CLASS_NAME_KEY])],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            tfma.MetricConfig(class_name="SparseCategoricalAccuracy", threshold=accuracy_threshold),
            tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
        ])])
