"""The pixel budget: a decompression bomb is refused from its header, before a decoder
allocates anything, at ingestion, in the Transform graph (so in both serving signatures) and in
the prediction client; memory stays far below what decoding it takes (6.9 GB before the budget).

The bomb is a real 20000x20000 RGB PNG of zeros (1.2 GB of pixels in 1.17 MB, like the issue's),
written row by row; a JPEG bomb is a small real JPEG whose frame header declares 20000x20000.
"""
import csv
import json
import os
import re
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import tensorflow as tf
from tfx.dsl.components.base import base_beam_executor
from tfx.types import standard_artifacts

import image_factory
from common import dataset, ingest_report, pipeline_names
from components.image_example_gen import executor, image_files
from components.image_example_gen.component import ImageExampleGen
from pipeline import configs, pipeline as pipeline_module
from pipeline_runs import pushed_dir
from serving_client import predict
from trainer_module import image_format, names, preprocessing, signatures
from trainer_module.train_config import TrainConfig, transform_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUDGET = image_format.DEFAULT_MAX_IMAGE_PIXELS
BOMB_DETAIL = "20000x20000 = 400000000 pixels > max_image_pixels = 100000000"
BOMB_ERROR = f"too_many_pixels: {BOMB_DETAIL}"
PEAK_RSS_LIMIT_MB = 1024
CLASSES = ["red", "green", "blue"]


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def zeros_png(width: int, height: int) -> bytes:
    """A real 8-bit RGB PNG of zeros, compressed row by row (never 3 x width x height bytes at once)."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (1 + 3 * width)  # filter type 0, then the pixels
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return (image_format.PNG_MAGIC + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b""))


def jpeg_declaring(width: int, height: int) -> bytes:
    """A real 16x16 JPEG whose SOF0 declares width x height."""
    data = image_factory.jpeg_bytes(16, 16)
    at = data.index(b"\xff\xc0") + 5  # marker, length, precision
    return data[:at] + struct.pack(">HH", height, width) + data[at + 4:]


def gif_declaring(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0) + b";"


def bmp_declaring(width: int, height: int) -> bytes:
    """A real BMP whose header declares width x -height (top-down rows)."""
    data = image_factory.bmp_bytes(8, 8)
    return data[:18] + struct.pack("<ii", width, -height) + data[26:]


@pytest.fixture(scope="module")
def bomb_png(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(zeros_png(20000, 20000))
    return str(path)


@pytest.fixture(scope="module")
def bomb(bomb_png) -> bytes:
    with open(bomb_png, "rb") as f:
        return f.read()


def test_the_bombs_are_what_they_claim(bomb):
    assert BUDGET == 100_000_000  # the documented default, which BOMB_DETAIL quotes
    assert 1_000_000 < len(bomb) < 1_300_000
    assert image_format.image_dimensions(bomb) == (20000, 20000)
    # The same writer makes PNGs TensorFlow decodes: the bomb is a real image, not a broken header.
    assert preprocessing.decode_image(zeros_png(301, 7)).numpy().tolist() == np.zeros((7, 301, 3)).tolist()
    assert preprocessing.decode_image(jpeg_declaring(16, 16)).shape == (16, 16, 3)


# ---------------------------------------------------------------- the graph guard (Transform, serving)

def _graph_decode(max_pixels: int = BUDGET):
    return tf.function(lambda data: preprocessing.decode_image(data, max_pixels),
                       input_signature=[tf.TensorSpec([], tf.string)])


@pytest.mark.parametrize("make", ["png", "jpeg", "gif", "bmp"])
def test_decode_image_refuses_a_bomb_of_each_format_in_a_graph(bomb, make):
    data = {"png": lambda: bomb, "jpeg": lambda: jpeg_declaring(20000, 20000),
            "gif": lambda: gif_declaring(20000, 20000), "bmp": lambda: bmp_declaring(20000, 20000)}[make]()
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        _graph_decode()(data)
    assert f"assertion failed: [{BOMB_ERROR}]" in error.value.message


def test_decode_image_refuses_the_bomb_eagerly_as_ingestion_calls_it(bomb):
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(BOMB_ERROR)):
        preprocessing.decode_image(bomb)


def _exif_jpeg() -> bytes:
    """A 40x30 JPEG with a 160x120 thumbnail JPEG in an APP1 segment before its frame header."""
    main, thumbnail = image_factory.jpeg_bytes(40, 30), image_factory.jpeg_bytes(160, 120)
    app1 = b"Exif\0\0" + thumbnail
    return main[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + main[2:]


def _stray_bytes_jpeg() -> bytes:
    """A 23x11 JPEG with stray bytes after its APP0 segment (libjpeg: a warning, it decodes)."""
    data = image_factory.jpeg_bytes(23, 11)
    end_of_app0 = 4 + struct.unpack_from(">H", data, 4)[0]
    return data[:end_of_app0] + b"\x00junk" + data[end_of_app0:]


REAL_IMAGES = {
    "jpeg": (lambda: image_factory.jpeg_bytes(37, 21), 37, 21),
    "jpeg_stray_bytes": (_stray_bytes_jpeg, 23, 11),
    "jpeg_gray": (lambda: image_factory.jpeg_bytes(5, 301, mode="L"), 5, 301),
    "jpeg_exif_thumbnail": (_exif_jpeg, 40, 30),
    "png_rgba": (lambda: image_factory.png_bytes(33, 20, mode="RGBA"), 33, 20),
    "gif_animated": (lambda: image_factory.gif_bytes(17, 9, frames=3), 17, 9),
    "bmp": (lambda: image_factory.bmp_bytes(12, 10), 12, 10),
}


@pytest.mark.parametrize("name", sorted(REAL_IMAGES))
def test_the_graph_reads_the_header_as_python_does_and_the_budget_is_exact(name):
    make, width, height = REAL_IMAGES[name]
    data = make()
    assert image_format.image_dimensions(data) == (width, height)
    assert [int(v) for v in preprocessing.header_dimensions(tf.constant(data))] == [width, height]
    pixels = width * height
    assert _graph_decode(pixels)(data).shape == (height, width, 3)  # exactly at the budget: decoded
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        _graph_decode(pixels - 1)(data)
    assert f"too_many_pixels: {width}x{height} = {pixels} pixels > max_image_pixels = {pixels - 1}" \
        in error.value.message


@pytest.mark.parametrize("name", sorted(REAL_IMAGES))
def test_normal_images_decode_to_the_same_pixels_as_before(name):
    data = REAL_IMAGES[name][0]()
    np.testing.assert_array_equal(_graph_decode()(data).numpy(),
                                  tf.io.decode_image(data, channels=3, expand_animations=False).numpy())


@pytest.mark.parametrize("data,decoder_says", [
    (b"\xff\xd8\xff\xe0 no frame header", "Invalid JPEG data"),
    (image_factory.png_bytes(40, 40)[:20], "PNG"),  # cut inside IHDR: reads as size 0
    (b"not an image", "Unknown image file format"),
], ids=["jpeg_without_frame", "png_cut", "text"])
def test_a_header_that_tells_no_size_is_left_to_the_decoder(data, decoder_says):
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        _graph_decode()(data)
    assert decoder_says in error.value.message and "too_many_pixels" not in error.value.message


def test_preprocessing_fn_takes_the_budget_from_transform_config():
    config = transform_config(CLASSES, 16, max_image_pixels=99)
    assert config == {names.TRANSFORM_CLASS_NAMES_KEY: CLASSES, names.TRANSFORM_RESIZE_SIZE_KEY: 16,
                      names.MAX_IMAGE_PIXELS_KEY: 99}
    assert transform_config(CLASSES, 16)[names.MAX_IMAGE_PIXELS_KEY] == BUDGET
    inputs = {names.IMAGE_KEY: tf.constant([[image_factory.jpeg_bytes(10, 10)]])}
    fn = tf.function(preprocessing.preprocessing_fn)
    out = fn(inputs, transform_config(CLASSES, 16, max_image_pixels=100))
    assert out[names.TRANSFORMED_IMAGE_KEY].shape == (1, 16, 16, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="10x10 = 100 pixels > max_image_pixels = 99"):
        fn(inputs, config)


def test_the_pipeline_gives_the_budget_to_ingestion_and_transform():
    pipeline = pipeline_module.create_pipeline(
        configs.PipelineConfig(pipeline_name="p", max_image_pixels=4321), TrainConfig(class_names=("a", "b")),
        pipeline_module.Platform(pipeline_root="/tmp/p", data_root="/tmp/data", serving_model_dir="/tmp/serving"))
    nodes = {c.id: c for c in pipeline.components}
    assert nodes[pipeline_names.EXAMPLE_GEN_NODE].exec_properties[names.MAX_IMAGE_PIXELS_KEY] == 4321
    assert nodes[pipeline_names.EDGE_EVALUATOR_NODE].exec_properties[names.MAX_IMAGE_PIXELS_KEY] == 4321
    for node in (pipeline_names.TRANSFORM_NODE, pipeline_names.TRAINER_NODE):  # the Trainer's serving errors
        custom_config = nodes[node].exec_properties["custom_config"]
        custom_config = json.loads(custom_config) if isinstance(custom_config, str) else custom_config
        assert custom_config[names.MAX_IMAGE_PIXELS_KEY] == 4321, node
    assert ImageExampleGen(input_base="/tmp/data").exec_properties[names.MAX_IMAGE_PIXELS_KEY] == BUDGET


class _TinyModel(tf.Module):
    """The pushed model's serving_default (signatures.classify_images: per-image errors) over
    decode_and_resize (the Transform decoder) with its own pixel budget, classifying by mean colour."""

    def __init__(self, max_pixels: int):
        super().__init__()
        self.class_names = tf.constant(CLASSES)
        self.max_pixels = max_pixels
        self.cfg = TrainConfig(class_names=tuple(CLASSES), image_size=32, resize_size=32)

    def _decode(self, features):
        return {names.TRANSFORMED_IMAGE_KEY: preprocessing.decode_and_resize(
            tf.reshape(features[names.IMAGE_KEY], [-1]), 32, self.max_pixels)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=names.SERVING_BYTES_INPUT)])
    def serve(self, image_bytes):
        return signatures.classify_images(
            lambda images, training=False: tf.nn.softmax(tf.reduce_mean(images, axis=[1, 2]) / 20.0),
            self._decode, tf.io.FixedLenFeature([1], tf.string), self.class_names, image_bytes, self.cfg,
            self.max_pixels)


def _save_tiny_model(folder, max_pixels: int) -> str:
    model = _TinyModel(max_pixels)
    tf.saved_model.save(model, str(folder / "1"), signatures={names.SERVING_BYTES_SIGNATURE: model.serve})
    return str(folder)


@pytest.fixture(scope="module")
def tiny_serving(tmp_path_factory) -> str:
    """A serving dir whose model has the default budget."""
    return _save_tiny_model(tmp_path_factory.mktemp("tiny_serving"), BUDGET)


def test_a_saved_serving_signature_refuses_the_bomb_and_keeps_serving(tiny_serving, bomb):
    _, signature = predict.load_signature(tiny_serving)
    red = image_factory.jpeg_bytes(30, 20, color=(250, 10, 10))
    answer = signature(**{names.SERVING_BYTES_INPUT: tf.constant([red, bomb])})  # per image: never decoded
    assert [e.decode() for e in answer[names.ERROR_OUTPUT].numpy()] == ["", BOMB_ERROR]
    out = signature(**{names.SERVING_BYTES_INPUT: tf.constant([red])})
    assert out[names.PREDICTED_CLASS_OUTPUT].numpy().tolist() == [b"red"]


# ---------------------------------------------------------------- ingestion

def test_check_image_refuses_the_bomb_from_its_header(bomb):
    assert image_files.check_image(bomb) == (ingest_report.SKIP_TOO_MANY_PIXELS, BOMB_DETAIL, None)
    assert image_files.inspect_image(bomb) == (ingest_report.SKIP_TOO_MANY_PIXELS, None)
    assert image_files.check_image(image_factory.png_bytes(40, 30), 1199) == (
        "too_many_pixels", "40x30 = 1200 pixels > max_image_pixels = 1199", None)
    assert image_files.check_image(image_factory.png_bytes(40, 30), 1200) == (None, "", (30, 40, "png"))
    assert ingest_report.SKIP_TOO_MANY_PIXELS in ingest_report.SKIP_REASONS


def test_the_graph_guard_backs_the_header_check_at_ingestion(bomb, monkeypatch):
    """A header the Python reader could not size is still refused, by decode_image's guard."""
    monkeypatch.setattr(image_format, "over_budget", lambda data, max_pixels: None)
    assert image_files.check_image(bomb) == (ingest_report.SKIP_TOO_MANY_PIXELS, BOMB_DETAIL, None)


def test_ingestion_skips_bombs_and_counts_every_file(bomb, tmp_path):
    root = tmp_path / "data"
    w = image_factory.write_file
    w(root / "train" / "a" / "ok1.jpg", image_factory.jpeg_bytes(30, 20, seed=1))
    w(root / "train" / "a" / "bomb.png", bomb)
    w(root / "train" / "b" / "ok2.png", image_factory.png_bytes(20, 40))
    w(root / "train" / "b" / "bomb.jpg", jpeg_declaring(20000, 20000))
    w(root / "train" / "b" / "big.jpg", image_factory.jpeg_bytes(50, 40, seed=2))  # 2000 pixels
    w(root / "val" / "a" / "ok3.jpg", image_factory.jpeg_bytes(16, 16, seed=3))
    w(root / "val" / "b" / "ok4.bmp", image_factory.bmp_bytes(16, 16))
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "out")
    executor.Executor(base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=list(configs.LOCAL_BEAM_ARGS), tmp_dir=str(tmp_path / "tmp"))).Do(
        {}, {pipeline_names.EXAMPLES_OUTPUT: [examples]},
        {"input_base": str(root), "class_names": "[]", "eval_fraction": 0.2, names.MAX_IMAGE_PIXELS_KEY: 1999})
    with open(os.path.join(examples.uri, pipeline_names.INGEST_REPORT_FILE)) as f:
        report = json.load(f)
    assert (report["files_seen"], report["ingested"], report["skipped"]) == (7, 4, 3)
    assert report["ingested"] + report["skipped"] == report["files_seen"]
    assert report["skipped_by_reason"] == {"too_many_pixels": 3}
    assert {(s["path"], s["detail"]) for s in report["skipped_files"]} == {
        ("train/a/bomb.png", "20000x20000 = 400000000 pixels > max_image_pixels = 1999"),
        ("train/b/bomb.jpg", "20000x20000 = 400000000 pixels > max_image_pixels = 1999"),
        ("train/b/big.jpg", "50x40 = 2000 pixels > max_image_pixels = 1999")}


# ---------------------------------------------------------------- the prediction client

def _rows(path):
    with open(path, newline="") as f:
        return {row["path"]: row for row in csv.DictReader(f)}


def test_predict_refuses_the_bomb_before_sending_it_to_the_model(tiny_serving, bomb_png, tmp_path):
    _, signature = predict.load_signature(tiny_serving)
    sent = []

    def spy(**inputs):
        sent.extend(inputs[names.SERVING_BYTES_INPUT].numpy().tolist())
        return signature(**inputs)

    red = image_factory.write_file(tmp_path / "red.jpg", image_factory.jpeg_bytes(30, 20, color=(250, 10, 10)))
    results = predict.classify(spy, [bomb_png, red])
    assert [(r.predicted_class, r.error) for r in results] == [("", BOMB_ERROR), ("red", "")]
    assert len(sent) == 1  # only the red image reached the model


def test_predict_cli_budget_flag_and_the_models_own_budget(tiny_serving, bomb_png, tmp_path, capsys):
    folder = tmp_path / "photos"
    w = image_factory.write_file
    small = w(folder / "small.jpg", image_factory.jpeg_bytes(20, 20, color=(10, 250, 10)))
    wide = w(folder / "wide.png", image_factory.png_bytes(40, 30, color=(10, 10, 250)))
    out = tmp_path / "p.csv"
    assert predict.main(["--model", tiny_serving, str(folder), bomb_png, "--out", str(out)]) == 1
    rows = _rows(out)
    assert rows[bomb_png]["error"] == BOMB_ERROR and rows[bomb_png]["predicted_class"] == ""
    assert (rows[small]["predicted_class"], rows[wide]["predicted_class"]) == ("green", "blue")
    assert f"FAILED {bomb_png}: {BOMB_ERROR}" in capsys.readouterr().err

    assert predict.main(["--model", tiny_serving, str(folder), "--out", str(out),
                         "--max-image-pixels", "1000"]) == 1
    assert _rows(out)[wide]["error"] == "too_many_pixels: 40x30 = 1200 pixels > max_image_pixels = 1000"
    assert _rows(out)[small]["predicted_class"] == "green"

    # A model whose own budget is smaller: its refusal reads the same (from the serving error).
    strict = _save_tiny_model(tmp_path / "strict", 100)
    assert predict.main(["--model", strict, str(small), "--out", str(out)]) == 1
    assert _rows(out)[small]["error"] == "too_many_pixels: 20x20 = 400 pixels > max_image_pixels = 100"


# ---------------------------------------------------------------- peak memory, each in its own process

# VmHWM, the peak RSS of this process image: getrusage's ru_maxrss would also count the forking
# parent's (Linux keeps it across exec), and the pytest process holds TensorFlow and the bomb.
_CHILD_PRELUDE = """
import json, os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
def peak_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024  # kB
"""


def _child(body: str, *args: str) -> dict:
    """Runs body in a fresh Python; it prints one JSON line last: what it found and its peak RSS."""
    done = subprocess.run([sys.executable, "-c", _CHILD_PRELUDE + body, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_peak_memory_of_the_ingestion_check(bomb_png):
    got = _child("""
from components.image_example_gen import image_files
with open(sys.argv[1], "rb") as f:
    reason, detail, _ = image_files.check_image(f.read())
print(json.dumps({"result": [reason, detail], "peak_mb": peak_mb()}))
""", bomb_png)
    print(f"\npeak RSS, ingestion check of the 20000x20000 PNG: {got['peak_mb']:.0f} MB")
    assert got["result"] == ["too_many_pixels", BOMB_DETAIL]
    assert got["peak_mb"] < PEAK_RSS_LIMIT_MB


def test_peak_memory_of_decode_image_in_a_graph(bomb_png, tmp_path):
    """The bomb refused, then a real 8000x8000 PNG decoded in the same process: its 192 MB of
    pixels must show in the peak, so the measure does see what a decoder allocates."""
    control = tmp_path / "control.png"
    control.write_bytes(zeros_png(8000, 8000))
    got = _child("""
import tensorflow as tf
from trainer_module import preprocessing
decode = tf.function(preprocessing.decode_image, input_signature=[tf.TensorSpec([], tf.string)])
try:
    decode(tf.io.read_file(sys.argv[1]))
    error = ""
except tf.errors.InvalidArgumentError as e:
    error = e.message
after_bomb = peak_mb()
shape = decode(tf.io.read_file(sys.argv[2])).shape.as_list()
print(json.dumps({"result": [error, shape], "peak_mb": after_bomb, "after_control_mb": peak_mb()}))
""", bomb_png, str(control))
    print(f"\npeak RSS, decode_image graph refusing the 20000x20000 PNG: {got['peak_mb']:.0f} MB "
          f"(then decoding an 8000x8000 PNG: {got['after_control_mb']:.0f} MB)")
    error, shape = got["result"]
    assert BOMB_ERROR in error and shape == [8000, 8000, 3]
    assert got["peak_mb"] < PEAK_RSS_LIMIT_MB
    assert got["after_control_mb"] - got["peak_mb"] > 150


def test_peak_memory_of_predict(tiny_serving, bomb_png, tmp_path):
    small = image_factory.write_file(tmp_path / "small.jpg",
                                     image_factory.jpeg_bytes(20, 20, color=(250, 10, 10)))
    out = tmp_path / "p.csv"
    got = _child("""
import csv
from serving_client import predict
code = predict.main(["--model", sys.argv[1], sys.argv[2], sys.argv[3], "--out", sys.argv[4]])
with open(sys.argv[4], newline="") as f:
    rows = [[r["path"], r["predicted_class"], r["error"]] for r in csv.DictReader(f)]
print(json.dumps({"result": [code, rows], "peak_mb": peak_mb()}))
""", tiny_serving, bomb_png, small, str(out))
    print(f"\npeak RSS, predict with the 20000x20000 PNG: {got['peak_mb']:.0f} MB")
    assert got["result"] == [1, [[bomb_png, "", BOMB_ERROR], [small, "red", ""]]]
    assert got["peak_mb"] < PEAK_RSS_LIMIT_MB


# ---------------------------------------------------------------- the pushed model (slow)

@pytest.mark.slow
def test_the_pushed_models_signatures_refuse_the_bomb(gate_runs, bomb):
    """Through the Transform graph the pipeline built: its budget is the run's max_image_pixels."""
    loaded, signature = predict.load_signature(pushed_dir(gate_runs))
    good = image_factory.jpeg_bytes(64, 48, seed=3)
    # serving_default answers per image (docs/serving.md): the bomb's row is the error, never decoded.
    mixed = signature(**{names.SERVING_BYTES_INPUT: tf.constant([good, bomb])})
    assert [e.decode() for e in mixed[names.ERROR_OUTPUT].numpy()] == ["", BOMB_ERROR]
    assert mixed[names.PROBABILITIES_OUTPUT].numpy()[1].sum() == 0
    example = tf.train.Example(features=tf.train.Features(feature={
        names.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[bomb]))}))
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(BOMB_ERROR)):
        loaded.signatures[names.SERVING_EXAMPLES_SIGNATURE](
            **{names.SERVING_EXAMPLES_INPUT: tf.constant([example.SerializeToString()])})
    out = signature(**{names.SERVING_BYTES_INPUT: tf.constant([good])})  # still serving
    assert out[names.PROBABILITIES_OUTPUT].shape == (1, len(dataset.INTEL_CLASS_NAMES))
