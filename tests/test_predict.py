"""serving_client: batch classification to CSV, bad files, TF Serving layout and REST bodies.

Fast tests use a stand-in SavedModel with the pushed model's serving_default (image_bytes ->
probabilities, class_names, predicted_class, predicted_probability, error; the keys of
trainer_module/names.py; signatures.classify_images) that classifies by mean colour, and one
exported before the error output; the slow ones use the model the session's pipeline run A
pushed (tests/pipeline_runs.py). The --model x.tflite tests export one small Keras network both
ways (signatures.export_serving_model and tflite_export.export_edge_models) and compare the CSVs.
"""
import base64
import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from PIL import Image

import image_factory
import signals
import tf_serving_rest as rest
from common import dataset, pipeline_names, tflite_classifier
from pipeline_runs import pushed_dir
from run_control import exit_codes
from serving_client import predict
from trainer_module import image_format, names, preprocessing, signatures, tflite_export
from trainer_module.train_config import TrainConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLOURS = ["red", "green", "blue"]


def _mean_colour(images, training=False):
    """The stand-in model: probabilities from the mean RGB of each image."""
    return tf.nn.softmax(tf.reduce_mean(images, axis=[1, 2]) / 20.0)


def _decode(features):
    """The stand-in Transform graph: the project's decoder (pixel budget included), 32x32."""
    return {names.TRANSFORMED_IMAGE_KEY: preprocessing.decode_and_resize(
        tf.reshape(features[names.IMAGE_KEY], [-1]), 32)}


class _ColourModel(tf.Module):
    """The pushed model's serving_default (signatures.classify_images: per-image errors) over the
    stand-in Transform graph and model, which classifies by mean colour."""

    def __init__(self, class_names):
        super().__init__()
        self.class_names = tf.constant(class_names)
        self.cfg = TrainConfig(class_names=tuple(class_names), image_size=32, resize_size=32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=names.SERVING_BYTES_INPUT)])
    def serve(self, image_bytes):
        outputs = signatures.classify_images(_mean_colour, _decode, tf.io.FixedLenFeature([1], tf.string),
                                             self.class_names, image_bytes, self.cfg)
        assert set(outputs) == set(names.SERVING_OUTPUTS)  # the pushed model's interface, all of it
        return outputs


class _WholeBatchColourModel(_ColourModel):
    """A model exported before the error output: a bad image fails the whole request."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=names.SERVING_BYTES_INPUT)])
    def serve(self, image_bytes):
        probabilities = _mean_colour(_decode({names.IMAGE_KEY: image_bytes})[names.TRANSFORMED_IMAGE_KEY])
        return {names.PROBABILITIES_OUTPUT: probabilities,
                names.CLASS_NAMES_OUTPUT: tf.tile(self.class_names[tf.newaxis], [tf.shape(probabilities)[0], 1]),
                names.PREDICTED_CLASS_OUTPUT: tf.gather(self.class_names, tf.argmax(probabilities, axis=-1)),
                names.PREDICTED_PROBABILITY_OUTPUT: tf.reduce_max(probabilities, axis=-1)}


def _save(model, folder) -> str:
    tf.saved_model.save(model, str(folder), signatures={names.SERVING_BYTES_SIGNATURE: model.serve})
    return str(folder)


@pytest.fixture(scope="module")
def serving_dir(tmp_path_factory):
    """<serving>/9 (older, other class names) and <serving>/10: version 10 must win (numeric)."""
    root = tmp_path_factory.mktemp("serving")
    for version, class_names in (("9", ["old-r", "old-g", "old-b"]), ("10", COLOURS)):
        _save(_ColourModel(class_names), root / version)
    (root / "not-a-version").mkdir()
    return str(root)


@pytest.fixture(scope="module")
def loaded(serving_dir):
    """(loaded SavedModel, its serving signature); the module fixture keeps the model alive."""
    return predict.load_signature(serving_dir)


@pytest.fixture()
def signature(loaded):
    return loaded[1]


def _solid_bmp(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buf, format="BMP")
    return buf.getvalue()


@pytest.fixture()
def images(tmp_path):
    """A folder with three solid colours (three formats), corrupt and truncated JPEGs, a text file."""
    root = tmp_path / "images"
    files = {
        "red.jpg": image_factory.jpeg_bytes(40, 30, color=(250, 10, 10)),
        "sub/green.png": image_factory.png_bytes(20, 20, color=(10, 250, 10)),
        "sub/deeper/blue.bmp": _solid_bmp((10, 10, 250)),
        "corrupt.jpg": image_factory.corrupt_jpeg_bytes(),
        "truncated.jpg": image_factory.truncated_jpeg_bytes(),
        "notes.txt": b"not an image",  # not listed from the folder: not an image extension
    }
    for name, data in files.items():
        image_factory.write_file(root / name, data)
    return root


def _read_csv(path):
    with open(path, newline="") as f:
        return {row["path"]: row for row in csv.DictReader(f)}


def test_highest_numeric_version_is_used(serving_dir):
    assert predict.resolve_model_dir(serving_dir).endswith("/10")
    assert predict.resolve_model_dir(serving_dir + "/9").endswith("/9")


def test_no_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing pushed yet"):
        predict.resolve_model_dir(str(tmp_path))


class _PixelsModel(tf.Module):
    """The right signature name over the wrong input: numbers, not encoded images."""

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="pixels")])
    def serve(self, pixels):
        return {names.PROBABILITIES_OUTPUT: pixels}


def test_a_signature_without_encoded_bytes_input_is_refused(tmp_path):
    model = _PixelsModel()
    tf.saved_model.save(model, str(tmp_path / "1"), signatures={names.SERVING_BYTES_SIGNATURE: model.serve})
    with pytest.raises(ValueError, match=f"takes \\['pixels'\\], not \\['{names.SERVING_BYTES_INPUT}'\\]"):
        predict.load_signature(str(tmp_path))


def test_cli_writes_a_row_per_file_and_reports_bad_ones(serving_dir, images, tmp_path, capsys):
    out = tmp_path / "predictions.csv"
    missing = str(images / "missing.jpg")
    explicit_text = str(images / "notes.txt")  # named explicitly: read whatever its extension
    rc = predict.main(["--model", serving_dir, str(images), explicit_text, missing,
                       "--out", str(out), "--top-k", "2", "--batch-size", "2"])
    assert rc == 1  # some files failed
    rows = _read_csv(out)
    assert list(rows) == sorted(str(p) for p in images.rglob("*") if p.suffix in (".jpg", ".png", ".bmp")) \
        + [explicit_text, missing]
    for name, colour in (("red.jpg", "red"), ("sub/green.png", "green"), ("sub/deeper/blue.bmp", "blue")):
        row = rows[str(images / name)]
        assert row["predicted_class"] == colour and row["error"] == ""
        top = [item.split(":") for item in row["top_k"].split(";")]
        assert len(top) == 2 and top[0][0] == colour
        assert float(top[0][1]) == pytest.approx(float(row["probability"]), abs=1e-6)
    for bad in ("corrupt.jpg", "truncated.jpg"):  # the model's own per-image reason
        assert rows[str(images / bad)]["error"] == f"{names.UNDECODABLE_ERROR}: corrupt or truncated JPEG data"
    assert rows[explicit_text]["error"] == f"{names.NOT_AN_IMAGE_ERROR}: not a JPEG, PNG, GIF or BMP file"
    assert rows[missing]["error"].startswith("unreadable")
    for bad in ("corrupt.jpg", "truncated.jpg"):
        assert rows[str(images / bad)]["predicted_class"] == ""
    err = capsys.readouterr().err
    assert "[predict] 7/7 files" in err
    assert "classified 3 of 7 files; 4 failed" in err
    assert f"FAILED {missing}" in err


def test_the_command_reports_its_failed_files_on_the_console(serving_dir, images, tmp_path):
    """A real process, its quiet start-up included: the summary and each FAILED line reach the console
    (they used to be held back with the libraries' start-up output and dropped: exit 1, no word)."""
    out, missing = tmp_path / "p.csv", str(tmp_path / "missing.jpg")
    done = subprocess.run([sys.executable, "-m", "serving_client.predict", "--model", serving_dir,
                           str(images / "sub"), str(images / "corrupt.jpg"), missing, "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    err = done.stderr.strip().splitlines()
    assert (done.returncode, done.stdout) == (exit_codes.DATA_ERROR, ""), done.stderr
    assert err[0] == "[predict] 4 files" and err[1] == "[predict] 4/4 files (2 failed)", err
    assert err[2] == f"[predict] classified 2 of 4 files; 2 failed; wrote {out}", err
    assert sorted(err[3:]) == sorted([
        f"[predict]   FAILED {images / 'corrupt.jpg'}: {names.UNDECODABLE_ERROR}: corrupt or truncated JPEG data",
        f"[predict]   FAILED {missing}: unreadable: {missing}; No such file or directory"]), err


def test_a_bad_file_gets_the_models_error_and_the_batch_is_classified_in_one_call(signature, images):
    paths = [str(images / "red.jpg"), str(images / "corrupt.jpg"), str(images / "sub/green.png")]
    calls = []

    def counting(**inputs):
        calls.append(len(inputs[names.SERVING_BYTES_INPUT]))
        return signature(**inputs)

    results = predict.classify(counting, paths, batch_size=3)
    assert calls == [3]  # no retry: the model answered per image
    assert [r.predicted_class for r in results] == ["red", "", "green"]
    assert results[1].error == f"{names.UNDECODABLE_ERROR}: corrupt or truncated JPEG data"
    assert results[1].probability is None and results[1].top_k == ()


def test_a_model_without_the_error_output_is_refused_in_one_line(images, tmp_path, capsys):
    model_dir = _save(_WholeBatchColourModel(COLOURS), tmp_path / "m" / "1")
    code, err = _main(["--model", str(tmp_path / "m"), str(images), "--out", str(tmp_path / "p.csv")], capsys)
    assert (code, err[-1]) == (2, f"error: --model: {model_dir}: 'serving_default' has no 'error' output "
                                  "(per-image errors): it was exported by an older version; run the pipeline "
                                  "again (exit 2)")


def _b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode("ascii")}


def _rest_cases(images):
    jpeg, png = image_factory.jpeg_bytes(30, 30, color=(250, 10, 10)), image_factory.png_bytes(8, 8)
    bodies = [
        {"instances": [_b64(jpeg), _b64(png)]},  # row format, single input: bare values
        {"signature_name": names.SERVING_BYTES_SIGNATURE,
         "instances": [{names.SERVING_BYTES_INPUT: _b64(jpeg)}, {names.SERVING_BYTES_INPUT: _b64(png)}]},
        {"inputs": {names.SERVING_BYTES_INPUT: [_b64(jpeg), _b64(png)]}},  # columnar, named
        json.dumps({"inputs": [_b64(jpeg), _b64(png)]}),  # columnar, single input, as JSON text
    ]
    return [jpeg, png], bodies


def test_rest_bodies_map_onto_the_signature_inputs(signature, images):
    raw, bodies = _rest_cases(images)
    expected = signature(**{names.SERVING_BYTES_INPUT: tf.constant(raw)})[names.PROBABILITIES_OUTPUT].numpy()
    for body in bodies:
        inputs = rest.rest_request_to_inputs(body, signature)
        assert list(inputs) == [names.SERVING_BYTES_INPUT]
        assert inputs[names.SERVING_BYTES_INPUT].numpy().tolist() == raw
        np.testing.assert_allclose(signature(**inputs)[names.PROBABILITIES_OUTPUT].numpy(), expected)


@pytest.mark.parametrize("body, message", [
    ({}, '"instances" or "inputs"'),
    ({"instances": [], "inputs": []}, '"instances" or "inputs"'),
    ({"instances": []}, "non-empty"),
    ({"instances": [{"pixels": [1]}]}, "unknown"),
    ({"instances": [{"b64": "***"}]}, "base64"),
    ({"inputs": {names.SERVING_BYTES_INPUT: [[_b64(b"x")]]}}, "shape"),
])
def test_malformed_rest_bodies_are_rejected(signature, body, message):
    """What TF Serving answers with 400 Bad Request."""
    with pytest.raises(ValueError, match=message):
        rest.rest_request_to_inputs(body, signature)


# ---------------------------------------------------------------- the pushed model (slow)

@pytest.fixture(scope="module")
def pushed(gate_runs):
    """(serving dir, the version dir run A pushed)."""
    return gate_runs.cfg.serving_model_dir, pushed_dir(gate_runs)


@pytest.mark.slow
def test_pushed_layout_is_tf_serving_layout(pushed):
    serving, version_dir = pushed
    assert predict.resolve_model_dir(serving) == version_dir
    assert version_dir.rsplit("/", 1)[-1].isdigit()
    assert tf.io.gfile.exists(f"{version_dir}/{pipeline_names.SAVED_MODEL_FILE}")


@pytest.mark.slow
def test_rest_body_on_the_pushed_model(pushed):
    _, sig = predict.load_signature(pushed[0])
    raw = [image_factory.jpeg_bytes(120, 90, seed=5), image_factory.png_bytes(33, 70, mode="L")]
    body = json.dumps({"instances": [_b64(b) for b in raw]})
    out = sig(**rest.rest_request_to_inputs(body, sig))
    expected = sig(**{names.SERVING_BYTES_INPUT: tf.constant(raw)})
    np.testing.assert_allclose(out[names.PROBABILITIES_OUTPUT].numpy(),
                               expected[names.PROBABILITIES_OUTPUT].numpy(), rtol=1e-5)
    assert out[names.PREDICTED_CLASS_OUTPUT].numpy().tolist() == \
        expected[names.PREDICTED_CLASS_OUTPUT].numpy().tolist()


@pytest.mark.slow
def test_cli_on_the_pushed_model(pushed, tmp_path):
    folder = tmp_path / "photos"
    image_factory.write_file(folder / "a.jpg", image_factory.jpeg_bytes(150, 150, seed=1))
    image_factory.write_file(folder / "b.png", image_factory.png_bytes(40, 90))
    image_factory.write_file(folder / "broken.jpg", image_factory.corrupt_jpeg_bytes())
    out = tmp_path / "p.csv"
    assert predict.main(["--model", pushed[0], str(folder), "--out", str(out)]) == 1
    rows = _read_csv(out)
    assert rows[str(folder / "a.jpg")]["predicted_class"] in dataset.INTEL_CLASS_NAMES
    assert len(rows[str(folder / "b.png")]["top_k"].split(";")) == 3
    assert rows[str(folder / "broken.jpg")]["error"] == \
        f"{names.UNDECODABLE_ERROR}: corrupt or truncated JPEG data"


# ---------------------------------------------------------------- user errors: one line, exit 2

def _main(argv, capsys):
    """(exit status, stderr lines) of the command line."""
    code = predict.main(argv)
    return code, capsys.readouterr().err.strip().splitlines()


def test_out_in_a_missing_folder_is_refused_before_the_model_is_looked_at(images, tmp_path, capsys):
    out = tmp_path / "no-such-folder" / "p.csv"
    # The model does not exist either: the --out line coming alone shows --out is checked first.
    code, err = _main(["--model", str(tmp_path / "no-model"), str(images), "--out", str(out)], capsys)
    assert code == 2
    assert err == [f"error: --out {out}: folder {out.parent} does not exist; create it or pass another path (exit 2)"]


def test_out_that_is_a_folder_is_refused(serving_dir, images, tmp_path, capsys):
    code, err = _main(["--model", serving_dir, str(images), "--out", str(tmp_path)], capsys)
    assert (code, err) == (2, [f"error: --out {tmp_path} is a folder; pass the CSV file to write (exit 2)"])


def test_a_model_path_without_a_saved_model_is_one_line(images, tmp_path, capsys):
    expected = "expected saved_model.pb, <version>/saved_model.pb or Format-Serving/saved_model.pb in it"
    (tmp_path / "empty" / "not-a-version").mkdir(parents=True)
    out = str(tmp_path / "p.csv")
    code, err = _main(["--model", str(tmp_path / "empty"), str(images), "--out", out], capsys)
    assert (code, err) == (2, [f"error: --model: no SavedModel in {tmp_path / 'empty'}: {expected} "
                               "(nothing pushed yet?) (exit 2)"])
    code, err = _main(["--model", str(tmp_path / "nowhere"), str(images), "--out", out], capsys)
    assert (code, err) == (
        2, [f"error: --model: no model at {tmp_path / 'nowhere'}: it does not exist; {expected} (exit 2)"])
    image_factory.write_file(tmp_path / "broken" / "3" / pipeline_names.SAVED_MODEL_FILE, b"not a protobuf")
    code, err = _main(["--model", str(tmp_path / "broken"), str(images), "--out", out], capsys)
    assert code == 2 and err[0] == f"[predict] model {tmp_path / 'broken' / '3'}" and len(err) == 2
    assert err[1].startswith(f"error: --model: cannot load the SavedModel in {tmp_path / 'broken' / '3'}: ")
    assert not os.path.exists(out)


def test_a_model_without_the_image_bytes_signature_is_one_line(images, tmp_path, capsys):
    model = _PixelsModel()
    tf.saved_model.save(model, str(tmp_path / "m" / "1"),
                        signatures={names.SERVING_BYTES_SIGNATURE: model.serve})
    code, err = _main(["--model", str(tmp_path / "m"), str(images), "--out", str(tmp_path / "p.csv")], capsys)
    assert code == 2
    assert err[-1] == (f"error: --model: {tmp_path / 'm' / '1'}: 'serving_default' takes ['pixels'], "
                       "not ['image_bytes'] (exit 2)")


def test_missing_inputs_and_bad_numbers_are_one_line(serving_dir, images, tmp_path, capsys):
    out = str(tmp_path / "p.csv")
    gone = [str(tmp_path / "gone.jpg"), str(tmp_path / "gone")]
    assert _main(["--model", serving_dir, *gone, "--out", out], capsys) == (
        2, [f"error: no such file or folder: {gone[0]}, {gone[1]} (exit 2)"])
    (tmp_path / "no-images").mkdir()
    (tmp_path / "no-images" / "notes.txt").write_text("x")
    assert _main(["--model", serving_dir, str(tmp_path / "no-images"), "--out", out], capsys) == (
        2, [f"error: no image files (.jpg, .jpeg, .png, .gif, .bmp) in {tmp_path / 'no-images'} (exit 2)"])
    for flag in ("--top-k", "--batch-size", "--max-image-pixels"):
        assert _main(["--model", serving_dir, str(images), "--out", out, flag, "0"], capsys) == (
            2, [f"error: {flag}=0: must be >= 1 (exit 2)"])
    assert not os.path.exists(out)


def test_debug_adds_the_traceback_to_the_one_line(images, tmp_path, capsys):
    code = predict.main(["--model", str(tmp_path / "nowhere"), str(images), "--out", str(tmp_path / "p.csv"),
                         "--debug"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" in err and "FileNotFoundError" in err  # the original error, chained
    assert err.strip().splitlines()[-1].startswith("error: --model: no model at")


def test_an_unknown_flag_exits_2():
    with pytest.raises(SystemExit) as error:
        predict.main(["--model", "m", "x.jpg", "--no-such-flag"])
    assert error.value.code == 2


# ---------------------------------------------------------------- folders with links

def test_a_folder_with_link_loops_lists_each_real_file_once(serving_dir, tmp_path, capsys):
    photos = tmp_path / "photos"
    w = image_factory.write_file
    real = [w(photos / "a.jpg", image_factory.jpeg_bytes(20, 20, color=(250, 10, 10))),
            w(photos / "sub" / "b.png", image_factory.png_bytes(9, 9, color=(10, 250, 10))),
            w(photos / "sub" / "deeper" / "c.bmp", _solid_bmp((10, 10, 250)))]
    image_factory.write_file(tmp_path / "outside.jpg", image_factory.jpeg_bytes(8, 8))  # not under photos
    os.symlink("..", photos / "loop")  # the folder holding photos
    os.symlink("..", photos / "sub" / "up")  # photos itself, from below
    os.symlink("sub", photos / "again")  # a second way into sub
    os.symlink("a.jpg", photos / "same.jpg")  # a link to a file
    os.link(photos / "a.jpg", photos / "sub" / "hard.jpg")  # a hard link
    assert predict.list_images([str(photos)]).files == real
    assert predict.list_images([str(photos), real[1], str(photos / "sub")]).files == real  # named again: once
    out = tmp_path / "p.csv"
    assert predict.main(["--model", serving_dir, str(photos), "--out", str(out)]) == 0
    assert [(path, row["predicted_class"]) for path, row in _read_csv(out).items()] == list(
        zip(real, COLOURS))


# ---------------------------------------------------------------- --model x.tflite

EDGE_CFG = TrainConfig(class_names=tuple(COLOURS), image_size=32, resize_size=40,
                       tflite_calibration_images=32)
EDGE_BUDGET = 100 * 100  # --max-image-pixels of the CSV test: big.png (150 x 150) is over it


class _EdgeDecode(keras.layers.Layer):
    """Stand-in Transform layer: the project's decoder, resize_size x resize_size."""

    def call(self, features):
        return {names.TRANSFORMED_IMAGE_KEY: preprocessing.decode_and_resize(
            tf.reshape(features[names.IMAGE_KEY], [-1]), EDGE_CFG.resize_size)}


def _edge_network() -> keras.Model:
    """A small seeded conv net on [0, 255] pixels: the mean colour (which spreads the generated
    images over the classes) and convolution features feed a softmax."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input([EDGE_CFG.image_size, EDGE_CFG.image_size, 3])
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    colour = keras.layers.GlobalAveragePooling2D()(x)
    texture = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    texture = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(texture)
    texture = keras.layers.GlobalAveragePooling2D()(texture)
    dense = keras.layers.Dense(len(COLOURS), activation="softmax")
    outputs = dense(keras.layers.Concatenate()([colour, texture]))
    kernel, bias = dense.get_weights()
    kernel[:3] = 8 * np.eye(3)  # colour channel c votes for class c
    dense.set_weights([kernel, bias])
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def edge_models(tmp_path_factory):
    """(SavedModel dir, {flavour: .tflite path}) of the same Keras network."""
    root = tmp_path_factory.mktemp("edge")
    network = _edge_network()
    signatures.export_serving_model(network, _EdgeDecode(), {names.IMAGE_KEY: tf.io.FixedLenFeature(
        [1], tf.string)}, EDGE_CFG, str(root / pipeline_names.TRAINER_SERVING_SUBDIR))
    crops = np.stack([tflite_classifier.preprocess(image_factory.jpeg_bytes(50, 60, seed=100 + i), 40, 32)
                      for i in range(EDGE_CFG.tflite_calibration_images)])
    representative = tf.data.Dataset.from_tensor_slices(crops.astype(np.float32)).batch(8)
    paths = tflite_export.export_edge_models(network, EDGE_CFG, representative,
                                             str(root / names.EDGE_MODEL_SUBDIR))
    return str(root), paths


@pytest.fixture(scope="module")
def edge_images(tmp_path_factory):
    """40 generated images (JPEG, PNG, greyscale; smaller and larger than resize_size), a corrupt
    JPEG and one over EDGE_BUDGET."""
    root = tmp_path_factory.mktemp("edge-images")
    for i in range(40):
        width, height = 20 + 7 * i % 80, 25 + 11 * i % 70
        data = (image_factory.jpeg_bytes(width, height, seed=i) if i % 3 else
                image_factory.png_bytes(width, height, mode="L" if i % 2 else "RGB", seed=i))
        image_factory.write_file(root / f"{i:02d}.{'jpg' if i % 3 else 'png'}", data)
    image_factory.write_file(root / "corrupt.jpg", image_factory.corrupt_jpeg_bytes())
    image_factory.write_file(root / "big.png", image_factory.png_bytes(150, 150))
    return root


def _predict_csv(model: str, images, out) -> dict:
    assert predict.main(["--model", model, str(images), "--out", str(out), "--batch-size", "16",
                         "--max-image-pixels", str(EDGE_BUDGET)]) == 1  # the two bad files
    return _read_csv(out)


def test_cli_with_a_tflite_model_agrees_with_the_saved_model(edge_models, edge_images, tmp_path):
    saved_model, tflite = edge_models
    rows = {"saved_model": _predict_csv(saved_model, edge_images, tmp_path / "saved.csv")}
    for flavour, path in tflite.items():
        rows[flavour] = _predict_csv(path, edge_images, tmp_path / f"{flavour}.csv")
    errors = {path: row["error"] for path, row in rows["saved_model"].items() if row["error"]}
    assert errors == {
        str(edge_images / "corrupt.jpg"): f"{names.UNDECODABLE_ERROR}: corrupt or truncated JPEG data",
        str(edge_images / "big.png"): (f"{image_format.TOO_MANY_PIXELS}: 150x150 = 22500 pixels > "
                                       f"max_image_pixels = {EDGE_BUDGET}")}
    good = [path for path in rows["saved_model"] if path not in errors]
    assert len(good) == 40
    for flavour in tflite:
        assert list(rows[flavour]) == list(rows["saved_model"])  # same files, same order
        assert {path: row["error"] for path, row in rows[flavour].items() if row["error"]} == errors
        assert all(len(rows[flavour][path]["top_k"].split(";")) == 3 for path in good)
    classes = {name: [rows[name][path]["predicted_class"] for path in good] for name in rows}
    agreement = {flavour: np.mean(np.equal(classes[flavour], classes["saved_model"])) for flavour in tflite}
    print(f"top-1 agreement with the SavedModel: {agreement}")
    assert len(set(classes["saved_model"])) == len(COLOURS)  # not one class for all
    assert agreement["float16"] >= 0.95 and agreement["int8"] >= 0.9  # measured 1.0 and 0.975
    probability = {name: np.array([float(rows[name][path]["probability"]) for path in good]) for name in rows}
    differences = np.abs(probability["float16"] - probability["saved_model"])
    print(f"float16: max |p - p_saved_model| {max(differences):.2g}")
    assert max(differences) < 0.01


def test_a_tflite_model_without_metadata_or_a_file_that_is_none_is_one_line(images, tmp_path, capsys):
    out = str(tmp_path / "p.csv")
    function = tf.function(lambda x: x * 2.0).get_concrete_function(tf.TensorSpec([1, 2], tf.float32))
    plain = tmp_path / "plain.tflite"
    plain.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([function]).convert())
    code, err = _main(["--model", str(plain), str(images), "--out", out], capsys)
    assert (code, err) == (2, [f"[predict] model {plain}", (
        f"error: --model: {plain} has no readable labels and input spec in its TFLite metadata "
        "(export it with trainer_module.tflite_export): it has no TFLITE_METADATA entry (exit 2)")])
    text = image_factory.write_file(tmp_path / "notes.tflite", b"not a model")
    code, err = _main(["--model", text, str(images), "--out", out], capsys)
    assert (code, err) == (2, [f"[predict] model {text}",
                               f"error: --model: {text} is not a TFLite model (no TFL3 identifier) (exit 2)"])
    missing = str(tmp_path / "missing.tflite")
    code, err = _main(["--model", missing, str(images), "--out", out], capsys)
    assert (code, err) == (2, [f"error: --model: no model at {missing}: it does not exist (exit 2)"])
    assert not os.path.exists(out)
    bad_out = tmp_path / "no-such-folder" / "p.csv"  # --out first, before the model is looked at
    code, err = _main(["--model", str(plain), str(images), "--out", str(bad_out)], capsys)
    assert (code, err) == (2, [f"error: --out {bad_out}: folder {bad_out.parent} does not exist; "
                               "create it or pass another path (exit 2)"])


# ---------------------------------------------------------------- odd entries, long runs (real processes)

def test_a_file_name_that_is_not_utf8_gets_its_row_and_the_others_are_classified(serving_dir, tmp_path):
    photos = tmp_path / "photos"
    image_factory.write_file(photos / "red.jpg", image_factory.jpeg_bytes(20, 20, color=(250, 10, 10)))
    bad = os.fsencode(str(photos)) + b"/bad\xff.jpg"
    with open(bad, "wb") as f:
        f.write(image_factory.jpeg_bytes(20, 20, color=(10, 250, 10)))
    out = tmp_path / "p.csv"
    for named in ([str(photos)], [str(photos / "red.jpg"), os.fsdecode(bad)]):  # in a folder, and by name
        assert predict.main(["--model", serving_dir, *named, "--out", str(out)]) == exit_codes.DATA_ERROR
        rows = _read_csv(out)
        assert rows[str(photos / "red.jpg")]["predicted_class"] == "red"
        assert rows[f"{photos}/bad\\xff.jpg"]["error"].startswith("undecodable_file_name:")


@pytest.mark.timeout(300)  # a FIFO that was opened would block forever
def test_a_fifo_in_the_folder_gets_a_row_without_being_opened(serving_dir, tmp_path):
    photos = tmp_path / "photos"
    image_factory.write_file(photos / "red.jpg", image_factory.jpeg_bytes(20, 20, color=(250, 10, 10)))
    os.mkfifo(photos / "pipe.jpg")
    out = tmp_path / "p.csv"
    done = subprocess.run([sys.executable, "-m", "serving_client.predict", "--model", serving_dir, str(photos),
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == exit_codes.DATA_ERROR, done.stderr[-2000:]
    rows = _read_csv(out)
    assert rows[str(photos / "red.jpg")]["predicted_class"] == "red"
    assert rows[str(photos / "pipe.jpg")]["error"] == "not_a_regular_file: a FIFO (named pipe): not opened"


def _many_images(folder, n: int):
    for i in range(n):
        image_factory.write_file(folder / f"img_{i:04d}.jpg", image_factory.jpeg_bytes(16, 16, seed=i))


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_run_keeps_the_rows_it_finished(serving_dir, tmp_path, stop):
    """Rows are written as they come to <out>.partial, renamed to <out> when all are in: Ctrl-C
    (one line, exit 130), SIGTERM (one line, exit 143) and kill -9 alike leave the finished rows, whole."""
    photos = tmp_path / "photos"
    _many_images(photos, 2000)
    out = tmp_path / "p.csv"
    partial = tmp_path / ("p.csv" + predict.PARTIAL_SUFFIX)
    child = subprocess.Popen([sys.executable, "-m", "serving_client.predict", "--model", serving_dir, str(photos),
                              "--out", str(out), "--batch-size", "4"], cwd=REPO, stderr=subprocess.PIPE, text=True,
                             preexec_fn=signals.default_sigint)
    deadline = time.monotonic() + 240
    while not (partial.exists() and partial.read_text().count("\n") > 20):
        assert child.poll() is None and time.monotonic() < deadline, "no rows written"
        time.sleep(0.2)
    child.send_signal(stop)
    err = child.communicate(timeout=120)[1].strip().splitlines()
    assert not out.exists()  # a complete CSV only once every row is in
    with open(partial, newline="") as f:
        rows = list(csv.DictReader(f))
    assert 20 <= len(rows) < 2000 and all(r["predicted_class"] or r["error"] for r in rows)
    if stop == signal.SIGINT:
        assert child.returncode == exit_codes.INTERRUPTED
        assert err[-1].startswith("interrupted: stopped at your request") and err[-1].endswith(
            f"finished row(s) kept in {partial} (exit 130)")
        assert not any(line.startswith("Traceback") for line in err)
    if stop == signal.SIGTERM:
        assert child.returncode == exit_codes.TERMINATED == 143
        assert re.fullmatch(r"interrupted: stopped by SIGTERM \(a shutdown, a scheduler or `kill`\); \d+ finished "
                            rf"row\(s\) kept in {re.escape(str(partial))} \(exit 143\)", err[-1]), err[-1:]
        assert not any(line.startswith("Traceback") for line in err)
    if stop != signal.SIGKILL:  # the console was given back once the model loaded: the progress shows
        assert err[0] == "[predict] 2000 files" and err[1].startswith("[predict] 4/2000 files"), err[:3]


def test_the_tflite_runtime_failing_to_load_is_one_line_naming_the_feature(tmp_path, images):
    """A missing native piece (here the TFLite format's module, made to fail as a missing shared
    library would: TensorFlow itself loads) stops only the feature that needs it, with one line and exit 4."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'third_party.tflite_metadata.metadata_schema_py_generated':\n"
        "            raise ImportError('libflatbuffers.so.2: cannot open shared object file: "
        "No such file or directory')\n"
        "sys.meta_path.insert(0, _Block())\n")
    model = image_factory.write_file(tmp_path / "m.tflite", b"\x1c\x00\x00\x00TFL3" + b"\0" * 64)
    env = {**os.environ, "PYTHONPATH": f"{shadow}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-m", "serving_client.predict", "--model", model, str(images),
                           "--out", str(tmp_path / "p.csv")], cwd=REPO, capture_output=True, text=True,
                          timeout=240, env=env)
    err = done.stderr.strip().splitlines()
    assert done.returncode == exit_codes.ENVIRONMENT_ERROR, done.stderr[-2000:]
    assert err[-1].startswith("error: TFLite models cannot run: common.tflite_classifier (its native library "
                              "libflatbuffers.so.2 is missing) does not load")
    assert "install the system package that provides libflatbuffers.so.2" in err[-1] and err[-1].endswith("(exit 4)")
    assert not any(line.startswith("Traceback") for line in err)
