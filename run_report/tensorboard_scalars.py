"""The Evaluator's metrics as TensorBoard scalars, beside the Trainer's curves of the same model.

write_report calls write_evaluator_scalars after each local run. It writes the candidate's overall
accuracy and macro F1, each class's precision, recall and F1 (the report's own numbers, from
tables.class_rows) and the blessing to <model_run>/tensorboard/evaluator/, at step = the number of
epochs, where the Trainer's final/* scalars are. It writes one events file per model run
(TB_EVALUATOR_EVENTS_FILE) and replaces it, so reporting a run again, or a CACHED rerun of the
same model, adds no duplicate events.
"""
import os
import shlex
import tempfile
from typing import Dict, Optional, Sequence

import tensorflow as tf

from common import pipeline_names, store, tfma_results
from pipeline import evaluation
from run_report import tables
from run_report.run_data import RunData
from trainer_module import names

# The Evaluator's metrics of the candidate, at step = epochs, in one events file per model run (a
# name TensorBoard reads: it holds "tfevents"), replaced whenever the report is rewritten.
TB_EVALUATOR_RUN = "evaluator"
TB_EVALUATOR_EVENTS_FILE = "events.out.tfevents.evaluator"
TB_EVALUATOR_ACCURACY = "evaluator/accuracy"
TB_EVALUATOR_MACRO_F1 = "evaluator/macro_f1"
TB_EVALUATOR_BLESSED = "evaluator/blessed"  # 1 blessed, 0 not
TB_EVALUATOR_CLASS_TAG = "evaluator/{metric}/{class_name}"  # metric: precision, recall, f1


def tensorboard_dir(nodes: Dict[str, store.NodeRun]) -> Optional[str]:
    """<model_run>/tensorboard of the run's Trainer (None without a Trainer)."""
    trainer = nodes.get(pipeline_names.TRAINER_NODE)
    model_run = trainer.uri(pipeline_names.MODEL_RUN_OUTPUT) if trainer else None
    return os.path.join(model_run, names.TENSORBOARD_DIR) if model_run else None


def tensorboard_command(log_dir: str) -> str:
    """The shell command that shows a TensorBoard log folder."""
    return f"tensorboard --logdir {shlex.quote(log_dir)}"


def evaluator_scalars(results: tfma_results.EvalResults, class_names: Sequence[str],
                      blessed: bool) -> Dict[str, float]:
    """{tag: value} of the candidate's metrics; a metric TFMA left undefined (None, NaN) is left out."""
    rows = tables.class_rows(results, class_names)
    scalars = {TB_EVALUATOR_ACCURACY: results.metric(evaluation.ACCURACY),
               TB_EVALUATOR_MACRO_F1: tables.macro_f1(rows),
               TB_EVALUATOR_BLESSED: float(blessed)}
    for row in rows:
        for metric, value in (("precision", row.precision), ("recall", row.recall), ("f1", row.f1)):
            scalars[TB_EVALUATOR_CLASS_TAG.format(metric=metric, class_name=row.name)] = value
    return {tag: value for tag, value in scalars.items() if tfma_results.nan_to_none(value) is not None}


def write_scalars_file(path: str, scalars: Dict[str, float], step: int) -> None:
    """Writes scalars at `step` as the TensorBoard events file `path`, replacing it whole: written
    in a local temporary folder (tf.summary picks its own file name), then copied beside `path`
    under a name TensorBoard ignores and renamed over it."""
    with tempfile.TemporaryDirectory() as tmp:
        writer = tf.summary.create_file_writer(tmp)
        with writer.as_default():
            for tag, value in scalars.items():
                tf.summary.scalar(tag, value, step=step)
        writer.close()
        [written] = tf.io.gfile.glob(os.path.join(tmp, "*"))
        folder = os.path.dirname(path)
        tf.io.gfile.makedirs(folder)
        partial = os.path.join(folder, ".partial")  # no "tfevents" in the name: TensorBoard skips it
        tf.io.gfile.copy(written, partial, overwrite=True)
        tf.io.gfile.rename(partial, path, overwrite=True)


def write_evaluator_scalars(data: RunData) -> Optional[str]:
    """Writes the run's Evaluator metrics under its Trainer's TensorBoard folder; returns the file's
    path (None when the run has no evaluation results or no training history)."""
    log_dir = tensorboard_dir(data.nodes)
    if data.evaluation is None or log_dir is None or data.history is None:
        return None
    blessed = store.output_property(data.nodes.get(pipeline_names.EVALUATOR_NODE), pipeline_names.BLESSING_OUTPUT,
                                    pipeline_names.PROP_BLESSED) == 1
    path = os.path.join(log_dir, TB_EVALUATOR_RUN, TB_EVALUATOR_EVENTS_FILE)
    write_scalars_file(path, evaluator_scalars(data.evaluation, data.class_names, blessed),
                       data.history[names.HISTORY_CONFIG]["epochs"])
    return path
