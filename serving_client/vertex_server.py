"""Entrypoint of the Vertex AI serving image (vertex.Dockerfile): TF Serving behind Vertex's routes.

Vertex AI has no prebuilt TensorFlow 2.16 prediction container (its newest is tf2-cpu.2-15) and
the model is exported by TF 2.16, so the image is the official tensorflow/serving of the same
version plus this program. TFX's Vertex Pusher uploads the model without routes or ports, so
Vertex sends health checks to AIP_HEALTH_ROUTE and requests to AIP_PREDICT_ROUTE on
AIP_HTTP_PORT, its defaults; TF Serving answers only /v1/models/... and wants
<base>/<version>/saved_model.pb. So this program:
  1. copies the SavedModel at AIP_STORAGE_URI to /models/<MODEL_NAME>/1 (warm-up file included);
  2. starts tensorflow_model_server (REST API on port 8501, gRPC on 8500, inside the container);
  3. serves AIP_HTTP_PORT: AIP_HEALTH_ROUTE answers 200 once TF Serving reports the version
     AVAILABLE (after it replayed the warm-up requests), 503 before; AIP_PREDICT_ROUTE sends the
     body, without Vertex's "parameters", to TF Serving's :predict and returns its status and answer.

Abstention and the prediction log (docs/monitoring.md), both off by default:
  UNCERTAIN_BELOW=p (or "parameters": {"uncertain_below": p} in a request): each prediction gets
     "answer": its predicted_class, or "uncertain" when its predicted_probability is below p;
  PREDICTION_LOG_DIR=dir: a record per instance (common/prediction_log.py), sampled by
     PREDICTION_LOG_SAMPLE, rotated at PREDICTION_LOG_MAX_BYTES, PREDICTION_LOG_MAX_FILES kept;
     PREDICTION_LOG_IMAGE_BYTES=none|uncertain|all keeps the image itself. The image has no
     TensorFlow, so a record holds size, format and header dimensions, not the content statistics:
     the monitor computes those from kept bytes, or read Vertex AI's request-response logging.

The image runs it with its own Python 3 (Ubuntu's), without this project: standard library only,
google-cloud-storage (installed in the image) for a gs:// AIP_STORAGE_URI, and, for the log, the
standard-library modules common/prediction_log.py, trainer_module/names.py and image_format.py
(copied into the image beside it; imported only when PREDICTION_LOG_DIR is set).
"""
import base64
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import List, NamedTuple, Optional, Tuple

TF_SERVING_REST = "http://127.0.0.1:8501"
MODELS_DIR = "/models"
MODEL_VERSION = "1"


class Settings(NamedTuple):
    """What Vertex AI tells the container (AIP_* variables), with defaults for a local run."""
    port: int
    health_route: str
    predict_route: str
    storage_uri: str
    model_name: str
    backend: str = TF_SERVING_REST
    uncertain_below: float = 0.0  # abstention threshold (0: off)
    log_dir: str = ""  # the prediction log's folder ("": no log)
    log_sample: float = 1.0
    log_max_bytes: int = 64 * 1024 * 1024
    log_max_files: int = 10
    log_image_bytes: str = "none"
    model_version: str = ""  # what the log calls the model: Vertex's deployed model id


def settings_from_env(environ=os.environ) -> Settings:
    """Settings from Vertex's AIP_* variables and the image's MODEL_NAME."""
    return Settings(port=int(environ.get("AIP_HTTP_PORT", "8080")),
                    health_route=environ.get("AIP_HEALTH_ROUTE", "/health"),
                    predict_route=environ.get("AIP_PREDICT_ROUTE", "/predict"),
                    storage_uri=environ.get("AIP_STORAGE_URI", ""),
                    model_name=environ.get("MODEL_NAME", "intel-scenes"),
                    uncertain_below=float(environ.get("UNCERTAIN_BELOW", "0")),
                    log_dir=environ.get("PREDICTION_LOG_DIR", ""),
                    log_sample=float(environ.get("PREDICTION_LOG_SAMPLE", "1")),
                    log_max_bytes=int(environ.get("PREDICTION_LOG_MAX_BYTES", str(64 * 1024 * 1024))),
                    log_max_files=int(environ.get("PREDICTION_LOG_MAX_FILES", "10")),
                    log_image_bytes=environ.get("PREDICTION_LOG_IMAGE_BYTES", "none"),
                    model_version=environ.get("AIP_DEPLOYED_MODEL_ID", ""))


def copy_model(storage_uri: str, version_dir: str) -> None:
    """Copies the SavedModel folder at storage_uri (gs:// or local) into version_dir."""
    if not storage_uri.startswith("gs://"):
        shutil.copytree(storage_uri, version_dir)
        return
    from google.cloud import storage  # only in the image; a local copy does not need it

    bucket_name, _, prefix = storage_uri[len("gs://"):].partition("/")
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    for blob in storage.Client().list_blobs(bucket_name, prefix=prefix):
        relative = blob.name[len(prefix):]
        if relative and not relative.endswith("/"):  # "folder/" placeholders hold nothing
            target = os.path.join(version_dir, relative)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            blob.download_to_filename(target)


def _backend_call(request: urllib.request.Request) -> Tuple[int, bytes]:
    """(HTTP status, body) of a TF Serving call; an error status is an answer, not an exception."""
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def model_available(settings: Settings) -> bool:
    """Whether TF Serving reports a version of the model AVAILABLE (not while it loads or warms up)."""
    try:
        status, body = _backend_call(urllib.request.Request(
            f"{settings.backend}/v1/models/{settings.model_name}"))
    except OSError:  # not listening yet
        return False
    if status != 200:
        return False
    versions = json.loads(body).get("model_version_status", [])
    return any(v.get("state") == "AVAILABLE" for v in versions)


def forward_predict(settings: Settings, body: bytes) -> Tuple[int, bytes]:
    """Sends a Vertex predict body to TF Serving's :predict; (status, TF Serving's answer).

    Vertex's body is TF Serving's plus an optional "parameters" object, which TF Serving does not
    take: it is dropped. A body that is not a JSON object goes as it is, for TF Serving to refuse.
    """
    try:
        request = json.loads(body)
    except ValueError:
        request = None
    if isinstance(request, dict) and "parameters" in request:
        body = json.dumps({k: v for k, v in request.items() if k != "parameters"}).encode()
    return _backend_call(urllib.request.Request(
        f"{settings.backend}/v1/models/{settings.model_name}:predict", data=body,
        headers={"Content-Type": "application/json"}, method="POST"))


def _instances(request) -> List[Optional[bytes]]:
    """The image bytes of each instance of a predict body (None where an instance has none)."""
    found = []
    for instance in request.get("instances", []) if isinstance(request, dict) else []:
        encoded = instance.get("image_bytes", instance) if isinstance(instance, dict) else instance
        try:
            found.append(base64.b64decode(encoded["b64"] if isinstance(encoded, dict) else encoded))
        except (KeyError, TypeError, ValueError):
            found.append(None)
    return found


def answer(settings: Settings, body: bytes, status: int, response: bytes, logger=None) -> bytes:
    """TF Serving's answer, with "answer" on each prediction when abstention is on (the request's
    parameters.uncertain_below, else settings.uncertain_below), and each instance logged."""
    try:
        request = json.loads(body)
    except ValueError:
        request = None
    parameters = request.get("parameters") if isinstance(request, dict) else None
    threshold = settings.uncertain_below
    if isinstance(parameters, dict) and isinstance(parameters.get("uncertain_below"), (int, float)):
        threshold = float(parameters["uncertain_below"])
    if logger is None and threshold <= 0:
        return response
    try:
        decoded = json.loads(response)
    except ValueError:
        decoded = None
    predictions = decoded.get("predictions") if status == 200 and isinstance(decoded, dict) else None
    images = _instances(request)
    if logger is not None:
        failure = "" if predictions is not None else f"request failed: HTTP {status}: {response[:200]!r}"
        for i, data in enumerate(images):
            p = predictions[i] if predictions is not None and i < len(predictions) else {}
            p = p if isinstance(p, dict) else {}
            logger.log(data, p.get("predicted_class", ""), p.get("predicted_probability"),
                       failure or p.get("error", "") or ("" if data is not None else "no image in the instance"),
                       threshold=threshold)
    if threshold <= 0 or not isinstance(predictions, list):
        return response
    for p in predictions:
        if isinstance(p, dict) and p.get("predicted_class"):
            probability = p.get("predicted_probability")
            uncertain = isinstance(probability, (int, float)) and probability < threshold
            p["answer"] = "uncertain" if uncertain else p["predicted_class"]
    return json.dumps(decoded).encode()


def request_logger(settings: Settings):
    """The prediction log the settings ask for (None without PREDICTION_LOG_DIR)."""
    if not settings.log_dir:
        return None
    from common import prediction_log  # copied into the image beside this file (vertex.Dockerfile)

    return prediction_log.RequestLogger(
        prediction_log.LogSettings(settings.log_dir, settings.log_sample, settings.log_max_bytes,
                                   settings.log_max_files, settings.log_image_bytes),
        prediction_log.SOURCE_VERTEX, settings.model_version or settings.storage_uri or settings.model_name,
        settings.uncertain_below, content=False)


def make_server(settings: Settings, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """The HTTP server Vertex calls: settings.health_route and settings.predict_route."""
    logger = request_logger(settings)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            if self.path != settings.health_route:
                return self._answer(404, b'{"error": "no such route"}')
            ready = model_available(settings)
            self._answer(200 if ready else 503, b"{}" if ready else b'{"error": "model not available yet"}')

        def do_POST(self):  # noqa: N802
            if self.path != settings.predict_route:
                return self._answer(404, b'{"error": "no such route"}')
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status, response = forward_predict(settings, body)
            self._answer(status, answer(settings, body, status, response, logger))

        def _answer(self, status: int, body: bytes):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return ThreadingHTTPServer((host, settings.port), Handler)


def main() -> int:
    """Copies the model, starts TF Serving, then serves Vertex's routes until TF Serving exits."""
    settings = settings_from_env()
    if not settings.storage_uri:
        print("error: AIP_STORAGE_URI is not set: deploy the model with an artifact URI", file=sys.stderr)
        return 2
    base_path = os.path.join(MODELS_DIR, settings.model_name)
    copy_model(settings.storage_uri, os.path.join(base_path, MODEL_VERSION))
    server = subprocess.Popen(["tensorflow_model_server", "--port=8500", "--rest_api_port=8501",
                               f"--model_name={settings.model_name}", f"--model_base_path={base_path}"])
    threading.Thread(target=make_server(settings).serve_forever, daemon=True).start()
    return server.wait()


if __name__ == "__main__":
    sys.exit(main())
