"""TensorBoard tells what history.json and the run report tell: the learning rate per epoch and per
step, the exported model's evaluation after training (final/) and the Evaluator's metrics
(evaluator/), all read back from the event files.

Fast tests train a tiny Keras model with the Trainer's callbacks and write hand-made results; the
slow ones read the session's pipeline runs (tests/pipeline_runs.py; A: blessed, B: CACHED rerun of
A, C: weak candidate, not blessed).
"""
import html
import json
import os
from typing import Dict

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
import tf_keras as keras

from common import pipeline_names, tfma_results
from pipeline import evaluation
from run_report import run_data, tables, tensorboard_scalars, writer
from trainer_module import names, trainer


def _scalars(folder: str) -> Dict[str, Dict[int, float]]:
    """{tag: {step: value}} of the scalars in every events file of folder; fails on a tag written
    twice at one step."""
    scalars: Dict[str, Dict[int, float]] = {}
    for path in sorted(tf.io.gfile.glob(os.path.join(folder, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name != "scalars":
                    continue
                steps = scalars.setdefault(value.tag, {})
                assert event.step not in steps, f"{value.tag} written twice at step {event.step}"
                steps[event.step] = float(tf.make_ndarray(value.tensor))
    return scalars


def _f32(value: float) -> float:
    """value as TensorBoard stores it (float32)."""
    return float(np.float32(value))


# ---------------------------------------------------------------- the Trainer's scalars (fast)

def test_learning_rate_per_epoch_and_step_over_two_fits(tmp_path):
    """Two phases as trainer.train runs them (a new optimizer and schedule per model.fit), with a
    schedule that changes every step: Keras' own TensorBoard would write each epoch the rate of
    the step after its last one."""
    keras.utils.set_random_seed(0)
    x, y = np.random.rand(32, 3).astype("float32"), np.random.rand(32, 2).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    steps = 4  # 32 examples, batches of 8
    phases = [(keras.optimizers.schedules.PolynomialDecay(0.1, 8, 0.01), 2),
              (keras.optimizers.schedules.PolynomialDecay(0.01, 4, 0.001), 1)]
    recorded, epoch = [], 0
    for schedule, epochs in phases:
        model.compile(keras.optimizers.SGD(schedule), "mse")
        fit = model.fit(x, y, batch_size=8, epochs=epoch + epochs, initial_epoch=epoch, verbose=0,
                        callbacks=trainer.metric_log_callbacks(str(tmp_path), schedule, steps, epoch))
        recorded += fit.history[names.HISTORY_LEARNING_RATE]
        epoch += epochs
    # Each epoch's last step: phase steps 3 and 7, then 3 of the second phase.
    first, second = (schedule for schedule, _ in phases)
    assert recorded == [_f32(first(3)), _f32(first(7)), _f32(second(3))]
    written = _scalars(str(tmp_path / names.TB_TRAIN_RUN))
    assert written[names.TB_EPOCH_LEARNING_RATE] == {0: recorded[0], 1: recorded[1], 2: recorded[2]}
    expected_steps = [_f32(first(s)) for s in range(8)] + [_f32(second(s)) for s in range(4)]
    assert written[names.TB_STEP_LEARNING_RATE] == dict(enumerate(expected_steps))


HISTORY = {"val_accuracy": [0.125, 1 / 6], "val_loss": [1.9, 1.79]}
KEPT = {"batches": 9, "train_loss_before": 1.82, "train_loss_after": 0.29, "kept": True,
        "eval": {"loss": 0.334, "accuracy": 0.917}}


def test_final_scalars_of_a_kept_bn_reestimate_at_step_epochs(tmp_path):
    trainer.write_final_scalars(str(tmp_path), 2, trainer.final_scalars(HISTORY, KEPT))
    assert _scalars(str(tmp_path / names.TB_FINAL_RUN)) == {
        names.TB_FINAL_VAL_ACCURACY: {2: _f32(0.917)}, names.TB_FINAL_VAL_LOSS: {2: _f32(0.334)},
        names.TB_FINAL_VAL_ACCURACY_BEFORE: {2: _f32(1 / 6)}, names.TB_FINAL_VAL_LOSS_BEFORE: {2: _f32(1.79)},
        names.TB_FINAL_BN_KEPT: {2: 1.0}, names.TB_FINAL_BN_TRAIN_LOSS_BEFORE: {2: _f32(1.82)},
        names.TB_FINAL_BN_TRAIN_LOSS_AFTER: {2: _f32(0.29)}}


def test_final_scalars_without_bn_reestimate_are_the_last_epochs():
    assert trainer.final_scalars(HISTORY, {}) == {
        names.TB_FINAL_VAL_ACCURACY: 1 / 6, names.TB_FINAL_VAL_LOSS: 1.79,
        names.TB_FINAL_VAL_ACCURACY_BEFORE: 1 / 6, names.TB_FINAL_VAL_LOSS_BEFORE: 1.79}


# ---------------------------------------------------------------- the Evaluator's scalars (fast)

def _results(accuracy: float) -> tfma_results.EvalResults:
    """Two classes; "b" was never predicted (precision and F1 NaN)."""
    metrics = {((), "cand", evaluation.ACCURACY, (), False): accuracy}
    for class_id, values in enumerate(((0.75, 1.0, 6 / 7), (float("nan"), 0.0, float("nan")))):
        for name, value in zip(evaluation.PER_CLASS_METRICS, values):
            metrics[((), "cand", name, tables.argmax_class(class_id), False)] = value
    return tfma_results.EvalResults(tfma.EvalConfig(), "cand", None, metrics, {}, {}, True, [])


def test_evaluator_scalars_leave_out_undefined_metrics():
    assert tensorboard_scalars.evaluator_scalars(_results(0.75), ["a", "b"], blessed=True) == {
        "evaluator/accuracy": 0.75, "evaluator/macro_f1": 6 / 7, "evaluator/blessed": 1.0,
        "evaluator/precision/a": 0.75, "evaluator/recall/a": 1.0, "evaluator/f1/a": 6 / 7,
        "evaluator/recall/b": 0.0}


def test_evaluator_scalars_file_is_replaced_not_appended(tmp_path):
    path = str(tmp_path / tensorboard_scalars.TB_EVALUATOR_RUN / tensorboard_scalars.TB_EVALUATOR_EVENTS_FILE)
    tensorboard_scalars.write_scalars_file(path, {"evaluator/accuracy": 0.5, "evaluator/recall/a": 0.25}, 2)
    tensorboard_scalars.write_scalars_file(path, {"evaluator/accuracy": 0.75}, 3)
    assert os.listdir(tmp_path / tensorboard_scalars.TB_EVALUATOR_RUN) == [tensorboard_scalars.TB_EVALUATOR_EVENTS_FILE]
    assert _scalars(str(tmp_path / tensorboard_scalars.TB_EVALUATOR_RUN)) == {"evaluator/accuracy": {3: 0.75}}


# ---------------------------------------------------------------- the session's pipeline runs (slow)

def _model_run(runs, index: int) -> str:
    return runs.nodes[index][pipeline_names.TRAINER_NODE].uri(pipeline_names.MODEL_RUN_OUTPUT)


def _tensorboard_dir(runs, index: int) -> str:
    return os.path.join(_model_run(runs, index), names.TENSORBOARD_DIR)


def _history(runs, index: int) -> dict:
    with open(os.path.join(_model_run(runs, index), names.HISTORY_FILE)) as f:
        return json.load(f)


@pytest.mark.slow
def test_learning_rate_of_run_a_is_the_history_s(gate_runs):
    history = _history(gate_runs, 0)
    rates = history[names.HISTORY_SERIES][names.HISTORY_LEARNING_RATE]
    steps = history[names.HISTORY_STEPS_PER_EPOCH]
    written = _scalars(os.path.join(_tensorboard_dir(gate_runs, 0), names.TB_TRAIN_RUN))
    assert written[names.TB_EPOCH_LEARNING_RATE] == {e: _f32(rate) for e, rate in enumerate(rates)}
    per_step = written[names.TB_STEP_LEARNING_RATE]
    assert sorted(per_step) == list(range(len(rates) * steps))
    # The last step of each epoch is the epoch's rate; warmup_cosine starts at 0 and peaks at the
    # configured rate.
    assert [per_step[(e + 1) * steps - 1] for e in range(len(rates))] == [_f32(rate) for rate in rates]
    assert per_step[0] == 0.0
    assert max(per_step.values()) == pytest.approx(history[names.HISTORY_CONFIG]["learning_rate"], rel=1e-6)


@pytest.mark.slow
def test_final_scalars_of_run_a_are_the_history_s_bn_reestimate(gate_runs):
    history = _history(gate_runs, 0)
    series, bn = history[names.HISTORY_SERIES], history[names.HISTORY_BN_RECALIBRATION]
    epochs = len(series[names.HISTORY_LEARNING_RATE])
    expected = {names.TB_FINAL_VAL_ACCURACY: bn["eval"]["accuracy"],
                names.TB_FINAL_VAL_LOSS: bn["eval"]["loss"],
                names.TB_FINAL_VAL_ACCURACY_BEFORE: series["val_accuracy"][-1],
                names.TB_FINAL_VAL_LOSS_BEFORE: series["val_loss"][-1],
                names.TB_FINAL_BN_KEPT: float(bn["kept"]),
                names.TB_FINAL_BN_TRAIN_LOSS_BEFORE: bn["train_loss_before"],
                names.TB_FINAL_BN_TRAIN_LOSS_AFTER: bn["train_loss_after"]}
    assert _scalars(os.path.join(_tensorboard_dir(gate_runs, 0), names.TB_FINAL_RUN)) == {
        tag: {epochs: _f32(value)} for tag, value in expected.items()}


@pytest.mark.parametrize("index, blessed", [(0, 1.0), (2, 0.0)], ids=["A", "C"])
@pytest.mark.slow
def test_evaluator_scalars_are_the_report_s_numbers(gate_runs, index, blessed):
    """Written by each run's report (local_runner), once per model run: run B, a CACHED rerun of A,
    rewrote A's file."""
    data = run_data.collect(gate_runs.cfg.metadata_path, gate_runs.run_ids[index])
    rows = tables.class_rows(data.evaluation, data.class_names)
    expected = {tensorboard_scalars.TB_EVALUATOR_ACCURACY: data.evaluation.metric(evaluation.ACCURACY),
                tensorboard_scalars.TB_EVALUATOR_MACRO_F1: tables.macro_f1(rows), tensorboard_scalars.TB_EVALUATOR_BLESSED: blessed}
    for row in rows:
        for metric in ("precision", "recall", "f1"):
            tag = tensorboard_scalars.TB_EVALUATOR_CLASS_TAG.format(metric=metric, class_name=row.name)
            expected[tag] = getattr(row, metric)
    epochs = data.history[names.HISTORY_CONFIG]["epochs"]
    folder = os.path.join(_tensorboard_dir(gate_runs, index), tensorboard_scalars.TB_EVALUATOR_RUN)
    assert os.listdir(folder) == [tensorboard_scalars.TB_EVALUATOR_EVENTS_FILE]
    assert _scalars(folder) == {tag: {epochs: _f32(value)} for tag, value in expected.items()
                                if tfma_results.nan_to_none(value) is not None}


@pytest.mark.slow
def test_report_of_run_a_gives_the_tensorboard_command(gate_runs):
    data = run_data.collect(gate_runs.cfg.metadata_path, gate_runs.run_ids[0])
    with open(os.path.join(writer.default_out_dir(data), writer.REPORT_FILE)) as f:
        page = f.read()
    assert html.escape(f"tensorboard --logdir {_tensorboard_dir(gate_runs, 0)}") in page
