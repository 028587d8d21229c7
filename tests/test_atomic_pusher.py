"""AtomicPusher's executor on real artifacts and real SavedModels: atomic versions, no duplicates."""
import errno
import itertools
import json
import logging
import os
import re
import time

import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.components.pusher.component import Pusher
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from common import ingest_report, pipeline_names, releases
from components.atomic_pusher import executor
from components.atomic_pusher.component import AtomicPusher, AtomicPusherSpec
from components.data_gate.component import DataValidationResult
from components.edge_evaluator import gate
from components.edge_evaluator.component import EdgeEvaluation
from trainer_module import names

_uris = itertools.count()


class _Scale(tf.Module):
    """x * value, with `size` floats of weights (the SavedModel's size)."""

    def __init__(self, value: float, size: int):
        super().__init__()
        self.weights = tf.Variable(tf.fill([size], value))

    @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
    def __call__(self, x):
        return x * self.weights[0]


def _model(tmp_path, value=2.0, size=4):
    """A Model artifact holding a real SavedModel where TFX's Trainer puts it."""
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / f"model-{next(_uris)}")
    tf.saved_model.save(_Scale(value, size), os.path.join(model.uri, pipeline_names.TRAINER_SERVING_SUBDIR))
    return model


def _serving_path(model):
    return os.path.join(model.uri, pipeline_names.TRAINER_SERVING_SUBDIR)


def _pushed_model(tmp_path):
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / f"pushed-{next(_uris)}")
    return pushed


def _blessing(base, blessed: int):
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(base) + f"-blessing-{next(_uris)}"
    blessing.set_int_custom_property(pipeline_names.PROP_BLESSED, blessed)
    return blessing


def _do(model, base, pushed, blessed=1, edge_evaluation=None, inputs=None, base_path=None, reference_blessed=None):
    """Runs the executor as TFX's launcher would: one model, one blessing, one PushedModel (and an
    EdgeEvaluation, the model card's inputs {key: artifact} and a reference set's blessing when given)."""
    blessing = _blessing(base, blessed)
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(base)))
    edge = {executor.EDGE_EVALUATION_KEY: [edge_evaluation]} if edge_evaluation is not None else {}
    if reference_blessed is not None:
        edge[executor.REFERENCE_BLESSING_KEY] = [_blessing(base, reference_blessed)]
    executor.AtomicPusherExecutor().Do(
        {standard_component_specs.MODEL_KEY: [model],
         standard_component_specs.MODEL_BLESSING_KEY: [blessing], **edge,
         **{key: [artifact] for key, artifact in (inputs or {}).items()}},
        {standard_component_specs.PUSHED_MODEL_KEY: [pushed]},
        {standard_component_specs.PUSH_DESTINATION_KEY: proto_utils.proto_to_json(destination),
         standard_component_specs.CUSTOM_CONFIG_KEY: "null",
         **({executor.SERVING_BASE_PATH_KEY: base_path} if base_path else {})})
    return pushed


def _push(model, base, tmp_path, blessed=1, edge_evaluation=None, inputs=None, base_path=None):
    return _do(model, base, _pushed_model(tmp_path), blessed, edge_evaluation, inputs, base_path)


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def _versions(base):
    """The version folders in the serving dir (it also holds the release files)."""
    return sorted(executor.numeric_versions(str(base)).values(), key=int)


# The model card every version holds (and the archive copy), beside the model's files.
CARD_FILES = [os.path.join(names.EXTRA_ASSETS_DIR, f) for f in (
    pipeline_names.MODEL_CARD_HTML, pipeline_names.MODEL_CARD_JSON, pipeline_names.MODEL_CARD_MD)]


def _marker(version_dir):
    with open(os.path.join(version_dir, names.EXTRA_ASSETS_DIR, pipeline_names.PUSH_SOURCE_FILE)) as f:
        return json.load(f)


def _push_failed(base):
    return re.escape(f"serving dir {base} failed") + ".*No space left on device"


def _fingerprint(model):
    return executor.fingerprint(executor.saved_model_sources(_serving_path(model))[1])


def test_push_writes_one_complete_loadable_version_with_marker(tmp_path):
    model, base = _model(tmp_path, value=3.0), tmp_path / "serving"
    start = int(time.time())
    pushed = _push(model, base, tmp_path)
    [version] = _versions(base)
    assert start <= int(version) <= time.time()
    assert pushed.get_int_custom_property(pipeline_names.PROP_PUSHED) == 1
    assert pushed.get_string_custom_property(pipeline_names.PROP_PUSHED_DESTINATION) == os.path.join(base, version)
    assert pushed.get_string_custom_property(pipeline_names.PROP_PUSHED_VERSION) == version
    marker_rel = os.path.join(names.EXTRA_ASSETS_DIR, pipeline_names.PUSH_SOURCE_FILE)
    assert _files(base / version) == sorted(_files(_serving_path(model)) + [marker_rel] + CARD_FILES)
    assert float(tf.saved_model.load(str(base / version))(tf.constant(2.0))) == 6.0
    marker = _marker(base / version)
    assert marker[pipeline_names.PUSH_SOURCE_FINGERPRINT] == _fingerprint(model)
    assert marker[pipeline_names.PUSH_SOURCE_MODEL_URI] == model.uri
    assert _files(pushed.uri) == sorted(_files(_serving_path(model)) + CARD_FILES)  # TFX's archive copy, and the card


@pytest.mark.parametrize("blessed,reference_blessed,pushed", [(1, 1, 1), (1, 0, 0), (0, 1, 0)])
def test_a_reference_set_blessing_is_required_too(tmp_path, blessed, reference_blessed, pushed):
    model, base = _model(tmp_path), tmp_path / "serving"
    result = _do(model, base, _pushed_model(tmp_path), blessed=blessed, reference_blessed=reference_blessed)
    assert result.get_int_custom_property(pipeline_names.PROP_PUSHED) == pushed
    versions = [name for name in os.listdir(base) if name.isdigit()] if base.exists() else []
    assert len(versions) == pushed


def test_not_blessed_writes_nothing(tmp_path):
    model, base = _model(tmp_path), tmp_path / "serving"
    pushed = _push(model, base, tmp_path, blessed=0)
    assert pushed.get_int_custom_property(pipeline_names.PROP_PUSHED) == 0
    assert not pushed.has_custom_property(pipeline_names.PROP_PUSHED_VERSION)
    assert not os.path.exists(base) and not os.path.exists(pushed.uri)


def test_failed_copy_leaves_nothing_and_rerun_pushes_once(tmp_path, monkeypatch):
    model, base = _model(tmp_path), tmp_path / "serving"
    real_copy, calls = executor.copy_file, []

    def copy_then_fill_disk(src, dst):
        calls.append(dst)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), dst)
        real_copy(src, dst)

    monkeypatch.setattr(executor, "copy_file", copy_then_fill_disk)
    pushed = _pushed_model(tmp_path)
    with pytest.raises(executor.PushError, match=_push_failed(base)) as e:
        _do(model, base, pushed)
    assert len(calls) == 2 and e.value.__cause__.errno == errno.ENOSPC
    assert os.listdir(base) == [] and not pushed.has_custom_property(pipeline_names.PROP_PUSHED)

    monkeypatch.setattr(executor, "copy_file", real_copy)
    rerun = _push(model, base, tmp_path)
    assert _versions(base) == [rerun.get_string_custom_property(pipeline_names.PROP_PUSHED_VERSION)]


def test_full_disk_fails_clearly_and_leaves_nothing(tmp_path, small_tmpfs):
    model = _model(tmp_path, size=1 << 20)  # 4 MiB of weights
    model_bytes = sum(os.path.getsize(os.path.join(_serving_path(model), f))
                      for f in _files(_serving_path(model)))
    base = small_tmpfs(model_bytes - (512 << 10))
    pushed = _pushed_model(tmp_path)
    with pytest.raises(executor.PushError, match=_push_failed(base)) as e:
        _do(model, base, pushed)
    assert e.value.__cause__.errno == errno.ENOSPC
    assert os.listdir(base) == [] and not pushed.has_custom_property(pipeline_names.PROP_PUSHED)


def test_rerun_after_unrecorded_push_reuses_its_version(tmp_path, monkeypatch, caplog):
    model, base = _model(tmp_path), tmp_path / "serving"

    def archive_fails(model_path, uri, edge=None, card_dir=None):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), uri)

    monkeypatch.setattr(executor, "archive_model", archive_fails)
    first = _pushed_model(tmp_path)
    with pytest.raises(OSError):  # the version is in place, its push never recorded
        _do(model, base, first)
    [version] = _versions(base)
    marker_before = _marker(base / version)
    assert not first.has_custom_property(pipeline_names.PROP_PUSHED)

    monkeypatch.undo()
    caplog.set_level(logging.INFO, logger="absl")
    rerun = _push(model, base, tmp_path)
    assert _versions(base) == [version]
    assert rerun.get_int_custom_property(pipeline_names.PROP_PUSHED) == 1
    assert rerun.get_string_custom_property(pipeline_names.PROP_PUSHED_VERSION) == version
    assert rerun.get_string_custom_property(pipeline_names.PROP_PUSHED_DESTINATION) == os.path.join(base, version)
    assert _marker(base / version) == marker_before  # not copied again
    assert f"{os.path.join(base, version)} already holds this model" in caplog.text
    assert _files(rerun.uri) == sorted(_files(_serving_path(model)) + CARD_FILES)


def test_older_version_of_the_same_model_is_pushed_again(tmp_path):
    model_a, model_b, base = _model(tmp_path, 1.0), _model(tmp_path, 5.0), tmp_path / "serving"
    first_a = _push(model_a, base, tmp_path).get_string_custom_property(pipeline_names.PROP_PUSHED_VERSION)
    b = _push(model_b, base, tmp_path).get_string_custom_property(pipeline_names.PROP_PUSHED_VERSION)
    again_a = _push(model_a, base, tmp_path).get_string_custom_property(pipeline_names.PROP_PUSHED_VERSION)
    assert int(first_a) < int(b) < int(again_a)
    assert _versions(base) == [first_a, b, again_a]
    assert _marker(base / again_a)[pipeline_names.PUSH_SOURCE_FINGERPRINT] == _fingerprint(model_a)


def test_killed_push_leftover_is_removed(tmp_path):
    model, base = _model(tmp_path), tmp_path / "serving"
    leftover = base / f"{executor.PARTIAL_PREFIX}1700000000-deadbeef" / "variables"
    leftover.mkdir(parents=True)
    (leftover / "variables.data-00000-of-00001").write_bytes(b"half")
    pushed = _push(model, base, tmp_path)
    assert _versions(base) == [pushed.get_string_custom_property(pipeline_names.PROP_PUSHED_VERSION)]
    assert not [n for n in os.listdir(base) if n.startswith(executor.PARTIAL_PREFIX)]


def test_version_goes_above_a_future_version(tmp_path):
    model, base = _model(tmp_path), tmp_path / "serving"
    future = str(int(time.time()) + 100_000)
    (base / future).mkdir(parents=True)  # e.g. pushed by TFX's Pusher from a fast clock
    pushed = _push(model, base, tmp_path)
    assert pushed.get_string_custom_property(pipeline_names.PROP_PUSHED_VERSION) == str(int(future) + 1)
    assert _versions(base) == [future, str(int(future) + 1)]


def test_next_version():
    assert executor.next_version([], 100.9) == 100
    assert executor.next_version([5, 99], 100.0) == 100
    assert executor.next_version([100], 100.2) == 101  # same second as the newest
    assert executor.next_version([7, 250], 100.0) == 251


def test_remote_destination_goes_to_tfx_executor(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(pusher_executor.Executor, "Do", lambda self, i, o, e: calls.append(e))
    _push(_model(tmp_path), "gs://bucket/serving", tmp_path)
    assert len(calls) == 1 and "gs://bucket/serving" in calls[0][standard_component_specs.PUSH_DESTINATION_KEY]


def test_component_is_tfx_pusher_with_the_atomic_executor():
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory="/serving"))
    pusher = AtomicPusher(model=types.Channel(type=standard_artifacts.Model),
                          model_blessing=types.Channel(type=standard_artifacts.ModelBlessing),
                          push_destination=destination)
    assert pusher.id == pipeline_names.PUSHER_NODE
    assert type(pusher.spec) is AtomicPusherSpec  # TFX's PusherSpec with the optional edge input
    assert isinstance(pusher, Pusher) and isinstance(pusher.spec, standard_component_specs.PusherSpec)
    assert set(pusher.inputs) == {standard_component_specs.MODEL_KEY, standard_component_specs.MODEL_BLESSING_KEY}
    assert AtomicPusherSpec.INPUTS[executor.EDGE_EVALUATION_KEY].optional
    assert pusher.executor_spec.executor_class is executor.AtomicPusherExecutor
    assert list(pusher.outputs) == [pipeline_names.PUSHED_MODEL_OUTPUT]
    assert pusher.outputs[pipeline_names.PUSHED_MODEL_OUTPUT].type is standard_artifacts.PushedModel
    with pytest.raises(ValueError, match="push_destination"):
        AtomicPusher(model=types.Channel(type=standard_artifacts.Model))


def test_component_takes_the_edge_evaluation():
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory="/serving"))
    pusher = AtomicPusher(model=types.Channel(type=standard_artifacts.Model),
                          model_blessing=types.Channel(type=standard_artifacts.ModelBlessing),
                          edge_evaluation=types.Channel(type=EdgeEvaluation), push_destination=destination)
    assert pusher.inputs[executor.EDGE_EVALUATION_KEY].type is EdgeEvaluation
    assert list(pusher.outputs) == [pipeline_names.PUSHED_MODEL_OUTPUT]


# ---------------------------------------------------------------- edge (TFLite) models beside the SavedModel
# The EdgeEvaluator's real output is tested in tests/test_edge_evaluator.py; here the files are
# stand-ins and the verdicts are gate.verdict's, so the pusher's part is tested alone.

EDGE_EXAMPLES = 100


def _edge_model(tmp_path, value=2.0):
    """A Model artifact with a SavedModel and a Format-TFLite folder of both flavours and labels."""
    model = _model(tmp_path, value)
    edge_dir = os.path.join(model.uri, names.EDGE_MODEL_SUBDIR)
    os.makedirs(edge_dir)
    for flavour in names.TFLITE_FLAVOURS:
        with open(os.path.join(edge_dir, names.TFLITE_FILE.format(flavour=flavour)), "wb") as f:
            f.write(f"tflite {flavour} of {value}".encode())
    with open(os.path.join(edge_dir, names.TFLITE_LABELS_FILE), "w") as f:
        f.write("a\nb\n")
    return model


def _edge_evaluation(tmp_path, model, correct, saved_correct=90, max_drops=None):
    """An EdgeEvaluation artifact of `model` whose flavours got `correct` {flavour: n} of EDGE_EXAMPLES."""
    max_drops = max_drops or {"float16": 0.002, "int8": 0.01}
    edge_dir = os.path.join(model.uri, names.EDGE_MODEL_SUBDIR)
    models = {pipeline_names.EDGE_SAVED_MODEL: {pipeline_names.EDGE_ACCURACY: saved_correct / EDGE_EXAMPLES,
                                       pipeline_names.EDGE_PATH: _serving_path(model)}}
    models.update({flavour: {pipeline_names.EDGE_ACCURACY: n / EDGE_EXAMPLES,
                             pipeline_names.EDGE_PATH: os.path.join(edge_dir,
                                                                    names.TFLITE_FILE.format(flavour=flavour))}
                   for flavour, n in correct.items()})
    evaluation = {pipeline_names.EDGE_EXAMPLES: EDGE_EXAMPLES, pipeline_names.EDGE_CLASS_NAMES: ["a", "b"],
                  pipeline_names.EDGE_MODELS: models,
                  pipeline_names.EDGE_GATE: {flavour: gate.verdict(flavour, saved_correct, n, EDGE_EXAMPLES,
                                                                   max_drops[flavour])
                                    for flavour, n in correct.items()}}
    artifact = EdgeEvaluation()
    artifact.uri = str(tmp_path / f"edge-evaluation-{next(_uris)}")
    os.makedirs(artifact.uri)
    with open(os.path.join(artifact.uri, pipeline_names.EDGE_EVALUATION_FILE), "w") as f:
        json.dump(evaluation, f)
    return artifact


def _edge_file(model, name):
    return os.path.join(model.uri, names.EDGE_MODEL_SUBDIR, name)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


INT8_FILE = names.TFLITE_FILE.format(flavour="int8")
FLOAT16_FILE = names.TFLITE_FILE.format(flavour="float16")


def test_passing_flavour_lands_beside_the_savedmodel_and_failing_one_is_held_back(tmp_path, caplog):
    model, base = _edge_model(tmp_path), tmp_path / "serving"
    # float16 as accurate as the SavedModel; int8 3 points below its 1-point margin.
    evaluation = _edge_evaluation(tmp_path, model, {"float16": 90, "int8": 87})
    caplog.set_level(logging.INFO, logger="absl")
    pushed = _push(model, base, tmp_path, edge_evaluation=evaluation)
    [version] = _versions(base)
    assert pushed.get_int_custom_property(pipeline_names.PROP_PUSHED) == 1  # the SavedModel is pushed
    assert float(tf.saved_model.load(str(base / version))(tf.constant(2.0))) == 4.0
    edge_dir = base / version / pipeline_names.PUSHED_EDGE_SUBDIR
    assert sorted(os.listdir(edge_dir)) == sorted([FLOAT16_FILE, names.TFLITE_LABELS_FILE])
    assert _read(edge_dir / FLOAT16_FILE) == _read(_edge_file(model, FLOAT16_FILE))
    assert _read(edge_dir / names.TFLITE_LABELS_FILE) == b"a\nb\n"
    assert pushed.get_string_custom_property(pipeline_names.PROP_PUSHED_EDGE_MODELS) == "float16"
    held_back = json.loads(pushed.get_string_custom_property(pipeline_names.PROP_EDGE_HELD_BACK))
    assert list(held_back) == ["int8"]
    assert held_back["int8"] == ("int8 accuracy 0.870 is 3.0 points below the SavedModel's 0.900 on the same "
                                 "100 eval images (margin 1.0 point): not pushed")
    assert f"int8 TFLite model held back: {held_back['int8']}" in caplog.text
    # The files identify the version; the archive copy holds what was pushed.
    sources = {**executor.saved_model_sources(_serving_path(model))[1],
               f"{pipeline_names.PUSHED_EDGE_SUBDIR}/{FLOAT16_FILE}": _edge_file(model, FLOAT16_FILE),
               f"{pipeline_names.PUSHED_EDGE_SUBDIR}/{names.TFLITE_LABELS_FILE}": _edge_file(model,
                                                                                             names.TFLITE_LABELS_FILE)}
    assert _marker(base / version)[pipeline_names.PUSH_SOURCE_FINGERPRINT] == executor.fingerprint(sources)
    assert _files(pushed.uri) == sorted([*sources, *CARD_FILES])


def test_no_flavour_passes_pushes_the_savedmodel_alone(tmp_path):
    model, base = _edge_model(tmp_path), tmp_path / "serving"
    evaluation = _edge_evaluation(tmp_path, model, {"float16": 89, "int8": 80})
    pushed = _push(model, base, tmp_path, edge_evaluation=evaluation)
    [version] = _versions(base)
    assert not os.path.exists(base / version / pipeline_names.PUSHED_EDGE_SUBDIR)
    assert _marker(base / version)[pipeline_names.PUSH_SOURCE_FINGERPRINT] == _fingerprint(model)
    assert pushed.get_string_custom_property(pipeline_names.PROP_PUSHED_EDGE_MODELS) == ""
    assert sorted(json.loads(pushed.get_string_custom_property(pipeline_names.PROP_EDGE_HELD_BACK))) == ["float16",
                                                                                                         "int8"]


def test_not_blessed_pushes_no_edge_model_either(tmp_path):
    model, base = _edge_model(tmp_path), tmp_path / "serving"
    pushed = _push(model, base, tmp_path, blessed=0,
                   edge_evaluation=_edge_evaluation(tmp_path, model, {"float16": 90, "int8": 90}))
    assert pushed.get_int_custom_property(pipeline_names.PROP_PUSHED) == 0
    assert not pushed.has_custom_property(pipeline_names.PROP_PUSHED_EDGE_MODELS)
    assert not os.path.exists(base) and not os.path.exists(pushed.uri)


def test_evaluation_of_another_model_pushes_none_of_its_flavours(tmp_path):
    model, other, base = _edge_model(tmp_path), _edge_model(tmp_path, 3.0), tmp_path / "serving"
    pushed = _push(model, base, tmp_path, edge_evaluation=_edge_evaluation(tmp_path, other, {"float16": 90}))
    [version] = _versions(base)
    assert not os.path.exists(base / version / pipeline_names.PUSHED_EDGE_SUBDIR)
    held_back = json.loads(pushed.get_string_custom_property(pipeline_names.PROP_EDGE_HELD_BACK))
    assert "not the pushed model's" in held_back["float16"]


def test_failed_edge_copy_leaves_nothing(tmp_path, monkeypatch):
    model, base = _edge_model(tmp_path), tmp_path / "serving"
    real_copy = executor.copy_file

    def edge_copy_fills_disk(src, dst):
        if os.path.basename(dst) == INT8_FILE:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), dst)
        real_copy(src, dst)

    monkeypatch.setattr(executor, "copy_file", edge_copy_fills_disk)
    pushed = _pushed_model(tmp_path)
    with pytest.raises(executor.PushError, match=_push_failed(base)):
        _do(model, base, pushed, edge_evaluation=_edge_evaluation(tmp_path, model, {"float16": 90, "int8": 90}))
    assert os.listdir(base) == [] and not pushed.has_custom_property(pipeline_names.PROP_PUSHED)


def test_rerun_reuses_a_version_only_with_the_same_edge_models(tmp_path, monkeypatch):
    model, base = _edge_model(tmp_path), tmp_path / "serving"
    only_float16 = _edge_evaluation(tmp_path, model, {"float16": 90, "int8": 85})

    def archive_fails(model_path, uri, edge=None, card_dir=None):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), uri)

    monkeypatch.setattr(executor, "archive_model", archive_fails)
    with pytest.raises(OSError):  # the version is in place, its push never recorded
        _push(model, base, tmp_path, edge_evaluation=only_float16)
    [version] = _versions(base)
    monkeypatch.undo()
    rerun = _push(model, base, tmp_path, edge_evaluation=only_float16)
    assert _versions(base) == [version] and rerun.get_string_custom_property(pipeline_names.PROP_PUSHED_VERSION) == version
    # Wider margins: int8 passes too, so the version must hold other files: a new version.
    both = _edge_evaluation(tmp_path, model, {"float16": 90, "int8": 85}, max_drops={"float16": 0.002, "int8": 0.1})
    widened = _push(model, base, tmp_path, edge_evaluation=both)
    new_version = widened.get_string_custom_property(pipeline_names.PROP_PUSHED_VERSION)
    assert int(new_version) > int(version)
    assert sorted(os.listdir(base / new_version / pipeline_names.PUSHED_EDGE_SUBDIR)) == sorted(
        [FLOAT16_FILE, INT8_FILE, names.TFLITE_LABELS_FILE])
    assert widened.get_string_custom_property(pipeline_names.PROP_PUSHED_EDGE_MODELS) == "float16,int8"


# ---------------------------------------------------------------- the model card and the release files

def _release_config(base):
    """The serving dir's models.config as TF Serving parses it: ({label: version}, loaded versions)."""
    with open(os.path.join(base, pipeline_names.MODEL_CONFIG_FILE)) as f:
        config = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    [model] = config.model_config_list.config
    return dict(model.version_labels), list(model.model_version_policy.specific.versions), model.base_path


def _card(version_dir):
    with open(os.path.join(version_dir, names.EXTRA_ASSETS_DIR, pipeline_names.MODEL_CARD_JSON)) as f:
        return json.load(f)


def test_every_push_holds_its_card_and_is_recorded_as_stable_then_canary(tmp_path):
    base = tmp_path / "serving"
    first = _push(_model(tmp_path, 1.0), base, tmp_path, base_path="gs://bucket/serving")
    [v1] = _versions(base)
    assert first.get_string_custom_property(pipeline_names.PROP_RELEASE) == f"version {v1} is stable (the first release)"
    assert _release_config(base) == ({"stable": int(v1)}, [int(v1)], "gs://bucket/serving")
    second = _push(_model(tmp_path, 2.0), base, tmp_path)
    v2 = second.get_string_custom_property(pipeline_names.PROP_PUSHED_VERSION)
    assert second.get_string_custom_property(pipeline_names.PROP_RELEASE) == f"version {v2} is canary; stable stays {v1}"
    assert _release_config(base) == ({"stable": int(v1), "canary": int(v2)}, [int(v1), int(v2)], "gs://bucket/serving")
    card, marker = _card(base / v2), _marker(base / v2)
    assert card["push"] == {"version": v2, "destination": os.path.join(base, v2),
                            "pushed_at": marker[pipeline_names.PUSH_SOURCE_PUSHED_AT],
                            "fingerprint": marker[pipeline_names.PUSH_SOURCE_FINGERPRINT]}
    # Only the model and the blessing were given: the other sections say so.
    assert card["verdict"]["blessed"] is True
    assert (card["data"], card["training"], card["evaluation"], card["edge_models"]) == (None, None, None, [])
    with open(base / v2 / names.EXTRA_ASSETS_DIR / pipeline_names.MODEL_CARD_MD) as f:
        markdown = f.read()
    assert markdown.startswith(f"# Model card: model version {v2}\n")  # no pipeline context here
    assert "Not recorded: the Pusher got no evaluation with TFMA results." in markdown


def _examples(tmp_path, report, fingerprint="f" * 64):
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / f"examples-{next(_uris)}")
    os.makedirs(examples.uri)
    path = os.path.join(examples.uri, pipeline_names.INGEST_REPORT_FILE)
    with open(path, "w") as f:
        f.write(report.to_json())
    examples.set_string_custom_property(pipeline_names.PROP_INGEST_REPORT, path)
    examples.set_string_custom_property(pipeline_names.PROP_CLASS_NAMES, json.dumps(report.class_names))
    examples.set_string_custom_property(pipeline_names.PROP_INPUT_FINGERPRINT, fingerprint)
    return examples


def _model_run(tmp_path, history):
    run = standard_artifacts.ModelRun()
    run.uri = str(tmp_path / f"model-run-{next(_uris)}")
    os.makedirs(run.uri)
    with open(os.path.join(run.uri, names.HISTORY_FILE), "w") as f:
        json.dump(history, f)
    return run


def test_the_card_shows_the_data_recipe_edge_models_and_data_gate_of_its_inputs(tmp_path):
    report = ingest_report.IngestReport(
        data_root="/data/scenes", split_mode="folders", class_names=["a", "b"], files_seen=13, ingested=11,
        skipped=2, ingested_by_split_and_class={"train": {"a": 4, "b": 3}, "eval": {"a": 2, "b": 2}},
        skipped_by_reason={"empty_file": 1, "not_an_image": 1},
        skipped_files=[ingest_report.SkippedFile("train/a/x.jpg", "train", "a", "empty_file"),
                       ingest_report.SkippedFile("train/b/y.txt", "train", "b", "not_an_image", "text")])
    history = {names.HISTORY_CONFIG: {"epochs": 2, "learning_rate": 0.03, "class_names": ["a", "b"],
                                      "image_size": 64, "resize_size": 72},
               names.HISTORY_TRAIN_EXAMPLES: 7, names.HISTORY_EVAL_EXAMPLES: 4, names.HISTORY_STEPS_PER_EPOCH: 1,
               names.HISTORY_PRECISION: "float32",
               names.HISTORY_SERIES: {"loss": [1.5, 1.25], "accuracy": [0.5, 0.75], "val_loss": [1.0, 0.5],
                                      "val_accuracy": [0.5, 1.0]}}
    gate_result = DataValidationResult()
    gate_result.uri = str(tmp_path / "gate")
    for prop, value in ((pipeline_names.PROP_FINDINGS, 3), (pipeline_names.PROP_BLOCKING, 1),
                        (pipeline_names.PROP_OVERRIDDEN, 1)):
        gate_result.set_int_custom_property(prop, value)
    model, base = _edge_model(tmp_path), tmp_path / "serving"
    pushed = _push(model, base, tmp_path, edge_evaluation=_edge_evaluation(tmp_path, model, {"float16": 90, "int8": 87}),
                   inputs={executor.EXAMPLES_KEY: _examples(tmp_path, report),
                           executor.MODEL_RUN_KEY: _model_run(tmp_path, history),
                           executor.DATA_VALIDATION_KEY: gate_result})
    [version] = _versions(base)
    card = _card(base / version)
    assert card["intended_use"]["classes"] == ["a", "b"]
    assert card["data"]["examples"] == report.ingested_by_split_and_class
    assert (card["data"]["files_seen"], card["data"]["ingested"], card["data"]["skipped"]) == (13, 11, 2)
    assert card["data"]["skipped_by_reason"] == {"empty_file": 1, "not_an_image": 1}
    assert [s["path"] for s in card["data"]["skipped_files"]] == ["train/a/x.jpg", "train/b/y.txt"]
    assert card["data"]["fingerprint"] == "f" * 64 and card["data"]["data_root"] == "/data/scenes"
    assert card["training"]["config"] == history[names.HISTORY_CONFIG]
    assert card["training"]["final_epoch"] == {"loss": 1.25, "accuracy": 0.75, "val_loss": 0.5, "val_accuracy": 1.0}
    assert card["training"]["epochs"] == 2 and card["training"]["train_examples"] == 7
    assert card["verdict"]["data_gate"] == {"findings": 3, "blocking": 1, "proceeded_despite_anomalies": True}
    assert card["verdict"]["edge_gate"]["float16"]["pushed"] is True
    assert card["verdict"]["edge_gate"]["int8"]["pushed"] is False
    assert "3.0 points below" in card["verdict"]["edge_gate"]["int8"]["reason"]
    assert [(r["model"], r["accuracy"], r["pushed"]) for r in card["edge_models"]] == [
        ("saved_model", 0.9, None), ("float16", 0.9, True), ("int8", 0.87, False)]
    assert set(card["lineage"]["artifacts"]) == {"model", "model_run", "examples", "blessing", "edge_evaluation",
                                                 "data_validation"}
    assert card["lineage"]["artifacts"]["model"]["uri"] == model.uri
    with open(base / version / names.EXTRA_ASSETS_DIR / pipeline_names.MODEL_CARD_MD) as f:
        markdown = f.read()
    assert "Data gate: PROCEEDED despite 1 blocking finding(s) (3 in all), by --proceed-despite-anomalies." in markdown
    assert "| a | 4 | 2 | 6 |" in markdown and "| total | 7 | 4 | 11 |" in markdown
    assert "| learning_rate | 0.03 |" in markdown
    assert "Files: 13 seen, 11 ingested, 2 skipped (empty_file 1, not_an_image 1)" in markdown
    # The PushedModel's archive copy has the same card.
    with open(os.path.join(pushed.uri, names.EXTRA_ASSETS_DIR, pipeline_names.MODEL_CARD_JSON)) as f:
        assert json.load(f) == card


def test_a_push_whose_release_is_not_recorded_fails_and_the_rerun_records_it(tmp_path, monkeypatch):
    model, base = _model(tmp_path), tmp_path / "serving"

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(base))

    monkeypatch.setattr(releases, "record_push", disk_full)
    pushed = _pushed_model(tmp_path)
    with pytest.raises(executor.PushError, match="release could not be recorded.*No space left on device"):
        _do(model, base, pushed)
    [version] = _versions(base)
    assert os.path.exists(base / version / names.EXTRA_ASSETS_DIR / pipeline_names.MODEL_CARD_HTML)
    assert not os.path.exists(base / pipeline_names.MODEL_CONFIG_FILE)
    assert not pushed.has_custom_property(pipeline_names.PROP_PUSHED)
    monkeypatch.undo()
    rerun = _push(model, base, tmp_path)
    assert rerun.get_string_custom_property(pipeline_names.PROP_PUSHED_VERSION) == version
    assert _release_config(base)[0] == {"stable": int(version)}


def test_component_takes_the_model_card_inputs():
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory="/serving"))
    pusher = AtomicPusher(model=types.Channel(type=standard_artifacts.Model),
                          model_blessing=types.Channel(type=standard_artifacts.ModelBlessing),
                          evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
                          examples=types.Channel(type=standard_artifacts.Examples),
                          model_run=types.Channel(type=standard_artifacts.ModelRun),
                          data_validation=types.Channel(type=DataValidationResult),
                          push_destination=destination, serving_base_path="/models/x")
    assert {key: pusher.inputs[key].type for key in (executor.EVALUATION_KEY, executor.EXAMPLES_KEY,
                                                     executor.MODEL_RUN_KEY, executor.DATA_VALIDATION_KEY)} == {
        executor.EVALUATION_KEY: standard_artifacts.ModelEvaluation, executor.EXAMPLES_KEY: standard_artifacts.Examples,
        executor.MODEL_RUN_KEY: standard_artifacts.ModelRun, executor.DATA_VALIDATION_KEY: DataValidationResult}
    assert all(AtomicPusherSpec.INPUTS[k].optional for k in pusher.inputs if k not in (
        standard_component_specs.MODEL_KEY, standard_component_specs.MODEL_BLESSING_KEY))
    assert pusher.exec_properties[executor.SERVING_BASE_PATH_KEY] == "/models/x"


def test_a_version_pushed_before_model_cards_gets_its_card_when_reused(tmp_path):
    model, base = _model(tmp_path), tmp_path / "serving"
    _push(model, base, tmp_path)
    [version] = _versions(base)
    card_paths = [base / version / rel for rel in CARD_FILES]
    for path in card_paths:  # as an AtomicPusher before model cards left it
        path.unlink()
    marker = _marker(base / version)
    rerun = _push(model, base, tmp_path)
    assert rerun.get_string_custom_property(pipeline_names.PROP_PUSHED_VERSION) == version
    assert all(path.exists() for path in card_paths)
    assert _card(base / version)["push"]["pushed_at"] == marker[pipeline_names.PUSH_SOURCE_PUSHED_AT]
    assert _files(base / version) == sorted(_files(_serving_path(model)) + [
        os.path.join(names.EXTRA_ASSETS_DIR, pipeline_names.PUSH_SOURCE_FILE)] + CARD_FILES)  # no temporary file left
