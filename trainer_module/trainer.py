"""The Trainer module: TFX calls run_fn to train, evaluate per epoch, and export the model."""
import json
import os

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from absl import logging

from trainer_module import input_pipeline, model as model_lib, schedules, signatures
from trainer_module.names import TRAIN_CONFIG_KEY
from trainer_module.train_config import ConfigError, TrainConfig

SCHEDULE_PLOT = "lr_schedule.png"
HISTORY_FILE = "history.json"


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


def _callbacks(model_run_dir: str, phase: str):
    return [
        keras.callbacks.TensorBoard(log_dir=os.path.join(model_run_dir, "tensorboard")),
        # A killed Trainer resumes from the last finished epoch of this phase on its next run.
        keras.callbacks.BackupAndRestore(backup_dir=os.path.join(model_run_dir, "backup", phase)),
    ]


def _phases(cfg: TrainConfig):
    """(name, epochs, peak learning rate, backbone trainable) of each training phase."""
    if cfg.frozen_backbone_epochs == 0:
        return [("train", cfg.epochs, cfg.learning_rate, True)]
    return [("head", cfg.frozen_backbone_epochs, cfg.learning_rate, False),
            ("fine_tune", cfg.epochs - cfg.frozen_backbone_epochs,
             cfg.learning_rate * cfg.fine_tune_lr_factor, True)]


def run_fn(fn_args) -> None:
    """TFX Trainer entry point (fn_args: tfx.components.FnArgs)."""
    cfg = TrainConfig.from_dict(fn_args.custom_config[TRAIN_CONFIG_KEY])
    keras.utils.set_random_seed(cfg.seed)
    strategy = distribution_strategy()
    policy = set_precision(cfg)
    global_batch = cfg.batch_size * strategy.num_replicas_in_sync
    tft_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    tft_layer = tft_output.transform_features_layer()
    raw_spec = tft_output.raw_feature_spec()

    n_train = input_pipeline.count_examples(fn_args.train_files)
    steps_per_epoch = n_train // global_batch
    if steps_per_epoch == 0:
        raise ConfigError(f"the global batch ({global_batch}) is larger than the {n_train} train examples")
    logging.info("Trainer: %d train examples, %d replicas, global batch %d, %d steps/epoch x %d epochs, "
                 "precision %s, config %s", n_train, strategy.num_replicas_in_sync, global_batch,
                 steps_per_epoch, cfg.epochs, policy, cfg.to_json())

    n_eval = input_pipeline.count_examples(fn_args.eval_files)
    cache = input_pipeline.cache_fits(n_train + n_eval, cfg)
    logging.info("Trainer: decoded images %s in memory (%.2f GB for %d train + %d eval; budget %.2f GB)",
                 "kept" if cache else "NOT kept, decoded every epoch",
                 input_pipeline.decoded_cache_bytes(n_train + n_eval, cfg) / 1e9, n_train, n_eval, cfg.decoded_cache_gb)
    train_ds = input_pipeline.make_dataset(fn_args.train_files, tft_layer, raw_spec, cfg, True, global_batch,
                                 cached_examples=n_train if cache else None)
    eval_ds = input_pipeline.make_dataset(fn_args.eval_files, tft_layer, raw_spec, cfg, False, global_batch,
                                cached_examples=n_eval if cache else None)
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with strategy.scope():
        model = model_lib.build_model(cfg)
    history, epoch = {}, 0
    for phase, epochs, peak, backbone_trainable in _phases(cfg):
        schedule = schedules.make_schedule(cfg, steps_per_epoch, epochs, peak)
        schedules.plot_schedule(schedule, epochs * steps_per_epoch, steps_per_epoch,
                                os.path.join(fn_args.model_run_dir, _plot_name(phase)),
                                f"{cfg.schedule} learning rate ({phase}), {cfg.optimizer}")
        model_lib.backbone_of(model).trainable = backbone_trainable
        with strategy.scope():
            model_lib.compile_model(model, cfg, schedule)
        result = model.fit(train_ds, epochs=epoch + epochs, initial_epoch=epoch,
                           steps_per_epoch=steps_per_epoch, validation_data=eval_ds, verbose=2,
                           callbacks=_callbacks(fn_args.model_run_dir, phase))
        for key, values in result.history.items():
            history.setdefault(key, []).extend(float(v) for v in values)
        epoch += epochs

    recalibrated = {}
    if cfg.bn_recalibration_batches:
        views = input_pipeline.make_dataset(fn_args.train_files, tft_layer, raw_spec, cfg, False, global_batch)
        recalibrated = model_lib.recalibrate_batchnorm_if_better(model, views, cfg.bn_recalibration_batches)
        recalibrated["eval"] = model.evaluate(eval_ds, verbose=0, return_dict=True)
        logging.info("Trainer: BatchNorm statistics re-estimated: %s", recalibrated)

    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, HISTORY_FILE), "w") as f:
        json.dump({"config": json.loads(cfg.to_json()), "train_examples": n_train, "eval_examples": n_eval,
                   "decoded_images_cached": cache, "precision": policy,
                   "replicas": strategy.num_replicas_in_sync, "steps_per_epoch": steps_per_epoch,
                   "history": history, "after_bn_recalibration": recalibrated}, f, indent=1)
    signatures.export_serving_model(model, tft_layer, raw_spec, cfg, fn_args.serving_model_dir)
    keras.mixed_precision.set_global_policy("float32")  # the process may run other components next
    logging.info("Trainer: exported %s", fn_args.serving_model_dir)


def _plot_name(phase: str) -> str:
    return SCHEDULE_PLOT if phase in ("train", "fine_tune") else f"lr_schedule_{phase}.png"
