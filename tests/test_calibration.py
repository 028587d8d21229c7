"""Temperature scaling (trainer_module/calibration.py) and the inference model that serves it
(model.inference_model): the fit, the expected calibration error as TFMA buckets it, and that a
temperature changes no argmax."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
import tf_keras as keras

from pipeline import evaluation
from common import tfma_results
from trainer_module import calibration, model as model_lib, names
from trainer_module.train_config import TrainConfig

CLASSES = ("a", "b", "c")


def _sample(n: int, true_temperature: float, seed: int = 0):
    """(logits, labels) with labels drawn from softmax(logits / true_temperature): the model whose
    logits these are is calibrated at exactly that temperature."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.0, [n, len(CLASSES)])
    probabilities = calibration.softmax(logits / true_temperature)
    labels = np.array([rng.choice(len(CLASSES), p=p) for p in probabilities])
    return logits, labels


def test_the_fit_recovers_the_temperature_the_labels_were_drawn_at():
    for true_temperature in (0.5, 2.0):  # an under- and an over-confident network
        logits, labels = _sample(20000, true_temperature)
        assert calibration.fit_temperature(logits, labels) == pytest.approx(true_temperature, rel=0.05)


def test_the_fitted_temperature_minimises_the_negative_log_likelihood():
    logits, labels = _sample(500, 0.7, seed=1)
    fitted = calibration.fit_temperature(logits, labels)
    best = calibration.negative_log_likelihood(logits, labels, fitted)
    for other in (fitted * 0.98, fitted * 1.02, 1.0):
        assert calibration.negative_log_likelihood(logits, labels, other) > best
    result = calibration.calibrate(logits, labels)
    assert result[names.CALIBRATION_TEMPERATURE] == fitted
    assert result[names.CALIBRATION_NLL_AFTER] == pytest.approx(best)
    assert result[names.CALIBRATION_NLL_BEFORE] == pytest.approx(calibration.negative_log_likelihood(logits, labels))
    # Drawn at T = 0.7, the logits as they are are under-confident; the fit makes them sharper and
    # brings the mean top-1 probability near the accuracy.
    assert result[names.CALIBRATION_MEAN_TOP1_BEFORE] < result[names.CALIBRATION_ACCURACY]
    assert (abs(result[names.CALIBRATION_MEAN_TOP1_AFTER] - result[names.CALIBRATION_ACCURACY])
            < abs(result[names.CALIBRATION_MEAN_TOP1_BEFORE] - result[names.CALIBRATION_ACCURACY]))
    assert result[names.CALIBRATION_ECE_AFTER] < result[names.CALIBRATION_ECE_BEFORE]
    assert not result[names.CALIBRATION_AT_BOUND]


def test_an_eval_split_without_errors_stops_the_fit_at_its_bound():
    logits = np.array([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    result = calibration.calibrate(logits, np.array([0, 1, 2]))
    assert result[names.CALIBRATION_TEMPERATURE] == calibration.MIN_TEMPERATURE
    assert result[names.CALIBRATION_AT_BOUND]
    assert result[names.CALIBRATION_ACCURACY] == 1.0


def test_expected_calibration_error_by_hand():
    # Top-1 probabilities 0.95 (right), 0.95 (wrong), 0.55 (right), 1.0 (right): buckets
    # [0.9, 1): |1.9 - 1| = 0.9; [0.5, 0.6): |0.55 - 1| = 0.45; 1.0 alone: |1 - 1| = 0.
    probabilities = np.array([[0.95, 0.05, 0.0], [0.95, 0.05, 0.0], [0.45, 0.55, 0.0], [0.0, 0.0, 1.0]])
    labels = np.array([0, 1, 1, 2])
    assert calibration.expected_calibration_error(probabilities, labels) == pytest.approx((0.9 + 0.45) / 4)


def test_expected_calibration_error_is_what_the_report_derives_from_tfmas_calibration_plot(tmp_path):
    """The Trainer's "before" and "after" and the Evaluator's figure are one measure."""
    logits, labels = _sample(300, 0.6, seed=2)
    probabilities = calibration.softmax(logits / 0.8).astype(np.float32)
    data = str(tmp_path / "data.tfrecord")
    with tf.io.TFRecordWriter(data) as writer:
        for label, p in zip(labels, probabilities):
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                "probabilities": tf.train.Feature(float_list=tf.train.FloatList(value=p)),
            })).SerializeToString())
    config = tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(label_key="label", prediction_key="probabilities")],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[tfma.MetricsSpec(binarize=tfma.BinarizationOptions(k_list={"values": [1]}), metrics=[
            tfma.MetricConfig(class_name="CalibrationPlot",
                              config=f'{{"num_buckets": {evaluation.CALIBRATION_BUCKETS}}}')])])
    tfma.run_model_analysis(eval_config=config, data_location=data, output_path=str(tmp_path / "out"))
    [plots] = list(tfma.load_plots(str(tmp_path / "out")))
    [buckets] = [tfma_results._calibration_buckets(kv.value) for kv in plots.plot_keys_and_values]
    assert tfma_results.expected_calibration_error(buckets) == pytest.approx(
        calibration.expected_calibration_error(probabilities, labels), abs=1e-6)


# ---------------------------------------------------------------- the inference model

def _trained_like_model(cfg: TrainConfig):
    """build_model's network with its BatchNorm statistics estimated on noise: distinct scores per
    image (a fresh network's pooled features are all zero)."""
    keras.utils.set_random_seed(0)
    model = model_lib.build_model(cfg)
    noise = tf.data.Dataset.from_tensors((tf.random.uniform([8, 32, 32, 3], 0, 255), 0))
    model_lib.recalibrate_batchnorm(model, noise, 1)
    return model


@pytest.mark.parametrize("flip", [False, True], ids=["plain", "flip-averaged"])
def test_a_temperature_divides_the_logits_and_changes_no_argmax(flip):
    cfg = TrainConfig(class_names=CLASSES, image_size=32, resize_size=32, test_time_flip=flip)
    model = _trained_like_model(cfg)
    images = tf.random.uniform([16, 32, 32, 3], 0, 255, seed=1)
    logits = model_lib.logits_model(model, cfg)(images).numpy()
    uncalibrated = model_lib.inference_model(model, cfg)(images).numpy()
    assert np.ptp(uncalibrated.argmax(1)) > 0  # not one class for every image: the argmax test can fail
    for temperature in (0.3, 2.5):
        calibrated = model_lib.inference_model(model, cfg, temperature)
        assert model_lib.temperature_of(calibrated) == temperature
        served = calibrated(images).numpy()
        np.testing.assert_allclose(served, calibration.softmax(logits / temperature), atol=1e-6)
        np.testing.assert_array_equal(served.argmax(1), uncalibrated.argmax(1))
        # Sharper below 1, softer above.
        assert (served.max(1).mean() > uncalibrated.max(1).mean()) == (temperature < 1)


def test_without_flip_and_temperature_the_inference_model_is_the_trained_one():
    cfg = TrainConfig(class_names=CLASSES, image_size=32, resize_size=32)
    model = model_lib.build_model(cfg)
    assert model_lib.inference_model(model, cfg) is model
    assert model_lib.temperature_of(model) == 1.0
    with pytest.raises(ValueError, match="temperature must be > 0"):
        model_lib.Temperature(0.0)
