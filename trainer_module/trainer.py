"""The Trainer module: TFX calls run_fn to train, evaluate per epoch, and export the model.

Besides the model, run_fn writes to the model_run folder: the history (names.HISTORY_FILE: the
config, the data sizes, each phase's trainable parameters and optimizer, the per-epoch metrics
and learning rate, the BatchNorm re-estimate), one learning-rate plot per phase and TensorBoard logs.

Resume: while training, the state of every finished epoch (weights, optimizer, epoch, and each
epoch's logs) is kept in a backup folder keyed by what identifies the training (config, examples,
Transform graph), beside the executions' model_run folders. TFX gives a rerun a new execution and
new folders, but the same key, so a Trainer killed in epoch k reruns from epoch k and ends with the
full history. A Trainer that finishes deletes its backup.
"""
import hashlib
import json
import os
from typing import List, NamedTuple

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from absl import logging

from trainer_module import (
    calibration,
    image_format,
    missing_piece,
    input_pipeline,
    model as model_lib,
    names,
    progress,
    schedules,
    serving_warmup,
    signatures,
)
from trainer_module.train_config import ConfigError, TrainConfig


class Phase(NamedTuple):
    """One model.fit: the head alone on a frozen backbone, or the whole model."""
    name: str
    epochs: int
    peak_learning_rate: float
    backbone_trainable: bool


class RecordLearningRate(keras.callbacks.Callback):
    """Adds the learning rate the optimizer used for the epoch's last step to the epoch's logs,
    so it lands in the history (as Keras' own LearningRateScheduler callback does)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            # With a schedule, Keras' optimizer reports the rate of its last apply_gradients.
            logs[names.HISTORY_LEARNING_RATE] = float(keras.backend.get_value(self.model.optimizer.learning_rate))


class TensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback, writing as names.TB_EPOCH_LEARNING_RATE the rate RecordLearningRate
    put in the epoch's logs (the one in the history). Keras' own replaces it with the schedule's rate
    at the optimizer's next step, one step later than the last one used."""

    def _collect_learning_rate(self, logs):
        return logs


class StepLearningRate(keras.callbacks.Callback):
    """Writes the schedule's rate at every step of each finished epoch as the TensorBoard scalar
    names.TB_STEP_LEARNING_RATE, at the global step (counted from 0 over all phases). Computed from
    the schedule at the epoch's end: reading the optimizer after every step would make the device
    wait for each step. (With mixed_float16, a step the loss scale skips does not advance the
    schedule, so later rates are one step ahead per skipped step.)"""

    def __init__(self, log_dir: str, schedule, steps_per_epoch: int, first_epoch: int):
        super().__init__()
        self.log_dir, self.schedule = log_dir, schedule
        self.steps_per_epoch, self.first_epoch = steps_per_epoch, first_epoch
        self._writer = None

    def on_train_begin(self, logs=None):
        self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_epoch_end(self, epoch, logs=None):
        phase_step = (epoch - self.first_epoch) * self.steps_per_epoch  # the phase's optimizer counts from 0
        with self._writer.as_default():
            for i in range(self.steps_per_epoch):
                tf.summary.scalar(names.TB_STEP_LEARNING_RATE,
                                  schedules.learning_rate_at(self.schedule, phase_step + i),
                                  step=epoch * self.steps_per_epoch + i)
        self._writer.flush()

    def on_train_end(self, logs=None):
        self._writer.close()


class ProgressiveResizing(keras.callbacks.Callback):
    """Sets the side the training batches are scaled to (input_pipeline.training_side_variable)
    at each epoch's start, from TrainConfig.training_side (the epoch counted over all phases, so
    a resumed training picks up the side of the epoch it resumes at)."""

    def __init__(self, side: tf.Variable, cfg: TrainConfig):
        super().__init__()
        self.side, self.cfg = side, cfg

    def on_epoch_begin(self, epoch, logs=None):
        self.side.assign(self.cfg.training_side(epoch))


def metric_log_callbacks(tensorboard_dir: str, schedule, steps_per_epoch: int, first_epoch: int) -> list:
    """The callbacks that log each epoch to TensorBoard, RecordLearningRate first: the callbacks
    after it (TensorBoard, then EpochLog and History) read the rate from the epoch's logs."""
    return [RecordLearningRate(), TensorBoard(log_dir=tensorboard_dir),
            StepLearningRate(os.path.join(tensorboard_dir, names.TB_TRAIN_RUN), schedule, steps_per_epoch,
                             first_epoch)]


def final_scalars(history: dict, recalibrated: dict) -> dict:
    """{TensorBoard tag: value} of the exported model on the eval split: after the BatchNorm
    re-estimate (its evaluation, kept or not) beside the last epoch's numbers and the re-estimate's
    train losses; without a re-estimate the exported model is the last epoch's."""
    before = {names.TB_FINAL_VAL_ACCURACY_BEFORE: history["val_accuracy"][-1],
              names.TB_FINAL_VAL_LOSS_BEFORE: history["val_loss"][-1]}
    if not recalibrated:
        return {names.TB_FINAL_VAL_ACCURACY: history["val_accuracy"][-1],
                names.TB_FINAL_VAL_LOSS: history["val_loss"][-1], **before}
    return {names.TB_FINAL_VAL_ACCURACY: recalibrated["eval"]["accuracy"],
            names.TB_FINAL_VAL_LOSS: recalibrated["eval"]["loss"], **before,
            names.TB_FINAL_BN_KEPT: float(recalibrated["kept"]),
            names.TB_FINAL_BN_TRAIN_LOSS_BEFORE: recalibrated["train_loss_before"],
            names.TB_FINAL_BN_TRAIN_LOSS_AFTER: recalibrated["train_loss_after"]}


def write_final_scalars(tensorboard_dir: str, epochs: int, scalars: dict) -> None:
    """Writes final_scalars in TensorBoard's names.TB_FINAL_RUN at step `epochs`, one past the last
    epoch's point: the curves end where the Evaluator (its scalars are at the same step) starts."""
    writer = tf.summary.create_file_writer(os.path.join(tensorboard_dir, names.TB_FINAL_RUN))
    with writer.as_default():
        for tag, value in scalars.items():
            tf.summary.scalar(tag, value, step=epochs)
    writer.close()


def distribution_strategy() -> tf.distribute.Strategy:
    """MirroredStrategy over all visible GPUs; the default strategy on CPU."""
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if gpus else tf.distribute.get_strategy()


def set_precision(cfg: TrainConfig) -> str:
    """Applies cfg.precision ("auto": mixed_float16 on GPU, float32 on CPU); returns the policy."""
    policy = cfg.precision
    if policy == "auto":
        policy = "mixed_float16" if tf.config.list_logical_devices("GPU") else "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def phases_of(cfg: TrainConfig) -> List[Phase]:
    """The training phases: one, or the frozen-backbone head phase then fine-tuning at a lower rate."""
    if cfg.frozen_backbone_epochs == 0:
        return [Phase("train", cfg.epochs, cfg.learning_rate, True)]
    return [Phase("head", cfg.frozen_backbone_epochs, cfg.learning_rate, False),
            Phase("fine_tune", cfg.epochs - cfg.frozen_backbone_epochs,
                  cfg.learning_rate * cfg.fine_tune_lr_factor, True)]


def schedule_plot_name(phase: Phase, last: bool) -> str:
    """The last phase's plot is the run's LR_SCHEDULE_PLOT; an earlier one is named after its phase."""
    return names.LR_SCHEDULE_PLOT if last else names.LR_SCHEDULE_PHASE_PLOT.format(phase=phase.name)


class EpochLog(keras.callbacks.Callback):
    """Keeps every finished epoch's logs in one JSON file (rewritten atomically, keyed by epoch),
    so a resumed training still reports the epochs its killed predecessor ran. It must run before
    BackupAndRestore: an epoch whose state was not saved is run again and its logs overwritten."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        epochs = read_epoch_logs(self.path)
        epochs[str(epoch)] = {key: float(value) for key, value in (logs or {}).items()}
        _write_json_atomically(self.path, epochs)


def read_epoch_logs(path: str) -> dict:
    """{epoch index as str: {metric: value}} from an EpochLog file ({} when there is none)."""
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


# BackupAndRestore's record of the last epoch it saved (tf_keras WorkerTrainingState).
_SAVED_EPOCH_VARIABLE = "ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"


def _write_json_atomically(path: str, value) -> None:
    tmp = f"{path}.tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        json.dump(value, f)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def saved_epochs(backup_dir: str) -> int:
    """How many epochs the backup holds the state after (0: none), read from BackupAndRestore's
    checkpoints (one folder per phase; it records the last saved epoch, counted over all phases)."""
    last = -1
    for index in tf.io.gfile.glob(os.path.join(backup_dir, "*", "*", "checkpoint")):
        checkpoint = tf.train.latest_checkpoint(os.path.dirname(index))
        if checkpoint:
            last = max(last, int(tf.train.load_variable(checkpoint, _SAVED_EPOCH_VARIABLE)))
    return last + 1


def backup_dir_of(fn_args, cfg: TrainConfig) -> str:
    """The backup folder of this training: beside the executions' model_run folders, named by a
    hash of the config, the example files and the Transform graph (not by the execution id)."""
    identity = json.dumps({"config": json.loads(cfg.to_json()), "train": sorted(fn_args.train_files),
                           "eval": sorted(fn_args.eval_files), "transform": fn_args.transform_graph_path},
                          sort_keys=True)
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return os.path.join(os.path.dirname(os.path.normpath(fn_args.model_run_dir)), names.TRAINING_BACKUP_DIR, key)


def _callbacks(model_run_dir: str, backup_dir: str, phase: Phase, schedule, steps_per_epoch: int,
               first_epoch: int, epochs: int, cfg: TrainConfig, side=None):
    return [
        *([ProgressiveResizing(side, cfg)] if side is not None else []),
        *metric_log_callbacks(os.path.join(model_run_dir, names.TENSORBOARD_DIR), schedule, steps_per_epoch,
                              first_epoch),
        progress.ProgressLog(epochs, steps_per_epoch),  # the console's epoch lines (Keras prints none)
        EpochLog(os.path.join(backup_dir, names.BACKUP_EPOCHS_FILE)),
        # Kept when the phase ends (deleted with the whole backup once the Trainer is done), so a
        # crash in a later phase does not rerun this one: its fit restores the final state and
        # runs no epoch.
        keras.callbacks.BackupAndRestore(backup_dir=os.path.join(backup_dir, phase.name),
                                         delete_checkpoint=False),
    ]


def _training_facts(model: keras.Model) -> dict:
    """What a phase really trained, read from the compiled model: trainable parameters, the
    optimizer's class and weight decay, the loss's label smoothing."""
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)  # under loss scaling
    return {"trainable_parameters": sum(w.shape.num_elements() for w in model.trainable_weights),
            "optimizer": type(optimizer).__name__,
            "weight_decay": float(optimizer.weight_decay or 0.0),
            "label_smoothing": float(model.loss.get_config()["label_smoothing"])}


def train(model: keras.Model, cfg: TrainConfig, strategy, train_ds, eval_ds, steps_per_epoch: int,
          model_run_dir: str, backup_dir: str, side=None):
    """Runs every phase, resuming from backup_dir; returns (per-epoch history, one dict of facts
    per phase). side: the variable train_ds's batches are scaled by, with progressive resizing
    (input_pipeline.training_side_variable)."""
    facts, epoch = [], 0
    epochs_file = os.path.join(backup_dir, names.BACKUP_EPOCHS_FILE)
    done = saved_epochs(backup_dir)
    if done:
        progress.say("Trainer: resuming from %s: %d of %d epochs finished by an earlier, interrupted run",
                     backup_dir, done, cfg.epochs)
    phases = phases_of(cfg)
    for i, phase in enumerate(phases):
        schedule = schedules.make_schedule(cfg, steps_per_epoch, phase.epochs, phase.peak_learning_rate)
        try:
            schedules.plot_schedule(schedule, phase.epochs * steps_per_epoch, steps_per_epoch,
                                    os.path.join(model_run_dir, schedule_plot_name(phase, i == len(phases) - 1)),
                                    f"{cfg.schedule} learning rate ({phase.name}), {cfg.optimizer}")
        except missing_piece.MissingPieceError as e:  # a picture: the training goes on without it
            logging.warning("Trainer: %s; training goes on without the plot", e)
        model_lib.backbone_of(model).trainable = phase.backbone_trainable
        with strategy.scope():
            model_lib.compile_model(model, cfg, schedule)
        model.fit(train_ds, epochs=epoch + phase.epochs, initial_epoch=epoch,
                  steps_per_epoch=steps_per_epoch, validation_data=eval_ds, verbose=0,
                  callbacks=_callbacks(model_run_dir, backup_dir, phase, schedule, steps_per_epoch, epoch,
                                       cfg.epochs, cfg, side))
        facts.append({**phase._asdict(), "first_epoch": epoch, **_training_facts(model)})
        epoch += phase.epochs
    return _history_of(read_epoch_logs(epochs_file), cfg.epochs), facts


def _history_of(epoch_logs: dict, epochs: int) -> dict:
    """{metric: [value per epoch]} from EpochLog's file, which must hold every epoch."""
    missing = [e for e in range(epochs) if str(e) not in epoch_logs]
    if missing:
        raise RuntimeError(f"the training backup has no logs for epochs {missing}")
    history = {}
    for e in range(epochs):
        for key, value in epoch_logs[str(e)].items():
            history.setdefault(key, []).append(value)
    return history


def fit_temperature(network: keras.Model, cfg: TrainConfig, eval_ds) -> dict:
    """Fits the serving temperature on the eval split (calibration.calibrate) with the network as it
    will be served (flip-averaged when cfg.test_time_flip); returns the history's calibration entry
    and says it on the console."""
    logits_of = tf.function(model_lib.logits_model(network, cfg))
    logits, labels = [], []
    for images, one_hot in eval_ds:
        logits.append(logits_of(images, training=False).numpy())
        labels.append(tf.argmax(one_hot, axis=-1).numpy())
    if not logits:
        progress.say("Trainer: no eval examples: no temperature fitted, the probabilities are served as trained")
        return {}
    result = calibration.calibrate(np.concatenate(logits), np.concatenate(labels))
    progress.say("Trainer: temperature %.3f%s fitted on %d eval images: expected calibration error %.3f -> %.3f, "
                 "mean top-1 probability %.3f -> %.3f (accuracy %.3f, unchanged)",
                 result[names.CALIBRATION_TEMPERATURE],
                 " (at its bound: the eval split has too few errors to calibrate on)"
                 if result[names.CALIBRATION_AT_BOUND] else "",
                 result[names.CALIBRATION_EXAMPLES], result[names.CALIBRATION_ECE_BEFORE],
                 result[names.CALIBRATION_ECE_AFTER], result[names.CALIBRATION_MEAN_TOP1_BEFORE],
                 result[names.CALIBRATION_MEAN_TOP1_AFTER], result[names.CALIBRATION_ACCURACY])
    return result


def run_fn(fn_args) -> None:
    """TFX Trainer entry point (fn_args: tfx.components.FnArgs)."""
    cfg = TrainConfig.from_dict(fn_args.custom_config[names.TRAIN_CONFIG_KEY])
    keras.utils.set_random_seed(cfg.seed)
    strategy = distribution_strategy()
    global_batch = cfg.batch_size * strategy.num_replicas_in_sync
    n_train = input_pipeline.count_examples(fn_args.train_files)
    steps_per_epoch = n_train // global_batch
    if steps_per_epoch == 0:
        raise ConfigError(f"the global batch ({global_batch}) is larger than the {n_train} train examples")
    n_eval = input_pipeline.count_examples(fn_args.eval_files)
    policy = set_precision(cfg)
    try:
        _train_and_export(fn_args, cfg, strategy, policy, global_batch, steps_per_epoch, n_train, n_eval)
    finally:
        keras.mixed_precision.set_global_policy("float32")  # the process may run other components next


def _train_and_export(fn_args, cfg: TrainConfig, strategy, policy: str, global_batch: int,
                      steps_per_epoch: int, n_train: int, n_eval: int) -> None:
    logging.info("Trainer: %d train examples, %d replicas, global batch %d, %d steps/epoch x %d epochs, "
                 "precision %s, config %s", n_train, strategy.num_replicas_in_sync, global_batch,
                 steps_per_epoch, cfg.epochs, policy, cfg.to_json())
    tft_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    tft_layer = tft_output.transform_features_layer()
    raw_spec = tft_output.raw_feature_spec()
    cache = input_pipeline.cache_fits(n_train + n_eval, cfg)
    logging.info("Trainer: decoded images %s in memory (%.2f GB for %d train + %d eval; budget %.2f GB)",
                 "kept" if cache else "NOT kept, decoded every epoch",
                 input_pipeline.decoded_cache_bytes(n_train + n_eval, cfg) / 1e9, n_train, n_eval,
                 cfg.decoded_cache_gb)
    side = input_pipeline.training_side_variable(cfg)  # progressive resizing: set per epoch
    train_ds = input_pipeline.make_dataset(fn_args.train_files, tft_layer, raw_spec, cfg, True, global_batch,
                                           cached_examples=n_train if cache else None, side=side)
    eval_ds = input_pipeline.make_dataset(fn_args.eval_files, tft_layer, raw_spec, cfg, False, global_batch,
                                          cached_examples=n_eval if cache else None)
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    backup_dir = backup_dir_of(fn_args, cfg)
    tf.io.gfile.makedirs(backup_dir)
    with strategy.scope():
        model = model_lib.build_model(cfg)
    history, phases = train(model, cfg, strategy, train_ds, eval_ds, steps_per_epoch, fn_args.model_run_dir,
                            backup_dir, side)

    recalibrated = {}
    if cfg.bn_recalibration_batches:
        views = input_pipeline.make_dataset(fn_args.train_files, tft_layer, raw_spec, cfg, False,
                                            global_batch)
        recalibrated = model_lib.recalibrate_batchnorm_if_better(model, views, cfg.bn_recalibration_batches)
        recalibrated["eval"] = model.evaluate(eval_ds, verbose=0, return_dict=True)
        logging.info("Trainer: BatchNorm statistics re-estimated: %s", recalibrated)
    # TensorBoard's curves otherwise end at the last epoch, before the re-estimate.
    write_final_scalars(os.path.join(fn_args.model_run_dir, names.TENSORBOARD_DIR), cfg.epochs,
                        final_scalars(history, recalibrated))

    # Flip-averaged when cfg.test_time_flip; no optimizer state in what is served.
    network = model_lib.weights_only_copy(model)
    calibrated = fit_temperature(network, cfg, eval_ds) if cfg.temperature_scaling else {}
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, names.HISTORY_FILE), "w") as f:
        json.dump({names.HISTORY_CONFIG: json.loads(cfg.to_json()), names.HISTORY_TRAIN_EXAMPLES: n_train,
                   names.HISTORY_EVAL_EXAMPLES: n_eval, names.HISTORY_DECODED_CACHED: cache,
                   names.HISTORY_PRECISION: policy, names.HISTORY_REPLICAS: strategy.num_replicas_in_sync,
                   names.HISTORY_STEPS_PER_EPOCH: steps_per_epoch, names.HISTORY_PHASES: phases,
                   names.HISTORY_SERIES: history, names.HISTORY_BN_RECALIBRATION: recalibrated,
                   names.HISTORY_CALIBRATION: calibrated}, f, indent=1)
    exported = model_lib.inference_model(network, cfg, calibrated.get(names.CALIBRATION_TEMPERATURE, 1.0))
    max_pixels = fn_args.custom_config.get(names.MAX_IMAGE_PIXELS_KEY, image_format.DEFAULT_MAX_IMAGE_PIXELS)
    signatures.export_serving_model(exported, tft_layer, raw_spec, cfg, fn_args.serving_model_dir,
                                    serving_warmup.sample_images(fn_args.eval_files), max_pixels)
    logging.info("Trainer: exported %s", fn_args.serving_model_dir)
    if cfg.tflite_export:  # the same network for edge devices, beside the SavedModel in the Model artifact
        tflite_export = missing_piece.import_for("the TFLite export (--no-tflite-export turns it off)",
                                                 "trainer_module.tflite_export")
        representative = input_pipeline.make_dataset(fn_args.train_files, tft_layer, raw_spec, cfg, False,
                                                     global_batch)
        edge_dir = os.path.join(os.path.dirname(os.path.normpath(fn_args.serving_model_dir)), names.EDGE_MODEL_SUBDIR)
        progress.say("Trainer: TFLite models: %s", tflite_export.export_edge_models(exported, cfg, representative,
                                                                                    edge_dir))
    tf.io.gfile.rmtree(backup_dir)  # finished: nothing left to resume
