"""The serving handoff: TF Serving warm-up requests, the per-image bad-image contract,
docs/serving.md's request body and image tags, and the Vertex AI serving image's entrypoint.

Fast tests export a tiny model through the real export (signatures.export_serving_model) with a
stand-in Transform layer (the project's decoder, a small pixel budget); the slow ones read the
model the session's pipeline run A pushed (tests/pipeline_runs.py).
"""
import base64
import importlib.metadata
import json
import os
import re
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from tensorflow_serving.apis import prediction_log_pb2

import image_factory
import tf_serving_rest as rest
from common import dataset, pipeline_names
from pipeline import configs
from pipeline_runs import pushed_dir
from serving_client import vertex_server
from trainer_module import image_format, names, preprocessing, serving_warmup, signatures
from trainer_module.train_config import TrainConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(REPO, "docs", "serving.md")
DOCKERFILE = os.path.join(REPO, "serving_client", "vertex.Dockerfile")
CLASSES = ("red", "green", "blue")
SIZE = 32
BUDGET = 100 * 100  # the tiny model's pixel budget: a 200x200 image is over it
UNDECODABLE_JPEG = f"{names.UNDECODABLE_ERROR}: corrupt or truncated JPEG data"
NOT_AN_IMAGE = f"{names.NOT_AN_IMAGE_ERROR}: not a JPEG, PNG, GIF or BMP file"


class _Decode(keras.layers.Layer):
    """Stand-in Transform layer: the project's decoder and pixel budget, SIZE x SIZE."""

    def call(self, features):
        return {names.TRANSFORMED_IMAGE_KEY: preprocessing.decode_and_resize(
            tf.reshape(features[names.IMAGE_KEY], [-1]), SIZE, BUDGET)}


def _colour_model() -> keras.Model:
    """Scores each class by the mean of its colour channel: a solid colour is its own class."""
    inputs = keras.Input([SIZE, SIZE, 3])
    dense = keras.layers.Dense(len(CLASSES), activation="softmax")
    outputs = dense(keras.layers.GlobalAveragePooling2D()(inputs))
    dense.set_weights([np.eye(3, dtype=np.float32) / 20.0, np.zeros(3, np.float32)])
    return keras.Model(inputs, outputs)


RED, GREEN, BLUE = (250, 10, 10), (10, 250, 10), (10, 10, 250)
WARMUP = [image_factory.jpeg_bytes(40, 30, color=RED), image_factory.png_bytes(20, 20, color=GREEN),
          image_factory.jpeg_bytes(16, 50, color=BLUE), image_factory.png_bytes(9, 9, color=RED)]


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory) -> str:
    """A SavedModel written by signatures.export_serving_model, warm-up images included."""
    export_dir = str(tmp_path_factory.mktemp("tiny") / "Format-Serving")
    cfg = TrainConfig(class_names=CLASSES, image_size=SIZE, resize_size=SIZE)
    signatures.export_serving_model(_colour_model(), _Decode(), {names.IMAGE_KEY: tf.io.FixedLenFeature(
        [1], tf.string)}, cfg, export_dir, WARMUP, max_pixels=BUDGET)
    return export_dir


@pytest.fixture(scope="module")
def tiny(tiny_export):
    """(loaded SavedModel, its serving_default); the module fixture keeps the model alive."""
    loaded = tf.saved_model.load(tiny_export)
    return loaded, loaded.signatures[names.SERVING_BYTES_SIGNATURE]


def _warmup_requests(saved_model_dir: str):
    path = os.path.join(saved_model_dir, names.EXTRA_ASSETS_DIR, names.WARMUP_REQUESTS_FILE)
    return [prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
            for record in tf.data.TFRecordDataset(path).as_numpy_iterator()]


def _replay(loaded, request) -> dict:
    """A warm-up request through the signature it names, as TF Serving replays it (numpy outputs)."""
    inputs = {name: tf.constant(tf.make_ndarray(proto)) for name, proto in request.inputs.items()}
    outputs = loaded.signatures[request.model_spec.signature_name](**inputs)
    return {key: value.numpy() for key, value in outputs.items()}


def _images_of(request):
    return tf.make_ndarray(request.inputs[names.SERVING_BYTES_INPUT]).tolist()


# ---------------------------------------------------------------- warm-up requests

def test_export_writes_warmup_requests_that_replay_through_serving_default(tiny_export, tiny):
    loaded, _ = tiny
    requests = _warmup_requests(tiny_export)
    # All the images as one batch, then the first alone.
    assert [_images_of(r) for r in requests] == [WARMUP, WARMUP[:1]]
    expected = [["red", "green", "blue", "red"], ["red"]]
    for request, classes in zip(requests, expected):
        assert request.model_spec.signature_name == names.SERVING_BYTES_SIGNATURE
        assert list(request.inputs) == [names.SERVING_BYTES_INPUT]
        assert request.inputs[names.SERVING_BYTES_INPUT].dtype == tf.string.as_datatype_enum
        outputs = _replay(loaded, request)
        assert outputs[names.PREDICTED_CLASS_OUTPUT].astype(str).tolist() == classes
        assert outputs[names.ERROR_OUTPUT].tolist() == [b""] * len(classes)
        assert outputs[names.PROBABILITIES_OUTPUT].shape == (len(classes), len(CLASSES))
    with open(os.path.join(tiny_export, names.EXTRA_ASSETS_DIR, names.CLASS_NAMES_ASSET)) as f:
        assert json.load(f) == list(CLASSES)  # still written beside the warm-up file


def _write_examples(path, images):
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for data in images:
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                names.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
                names.LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[0]))})).SerializeToString())


def test_warmup_images_are_the_first_examples_of_the_eval_files_in_file_order(tmp_path):
    images = [image_factory.jpeg_bytes(10 + i, 10, seed=i) for i in range(6)]
    _write_examples(tmp_path / "data-00001-of-00002.gz", images[3:])
    _write_examples(tmp_path / "data-00000-of-00002.gz", images[:3])
    pattern = [str(tmp_path / "data-*")]
    assert serving_warmup.sample_images(pattern) == images[:names.WARMUP_IMAGES]
    assert serving_warmup.sample_images(pattern, count=10) == images  # a smaller split: all of it


# ---------------------------------------------------------------- a bad image in a batch

def test_a_bad_image_gets_an_error_and_the_others_are_classified_as_if_alone(tiny):
    _, signature = tiny
    good = [image_factory.jpeg_bytes(40, 30, color=RED), image_factory.png_bytes(20, 20, color=GREEN)]
    batch = [good[0], image_factory.corrupt_jpeg_bytes(), b"<html>not an image</html>",
             image_factory.png_bytes(200, 200, color=BLUE), image_factory.truncated_jpeg_bytes(), b"", good[1]]
    out = signature(**{names.SERVING_BYTES_INPUT: tf.constant(batch)})
    alone = signature(**{names.SERVING_BYTES_INPUT: tf.constant(good)})
    over = f"{image_format.TOO_MANY_PIXELS}: {image_format.over_budget_message(200, 200, BUDGET)}"
    assert out[names.ERROR_OUTPUT].numpy().astype(str).tolist() == [
        "", UNDECODABLE_JPEG, NOT_AN_IMAGE, over, UNDECODABLE_JPEG, NOT_AN_IMAGE, ""]
    assert out[names.PREDICTED_CLASS_OUTPUT].numpy().astype(str).tolist() == ["red", "", "", "", "", "", "green"]
    probabilities = out[names.PROBABILITIES_OUTPUT].numpy()
    np.testing.assert_array_equal(probabilities[1:6], 0.0)
    np.testing.assert_allclose(probabilities[[0, 6]], alone[names.PROBABILITIES_OUTPUT].numpy(), rtol=1e-6)
    np.testing.assert_allclose(out[names.PREDICTED_PROBABILITY_OUTPUT].numpy(), probabilities.max(axis=1))
    assert out[names.CLASS_NAMES_OUTPUT].numpy().astype(str).tolist() == [list(CLASSES)] * len(batch)


def test_a_request_of_bad_images_only_or_of_none_is_answered(tiny):
    _, signature = tiny
    out = signature(**{names.SERVING_BYTES_INPUT: tf.constant([image_factory.corrupt_jpeg_bytes()])})
    assert out[names.ERROR_OUTPUT].numpy().astype(str).tolist() == [UNDECODABLE_JPEG]
    assert out[names.PROBABILITIES_OUTPUT].numpy().tolist() == [[0.0, 0.0, 0.0]]
    empty = signature(**{names.SERVING_BYTES_INPUT: tf.constant([], tf.string)})
    assert {key: tuple(value.shape) for key, value in empty.items()} == {
        names.PROBABILITIES_OUTPUT: (0, 3), names.CLASS_NAMES_OUTPUT: (0, 3), names.PREDICTED_CLASS_OUTPUT: (0,),
        names.PREDICTED_PROBABILITY_OUTPUT: (0,), names.ERROR_OUTPUT: (0,)}


def test_failure_reasons_read_each_format_and_a_header_libjpeg_cannot_read():
    no_frame_header = image_format.JPEG_MAGIC + b"\xe0\x00\x10JFIF"  # libjpeg fails on the header
    reasons = signatures.failure_reasons(tf.constant([
        no_frame_header, image_factory.png_bytes(30, 40)[:40], b"GIF89a" + b"\x10\x00\x20\x00" + b"\0" * 4,
        image_factory.bmp_bytes(300, 2)[:40], b"\x00\x01"]), max_pixels=100)
    assert reasons.numpy().astype(str).tolist() == [
        UNDECODABLE_JPEG,
        f"{image_format.TOO_MANY_PIXELS}: {image_format.over_budget_message(30, 40, 100)}",
        f"{image_format.TOO_MANY_PIXELS}: {image_format.over_budget_message(16, 32, 100)}",
        f"{image_format.TOO_MANY_PIXELS}: {image_format.over_budget_message(300, 2, 100)}",
        NOT_AN_IMAGE]


# ---------------------------------------------------------------- docs/serving.md

def _docs() -> str:
    with open(DOCS) as f:
        return f.read()


def _docs_rest_body() -> str:
    """The ```json block after the rest-body marker in docs/serving.md."""
    match = re.search(r"<!-- rest-body:[^>]*-->\s*```json\n(.*?)\n```", _docs(), re.S)
    assert match, "docs/serving.md has no rest-body block"
    return match.group(1)


def test_the_docs_request_body_maps_onto_the_signature(tiny):
    _, signature = tiny
    body = json.loads(_docs_rest_body())
    assert body["signature_name"] == names.SERVING_BYTES_SIGNATURE
    inputs = rest.rest_request_to_inputs(body, signature)
    specs = signature.structured_input_signature[1]
    assert list(inputs) == list(specs) == [names.SERVING_BYTES_INPUT]
    assert inputs[names.SERVING_BYTES_INPUT].dtype == specs[names.SERVING_BYTES_INPUT].dtype == tf.string
    data = inputs[names.SERVING_BYTES_INPUT].numpy().tolist()
    assert data == [base64.b64decode(body["instances"][0]["b64"])]
    assert tuple(preprocessing.decode_image(data[0]).shape) == (8, 8, 3)  # a real image
    out = signature(**inputs)
    assert out[names.ERROR_OUTPUT].numpy().tolist() == [b""]


def _serving_tag() -> str:
    """The TF Serving version the Vertex image is built on."""
    with open(DOCKERFILE) as f:
        (tag,) = re.findall(r"^FROM tensorflow/serving:(\S+)$", f.read(), re.M)
    return tag


def test_docs_dockerfile_and_serving_api_name_the_tf_serving_of_the_models_tensorflow():
    tag = _serving_tag()
    assert set(re.findall(r"tensorflow/serving:([0-9][0-9.]*[0-9])", _docs())) == {tag}
    assert tag == importlib.metadata.version("tensorflow-serving-api")
    assert tag.split(".")[:2] == tf.__version__.split(".")[:2]


def test_docs_docker_command_serves_the_pushed_layout():
    name = configs.PipelineConfig.pipeline_name
    serving = os.path.relpath(configs.PipelineConfig(output_dir="outputs").serving_model_dir)
    docs = _docs()
    assert f"-v $PWD/{serving}:/models/{name}" in docs and f"-e MODEL_NAME={name} " in docs
    assert f"http://localhost:8501/v1/models/{name}:predict" in docs


# ---------------------------------------------------------------- the Vertex AI serving image

class _FakeTFServing:
    """A stand-in TF Serving REST API: model status (state settable) and :predict (records bodies)."""

    def __init__(self, model_name: str):
        self.state, self.bodies = "LOADING", []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                ok = self.path == f"/v1/models/{model_name}"
                self._answer(200 if ok else 404, {"model_version_status": [{"version": "1", "state": fake.state}]})

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.bodies.append(body)
                if self.path != f"/v1/models/{model_name}:predict" or "instances" not in body:
                    return self._answer(400, {"error": "bad request"})
                self._answer(200, {"predictions": [{names.ERROR_OUTPUT: ""}] * len(body["instances"])})

            def _answer(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def _serve(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture()
def vertex():
    """(the entrypoint's HTTP server on a free port, in front of a stand-in TF Serving, its settings)."""
    backend = _FakeTFServing("intel-scenes")
    _serve(backend.server)
    settings = vertex_server.Settings(port=0, health_route="/v1/endpoints/1/deployedModels/2",
                                      predict_route="/v1/endpoints/1/deployedModels/2:predict",
                                      storage_uri="", model_name="intel-scenes", backend=backend.url)
    proxy = _serve(vertex_server.make_server(settings, host="127.0.0.1"))
    yield f"http://127.0.0.1:{proxy.server_address[1]}", settings, backend
    proxy.shutdown()
    backend.server.shutdown()


def _call(url, body=None):
    """(status, JSON answer) of a GET (body None) or a POST."""
    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_vertex_health_route_is_ready_only_once_tf_serving_has_the_model_available(vertex):
    url, settings, backend = vertex
    assert _call(url + settings.health_route)[0] == 503  # loading (or replaying the warm-up)
    backend.state = "AVAILABLE"
    assert _call(url + settings.health_route) == (200, {})
    assert _call(url + "/v1/models/intel-scenes")[0] == 404  # only Vertex's routes


def test_vertex_predict_route_forwards_the_body_without_parameters(vertex):
    url, settings, backend = vertex
    instances = [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}]
    status, answer = _call(url + settings.predict_route, {"instances": instances, "parameters": {"x": 1}})
    assert (status, answer) == (200, {"predictions": [{names.ERROR_OUTPUT: ""}] * 2})
    assert backend.bodies == [{"instances": instances}]
    assert _call(url + settings.predict_route, {"inputs": []}) == (400, {"error": "bad request"})  # TF Serving's


def test_vertex_settings_and_a_local_model_copy(tmp_path):
    settings = vertex_server.settings_from_env({
        "AIP_HTTP_PORT": "8080", "AIP_HEALTH_ROUTE": "/h", "AIP_PREDICT_ROUTE": "/p",
        "AIP_STORAGE_URI": "gs://b/m", "MODEL_NAME": "intel-scenes"})
    assert settings == vertex_server.Settings(8080, "/h", "/p", "gs://b/m", "intel-scenes")
    source = tmp_path / "model"
    image_factory.write_file(source / pipeline_names.SAVED_MODEL_FILE, b"pb")
    image_factory.write_file(source / names.EXTRA_ASSETS_DIR / names.WARMUP_REQUESTS_FILE, b"w")
    version = tmp_path / "models" / "intel-scenes" / "1"
    vertex_server.copy_model(str(source), str(version))
    assert (version / pipeline_names.SAVED_MODEL_FILE).read_bytes() == b"pb"
    assert (version / names.EXTRA_ASSETS_DIR / names.WARMUP_REQUESTS_FILE).read_bytes() == b"w"


# ---------------------------------------------------------------- the pushed model (slow)

@pytest.fixture(scope="module")
def pushed(gate_runs):
    """(the version dir run A pushed, the loaded SavedModel, run A's eval images)."""
    version_dir = pushed_dir(gate_runs)
    examples = gate_runs.nodes[0][pipeline_names.EXAMPLE_GEN_NODE].uri(pipeline_names.EXAMPLES_OUTPUT)
    records = tf.data.TFRecordDataset(tf.io.gfile.glob(f"{examples}/Split-eval/*"), compression_type="GZIP")
    eval_images = {tf.train.Example.FromString(r).features.feature[names.IMAGE_KEY].bytes_list.value[0]
                   for r in records.as_numpy_iterator()}
    return version_dir, tf.saved_model.load(version_dir), eval_images


@pytest.mark.slow
def test_pushed_warmup_requests_are_eval_images_and_replay_through_the_signature(pushed):
    version_dir, loaded, eval_images = pushed
    assert sorted(os.listdir(os.path.join(version_dir, names.EXTRA_ASSETS_DIR))) == sorted(
        [names.CLASS_NAMES_ASSET, pipeline_names.PUSH_SOURCE_FILE, names.WARMUP_REQUESTS_FILE,  # Pusher's files kept
         pipeline_names.MODEL_CARD_HTML, pipeline_names.MODEL_CARD_JSON, pipeline_names.MODEL_CARD_MD])
    requests = _warmup_requests(version_dir)
    batches = [_images_of(r) for r in requests]
    assert [len(b) for b in batches] == [names.WARMUP_IMAGES, 1] and batches[1] == batches[0][:1]
    assert set(batches[0]) <= eval_images
    for request in requests:
        outputs = _replay(loaded, request)
        n = len(_images_of(request))
        assert outputs[names.PROBABILITIES_OUTPUT].shape == (n, len(dataset.INTEL_CLASS_NAMES))
        np.testing.assert_allclose(outputs[names.PROBABILITIES_OUTPUT].sum(axis=1), 1.0, atol=1e-5)
        assert set(outputs[names.PREDICTED_CLASS_OUTPUT].astype(str)) <= set(dataset.INTEL_CLASS_NAMES)
        assert outputs[names.ERROR_OUTPUT].tolist() == [b""] * n


def _session_run(session, signature_def, inputs) -> dict:
    """A signature run as TF Serving runs it: its SignatureDef's tensors, fed and fetched by name."""
    fetches = {key: info.name for key, info in signature_def.outputs.items()}
    return session.run(fetches, {signature_def.inputs[key].name: value for key, value in inputs.items()})


@pytest.mark.slow
def test_pushed_model_runs_in_a_tf1_session_as_tf_serving_runs_it(pushed):
    """TF Serving loads the MetaGraph into a Session: the in-graph datasets must work there too."""
    version_dir, loaded, _ = pushed
    requests = _warmup_requests(version_dir)
    replayed = [_replay(loaded, request) for request in requests]  # eagerly, before the graph below
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], version_dir)
        signature_def = meta_graph.signature_def[names.SERVING_BYTES_SIGNATURE]
        for request, expected in zip(requests, replayed):
            got = _session_run(session, signature_def,
                               {k: tf.make_ndarray(v) for k, v in request.inputs.items()})
            assert got[names.PREDICTED_CLASS_OUTPUT].tolist() == expected[names.PREDICTED_CLASS_OUTPUT].tolist()
            np.testing.assert_allclose(got[names.PROBABILITIES_OUTPUT], expected[names.PROBABILITIES_OUTPUT],
                                       rtol=1e-5)
        bad = _session_run(session, signature_def,
                           {names.SERVING_BYTES_INPUT: [image_factory.corrupt_jpeg_bytes(), b"text"]})
        assert bad[names.ERROR_OUTPUT].astype(str).tolist() == [UNDECODABLE_JPEG, NOT_AN_IMAGE]


@pytest.mark.slow
def test_a_bad_image_among_good_ones_on_the_pushed_model(pushed):
    _, loaded, _ = pushed
    signature = loaded.signatures[names.SERVING_BYTES_SIGNATURE]
    good = [image_factory.jpeg_bytes(150, 150, seed=1), image_factory.png_bytes(40, 90, mode="L")]
    out = signature(**{names.SERVING_BYTES_INPUT: tf.constant(
        [good[0], image_factory.corrupt_jpeg_bytes(), b"definitely not an image", good[1]])})
    alone = signature(**{names.SERVING_BYTES_INPUT: tf.constant(good)})
    assert out[names.ERROR_OUTPUT].numpy().astype(str).tolist() == ["", UNDECODABLE_JPEG, NOT_AN_IMAGE, ""]
    predicted = out[names.PREDICTED_CLASS_OUTPUT].numpy().tolist()
    assert [predicted[0], predicted[3]] == alone[names.PREDICTED_CLASS_OUTPUT].numpy().tolist()
    assert predicted[1:3] == [b"", b""]
    probabilities = out[names.PROBABILITIES_OUTPUT].numpy()
    np.testing.assert_array_equal(probabilities[1:3], 0.0)
    np.testing.assert_allclose(probabilities[[0, 3]], alone[names.PROBABILITIES_OUTPUT].numpy(), rtol=1e-5)
    np.testing.assert_array_equal(out[names.PREDICTED_PROBABILITY_OUTPUT].numpy()[1:3], 0.0)
