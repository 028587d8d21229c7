"""Progress lines of the Trainer for a person watching the run: one per epoch with its figures, and
one at least every PROGRESS_EVERY_S seconds inside a long epoch. They go to the Python logger
names.PROGRESS_LOGGER, which a local run shows on its console (run_control/console.py) and every
run keeps in its log; Keras' own per-epoch printing is off."""
import logging
import time

import tf_keras as keras

from trainer_module import names

PROGRESS_EVERY_S = 15.0
_log = logging.getLogger(names.PROGRESS_LOGGER)


def say(message: str, *args) -> None:
    """A progress line of the Trainer (also kept in the run's log)."""
    _log.info(message, *args)


def epoch_line(epoch: int, epochs: int, logs: dict, seconds: float) -> str:
    """'Trainer: epoch 2/5 in 31 s: loss 1.234, accuracy 0.456, val_loss ..., learning_rate 0.01'."""
    figures = ", ".join(f"{key} {value:.4g}" for key, value in sorted((logs or {}).items()))
    return f"Trainer: epoch {epoch + 1}/{epochs} in {seconds:.0f} s: {figures}"


class ProgressLog(keras.callbacks.Callback):
    """Logs each finished epoch, and the step reached when an epoch runs long."""

    def __init__(self, epochs: int, steps_per_epoch: int, every_s: float = PROGRESS_EVERY_S):
        super().__init__()
        self.epochs, self.steps_per_epoch, self.every_s = epochs, steps_per_epoch, every_s
        self._epoch_start = self._last = 0.0
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._epoch_start = epoch, time.monotonic()
        self._last = self._epoch_start

    def on_train_batch_end(self, batch, logs=None):
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            loss = (logs or {}).get("loss")
            _log.info("Trainer: epoch %d/%d, step %d/%d%s (%.0f s)", self._epoch + 1, self.epochs, batch + 1,
                      self.steps_per_epoch, f", loss {float(loss):.4g}" if loss is not None else "",
                      now - self._epoch_start)

    def on_epoch_end(self, epoch, logs=None):
        _log.info("%s", epoch_line(epoch, self.epochs, logs, time.monotonic() - self._epoch_start))
