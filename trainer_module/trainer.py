"""The Trainer module: TFX calls run_fn to train, evaluate per epoch, and export the model."""
import json
import os

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from absl import logging

from trainer_module import data, model as model_lib, schedules, signatures
from trainer_module.config import TRAIN_CONFIG_KEY, ConfigError, TrainConfig


def _callbacks(model_run_dir: str):
    return [
        keras.callbacks.TensorBoard(log_dir=os.path.join(model_run_dir, "tensorboard")),
        # A killed Trainer resumes from the last finished epoch on its next run.
        keras.callbacks.BackupAndRestore(backup_dir=os.path.join(model_run_dir, "backup")),
    ]


def run_fn(fn_args) -> None:
    """TFX Trainer entry point (fn_args: tfx.components.FnArgs)."""
    cfg = TrainConfig.from_dict(fn_args.custom_config[TRAIN_CONFIG_KEY])
    tf.keras.utils.set_random_seed(cfg.seed)
    tft_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    tft_layer = tft_output.transform_features_layer()
    raw_spec = tft_output.raw_feature_spec()

    n_train = data.count_examples(fn_args.train_files)
    steps_per_epoch = n_train // cfg.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(f"batch_size={cfg.batch_size} is larger than the {n_train} train examples")
    logging.info("Trainer: %d train examples, %d steps/epoch x %d epochs, config %s",
                 n_train, steps_per_epoch, cfg.epochs, cfg.to_json())

    train_ds = data.make_dataset(fn_args.train_files, tft_layer, raw_spec, cfg, training=True)
    eval_ds = data.make_dataset(fn_args.eval_files, tft_layer, raw_spec, cfg, training=False)
    model = model_lib.build_model(cfg)
    model_lib.compile_model(model, cfg, schedules.make_schedule(cfg, steps_per_epoch))
    history = model.fit(train_ds, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch,
                        validation_data=eval_ds, callbacks=_callbacks(fn_args.model_run_dir), verbose=2)

    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, "history.json"), "w") as f:
        json.dump({"config": json.loads(cfg.to_json()), "train_examples": n_train,
                   "steps_per_epoch": steps_per_epoch, "history": history.history}, f, indent=1)
    signatures.export_serving_model(model, tft_layer, raw_spec, cfg, fn_args.serving_model_dir)
    logging.info("Trainer: exported %s", fn_args.serving_model_dir)
