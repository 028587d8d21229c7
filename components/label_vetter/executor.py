"""LabelVetter's executor: the latest blessed model scores the new labelled data (the eval split
and the first `train_sample` train records) and its own training data's eval split through its
serving signature (encoded image bytes in, predicted class out, as served), and vetting.vet
compares the two per class. Records label_vetting.json and its figures as artifact properties;
stops the run (LabelVettingError, exit code 1) on an anomaly unless warn_only.

The reference is the blessed model's agreement with the labels of the eval split it was trained
beside (its Trainer's examples), scored here by the same code as the new data, so both figures are
measured the same way (the Evaluator's per-class recall is the same quantity, but it is not linked
to the model before training, and TFMA's output is not needed to compute it).
"""
import os
from typing import Any, Dict, List, Optional, Tuple

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from common import pipeline_names
from components.label_vetter import vetting
from trainer_module import names

EXAMPLES_KEY = pipeline_names.EXAMPLES_OUTPUT  # this run's examples
MODEL_KEY = pipeline_names.MODEL_OUTPUT  # the latest blessed model (absent: none yet)
BASELINE_EXAMPLES_KEY = "baseline_examples"  # the examples its Trainer read
TRAIN_SAMPLE_KEY = "train_sample"
MAX_DROP_KEY = "max_drop"
CONCENTRATION_KEY = "concentration"
CONCENTRATION_MIN_DROP_KEY = "concentration_min_drop"
MIN_EXAMPLES_KEY = "min_examples"
WARN_ONLY_KEY = "warn_only"

TRAIN, EVAL = "train", "eval"  # ImageExampleGen's split names
BATCH = 64


def _split_files(examples: types.Artifact, split: str) -> List[str]:
    if split not in artifact_utils.decode_split_names(examples.split_names):
        return []
    return sorted(tf.io.gfile.glob(os.path.join(artifact_utils.get_split_uri([examples], split), "*")))


class _Classifier:
    """The SavedModel's serving signature: encoded images in, predicted class names (or errors) out."""

    def __init__(self, saved_model_path: str):
        self._loaded = tf.saved_model.load(saved_model_path)  # kept alive: the signature needs it
        self._serve = self._loaded.signatures[names.SERVING_BYTES_SIGNATURE]

    def __call__(self, images: List[bytes]) -> Tuple[List[str], List[str]]:
        out = self._serve(**{names.SERVING_BYTES_INPUT: tf.constant(images)})
        decode = lambda t: [v.decode("utf-8") for v in t.numpy().reshape(-1).tolist()]  # noqa: E731
        return decode(out[names.PREDICTED_CLASS_OUTPUT]), decode(out[names.ERROR_OUTPUT])


def score(classifier, files: List[str], limit: Optional[int] = None) -> Tuple[Dict[str, Dict[str, int]], int]:
    """({label: {predicted: images}}, unscored images) over the records of `files` (the first
    `limit` records when given; ImageExampleGen's shards are ordered by a hash of the path, so the
    first records mix the classes)."""
    if not files or limit == 0:
        return {}, 0
    spec = {names.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
            names.CLASS_NAME_KEY: tf.io.FixedLenFeature([], tf.string)}
    records = tf.data.TFRecordDataset(files, compression_type="GZIP")
    if limit is not None:
        records = records.take(limit)
    labels, predicted, unscored = [], [], 0
    for serialized in records.batch(BATCH):
        parsed = tf.io.parse_example(serialized, spec)
        batch_labels = [v.decode("utf-8") for v in parsed[names.CLASS_NAME_KEY].numpy().tolist()]
        guesses, errors = classifier(parsed[names.IMAGE_KEY].numpy().tolist())
        for label, guess, error in zip(batch_labels, guesses, errors):
            if error:
                unscored += 1  # counted and reported: the model could not read the image
                continue
            labels.append(label)
            predicted.append(guess)
    return vetting.parse_counts(labels, predicted), unscored


def label_sizes(files: List[str], limit: Optional[int] = None) -> Dict[str, int]:
    """{label: records} of the first `limit` records of `files` (labels only: no image decoded)."""
    if not files or limit == 0:
        return {}
    records = tf.data.TFRecordDataset(files, compression_type="GZIP")
    if limit is not None:
        records = records.take(limit)
    spec = {names.CLASS_NAME_KEY: tf.io.FixedLenFeature([], tf.string)}
    sizes: Dict[str, int] = {}
    for serialized in records.batch(1024):
        for label in tf.io.parse_example(serialized, spec)[names.CLASS_NAME_KEY].numpy().tolist():
            sizes[label.decode("utf-8")] = sizes.get(label.decode("utf-8"), 0) + 1
    return sizes


def _merge(*counts: Dict[str, Dict[str, int]]) -> Dict[str, Dict[str, int]]:
    merged: Dict[str, Dict[str, int]] = {}
    for c in counts:
        for label, row in c.items():
            target = merged.setdefault(label, {})
            for guess, n in row.items():
                target[guess] = target.get(guess, 0) + n
    return merged


def knobs_of(exec_properties: Dict[str, Any]) -> vetting.Knobs:
    return vetting.Knobs(max_drop=float(exec_properties[MAX_DROP_KEY]),
                         concentration=float(exec_properties[CONCENTRATION_KEY]),
                         concentration_min_drop=float(exec_properties[CONCENTRATION_MIN_DROP_KEY]),
                         min_examples=int(exec_properties[MIN_EXAMPLES_KEY]),
                         warn_only=bool(exec_properties[WARN_ONLY_KEY]))


def run_vetting(examples: types.Artifact, model: Optional[types.Artifact],
                baseline_examples: Optional[types.Artifact], train_sample: int,
                knobs: vetting.Knobs) -> vetting.Vetting:
    """Scores and compares; no blessed model (or none trained on other data): nothing to compare."""
    if model is None:
        return vetting.not_compared(vetting.NO_BASELINE, knobs)
    if baseline_examples is None:
        return vetting.not_compared(vetting.NO_REFERENCE, knobs)
    if baseline_examples.id and baseline_examples.id == examples.id:
        return vetting.not_compared(vetting.SAME_DATA, knobs)
    reference_files, eval_files, train_files = (_split_files(baseline_examples, EVAL), _split_files(examples, EVAL),
                                                _split_files(examples, TRAIN))
    reference_sizes = label_sizes(reference_files)
    new_sizes = label_sizes(eval_files)
    for label, n in label_sizes(train_files, train_sample).items():
        new_sizes[label] = new_sizes.get(label, 0) + n
    if not vetting.comparable(reference_sizes, new_sizes, knobs):  # tiny data: the model is not even loaded
        return vetting.too_few(reference_sizes, new_sizes, knobs, model.uri, baseline_examples.uri)
    classifier = _Classifier(os.path.join(model.uri, pipeline_names.TRAINER_SERVING_SUBDIR))
    reference, ref_unscored = score(classifier, reference_files)
    new_eval, eval_unscored = score(classifier, eval_files)
    new_train, train_unscored = score(classifier, train_files, limit=train_sample)
    if ref_unscored:
        logging.warning("LabelVetter: %d images of the reference eval split could not be classified", ref_unscored)
    return vetting.vet(reference, _merge(new_eval, new_train), knobs, unscored=eval_unscored + train_unscored,
                       baseline_model=model.uri, reference_examples_uri=baseline_examples.uri)


def _write(folder: str, result: vetting.Vetting) -> None:
    tf.io.gfile.makedirs(folder)  # a Kubeflow container gets the URI, not the folder
    with tf.io.gfile.GFile(os.path.join(folder, pipeline_names.LABEL_VETTING_FILE), "w") as f:
        f.write(result.to_json())


def record(result: vetting.Vetting, output: types.Artifact) -> None:
    """label_vetting.json in the output, and the figures as its custom properties."""
    _write(output.uri, result)
    output.set_int_custom_property(pipeline_names.PROP_VETTING_COMPARED, int(result.compared))
    output.set_int_custom_property(pipeline_names.PROP_VETTING_ANOMALIES, len(result.anomalies))
    output.set_int_custom_property(pipeline_names.PROP_VETTING_UNSCORED, result.unscored)
    output.set_string_custom_property(pipeline_names.PROP_VETTING_FINDINGS, "; ".join(result.finding_lines()))


def _single(input_dict: Dict[str, List[types.Artifact]], key: str) -> Optional[types.Artifact]:
    artifacts = input_dict.get(key) or []
    return artifacts[0] if artifacts else None


class Executor(base_executor.BaseExecutor):
    """Vets the labels; raises LabelVettingError on an anomaly unless warn_only."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        result = run_vetting(_single(input_dict, EXAMPLES_KEY), _single(input_dict, MODEL_KEY),
                             _single(input_dict, BASELINE_EXAMPLES_KEY), int(exec_properties[TRAIN_SAMPLE_KEY]),
                             knobs_of(exec_properties))
        for c in result.classes:
            logging.info("LabelVetter: %s%s", c.line(), f" ANOMALY ({c.anomaly})" if c.anomaly else "")
        if result.unscored:
            logging.warning("LabelVetter: %d new images could not be classified by the blessed model "
                            "(skipped, counted in label_vetting.json)", result.unscored)
        # A stop's findings are the run's one error line; a warning only when the run goes on despite them.
        logging.log(logging.WARNING if result.anomalies and not result.stops else logging.INFO,
                    "LabelVetter: %s", result.summary())
        result.run_id = (self._context.pipeline_run_id if self._context else "") or ""
        if result.stops and self._context and self._context.stateful_working_dir:
            # TFX removes a failed execution's outputs but keeps its stateful working dir (for a
            # retry): the record of a stopped run, which the run report finds by its run id.
            _write(self._context.stateful_working_dir, result)
        record(result, artifact_utils.get_single_instance(output_dict[pipeline_names.LABEL_VETTING_OUTPUT]))
        vetting.check(result)
