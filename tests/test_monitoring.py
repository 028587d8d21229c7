"""After the push: prediction logs (common/prediction_log.py, predict's --log-*), abstention
(--uncertain-below), the monitor (python -m monitoring) and the labelling queue
(python -m monitoring.labelling_queue). The fast tests use a nearest-mean-colour model over the
project's serving signature (tests/centroid_model.py) and a labelled folder as the reference; the
slow one reads the shared pipeline runs' ML Metadata for the pushed model's training data."""
import base64
import csv
import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image, ImageEnhance

import centroid_model
from image_factory import jpeg_bytes
from common import image_content, prediction_log
from data_sources import demo_data
from monitoring import __main__ as monitor
from monitoring import labelling_queue
from run_control import exit_codes
from serving_client import predict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTENT_DRIFT = {"content_brightness", "content_saturation", "content_colourfulness"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A labelled demo folder (the reference), a model fitted on it, and its eval images darkened
    to grayscale (the drifted traffic)."""
    root = tmp_path_factory.mktemp("monitoring")
    data = demo_data.make_demo_dataset(str(root / "data"), train_per_class=8, eval_per_class=5, size=48, seed=0)
    model = centroid_model.export(os.path.join(data, "train"), str(root / "serving" / "3"))
    drifted = root / "drifted"
    drifted.mkdir()
    for path in sorted(glob.glob(os.path.join(data, "val", "*", "*"))):
        image = ImageEnhance.Brightness(Image.open(path).convert("L").convert("RGB")).enhance(0.4)
        image.save(drifted / (os.path.basename(os.path.dirname(path)) + "_" + os.path.basename(path)))
    return {"root": root, "data": data, "serving": os.path.dirname(model), "eval": os.path.join(data, "val"),
            "drifted": str(drifted)}


def _predict(world, images, log_dir, *flags) -> int:
    return predict.main(["--model", world["serving"], images, "--out", str(log_dir) + ".csv",
                         "--log-dir", str(log_dir), *flags])


@pytest.fixture(scope="module")
def logged(world):
    """The prediction logs of the eval images (abstention at 0.9, the uncertain ones' bytes kept)
    and of the drifted images (default flags), each predicted once for the module."""
    ok, drift = world["root"] / "ok", world["root"] / "drift"
    assert _predict(world, world["eval"], ok, "--uncertain-below", "0.9", "--log-image-bytes", "uncertain") == 0
    assert _predict(world, world["drifted"], drift) == 0
    return {"ok": ok, "drift": drift}


def test_predict_logs_each_request_with_its_content_and_abstains_below_the_threshold(logged):
    logs = logged["ok"]
    with open(str(logs) + ".csv") as f:
        rows = list(csv.DictReader(f))
    read = prediction_log.read_records([str(logs)], None, None)
    assert read.skipped == [] and len(read.records) == len(rows) == 30
    uncertain = [r for r in rows if r["answer"] == prediction_log.UNCERTAIN_ANSWER]
    assert 0 < len(uncertain) < len(rows)  # both kinds of answer occur at 0.9
    for row in rows:  # the class and probability are still given when the answer is "uncertain"
        assert row["predicted_class"] and (row["answer"] == "uncertain") == (float(row["probability"]) < 0.9)
    by_path = {r[prediction_log.PATH]: r for r in read.records}
    for row in rows:
        rec = by_path[os.path.abspath(row["path"])]
        assert rec[prediction_log.MODEL_VERSION] == "3" and rec[prediction_log.FORMAT] == "jpeg"
        assert (rec[prediction_log.HEIGHT], rec[prediction_log.WIDTH]) == (48, 48)
        assert rec[prediction_log.PREDICTED_CLASS] == row["predicted_class"]
        assert rec[prediction_log.PROBABILITY] == pytest.approx(float(row["probability"]), abs=1e-6)
        assert rec[prediction_log.UNCERTAIN] == (row["answer"] == "uncertain")
        with open(row["path"], "rb") as f:
            data = f.read()
        expected = image_content.statistics(image_content.decode(data))
        assert {k: rec[k] for k in image_content.STATISTICS} == pytest.approx(expected)
        # the bytes only for the uncertain requests (--log-image-bytes uncertain); never by default
        assert (prediction_log.IMAGE_B64 in rec) == rec[prediction_log.UNCERTAIN]
        if rec[prediction_log.UNCERTAIN]:
            assert base64.b64decode(rec[prediction_log.IMAGE_B64]) == data


def test_sampling_and_no_bytes_by_default(world, logged, tmp_path):
    logs = tmp_path / "logs"
    assert _predict(world, world["eval"], logs, "--log-sample", "0") == 0
    assert prediction_log.read_records([str(logs)]).records == []
    drift = prediction_log.read_records([str(logged["drift"])]).records  # logged with the defaults
    assert len(drift) == 30 and all(prediction_log.IMAGE_B64 not in r for r in drift)


def test_bad_log_knobs_are_one_line_usage_errors(world, tmp_path, capsys):
    assert _predict(world, world["eval"], tmp_path / "l", "--log-sample", "1.5") == exit_codes.USAGE_ERROR
    assert "--log-sample=1.5: must be between 0 and 1" in capsys.readouterr().err


def test_logs_rotate_at_the_size_cap_and_keep_max_files(tmp_path):
    settings = prediction_log.LogSettings(str(tmp_path), max_bytes=2048, max_files=2, seed=0)
    writer = prediction_log.PredictionLogWriter(settings)
    for i in range(100):
        writer.write(prediction_log.record("predict", "1", None, "sea", 0.5 + i / 1000, time=f"2026-01-01T00:00:{i % 60:02d}"))
    writer.close()
    files = sorted(glob.glob(str(tmp_path / prediction_log.LOG_GLOB)))
    assert len(files) == 3  # the current file and the two newest rotated ones
    assert all(os.path.getsize(f) <= 2048 for f in files)
    read = prediction_log.read_records([str(tmp_path)])
    assert read.skipped == []
    probabilities = sorted(round(r[prediction_log.PROBABILITY] * 1000) - 500 for r in read.records)
    assert probabilities == list(range(100 - len(probabilities), 100))  # the newest records, none torn


_WRITER = """
import sys
from common import prediction_log
writer = prediction_log.PredictionLogWriter(prediction_log.LogSettings(sys.argv[1], max_bytes=4096, max_files=1000))
print("ready", flush=True)
i = 0
while True:
    writer.write(prediction_log.record("predict", "1", None, "sea", 0.5, error="", path="x" * (i % 300)))
    i += 1
"""


def test_a_killed_writer_leaves_complete_records(tmp_path):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    process = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path)], stdout=subprocess.PIPE,
                               cwd=repo, env={**os.environ, "PYTHONPATH": repo})
    assert process.stdout.readline().strip() == b"ready"
    time.sleep(0.5)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    read = prediction_log.read_records([str(tmp_path)])
    assert len(read.records) > 100 and read.skipped == []
    assert len(glob.glob(str(tmp_path / prediction_log.LOG_GLOB))) > 1  # it rotated while being killed
    # A record torn by a power cut is the last line: read as a counted skip, the rest kept.
    with open(tmp_path / prediction_log.LOG_FILE, "ab") as f:
        f.write(b'{"time": "2026-01-01T00:00:00+00:00", "pred')
    again = prediction_log.read_records([str(tmp_path)])
    assert len(again.records) == len(read.records) and len(again.skipped) == 1
    assert again.skipped[0][0].endswith(prediction_log.LOG_FILE + f":{again.skipped[0][0].rsplit(':', 1)[1]}")


def test_monitor_passes_in_distribution_and_names_the_content_statistics_on_dark_grayscale(world, logged, tmp_path,
                                                                                           capsys):
    ok_logs, drift_logs = logged["ok"], logged["drift"]
    base = ["--reference-data", world["data"], "--hours", "1"]
    assert monitor.main([str(ok_logs), *base, "--out", str(tmp_path / "ok.html")]) == exit_codes.OK
    out, err = capsys.readouterr()
    assert "BREACH" not in out and "0 of 11 measurements breach" in err
    assert monitor.main([str(drift_logs), *base, "--out", str(tmp_path / "drift.html")]) == exit_codes.DRIFT
    out, err = capsys.readouterr()
    breached = {line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith("BREACH ")}
    assert CONTENT_DRIFT <= breached, out
    assert "content_aspect_ratio" not in breached and "height" not in breached  # same sizes
    page = (tmp_path / "drift.html").read_text()
    assert page.count("BREACH</td>") == len(breached) and "data:image/png;base64," in page
    # a window that holds none of the records: a data error, not a silent pass
    assert monitor.main([str(drift_logs), *base, "--until", "2000-01-01T00:00"]) == exit_codes.DATA_ERROR
    assert "no prediction log record" in capsys.readouterr().err


def test_labelling_queue_is_a_data_drop_with_the_models_guesses(world, tmp_path, capsys):
    logs = tmp_path / "logs"
    assert _predict(world, world["eval"], logs, "--log-sample", "1") == 0
    _predict(world, world["eval"], logs)  # the same images asked twice: each queued once
    records = prediction_log.read_records([str(logs)]).records
    low = {r[prediction_log.PATH] for r in records if r[prediction_log.PROBABILITY] < 0.8}
    queue = tmp_path / "queue"
    assert labelling_queue.main([str(logs), "--out", str(queue), "--low-confidence", "0.8", "--per-class", "1"]) == 0
    assert os.listdir(queue) == ["unlabeled"]
    with open(queue / "unlabeled" / labelling_queue.QUEUE_CSV) as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == labelling_queue.CSV_FIELDS
    assert {r["source"] for r in rows if r["reason"] == "low_confidence"} == low
    sampled = [r for r in rows if r["reason"] == "sample"]
    classes = {r[prediction_log.PREDICTED_CLASS] for r in records if r[prediction_log.PATH] not in low}
    assert sorted(r["predicted_class"] for r in sampled) == sorted(classes)  # one per predicted class
    files = sorted(f for f in os.listdir(queue / "unlabeled") if f != labelling_queue.QUEUE_CSV)
    assert files == sorted(r["file"] for r in rows) and len(set(r["source"] for r in rows)) == len(rows)
    for row in rows:
        with open(row["source"], "rb") as a, open(queue / "unlabeled" / row["file"], "rb") as b:
            assert a.read() == b.read()
    assert labelling_queue.main([str(logs), "--out", str(queue)]) == exit_codes.USAGE_ERROR  # not empty


_SLOW_QUEUE = """
import sys, time
from common import prediction_log
from monitoring import labelling_queue
image_of = prediction_log.image_of
prediction_log.image_of = lambda rec: (time.sleep(0.05), image_of(rec))[1]  # long enough to be stopped
sys.exit(labelling_queue.main(sys.argv[1:]))
"""


def test_a_stopped_labelling_queue_leaves_out_as_it_was_and_reruns(tmp_path):
    """SIGTERM mid-export (a real process): one line, exit 143, --out untouched and no partial
    folder left, so the same command runs again (it used to leave a half queue that --out's
    not-empty check then refused)."""
    logs = tmp_path / "logs"
    writer = prediction_log.PredictionLogWriter(prediction_log.LogSettings(str(logs)))
    for i in range(200):
        writer.write(prediction_log.record("predict", "1", b"image %d" % i, "sea", 0.3, path=f"img{i}.jpg",
                                           keep_bytes=prediction_log.KEEP_ALL, content=False))
    writer.close()
    queue = tmp_path / "queue"
    queue.mkdir()  # an empty --out is allowed: the finished queue is renamed over it
    command = [str(logs), "--out", str(queue), "--hours", "0"]
    process = subprocess.Popen([sys.executable, "-c", _SLOW_QUEUE, *command], cwd=REPO, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 120
    while len(glob.glob(str(tmp_path / ".queue.partial-*" / "unlabeled" / "*"))) < 10:
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    err = process.communicate(timeout=60)[1].strip().splitlines()
    assert process.returncode == exit_codes.TERMINATED
    assert err[-1:] == ["interrupted: stopped by SIGTERM (a shutdown, a scheduler or `kill`) (exit 143)"], err
    assert sorted(os.listdir(tmp_path)) == ["logs", "queue"] and os.listdir(queue) == []
    assert labelling_queue.main(command) == exit_codes.OK
    assert len(os.listdir(queue / "unlabeled")) == 201  # 200 images and queue.csv
    assert oct(os.stat(queue).st_mode & 0o777) == "0o755" and sorted(os.listdir(tmp_path)) == ["logs", "queue"]


def test_two_exports_into_one_out_keep_the_first_and_name_the_clash(tmp_path, monkeypatch, capsys):
    logs = tmp_path / "logs"
    writer = prediction_log.PredictionLogWriter(prediction_log.LogSettings(str(logs)))
    writer.write(prediction_log.record("predict", "1", b"image", "sea", 0.3, keep_bytes=prediction_log.KEEP_ALL,
                                       content=False))
    writer.close()
    queue, export = tmp_path / "queue", labelling_queue.export

    def raced(records, out, *args):  # the other export finishes first
        (queue / "unlabeled").mkdir(parents=True)
        (queue / "unlabeled" / "theirs.jpg").write_bytes(b"theirs")
        return export(records, out, *args)

    monkeypatch.setattr(labelling_queue, "export", raced)
    assert labelling_queue.main([str(logs), "--out", str(queue), "--hours", "0"]) == exit_codes.USAGE_ERROR
    assert capsys.readouterr().err.strip() == (f"error: --out {queue} was filled while the queue was built (another "
                                               "export?): pass a new folder (exit 2)")
    assert os.listdir(queue / "unlabeled") == ["theirs.jpg"] and sorted(os.listdir(tmp_path)) == ["logs", "queue"]


def test_the_monitor_page_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    """The page is written beside --out and renamed: a write that fails (here the disk fills at the
    fsync) leaves the last page as it was and no temporary file."""
    from common import durable

    page = tmp_path / "monitor.html"
    durable.write_atomically(str(page), "<p>yesterday</p>")

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        durable.write_atomically(str(page), "<p>today</p>" * 1000)
    assert page.read_text() == "<p>yesterday</p>" and os.listdir(tmp_path) == ["monitor.html"]
    assert oct(os.stat(page).st_mode & 0o777) == "0o644"


def test_a_monitor_page_in_a_missing_folder_is_a_usage_error_before_any_work(world, logged, tmp_path, capsys):
    out = tmp_path / "nowhere" / "monitor.html"
    assert monitor.main([str(logged["ok"]), "--reference-data", world["data"] + "/train", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: --out {out}: no folder {out.parent} to write the page in; "
                                               "create it or pass another (exit 2)")


def test_vertex_request_response_rows_are_read_as_records(tmp_path):
    images = [jpeg_bytes(40, 30, seed=1), b"not an image"]
    row = {"endpoint": "projects/p/locations/l/endpoints/1", "deployed_model_id": "7",
           "logging_time": "2026-12-07T10:00:00Z", "request_id": 1,
           "request_payload": [json.dumps({"instances": [{"image_bytes": {"b64": base64.b64encode(d).decode()}}
                                                         for d in images]})],
           "response_payload": [json.dumps({"predictions": [
               {"predicted_class": "sea", "predicted_probability": 0.75, "error": ""},
               {"predicted_class": "", "predicted_probability": 0.0, "error": "undecodable: not an image"}]})]}
    (tmp_path / "vertex.jsonl").write_text(json.dumps(row) + "\n")
    read = prediction_log.read_records([str(tmp_path)])
    assert read.skipped == [] and len(read.records) == 2
    good, bad = read.records
    assert good[prediction_log.SOURCE] == prediction_log.SOURCE_VERTEX_LOGGING and good[prediction_log.MODEL_VERSION] == "7"
    assert (good[prediction_log.WIDTH], good[prediction_log.HEIGHT], good[prediction_log.PREDICTED_CLASS]) == (40, 30, "sea")
    assert good["content_aspect_ratio"] == pytest.approx(40 / 30)
    assert bad[prediction_log.ERROR].startswith("undecodable") and "content_brightness" not in bad


@pytest.mark.slow
def test_monitor_finds_the_pushed_models_training_data_in_ml_metadata(gate_runs, tmp_path, capsys):
    """Run A's pushed model, asked about a fresh drop of the same demo data (in distribution) and
    about those images darkened to grayscale; the reference is run A's training data, found through
    ML Metadata from the version the logs name. The tiny model's classes and confidence are not what
    is tested here (two epochs on 64 px images), so their thresholds are opened."""
    from pipeline_runs import pushed_dir

    version_dir = pushed_dir(gate_runs)
    fresh = os.path.join(gate_runs.drops["clean"], demo_data.SPLITS[1])
    drifted = tmp_path / "drifted"
    drifted.mkdir()
    for path in sorted(glob.glob(os.path.join(fresh, "*", "*"))):
        image = ImageEnhance.Brightness(Image.open(path).convert("L").convert("RGB")).enhance(0.4)
        image.save(drifted / (os.path.basename(os.path.dirname(path)) + "_" + os.path.basename(path)))
    for images, logs in ((fresh, tmp_path / "ok"), (str(drifted), tmp_path / "drift")):
        assert predict.main(["--model", os.path.dirname(version_dir), images, "--out", str(logs) + ".csv",
                             "--log-dir", str(logs)]) == 0
    opened = ["--class-max-linf", "1", "--max-low-confidence-share", "1", "--max-confidence-drop", "1"]
    capsys.readouterr()
    assert monitor.main([str(tmp_path / "ok"), "--metadata", gate_runs.cfg.metadata_path, *opened,
                         "--out", str(tmp_path / "ok.html")]) == exit_codes.OK
    out, err = capsys.readouterr()
    assert f"pushed version {os.path.basename(version_dir)}" in err and "BREACH" not in out, (out, err)
    assert monitor.main([str(tmp_path / "drift"), "--metadata", gate_runs.cfg.metadata_path, *opened,
                         "--out", str(tmp_path / "drift.html")]) == exit_codes.DRIFT
    out, _ = capsys.readouterr()
    breached = {line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith("BREACH ")}
    assert CONTENT_DRIFT <= breached and "height" not in breached, out


class _Backend:
    """A stand-in TF Serving :predict that answers each instance with a class and a probability
    (0.9, then 0.4, ...) and fails an instance that is not an image."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                answers = []
                for i, instance in enumerate(body["instances"]):
                    ok = base64.b64decode(instance["b64"]).startswith(b"\xff\xd8")
                    answers.append({"predicted_class": "sea" if ok else "", "predicted_probability": 0.9 - 0.5 * (i % 2),
                                    "error": "" if ok else "undecodable: not an image"})
                data = json.dumps({"predictions": answers}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def test_vertex_container_abstains_and_logs_each_instance(tmp_path):
    import threading
    import urllib.request

    from serving_client import vertex_server

    backend = _Backend()
    threading.Thread(target=backend.server.serve_forever, daemon=True).start()
    settings = vertex_server.settings_from_env({"AIP_HTTP_PORT": "0", "UNCERTAIN_BELOW": "0.5",
                                                "PREDICTION_LOG_DIR": str(tmp_path / "logs"),
                                                "PREDICTION_LOG_IMAGE_BYTES": "uncertain",
                                                "AIP_DEPLOYED_MODEL_ID": "42"})._replace(backend=backend.url)
    proxy = vertex_server.make_server(settings, host="127.0.0.1")
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    images = [jpeg_bytes(40, 30, seed=1), jpeg_bytes(20, 20, seed=2), b"text"]
    body = {"instances": [{"b64": base64.b64encode(d).decode()} for d in images]}
    url = f"http://127.0.0.1:{proxy.server_address[1]}{settings.predict_route}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, json.dumps(body).encode()), timeout=10) as r:
            predictions = json.loads(r.read())["predictions"]
        # a request's own threshold wins over the container's
        body["parameters"] = {"uncertain_below": 0.3}
        with urllib.request.urlopen(urllib.request.Request(url, json.dumps(body).encode()), timeout=10) as r:
            relaxed = json.loads(r.read())["predictions"]
    finally:
        proxy.shutdown()
        backend.server.shutdown()
    assert [p.get("answer") for p in predictions] == ["sea", "uncertain", None]
    assert predictions[1]["predicted_class"] == "sea" and predictions[1]["predicted_probability"] == 0.4
    assert [p.get("answer") for p in relaxed] == ["sea", "sea", None]
    records = prediction_log.read_records([str(tmp_path / "logs")]).records
    assert len(records) == 6 and {r[prediction_log.MODEL_VERSION] for r in records} == {"42"}
    first, second, bad = records[:3]
    assert (first[prediction_log.WIDTH], first[prediction_log.HEIGHT], first[prediction_log.UNCERTAIN]) == (40, 30, False)
    assert "content_brightness" not in first  # no TensorFlow in the container; no bytes kept for it
    assert second[prediction_log.UNCERTAIN] and "content_brightness" in second  # computed from the kept bytes
    assert bad[prediction_log.ERROR].startswith("undecodable") and prediction_log.IMAGE_B64 not in bad


def test_logging_overhead_bench_runs(world, capsys):
    from bench import logging_overhead

    assert logging_overhead.main(["--model", world["serving"], "--images", world["eval"], "--requests", "4",
                                  "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "command: " in out and "-m bench.logging_overhead --model" in out and "machine: " in out
    assert "| predict + log |" in out and "ratio (with / without logging): " in out


def test_tf_serving_prediction_logs_are_read_as_records(tmp_path):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    log = prediction_log_pb2.PredictionLog()
    request, response = log.predict_log.request, log.predict_log.response
    request.model_spec.version.value = 5
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([jpeg_bytes(24, 16, seed=3), b"junk"]))
    response.outputs["predicted_class"].CopyFrom(tf.make_tensor_proto([b"forest", b""]))
    response.outputs["predicted_probability"].CopyFrom(tf.make_tensor_proto([0.25, 0.0], tf.float32))
    response.outputs["error"].CopyFrom(tf.make_tensor_proto([b"", b"undecodable: junk"]))
    with tf.io.TFRecordWriter(str(tmp_path / "requests.tfrecord")) as writer:
        writer.write(log.SerializeToString())
    (tmp_path / "other.tfrecord").write_bytes(b"not a tfrecord file at all")
    read = prediction_log.read_records([str(tmp_path)])
    assert [r[prediction_log.PREDICTED_CLASS] for r in read.records] == ["forest", ""]
    good = read.records[0]
    assert (good[prediction_log.MODEL_VERSION], good[prediction_log.WIDTH], good[prediction_log.HEIGHT]) == ("5", 24, 16)
    assert good[prediction_log.PROBABILITY] == pytest.approx(0.25) and "content_saturation" in good
    assert read.records[1][prediction_log.ERROR] == "undecodable: junk"
    assert [os.path.basename(where) for where, _ in read.skipped] == ["other.tfrecord"]  # counted, not fatal
