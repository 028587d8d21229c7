"""EdgeEvaluator's executor: scores the SavedModel and each TFLite flavour on the same eval images,
measures their size and CPU latency, and gates each flavour against the SavedModel.

TFMA 0.47's tf_lite model type cannot score our TFLite models: it feeds the interpreter the
example's raw features by input name, and the models take decoded, resized, centre-cropped uint8
pixels (the Transform graph's work). So this component runs its own evaluation:
  - the SavedModel through `serving_examples` on the serialized eval examples (what TFMA calls);
  - each TFLite model through the interpreter (common.tflite_classifier) on the Transform
    graph's output of the same examples, centre-cropped and cast to uint8: the same pixels the
    SavedModel's signatures feed its network.
Latency is measured from the encoded image bytes to probabilities, on CPU, one image per call
and in batches of 32: the SavedModel through serving_default, a TFLite model through the
client's preprocess and predict (what an app does).
"""
import json
import os
import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import path_utils

from common import pipeline_names
from components.edge_evaluator import gate
from components.image_example_gen.image_files import EVAL
from trainer_module import missing_piece, model_input, names

MAX_DROPS_KEY = "max_drops"  # JSON {flavour: margin}: gate.max_drops_json
MAX_IMAGE_PIXELS_KEY = names.MAX_IMAGE_PIXELS_KEY  # the pixel budget the app's preprocess enforces
EXAMPLES_KEY = standard_component_specs.EXAMPLES_KEY
TRANSFORM_GRAPH_KEY = standard_component_specs.TRANSFORM_GRAPH_KEY
MODEL_KEY = standard_component_specs.MODEL_KEY
BLESSING_KEY = pipeline_names.BLESSING_OUTPUT  # the Evaluator's blessing of the SavedModel (optional)
# Custom properties of the EdgeEvaluation artifact (ML Metadata and the lineage show them).
PROP_EXAMPLES = "examples"
PROP_PASSED = "edge_gate_passed"  # comma-separated flavours, "" for none
PROP_FAILED = "edge_gate_failed"
PROP_SAVED_MODEL_BLESSED = "saved_model_blessed"  # 1 or 0; absent without a blessing input
PROP_ACCURACY = "{model}_accuracy"

BATCH = 32  # evaluation batches, and the batch of the batched latency (pipeline_names.EDGE_BATCH_LATENCY_MS)
LATENCY_IMAGES = 32  # single-image calls timed per model
LATENCY_BATCHES = 4  # batches of BATCH images timed per model


# ---------------------------------------------------------------- the models under test

class _SavedModel:
    """The exported SavedModel: serving_examples for accuracy, serving_default for latency."""

    def __init__(self, path: str):
        self.path = path
        self._loaded = tf.saved_model.load(path)  # kept alive: the signatures need it
        self._examples = self._loaded.signatures[names.SERVING_EXAMPLES_SIGNATURE]
        self._bytes = self._loaded.signatures[names.SERVING_BYTES_SIGNATURE]

    def predict_examples(self, serialized: tf.Tensor) -> np.ndarray:
        return self._examples(**{names.SERVING_EXAMPLES_INPUT: serialized})[names.PROBABILITIES_OUTPUT].numpy()

    def classify_bytes(self, images: Sequence[bytes]) -> np.ndarray:
        outputs = self._bytes(**{names.SERVING_BYTES_INPUT: tf.constant(list(images))})
        return outputs[names.PROBABILITIES_OUTPUT].numpy()

    def size_mb(self) -> float:
        """Its variables folder: the weights, what a deployment copies per model."""
        return _tree_bytes(os.path.join(self.path, "variables")) / gate.MB


class _TFLiteModel:
    """One TFLite flavour through the interpreter, as an app runs it."""

    def __init__(self, path: str, max_pixels: int):
        self.path = path
        tflite = missing_piece.import_for("the edge-model evaluation (TFLite)", "common.tflite_classifier")
        self.classifier = tflite.TFLiteClassifier(path)
        self._max_pixels = max_pixels

    def predict_pixels(self, resized: tf.Tensor) -> np.ndarray:
        """Probabilities of the Transform graph's [n, R, R, 3] output (8-bit values)."""
        crop = model_input.center_crop(resized, self.classifier.image_size)
        return np.asarray(self.classifier.predict(tf.cast(crop, tf.uint8).numpy()))

    def classify_bytes(self, images: Sequence[bytes]) -> np.ndarray:
        return self.classifier.classify_encoded(images, self._max_pixels)[0]  # what predict and an app run

    def size_mb(self) -> float:
        return fileio.stat(self.path).length / gate.MB


def _tree_bytes(root: str) -> int:
    return sum(fileio.stat(os.path.join(d, f)).length for d, _, files in fileio.walk(root) for f in files)


# ---------------------------------------------------------------- inputs

def eval_files(examples: types.Artifact) -> List[str]:
    """The eval split's record files; none is an error naming the folder."""
    split_uri = artifact_utils.get_split_uri([examples], EVAL)
    files = sorted(fileio.glob(os.path.join(split_uri, "*")))
    if not files:
        raise FileNotFoundError(f"EdgeEvaluator: no eval records in {split_uri}")
    return files


def class_names_of(saved_model_path: str) -> List[str]:
    """The SavedModel's label space (assets.extra/class_names.json, written by its export)."""
    path = os.path.join(saved_model_path, names.EXTRA_ASSETS_DIR, names.CLASS_NAMES_ASSET)
    if not fileio.exists(path):
        raise FileNotFoundError(f"EdgeEvaluator: {path} is missing; the SavedModel was not exported by "
                                "trainer_module.signatures.export_serving_model")
    with fileio.open(path, "r") as f:
        return list(json.load(f))


def edge_model_paths(model_uri: str) -> Dict[str, str]:
    """{flavour: .tflite path} present in the Model artifact's Format-TFLite (none: export off)."""
    edge_dir = os.path.join(model_uri, names.EDGE_MODEL_SUBDIR)
    paths = {flavour: os.path.join(edge_dir, names.TFLITE_FILE.format(flavour=flavour))
             for flavour in names.TFLITE_FLAVOURS}
    return {flavour: path for flavour, path in paths.items() if fileio.exists(path)}


def _blessed(input_dict: Dict[str, List[types.Artifact]]) -> Optional[bool]:
    blessings = input_dict.get(BLESSING_KEY) or []
    if not blessings:
        return None
    return blessings[0].get_int_custom_property(pipeline_names.PROP_BLESSED) == 1


# ---------------------------------------------------------------- evaluation

def predict_eval_split(files: Sequence[str], tft_output: tft.TFTransformOutput, saved: _SavedModel,
                       edge: Dict[str, _TFLiteModel]):
    """(labels, {model: predicted labels}, the first LATENCY_IMAGES encoded images) over the eval split."""
    raw_spec = tft_output.raw_feature_spec()
    spec = {key: raw_spec[key] for key in (names.IMAGE_KEY, names.LABEL_KEY)}
    tft_layer = tft_output.transform_features_layer()
    labels, predicted, sample = [], {model: [] for model in [pipeline_names.EDGE_SAVED_MODEL, *edge]}, []
    records = tf.data.TFRecordDataset(list(files), compression_type="GZIP").batch(BATCH)
    for serialized in records:
        parsed = tf.io.parse_example(serialized, spec)
        labels += tf.reshape(parsed[names.LABEL_KEY], [-1]).numpy().tolist()
        sample += tf.reshape(parsed[names.IMAGE_KEY], [-1]).numpy().tolist()[:LATENCY_IMAGES - len(sample)]
        predicted[pipeline_names.EDGE_SAVED_MODEL] += _argmax(saved.predict_examples(serialized))
        if edge:
            resized = tft_layer({names.IMAGE_KEY: parsed[names.IMAGE_KEY]})[names.TRANSFORMED_IMAGE_KEY]
            for flavour, model in edge.items():
                predicted[flavour] += _argmax(model.predict_pixels(resized))
    return labels, predicted, sample


def _argmax(probabilities: np.ndarray) -> List[int]:
    return np.argmax(probabilities, axis=-1).tolist()


def median_ms(call: Callable[[Sequence[bytes]], Any], inputs: Sequence[Sequence[bytes]]) -> float:
    """Median wall time of call(x) per image over `inputs`, after one untimed warm-up call."""
    call(inputs[0])  # the first call traces, allocates and loads kernels
    times = []
    for images in inputs:
        start = time.perf_counter()
        call(images)
        times.append((time.perf_counter() - start) / len(images))
    return statistics.median(times) * 1000.0


def latencies(call: Callable[[Sequence[bytes]], Any], sample: Sequence[bytes]) -> Dict[str, float]:
    """CPU ms per image, one image per call and in batches of BATCH (the sample cycled to fill them)."""
    cycled = [sample[i % len(sample)] for i in range(BATCH * LATENCY_BATCHES)]
    return {pipeline_names.EDGE_LATENCY_MS: median_ms(call, [[image] for image in sample]),
            pipeline_names.EDGE_BATCH_LATENCY_MS: median_ms(call,
                                                            [cycled[i:i + BATCH] for i in range(0, len(cycled),
                                                                                                BATCH)])}


def model_entry(model, labels: List[int], predicted: List[int], class_names: Sequence[str],
                sample: Sequence[bytes]) -> Dict[str, Any]:
    """One model's entry of pipeline_names.EDGE_MODELS."""
    return {**gate.scores(labels, predicted, class_names), pipeline_names.EDGE_SIZE_MB: model.size_mb(),
            **latencies(model.classify_bytes, sample), pipeline_names.EDGE_PATH: model.path}


def consistency_problem(model: _TFLiteModel, class_names: Sequence[str], resize_size: int) -> Optional[str]:
    """Why an app running this model would not see what was evaluated (None: nothing)."""
    labels = list(model.classifier.labels)
    if labels != list(class_names):
        return f"its labels {labels} are not the SavedModel's {list(class_names)}"
    if model.classifier.resize_size != resize_size:
        return (f"its input spec resizes to {model.classifier.resize_size} px, the Transform graph to "
                f"{resize_size} px")
    return None


def evaluate(files: Sequence[str], transform_graph_uri: str, model_uri: str, max_drops: Dict[str, float],
             max_pixels: int) -> Dict[str, Any]:
    """The contents of pipeline_names.EDGE_EVALUATION_FILE, computed on CPU (where the executor has a GPU
    too): the latencies are CPU latencies, and the SavedModel's variables are restored there."""
    with tf.device("/CPU:0"):
        return _evaluate(files, transform_graph_uri, model_uri, max_drops, max_pixels)


def _evaluate(files: Sequence[str], transform_graph_uri: str, model_uri: str, max_drops: Dict[str, float],
              max_pixels: int) -> Dict[str, Any]:
    saved_path = path_utils.serving_model_path(model_uri)
    class_names = class_names_of(saved_path)
    saved = _SavedModel(saved_path)
    edge = {flavour: _TFLiteModel(path, max_pixels) for flavour, path in edge_model_paths(model_uri).items()}
    tft_output = tft.TFTransformOutput(transform_graph_uri)
    labels, predicted, sample = predict_eval_split(files, tft_output, saved, edge)
    if not labels:
        raise ValueError(f"EdgeEvaluator: the eval split {list(files)} holds no examples")
    models = {pipeline_names.EDGE_SAVED_MODEL: model_entry(saved, labels, predicted[pipeline_names.EDGE_SAVED_MODEL],
                                                  class_names, sample)}
    resize_size = int(tft_output.transformed_feature_spec()[names.TRANSFORMED_IMAGE_KEY].shape[0]) if edge else 0
    gate_entries = {}
    for flavour, model in edge.items():
        models[flavour] = model_entry(model, labels, predicted[flavour], class_names, sample)
        gate_entries[flavour] = gate.verdict(
            flavour, _correct(labels, predicted[pipeline_names.EDGE_SAVED_MODEL]), _correct(labels, predicted[flavour]),
            len(labels), max_drops[flavour], consistency_problem(model, class_names, resize_size))
    return {pipeline_names.EDGE_EXAMPLES: len(labels), pipeline_names.EDGE_CLASS_NAMES: class_names,
            pipeline_names.EDGE_MODELS: models, pipeline_names.EDGE_GATE: gate_entries}


def _correct(labels: Sequence[int], predicted: Sequence[int]) -> int:
    return sum(int(y == p) for y, p in zip(labels, predicted))


# ---------------------------------------------------------------- the record

def write_evaluation(evaluation: Dict[str, Any], output: types.Artifact, blessed: Optional[bool]) -> None:
    """The JSON file in the artifact's folder, and the custom properties that summarise it."""
    fileio.makedirs(output.uri)  # a Kubeflow container gets the URI, not the folder
    with fileio.open(os.path.join(output.uri, pipeline_names.EDGE_EVALUATION_FILE), "w") as f:
        f.write(json.dumps(evaluation, indent=2))  # models in order: the SavedModel, then each flavour
    output.set_int_custom_property(PROP_EXAMPLES, evaluation[pipeline_names.EDGE_EXAMPLES])
    output.set_string_custom_property(PROP_PASSED, ",".join(gate.passed_flavours(evaluation)))
    output.set_string_custom_property(PROP_FAILED, ",".join(gate.held_back(evaluation)))
    for model, entry in evaluation[pipeline_names.EDGE_MODELS].items():
        output.set_float_custom_property(PROP_ACCURACY.format(model=model), entry[pipeline_names.EDGE_ACCURACY])
    if blessed is not None:
        output.set_int_custom_property(PROP_SAVED_MODEL_BLESSED, int(blessed))


def _log(evaluation: Dict[str, Any], blessed: Optional[bool]) -> None:
    """A summary line per model."""
    logging.info("EdgeEvaluator: %d eval images; the SavedModel is %s", evaluation[pipeline_names.EDGE_EXAMPLES],
                 {None: "of unknown blessing", True: "blessed", False: "NOT blessed"}[blessed])
    gate_entries = evaluation[pipeline_names.EDGE_GATE]
    for model, entry in evaluation[pipeline_names.EDGE_MODELS].items():
        failed = model in gate_entries and not gate_entries[model][pipeline_names.EDGE_PASSED]
        logging.log(logging.WARNING if failed else logging.INFO, "EdgeEvaluator: %s",
                    gate.summary_line(model, entry, gate_entries.get(model)))
    if not gate_entries:
        logging.info("EdgeEvaluator: the model has no %s folder (tflite_export off): SavedModel only",
                     names.EDGE_MODEL_SUBDIR)


class Executor(base_executor.BaseExecutor):
    """Writes pipeline_names.EDGE_EVALUATION_FILE into the EdgeEvaluation artifact."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        max_drops = gate.parse_max_drops(exec_properties[MAX_DROPS_KEY])
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        evaluation = evaluate(
            eval_files(artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])),
            artifact_utils.get_single_uri(input_dict[TRANSFORM_GRAPH_KEY]), model.uri, max_drops,
            int(exec_properties[MAX_IMAGE_PIXELS_KEY]))
        blessed = _blessed(input_dict)
        _log(evaluation, blessed)
        write_evaluation(evaluation,
                         artifact_utils.get_single_instance(output_dict[pipeline_names.EDGE_EVALUATION_OUTPUT]),
                         blessed)
