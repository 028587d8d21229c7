"""EdgeEvaluator: the SavedModel and its TFLite models scored on the same eval images, the
edge gate, and the AtomicPusher pushing only the flavours that passed.

Real artifacts, made once per module: ImageExampleGen's eval records, a Transform graph written by
tensorflow_transform's Beam implementation from the pipeline's own preprocessing_fn (as in
test_run_fn.py), a tiny colour classifier exported through signatures.export_serving_model and
tflite_export.export_edge_models. The executors run directly, as TFX's launcher runs them.
"""
import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx import types
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

import image_factory
import transform_graphs
from common import pipeline_names
from components.atomic_pusher import executor as pusher_executor
from components.edge_evaluator import executor, gate
from components.edge_evaluator.component import EdgeEvaluation, EdgeEvaluator
from common.tflite_classifier import TFLiteClassifier
from components.image_example_gen.records import make_example
from trainer_module import image_format, model_input, names, preprocessing, signatures, tflite_export
from trainer_module.train_config import TrainConfig

CLASSES = ("red", "green", "blue")
RESIZE, IMAGE = 40, 32
CFG = TrainConfig(class_names=CLASSES, image_size=IMAGE, resize_size=RESIZE, tflite_calibration_images=8)
COLOURS = ((230, 30, 30), (30, 230, 30), (30, 30, 230))
# (label, colour) of each eval image: the last three are labelled against their colour, so every
# model misses them (accuracy 9/12, recall of green 3/5, of blue 3/4, of red 3/3).
EVAL = [(0, 0), (1, 1), (2, 2)] * 3 + [(1, 0), (2, 1), (1, 2)]
SIZES = ((50, 40), (64, 64), (30, 45), (40, 40))  # shrunk, enlarged and kept by the resize
RAW_SPEC = {  # the raw schema as SchemaGen infers it for ImageExampleGen's records
    names.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string),
    names.LABEL_KEY: tf.io.FixedLenFeature([1], tf.int64),
}
MAX_DROPS = {"float16": 0.002, "int8": 0.01}


def _images():
    return [image_factory.jpeg_bytes(*SIZES[i % len(SIZES)], color=COLOURS[colour])
            for i, (_, colour) in enumerate(EVAL)]


def _write_examples(root):
    """An Examples artifact as ImageExampleGen writes it: GZIP records under Split-eval."""
    examples = standard_artifacts.Examples()
    examples.uri = str(root / "examples")
    examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
    split = artifact_utils.get_split_uri([examples], "eval")
    os.makedirs(split)
    with tf.io.TFRecordWriter(os.path.join(split, "data-00000-of-00001.gz"), options="GZIP") as writer:
        for i, (data, (label, _)) in enumerate(zip(_images(), EVAL)):
            w, h = SIZES[i % len(SIZES)]
            writer.write(make_example(data, label, CLASSES[label], f"{CLASSES[label]}/{i}.jpg", h, w, "jpeg")
                         .SerializeToString())
    return examples


def _write_transform_graph(output_dir, temp_dir):
    """The Transform component's transform_graph artifact of preprocessing_fn."""
    instances = [{names.IMAGE_KEY: np.array([data]), names.LABEL_KEY: np.array([label])}
                 for data, (label, _) in zip(_images()[:3], EVAL)]
    graph = standard_artifacts.TransformGraph()
    graph.uri = transform_graphs.write_transform_graph(output_dir, temp_dir, RAW_SPEC, instances, CLASSES, RESIZE)
    return graph


def _colour_model(shift: int = 0, side: int = IMAGE) -> keras.Model:
    """Scores each class by the mean of its colour channel; shift=1 scores red images as green, etc."""
    inputs = keras.Input([side, side, 3])
    dense = keras.layers.Dense(len(CLASSES), activation="softmax")
    outputs = dense(keras.layers.GlobalAveragePooling2D()(inputs))
    dense.set_weights([np.roll(np.eye(3, dtype=np.float32), shift, axis=1) / 20.0, np.zeros(3, np.float32)])
    return keras.Model(inputs, outputs)


def _representative(side: int = IMAGE):
    crops = [preprocessing.decode_and_resize(tf.constant([data]), RESIZE)[0] for data in _images()]
    return tf.data.Dataset.from_tensor_slices(model_input.center_crop(tf.stack(crops), side)).batch(4)


def _model_artifact(root, name, graph, cfg=CFG):
    """A Trainer's Model artifact: the colour model's Format-Serving and Format-TFLite."""
    model = standard_artifacts.Model()
    model.uri = str(root / name)
    network = _colour_model(side=cfg.served_image_size)
    tft_layer = tft.TFTransformOutput(graph.uri).transform_features_layer()
    signatures.export_serving_model(network, tft_layer, RAW_SPEC, cfg,
                                    os.path.join(model.uri, pipeline_names.TRAINER_SERVING_SUBDIR))
    tflite_export.export_edge_models(network, cfg, _representative(cfg.served_image_size),
                                     os.path.join(model.uri, names.EDGE_MODEL_SUBDIR))
    return model


def _copy(model, root, name, subdirs):
    """Another Model artifact holding some of `model`'s folders (exports are the slow part)."""
    copy = standard_artifacts.Model()
    copy.uri = str(root / name)
    for subdir in subdirs:
        shutil.copytree(os.path.join(model.uri, subdir), os.path.join(copy.uri, subdir))
    return copy


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """Examples, Transform graph, and three models: good TFLite, a wrong int8 file, no TFLite."""
    root = tmp_path_factory.mktemp("edge")
    graph = _write_transform_graph(str(root / "transform_graph"), str(root / "tmp"))
    good = _model_artifact(root, "good", graph)
    # The int8 of a network whose classes are shifted: its accuracy falls far outside the margin.
    wrong = _copy(good, root, "wrong_int8", [pipeline_names.TRAINER_SERVING_SUBDIR, names.EDGE_MODEL_SUBDIR])
    shifted = tflite_export.export_edge_models(_colour_model(shift=1), CFG, _representative(), str(root / "shifted"))
    shutil.copyfile(shifted["int8"], os.path.join(wrong.uri, names.EDGE_MODEL_SUBDIR,
                                                  names.TFLITE_FILE.format(flavour="int8")))
    return dict(examples=_write_examples(root), graph=graph, good=good, wrong_int8=wrong,
                no_tflite=_copy(good, root, "no_tflite", [pipeline_names.TRAINER_SERVING_SUBDIR]), root=root)



def _blessing(root, blessed=1):
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(root / f"blessing-{blessed}")
    blessing.set_int_custom_property(pipeline_names.PROP_BLESSED, blessed)
    return blessing


def _evaluate(artifacts, model_key, tag, max_drops=MAX_DROPS):
    """Runs the EdgeEvaluator's executor; returns (its artifact, the JSON it wrote)."""
    output = EdgeEvaluation()
    output.uri = str(artifacts["root"] / f"edge_evaluation-{model_key}-{tag}")
    executor.Executor().Do(
        {executor.EXAMPLES_KEY: [artifacts["examples"]], executor.TRANSFORM_GRAPH_KEY: [artifacts["graph"]],
         executor.MODEL_KEY: [artifacts[model_key]], executor.BLESSING_KEY: [_blessing(artifacts["root"])]},
        {pipeline_names.EDGE_EVALUATION_OUTPUT: [output]},
        {executor.MAX_DROPS_KEY: json.dumps(max_drops),
         executor.MAX_IMAGE_PIXELS_KEY: image_format.DEFAULT_MAX_IMAGE_PIXELS})
    with open(os.path.join(output.uri, pipeline_names.EDGE_EVALUATION_FILE)) as f:
        return output, json.load(f)


@pytest.fixture(scope="module")
def good(artifacts):
    return _evaluate(artifacts, "good", "default")


@pytest.fixture(scope="module")
def wrong_int8(artifacts):
    return _evaluate(artifacts, "wrong_int8", "default")


# ---------------------------------------------------------------- by hand, on the same images

def _saved_model_predictions(model):
    """serving_default on the raw bytes: another path than the executor's serving_examples."""
    loaded = tf.saved_model.load(os.path.join(model.uri, pipeline_names.TRAINER_SERVING_SUBDIR))
    outputs = loaded.signatures[names.SERVING_BYTES_SIGNATURE](**{names.SERVING_BYTES_INPUT: tf.constant(_images())})
    return np.argmax(outputs[names.PROBABILITIES_OUTPUT].numpy(), axis=-1).tolist()


def _tflite_predictions(path, side: int = IMAGE):
    """The bare interpreter on the project's decode, resize and centre crop, as uint8."""
    interpreter = tf.lite.Interpreter(model_path=path)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    predictions = []
    for data in _images():
        resized = preprocessing.decode_and_resize(tf.constant([data]), RESIZE)
        interpreter.set_tensor(inp["index"], tf.cast(model_input.center_crop(resized, side), tf.uint8).numpy())
        interpreter.invoke()
        predictions.append(int(np.argmax(interpreter.get_tensor(out["index"])[0])))
    return predictions


def _by_hand(predictions):
    labels = [label for label, _ in EVAL]
    accuracy = np.mean([p == y for p, y in zip(predictions, labels)])
    recall = {name: np.mean([p == c for p, y in zip(predictions, labels) if y == c]) for c, name in enumerate(CLASSES)}
    return accuracy, recall


def _edge_path(model, flavour):
    return os.path.join(model.uri, names.EDGE_MODEL_SUBDIR, names.TFLITE_FILE.format(flavour=flavour))


def test_evaluation_has_the_documented_keys_and_the_hand_computed_numbers(artifacts, good):
    output, evaluation = good
    model = artifacts["good"]
    assert set(evaluation) == {pipeline_names.EDGE_EXAMPLES, pipeline_names.EDGE_CLASS_NAMES,
                               pipeline_names.EDGE_MODELS, pipeline_names.EDGE_GATE}
    assert evaluation[pipeline_names.EDGE_EXAMPLES] == len(EVAL)
    assert evaluation[pipeline_names.EDGE_CLASS_NAMES] == list(CLASSES)
    assert list(evaluation[pipeline_names.EDGE_MODELS]) == [pipeline_names.EDGE_SAVED_MODEL, *names.TFLITE_FLAVOURS]
    hand = {pipeline_names.EDGE_SAVED_MODEL: _by_hand(_saved_model_predictions(model))}
    hand.update({f: _by_hand(_tflite_predictions(_edge_path(model, f))) for f in names.TFLITE_FLAVOURS})
    assert hand[pipeline_names.EDGE_SAVED_MODEL] == (0.75, {"red": 1.0, "green": 0.6, "blue": 0.75})  # EVAL's comment
    for name, entry in evaluation[pipeline_names.EDGE_MODELS].items():
        assert set(entry) == {pipeline_names.EDGE_ACCURACY, pipeline_names.EDGE_RECALL, pipeline_names.EDGE_SIZE_MB,
                              pipeline_names.EDGE_LATENCY_MS,
                              pipeline_names.EDGE_BATCH_LATENCY_MS, pipeline_names.EDGE_PATH}
        assert entry[pipeline_names.EDGE_ACCURACY] == pytest.approx(hand[name][0])
        assert entry[pipeline_names.EDGE_RECALL] == pytest.approx(hand[name][1])
        assert entry[pipeline_names.EDGE_LATENCY_MS] > 0 and entry[pipeline_names.EDGE_BATCH_LATENCY_MS] > 0
    saved = evaluation[pipeline_names.EDGE_MODELS][pipeline_names.EDGE_SAVED_MODEL]
    serving = os.path.join(model.uri, pipeline_names.TRAINER_SERVING_SUBDIR)
    assert saved[pipeline_names.EDGE_PATH] == serving
    variables = os.path.join(serving, "variables")
    assert saved[pipeline_names.EDGE_SIZE_MB] == pytest.approx(
        sum(os.path.getsize(os.path.join(variables, f)) for f in os.listdir(variables)) / 1e6)
    for flavour in names.TFLITE_FLAVOURS:
        entry, verdict = evaluation[pipeline_names.EDGE_MODELS][flavour], evaluation[pipeline_names.EDGE_GATE][flavour]
        assert entry[pipeline_names.EDGE_PATH] == _edge_path(model, flavour)
        assert entry[pipeline_names.EDGE_SIZE_MB] == pytest.approx(os.path.getsize(_edge_path(model, flavour)) / 1e6)
        assert set(verdict) == {pipeline_names.EDGE_MAX_DROP, pipeline_names.EDGE_DROP, pipeline_names.EDGE_PASSED,
                                pipeline_names.EDGE_REASON}
        assert verdict[pipeline_names.EDGE_MAX_DROP] == MAX_DROPS[flavour]
        assert verdict[pipeline_names.EDGE_DROP] == pytest.approx(saved[pipeline_names.EDGE_ACCURACY] - entry[pipeline_names.EDGE_ACCURACY])
        assert verdict[pipeline_names.EDGE_PASSED] and verdict[pipeline_names.EDGE_DROP] == 0  # a colour is a colour, also in int8
        assert verdict[pipeline_names.EDGE_REASON].startswith(f"{flavour} accuracy 0.750 is level with the SavedModel's "
                                                      f"0.750 on the same {len(EVAL)} eval images")
    assert output.get_string_custom_property(executor.PROP_PASSED) == "float16,int8"
    assert output.get_string_custom_property(executor.PROP_FAILED) == ""
    assert output.get_int_custom_property(executor.PROP_SAVED_MODEL_BLESSED) == 1
    assert output.get_float_custom_property("int8_accuracy") == pytest.approx(0.75)


def test_a_flavour_outside_the_margin_fails_the_gate(wrong_int8):
    output, evaluation = wrong_int8
    verdict = evaluation[pipeline_names.EDGE_GATE]["int8"]
    # Every colour shifted: right only where the label is the next colour (2 of the mislabelled 3).
    assert evaluation[pipeline_names.EDGE_MODELS]["int8"][pipeline_names.EDGE_ACCURACY] == pytest.approx(2 / 12)
    assert not verdict[pipeline_names.EDGE_PASSED] and verdict[pipeline_names.EDGE_DROP] == pytest.approx(0.75 - 2 / 12)
    assert verdict[pipeline_names.EDGE_REASON] == (f"int8 accuracy 0.167 is 58.3 points below the SavedModel's 0.750 on the "
                                          f"same {len(EVAL)} eval images (margin 1.0 point): not pushed")
    assert evaluation[pipeline_names.EDGE_GATE]["float16"][pipeline_names.EDGE_PASSED]
    assert output.get_string_custom_property(executor.PROP_PASSED) == "float16"
    assert output.get_string_custom_property(executor.PROP_FAILED) == "int8"


def test_models_served_at_the_test_image_size_are_evaluated_at_it(artifacts):
    """test_image_size above image_size: the SavedModel's signatures and the TFLite models take the
    centre RESIZE crop, and the EdgeEvaluator feeds the TFLite models that side (their input spec)."""
    cfg = dataclasses.replace(CFG, test_image_size=RESIZE)
    model = _model_artifact(artifacts["root"], "served_at_test_size", artifacts["graph"], cfg)
    output, evaluation = _evaluate({**artifacts, "served_at_test_size": model}, "served_at_test_size", "default")
    saved = evaluation[pipeline_names.EDGE_MODELS][pipeline_names.EDGE_SAVED_MODEL]
    assert saved[pipeline_names.EDGE_ACCURACY] == pytest.approx(_by_hand(_saved_model_predictions(model))[0])
    for flavour in names.TFLITE_FLAVOURS:
        interpreter = tf.lite.Interpreter(model_path=_edge_path(model, flavour))
        assert list(interpreter.get_input_details()[0]["shape"]) == [1, RESIZE, RESIZE, 3]
        assert TFLiteClassifier(_edge_path(model, flavour)).image_size == RESIZE  # the input spec
        assert evaluation[pipeline_names.EDGE_MODELS][flavour][pipeline_names.EDGE_ACCURACY] == pytest.approx(
            _by_hand(_tflite_predictions(_edge_path(model, flavour), RESIZE))[0])
    assert output.get_string_custom_property(executor.PROP_PASSED) == "float16,int8"


def test_a_model_without_tflite_is_evaluated_alone(artifacts):
    output, evaluation = _evaluate(artifacts, "no_tflite", "default")
    assert list(evaluation[pipeline_names.EDGE_MODELS]) == [pipeline_names.EDGE_SAVED_MODEL]
    assert evaluation[pipeline_names.EDGE_GATE] == {}
    assert evaluation[pipeline_names.EDGE_MODELS][pipeline_names.EDGE_SAVED_MODEL][pipeline_names.EDGE_ACCURACY] == pytest.approx(0.75)
    assert output.get_string_custom_property(executor.PROP_PASSED) == ""


# ---------------------------------------------------------------- the push

def _push(artifacts, model_key, edge_output, base, blessed=1):
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(base) + "-pushed"
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(base)))
    pusher_executor.AtomicPusherExecutor().Do(
        {standard_component_specs.MODEL_KEY: [artifacts[model_key]],
         standard_component_specs.MODEL_BLESSING_KEY: [_blessing(artifacts["root"], blessed)],
         pusher_executor.EDGE_EVALUATION_KEY: [edge_output]},
        {standard_component_specs.PUSHED_MODEL_KEY: [pushed]},
        {standard_component_specs.PUSH_DESTINATION_KEY: proto_utils.proto_to_json(destination),
         standard_component_specs.CUSTOM_CONFIG_KEY: "null"})
    return pushed


def test_int8_outside_the_margin_is_not_pushed_while_the_savedmodel_and_float16_are(artifacts, wrong_int8, tmp_path):
    output, evaluation = wrong_int8
    base = tmp_path / "serving"
    pushed = _push(artifacts, "wrong_int8", output, base)
    [version] = [name for name in os.listdir(base) if name.isdigit()]  # beside the release files
    assert pushed.get_int_custom_property(pipeline_names.PROP_PUSHED) == 1
    assert os.path.isfile(base / version / pipeline_names.SAVED_MODEL_FILE)
    edge_dir = base / version / pipeline_names.PUSHED_EDGE_SUBDIR
    assert sorted(os.listdir(edge_dir)) == [names.TFLITE_LABELS_FILE, names.TFLITE_FILE.format(flavour="float16")]
    assert (edge_dir / names.TFLITE_LABELS_FILE).read_text().split() == list(CLASSES)
    assert pushed.get_string_custom_property(pipeline_names.PROP_PUSHED_EDGE_MODELS) == "float16"
    assert json.loads(pushed.get_string_custom_property(pipeline_names.PROP_EDGE_HELD_BACK)) == {
        "int8": evaluation[pipeline_names.EDGE_GATE]["int8"][pipeline_names.EDGE_REASON]}
    # The pushed float16 model is the evaluated one, and runs from there.
    classifier = TFLiteClassifier(str(edge_dir / names.TFLITE_FILE.format(flavour="float16")))
    assert classifier.labels == CLASSES


def test_a_passing_int8_lands_beside_the_savedmodel(artifacts, good, tmp_path):
    output, _ = good
    base = tmp_path / "serving"
    pushed = _push(artifacts, "good", output, base)
    [version] = [name for name in os.listdir(base) if name.isdigit()]  # beside the release files
    assert sorted(os.listdir(base / version / pipeline_names.PUSHED_EDGE_SUBDIR)) == sorted(
        [names.TFLITE_LABELS_FILE] + [names.TFLITE_FILE.format(flavour=f) for f in names.TFLITE_FLAVOURS])
    assert pushed.get_string_custom_property(pipeline_names.PROP_PUSHED_EDGE_MODELS) == "float16,int8"
    assert pushed.get_string_custom_property(pipeline_names.PROP_EDGE_HELD_BACK) == "{}"


def test_not_blessed_pushes_nothing(artifacts, good, tmp_path):
    output, _ = good
    base = tmp_path / "serving"
    pushed = _push(artifacts, "good", output, base, blessed=0)
    assert pushed.get_int_custom_property(pipeline_names.PROP_PUSHED) == 0 and not os.path.exists(base)


# ---------------------------------------------------------------- the component and the gate's words

def test_component_spec_and_bad_margins():
    channel = types.Channel
    component = EdgeEvaluator(examples=channel(type=standard_artifacts.Examples),
                              transform_graph=channel(type=standard_artifacts.TransformGraph),
                              model=channel(type=standard_artifacts.Model),
                              blessing=channel(type=standard_artifacts.ModelBlessing),
                              float16_max_drop=0.002, int8_max_drop=0.01)
    assert component.id == pipeline_names.EDGE_EVALUATOR_NODE
    assert list(component.outputs) == [pipeline_names.EDGE_EVALUATION_OUTPUT]
    assert EdgeEvaluation.TYPE_NAME == "components.EdgeEvaluation"
    assert json.loads(component.exec_properties[executor.MAX_DROPS_KEY]) == MAX_DROPS
    with pytest.raises(gate.EdgeGateError, match=r"max_drops\['int8'\]=1.5: must be a number in \[0, 1\]"):
        EdgeEvaluator(examples=channel(type=standard_artifacts.Examples),
                      transform_graph=channel(type=standard_artifacts.TransformGraph),
                      model=channel(type=standard_artifacts.Model), float16_max_drop=0.002, int8_max_drop=1.5)


def test_gate_verdicts_in_words():
    failed = gate.verdict("int8", 528, 517, 600, 0.01)
    assert not failed[pipeline_names.EDGE_PASSED] and failed[pipeline_names.EDGE_DROP] == pytest.approx(11 / 600)
    assert failed[pipeline_names.EDGE_REASON] == ("int8 accuracy 0.862 is 1.8 points below the SavedModel's 0.880 on the same "
                                         "600 eval images (margin 1.0 point): not pushed")
    assert gate.verdict("int8", 100, 99, 100, 0.01)[pipeline_names.EDGE_PASSED]  # a drop equal to the margin passes
    above = gate.verdict("float16", 528, 530, 600, 0.002)
    assert above[pipeline_names.EDGE_PASSED] and "0.3 points above" in above[pipeline_names.EDGE_REASON]
    other = gate.verdict("float16", 10, 10, 10, 0.002, problem="its labels ['a'] are not the SavedModel's ['b']")
    assert not other[pipeline_names.EDGE_PASSED] and other[pipeline_names.EDGE_REASON].endswith(
        "but its labels ['a'] are not the SavedModel's ['b']: not pushed")
    assert gate.scores([0, 1, 1], [0, 1, 0], ["a", "b", "c"]) == {
        pipeline_names.EDGE_ACCURACY: pytest.approx(2 / 3), pipeline_names.EDGE_RECALL: {"a": 1.0, "b": 0.5, "c": None}}
    for bad, message in (('{"int8": 0.01}', "missing \\['float16'\\]"), ("[]", "must be a JSON object"),
                         ("nope", "is not JSON")):
        with pytest.raises(gate.EdgeGateError, match=message):
            gate.parse_max_drops(bad)


def test_console_key_figures(wrong_int8):
    from ml_metadata.proto import metadata_store_pb2

    from common import store
    from run_control import figures

    output, _ = wrong_int8
    evaluation = metadata_store_pb2.Artifact(uri=output.uri)
    node = store.NodeRun(pipeline_names.EDGE_EVALUATOR_NODE, "COMPLETE",
                         {pipeline_names.EDGE_EVALUATION_OUTPUT: [evaluation]})
    assert figures._FIGURES[pipeline_names.EDGE_EVALUATOR_NODE](node) == (
        "12 eval images; SavedModel accuracy 0.750; float16 0.750 (passed: drop 0.0 points, margin 0.2); "
        "int8 0.167 (FAILED: drop 58.3 points, margin 1.0)")
    pushed = metadata_store_pb2.Artifact(uri="/pushed")
    for name, value in ((pipeline_names.PROP_PUSHED, 1), (pipeline_names.PROP_PUSHED_DESTINATION, "/serving/7"),
                        (pipeline_names.PROP_PUSHED_EDGE_MODELS, "float16"), (pipeline_names.PROP_EDGE_HELD_BACK,
                                                                              '{"int8": "why"}')):
        field = "int_value" if isinstance(value, int) else "string_value"
        setattr(pushed.custom_properties[name], field, value)
    pusher = store.NodeRun(pipeline_names.PUSHER_NODE, "COMPLETE", {pipeline_names.PUSHED_MODEL_OUTPUT: [pushed]})
    assert figures._FIGURES[pipeline_names.PUSHER_NODE](pusher) == (
        "pushed /serving/7 with TFLite float16; TFLite held back: int8 (edge gate)")
