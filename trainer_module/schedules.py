"""Learning-rate schedules, all from Keras: constant, linear warmup + cosine decay, step decay."""
import tf_keras as keras

from trainer_module.config import TrainConfig


def make_schedule(cfg: TrainConfig, steps_per_epoch: int):
    """The learning rate (a float or a Keras LearningRateSchedule) for `cfg.schedule`."""
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.schedule == "constant":
        return cfg.learning_rate
    if cfg.schedule == "warmup_cosine":
        # CosineDecay warms up linearly from initial_learning_rate to warmup_target, then decays.
        warmup_steps = min(total_steps - 1, round(cfg.warmup_epochs * steps_per_epoch))
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0, decay_steps=max(1, total_steps - warmup_steps),
            alpha=cfg.cosine_final_fraction, warmup_target=cfg.learning_rate,
            warmup_steps=max(0, warmup_steps))
    # Step decay: multiply by step_factor every step_every_epochs epochs.
    return keras.optimizers.schedules.ExponentialDecay(
        cfg.learning_rate, decay_steps=cfg.step_every_epochs * steps_per_epoch,
        decay_rate=cfg.step_factor, staircase=True)
