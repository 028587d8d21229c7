"""Learning-rate schedules, all from Keras: constant, linear warmup + cosine decay, step decay."""
from typing import Optional

import tensorflow as tf
import tf_keras as keras

from trainer_module import missing_piece
from trainer_module.train_config import TrainConfig


def make_schedule(cfg: TrainConfig, steps_per_epoch: int, epochs: Optional[int] = None,
                  learning_rate: Optional[float] = None):
    """The learning rate (a float or a Keras LearningRateSchedule) for `cfg.schedule`.

    epochs / learning_rate default to the config's; the fine-tuning phase after frozen-backbone
    epochs passes its own.
    """
    epochs = cfg.epochs if epochs is None else epochs
    peak = cfg.learning_rate if learning_rate is None else learning_rate
    total_steps = epochs * steps_per_epoch
    if cfg.schedule == "constant":
        return peak
    if cfg.schedule == "warmup_cosine":
        # CosineDecay warms up linearly from initial_learning_rate to warmup_target, then decays
        # to alpha * warmup_target over decay_steps.
        warmup_steps = max(0, min(total_steps - 1, round(cfg.warmup_epochs * steps_per_epoch)))
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0, decay_steps=max(1, total_steps - warmup_steps),
            alpha=cfg.cosine_final_fraction, warmup_target=peak, warmup_steps=warmup_steps)
    # Step decay: multiply by step_factor every step_every_epochs epochs.
    return keras.optimizers.schedules.ExponentialDecay(
        peak, decay_steps=cfg.step_every_epochs * steps_per_epoch, decay_rate=cfg.step_factor,
        staircase=True)


def learning_rate_at(schedule, step: int) -> float:
    """The rate a float or Keras schedule gives at `step`."""
    return float(schedule(step)) if callable(schedule) else float(schedule)


def plot_schedule(schedule, total_steps: int, steps_per_epoch: int, path: str, title: str = "") -> str:
    """Saves the learning rate over training steps as a 700 x 350 PNG (the notebook's sanity check).

    matplotlib's object API (Figure + Agg canvas), not pyplot: the Trainer switches no global
    backend and keeps no figure state in the process that runs the other components.
    """
    FigureCanvasAgg = missing_piece.import_for("the learning-rate schedule plot",
                                               "matplotlib.backends.backend_agg").FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = list(range(total_steps + 1))
    rates = [learning_rate_at(schedule, s) for s in steps]
    fig = Figure(figsize=(7, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(steps, rates)
    for epoch in range(1, total_steps // max(1, steps_per_epoch) + 1):
        ax.axvline(epoch * steps_per_epoch, color="0.85", lw=0.8, zorder=0)
    ax.set(xlabel="training step (grey lines: epochs)", ylabel="learning rate",
           title=title or "learning-rate schedule")
    fig.tight_layout()
    with tf.io.gfile.GFile(path, "wb") as f:
        fig.savefig(f, format="png")
    return path
