"""Temperature scaling: the served probabilities are softmax(logits / T), with T fitted on the eval
split after training (Guo et al. 2017, "On Calibration of Modern Neural Networks").

Why: the recipes train with label smoothing, CutMix and a moving average of the weights, which make
the network under-confident (the cpu recipe's mean top-1 probability was 0.90 of its accuracy), so
a confidence threshold did not mean what it said. Dividing the logits by one positive number
changes no argmax: accuracy, the confusion matrix and every per-class figure stay as they were.

The fit minimises the eval split's negative log-likelihood over T. It is convex in 1/T, so its
derivative is monotone and bisection finds the minimum; written here because no dependency of the
Trainer offers it (Keras has no temperature fit, scipy is not a declared dependency) and it is a few
lines of numpy. The expected calibration error is measured as TFMA's CalibrationPlot buckets it
(ECE_BUCKETS equal-width buckets of the top-1 probability, a probability of 1 in a bucket of its
own), so the Trainer's "after" and the Evaluator's figure on the same eval split agree.
"""
from typing import Dict

import numpy as np

from trainer_module import names

ECE_BUCKETS = 10  # also the Evaluator's CalibrationPlot (pipeline/evaluation.py)
# The temperatures the fit may choose. An eval split the model classifies without error pulls T
# towards 0 (ever more confident is ever more likely): the fit then stops at the bound and says so.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.1, 10.0
_BISECTIONS = 60  # 2^-60 of the range in 1/T: exact in float64


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, stable for large logits."""
    shifted = np.asarray(logits, np.float64) - np.max(logits, axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean -log softmax(logits / temperature)[label]."""
    scaled = np.asarray(logits, np.float64) / temperature
    top = scaled.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(scaled - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(log_z - scaled[np.arange(len(labels)), labels]))


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray,
                               buckets: int = ECE_BUCKETS) -> float:
    """Sum over buckets of the top-1 probability of |sum of top-1 probabilities - correct ones|,
    divided by the number of examples; bucketed as TFMA's calibration histogram does."""
    probabilities = np.asarray(probabilities, np.float64)
    top = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    index = np.minimum(np.floor(top * buckets), buckets).astype(int)  # 1.0 alone in bucket `buckets`
    gap = sum(abs(top[index == b].sum() - correct[index == b].sum()) for b in np.unique(index))
    return float(gap / len(labels))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in [MIN_TEMPERATURE, MAX_TEMPERATURE] that minimises the mean negative
    log-likelihood of softmax(logits / T).

    With b = 1/T the loss is mean(logsumexp(b z) - b z_label), convex in b, with derivative
    mean(E_softmax(b z)[z] - z_label), increasing in b: bisection on its sign.
    """
    logits = np.asarray(logits, np.float64)
    chosen = logits[np.arange(len(labels)), labels]

    def slope(b: float) -> float:
        return float(np.mean((softmax(b * logits) * logits).sum(axis=1) - chosen))

    low, high = 1.0 / MAX_TEMPERATURE, 1.0 / MIN_TEMPERATURE
    if slope(low) >= 0:
        return MAX_TEMPERATURE
    if slope(high) <= 0:
        return MIN_TEMPERATURE
    for _ in range(_BISECTIONS):
        middle = 0.5 * (low + high)
        if slope(middle) < 0:
            low = middle
        else:
            high = middle
    return float(1.0 / (0.5 * (low + high)))


def calibrate(logits: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
    """Fits the temperature on (logits, labels) and measures before (T = 1) and after: the
    history's names.CALIBRATION_* entries."""
    labels = np.asarray(labels).astype(int)
    temperature = fit_temperature(logits, labels)
    before, after = softmax(logits), softmax(np.asarray(logits, np.float64) / temperature)
    accuracy = float(np.mean(before.argmax(axis=1) == labels))
    return {
        names.CALIBRATION_TEMPERATURE: temperature,
        names.CALIBRATION_EXAMPLES: int(len(labels)),
        names.CALIBRATION_AT_BOUND: temperature in (MIN_TEMPERATURE, MAX_TEMPERATURE),
        names.CALIBRATION_ACCURACY: accuracy,
        names.CALIBRATION_ECE_BEFORE: expected_calibration_error(before, labels),
        names.CALIBRATION_ECE_AFTER: expected_calibration_error(after, labels),
        names.CALIBRATION_NLL_BEFORE: negative_log_likelihood(logits, labels),
        names.CALIBRATION_NLL_AFTER: negative_log_likelihood(logits, labels, temperature),
        names.CALIBRATION_MEAN_TOP1_BEFORE: float(before.max(axis=1).mean()),
        names.CALIBRATION_MEAN_TOP1_AFTER: float(after.max(axis=1).mean()),
    }
