"""Timers of training steps and of input pipelines: images/s, CPU ms per image, cores used."""
import time
from typing import Dict, List, Tuple

from bench.machine import cpu_seconds


def in_memory_dataset(real_ds, batches: int = 1):
    """`batches` batches taken from the real pipeline, held as tensors and repeated forever.

    The model sees the same values and shapes as from the real pipeline; the input costs nothing
    but handing over a tensor: this is the model-bound limit.
    """
    import tensorflow as tf
    taken = list(real_ds.take(batches))
    images = tf.stack([x for x, _ in taken])
    labels = tf.stack([y for _, y in taken])
    return tf.data.Dataset.from_tensor_slices((images, labels)).repeat().prefetch(2)


def time_fit(model, dataset, warmup_steps: int, steps: int, batch_size: int) -> Dict:
    """One model.fit of warmup + steps steps; images/s over the last `steps` (timed per batch end).

    A single fit call (one iterator): the pipeline's start (shuffle-buffer fill, tracing) and the
    train-function trace fall in the warm-up steps. Also the process CPU time over the timed
    steps: CPU ms per image (load-independent cost) and cores used (CPU s / wall s).
    """
    import tf_keras as keras
    stamps: List[Tuple[float, float]] = []
    losses: List[float] = []

    class _Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            stamps.append((time.perf_counter(), cpu_seconds()))
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    start = (time.perf_counter(), cpu_seconds())
    model.fit(dataset, epochs=1, steps_per_epoch=warmup_steps + steps, verbose=0, callbacks=[_Clock()])
    total = time.perf_counter() - start[0]
    if len(stamps) != warmup_steps + steps:
        raise RuntimeError(f"expected {warmup_steps + steps} batches, got {len(stamps)}")
    t0, c0 = stamps[warmup_steps - 1] if warmup_steps > 0 else start
    seconds, cpu = stamps[-1][0] - t0, stamps[-1][1] - c0
    return {"images_per_s": steps * batch_size / seconds, "seconds": seconds, "fit_seconds": total,
            "step_ms": 1000 * seconds / steps, "cpu_ms_per_image": 1000 * cpu / (steps * batch_size),
            "cores_used": cpu / seconds, "last_loss": losses[-1] if losses else float("nan")}


def time_iterate(dataset, warmup_batches: int, batches: int) -> Dict:
    """Images/s (and CPU ms/image) of iterating (images, labels) batches alone, after warm-up."""
    it = iter(dataset)
    for _ in range(warmup_batches):
        next(it)
    images = 0
    start, cpu0 = time.perf_counter(), cpu_seconds()
    for _ in range(batches):
        images += int(next(it)[0].shape[0])
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu0
    return {"images_per_s": images / seconds, "seconds": seconds, "images": images,
            "cpu_ms_per_image": 1000 * cpu / images, "cores_used": cpu / seconds}
