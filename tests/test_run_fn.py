"""trainer.run_fn end to end on tiny records: a real Transform graph, two training phases, export.

The records are ImageExampleGen's (records.make_example, GZIP TFRecords) and the Transform graph
is written in-process by tensorflow_transform's Beam implementation from the pipeline's own
preprocessing_fn, so run_fn reads what the TFX Transform component would give it. One run_fn
call covers the frozen-backbone head phase, fine-tuning, AdamW with weight decay, label
smoothing, step decay, history.json, the run files and the served model. It costs about a
minute of CPU, nearly all of it TensorFlow tracing the train steps and the SavedModel export.
"""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tfx.components.trainer.fn_args_utils import FnArgs

import image_factory
import transform_graphs

# It trains (tracing MobileNetV3's train steps and exporting a SavedModel costs about a minute);
# one xdist worker runs the whole module, so its module-scoped run_fn call is made once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("run_fn")]
from common import dataset
from components.image_example_gen.records import make_example
from trainer_module import calibration, model as model_lib, names, trainer
from trainer_module.train_config import ConfigError, TrainConfig

CLASSES = dataset.INTEL_CLASS_NAMES
TRAIN_LABELS = tuple(range(len(CLASSES))) * 2
# Unbalanced on purpose: with balanced labels, label smoothing changes the loss of a model that
# scores every image alike by nothing, and the test could not see it.
EVAL_LABELS = (0, 0, 0, 1, 2, 3)
# Training crops of 40, the first epoch scaled down to 32 (progressive resizing), evaluation and
# serving (SavedModel, TFLite) at the centre 44 crop: each must see the side it is configured for.
RESIZE, IMAGE, TEST, START = 48, 40, 44, 32
# The raw schema as SchemaGen infers it for ImageExampleGen's records: one value per feature.
RAW_SPEC = {
    names.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string),
    names.LABEL_KEY: tf.io.FixedLenFeature([1], tf.int64),
    names.CLASS_NAME_KEY: tf.io.FixedLenFeature([1], tf.string),
    names.PATH_KEY: tf.io.FixedLenFeature([1], tf.string),
    names.HEIGHT_KEY: tf.io.FixedLenFeature([1], tf.int64),
    names.WIDTH_KEY: tf.io.FixedLenFeature([1], tf.int64),
    names.FORMAT_KEY: tf.io.FixedLenFeature([1], tf.string),
}
# The recipe under test: 1 head epoch (at the progressive start side) then 2 fine-tuning epochs
# (at image_size) at a tenth of the rate, halved
# every epoch. Minimalistic blocks: the same code path with half the ops to trace. BatchNorm
# momentum 0.01 keeps the last batches' statistics: with slow moving averages, a model trained
# for 3 steps scores every image alike, and comparing served and evaluated scores would not see
# the preprocessing.
RECIPE = dict(class_names=CLASSES, image_size=IMAGE, resize_size=RESIZE, test_image_size=TEST,
              progressive_start_size=START, batch_size=8, epochs=3,
              frozen_backbone_epochs=1, learning_rate=0.01, fine_tune_lr_factor=0.1, optimizer="adamw",
              weight_decay=0.01, schedule="step", step_every_epochs=1, step_factor=0.5,
              label_smoothing=0.2, minimalistic=True, bn_momentum=0.01, bn_recalibration_batches=0,
              seed=3)


def _write_split(path, labels, seed):
    """GZIP TFRecords of ImageExampleGen examples, one 64 px JPEG per label; returns the JPEGs."""
    images = [image_factory.jpeg_bytes(64, 64, seed=seed + i) for i in range(len(labels))]
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for i, (data, label) in enumerate(zip(images, labels)):
            example = make_example(data, label, CLASSES[label], f"{CLASSES[label]}/{i}.jpg", 64, 64, "jpeg")
            writer.write(example.SerializeToString())
    return images


def _write_transform_graph(output_dir, temp_dir, record_files):
    """The Transform component's transform_graph of preprocessing_fn, analysed on these records."""
    parsed = tf.data.TFRecordDataset(record_files, compression_type="GZIP").map(
        lambda record: tf.io.parse_single_example(record, RAW_SPEC))
    return transform_graphs.write_transform_graph(output_dir, temp_dir, RAW_SPEC, parsed.as_numpy_iterator(),
                                                  CLASSES, RESIZE)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("run_fn_data")
    _write_split(str(root / "train.gz"), TRAIN_LABELS, 0)
    eval_images = _write_split(str(root / "eval.gz"), EVAL_LABELS, 1000)
    graph = _write_transform_graph(str(root / "transform_graph"), str(root / "tmp"), [str(root / "train.gz")])
    return dict(train_files=[str(root / "train.gz")], eval_files=[str(root / "eval.gz")], graph=graph,
                eval_images=eval_images)


def _fn_args(data, out, **overrides):
    cfg = TrainConfig(**{**RECIPE, **overrides})
    return FnArgs(train_files=data["train_files"], eval_files=data["eval_files"],
                  transform_graph_path=data["graph"], serving_model_dir=str(out / "serving"),
                  model_run_dir=str(out / "model_run"),
                  custom_config={names.TRAIN_CONFIG_KEY: json.loads(cfg.to_json())})


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """One run_fn call with RECIPE; returns (fn_args, history.json contents)."""
    fn_args = _fn_args(data, tmp_path_factory.mktemp("run_fn_out"))
    trainer.run_fn(fn_args)
    with open(os.path.join(fn_args.model_run_dir, names.HISTORY_FILE)) as f:
        return fn_args, json.load(f)


def test_history_records_the_data_and_every_epoch(trained):
    _, history = trained
    assert history[names.HISTORY_CONFIG] == json.loads(TrainConfig(**RECIPE).to_json())
    assert (history[names.HISTORY_TRAIN_EXAMPLES], history[names.HISTORY_EVAL_EXAMPLES]) == (len(TRAIN_LABELS),
                                                                                             len(EVAL_LABELS))
    assert history[names.HISTORY_STEPS_PER_EPOCH] == 1  # 12 examples, batches of 8, whole batches only
    assert history[names.HISTORY_PRECISION] == "float32" and history[names.HISTORY_REPLICAS] == 1
    assert history[names.HISTORY_DECODED_CACHED]  # 18 images of 48 x 48 fit the default budget
    assert history[names.HISTORY_BN_RECALIBRATION] == {}  # bn_recalibration_batches=0
    series = history[names.HISTORY_SERIES]
    assert set(series) == {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"}
    assert all(len(values) == RECIPE["epochs"] and np.isfinite(values).all() for values in series.values())
    # Accuracy is a share of whole images: multiples of 1/8 (one train batch) and 1/6 (eval).
    for key, n in (("accuracy", 8), ("val_accuracy", len(EVAL_LABELS))):
        np.testing.assert_allclose(np.array(series[key]) * n, np.round(np.array(series[key]) * n), atol=1e-5)


def test_head_phase_then_fine_tuning_at_the_reduced_stepped_rate(trained):
    fn_args, history = trained
    head, fine_tune = history[names.HISTORY_PHASES]
    classifier = model_lib.build_model(TrainConfig(**RECIPE)).get_layer("probabilities").count_params()
    assert (head["name"], head["first_epoch"], head["epochs"]) == ("head", 0, 1)
    assert not head["backbone_trainable"] and head["trainable_parameters"] == classifier
    assert (fine_tune["name"], fine_tune["first_epoch"], fine_tune["epochs"]) == ("fine_tune", 1, 2)
    assert fine_tune["backbone_trainable"] and fine_tune["trainable_parameters"] > 100 * classifier
    assert (head["peak_learning_rate"], fine_tune["peak_learning_rate"]) == pytest.approx((0.01, 0.01 * 0.1))
    for phase in (head, fine_tune):
        assert (phase["optimizer"], phase["weight_decay"], phase["label_smoothing"]) == (
            "AdamW", pytest.approx(0.01), pytest.approx(0.2))
    # The rate the optimizer used in each epoch: the head's 0.01, then fine-tuning's 0.001, halved
    # after one epoch (each phase's step schedule starts at its own first step).
    assert history[names.HISTORY_SERIES][names.HISTORY_LEARNING_RATE] == pytest.approx([0.01, 0.001, 0.0005])


def test_run_files(trained):
    fn_args, _ = trained
    run_dir = fn_args.model_run_dir
    plots = [os.path.join(run_dir, names.LR_SCHEDULE_PHASE_PLOT.format(phase="head")),
             os.path.join(run_dir, names.LR_SCHEDULE_PLOT)]
    assert sorted(tf.io.gfile.glob(os.path.join(run_dir, names.LR_SCHEDULE_GLOB))) == sorted(plots)
    for plot in plots:
        assert tf.io.decode_png(tf.io.read_file(plot)).shape == (350, 700, 4)
    assert tf.io.gfile.glob(os.path.join(run_dir, names.TENSORBOARD_DIR, "train", "events.out.tfevents.*"))
    # A finished Trainer leaves no backup to resume from (it was there while it trained).
    backup_root = os.path.join(os.path.dirname(run_dir), names.TRAINING_BACKUP_DIR)
    assert tf.io.gfile.isdir(backup_root) and tf.io.gfile.listdir(backup_root) == []


def test_the_saved_model_holds_the_weights_and_no_training_state(trained):
    fn_args, _ = trained
    variables = tf.train.list_variables(os.path.join(fn_args.serving_model_dir, "variables", "variables"))
    assert not [name for name, _ in variables if "optimizer" in name]
    weights = sum(int(np.prod(shape)) for name, shape in variables if name != "_CHECKPOINTABLE_OBJECT_GRAPH")
    assert weights == model_lib.build_model(TrainConfig(**RECIPE)).count_params()


def test_edge_models_are_exported_beside_the_saved_model(trained):
    from common.tflite_classifier import TFLiteClassifier

    fn_args, _ = trained
    edge_dir = os.path.join(os.path.dirname(fn_args.serving_model_dir), names.EDGE_MODEL_SUBDIR)
    expected = [names.TFLITE_FILE.format(flavour=f) for f in names.TFLITE_FLAVOURS] + [names.TFLITE_LABELS_FILE]
    assert sorted(tf.io.gfile.listdir(edge_dir)) == sorted(expected)
    for flavour in names.TFLITE_FLAVOURS:
        edge = TFLiteClassifier(os.path.join(edge_dir, names.TFLITE_FILE.format(flavour=flavour)))
        assert (edge.labels, edge.image_size, edge.resize_size) == (CLASSES, TEST, RESIZE)


@pytest.fixture(scope="module")
def served(trained, data):
    """(the loaded SavedModel, its serving_default outputs for the eval JPEGs as numpy)."""
    loaded = tf.saved_model.load(trained[0].serving_model_dir)
    outputs = loaded.signatures[names.SERVING_BYTES_SIGNATURE](
        **{names.SERVING_BYTES_INPUT: tf.constant(data["eval_images"])})
    return loaded, {key: value.numpy() for key, value in outputs.items()}


def test_served_model_scores_jpeg_bytes_as_the_last_evaluation_did(trained, served):
    _, history = trained
    _, outputs = served
    assert set(outputs) == set(names.SERVING_OUTPUTS)
    probabilities = outputs[names.PROBABILITIES_OUTPUT]
    assert probabilities.shape == (len(EVAL_LABELS), len(CLASSES))
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-5)
    # The scores depend on the image (a constant model varies by ~1e-7; this tiny one by 0.07-0.3,
    # depending on what the process trained before it).
    assert np.ptp(probabilities, axis=0).max() > 0.01
    top = probabilities.argmax(1)
    assert outputs[names.PREDICTED_CLASS_OUTPUT].astype(str).tolist() == [CLASSES[i] for i in top]
    np.testing.assert_allclose(outputs[names.PREDICTED_PROBABILITY_OUTPUT], probabilities.max(1))
    assert outputs[names.CLASS_NAMES_OUTPUT].astype(str).tolist() == [list(CLASSES)] * len(EVAL_LABELS)
    # The exported model is the one the last epoch evaluated, preprocessing included, with its
    # temperature: the argmax is the evaluated one, and undoing the temperature gives the evaluated
    # probabilities.
    series = history[names.HISTORY_SERIES]
    assert series["val_accuracy"][-1] == pytest.approx((top == np.array(EVAL_LABELS)).mean())
    one_hot = np.eye(len(CLASSES))[list(EVAL_LABELS)]
    smoothed = one_hot * (1 - RECIPE["label_smoothing"]) + RECIPE["label_smoothing"] / len(CLASSES)
    # Keras computes the loss from the softmax's logits (no clipping at 1e-7: a true class scored
    # below that counts in full), so the log of the probabilities as trained, in float64, is the same.
    log_p = np.log(np.maximum(_as_trained(probabilities.astype(np.float64), history), 1e-300))
    cross_entropy = lambda targets: -(targets * log_p).sum(1).mean()  # noqa: E731
    assert series["val_loss"][-1] == pytest.approx(cross_entropy(smoothed), rel=1e-5)
    # The loss was the smoothed one: the plain one differs (by how much depends on how training went).
    assert series["val_loss"][-1] != pytest.approx(cross_entropy(one_hot), rel=1e-4)


def _as_trained(served_probabilities, history):
    """The network's probabilities before the temperature: softmax(T log p) of the served p."""
    temperature = history[names.HISTORY_CALIBRATION][names.CALIBRATION_TEMPERATURE]
    return calibration.softmax(temperature * np.log(np.maximum(served_probabilities, 1e-30)))


def test_the_served_probabilities_carry_the_temperature_fitted_on_the_eval_split(trained, served):
    _, history = trained
    _, outputs = served
    fitted = history[names.HISTORY_CALIBRATION]
    served_probabilities = outputs[names.PROBABILITIES_OUTPUT]
    labels = np.array(EVAL_LABELS)
    assert fitted[names.CALIBRATION_EXAMPLES] == len(EVAL_LABELS)
    assert fitted[names.CALIBRATION_TEMPERATURE] != 1.0
    # What the history says before and after is what the served model gives, and the evaluated
    # model as trained: the same accuracy, the fit's likelihood no worse.
    assert fitted[names.CALIBRATION_ACCURACY] == pytest.approx(history[names.HISTORY_SERIES]["val_accuracy"][-1])
    assert fitted[names.CALIBRATION_ECE_AFTER] == pytest.approx(
        calibration.expected_calibration_error(served_probabilities, labels), abs=1e-5)
    assert fitted[names.CALIBRATION_ECE_BEFORE] == pytest.approx(
        calibration.expected_calibration_error(_as_trained(served_probabilities, history), labels), abs=1e-5)
    assert fitted[names.CALIBRATION_NLL_AFTER] <= fitted[names.CALIBRATION_NLL_BEFORE]


def test_examples_signature_agrees_with_the_bytes_signature(trained, served, data):
    fn_args, _ = trained
    loaded, outputs = served
    records = list(tf.data.TFRecordDataset(data["eval_files"], compression_type="GZIP").as_numpy_iterator())
    by_examples = loaded.signatures[names.SERVING_EXAMPLES_SIGNATURE](
        **{names.SERVING_EXAMPLES_INPUT: tf.constant(records)})
    np.testing.assert_allclose(by_examples[names.PROBABILITIES_OUTPUT].numpy(),
                               outputs[names.PROBABILITIES_OUTPUT], atol=1e-6)
    with open(os.path.join(fn_args.serving_model_dir, names.EXTRA_ASSETS_DIR, names.CLASS_NAMES_ASSET)) as f:
        assert json.load(f) == list(CLASSES)


def test_a_global_batch_larger_than_the_train_split_is_a_config_error(data, tmp_path):
    with pytest.raises(ConfigError, match=r"global batch \(16\) is larger than the 12 train examples"):
        trainer.run_fn(_fn_args(data, tmp_path, batch_size=16))
    assert not os.path.exists(tmp_path / "model_run")
