"""The prediction logs: one JSON record per classified request, what the monitor and the labelling
queue read (monitoring/), written by predict (serving_client/predict.py) and the Vertex serving
container (serving_client/vertex_server.py).

A record (JSON object, one per line, UTF-8):

    time            ISO 8601, UTC ("2026-12-07T12:00:00.123456+00:00")
    source          predict, tflite, vertex, vertex_request_response, tf_serving_prediction_log
    model_version   the serving dir's version (or the model's path when it has none)
    path            the local file classified (predict only): a reference, not the bytes
    bytes, format   the request's size in bytes and its format from the magic bytes
    height, width   from the image header
    content_*       common/image_content.STATISTICS of the decoded image
    predicted_class, probability   the top class and its calibrated probability (the model's output)
    uncertain       true when probability < the abstention threshold (the class is still given)
    error           why the request failed ("" when classified)
    image_b64       the encoded image, only when the image-bytes knob asks for it (off by default)

Bounded and crash-safe: records go to <folder>/predictions.jsonl; when a record would take it past
`max_bytes` it is renamed predictions.<first time>.<n>.jsonl and a new file starts; the oldest
rotated files beyond `max_files` are deleted. Each record is one os.write() of a whole line on a
file opened O_APPEND, so a process killed between records leaves only complete records (a record
torn by a power cut is the last line of its file; readers skip a line that is not a JSON object
and count it).

The same records are read from two other formats (read_records): Vertex AI's request-response
logging (BigQuery rows exported as newline-delimited JSON: request_payload, response_payload,
logging_time) and TF Serving's PredictionLog TFRecords (what --logging_config's collectors and the
warm-up file hold). Their requests carry the image, so the content statistics are computed here.

Written by hand: TF Serving logs nothing without a log collector (none ships with the open-source
server) and Vertex AI's model monitoring covers tabular models only; no TFX component writes or
reads per-request logs of an image model.
"""
import base64
import dataclasses
import datetime
import glob
import json
import os
import random
import threading
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from trainer_module import image_format, names

# The record's keys (the content statistics keep image_content's names).
TIME = "time"
SOURCE = "source"
MODEL_VERSION = "model_version"
PATH = "path"
BYTES = "bytes"
FORMAT = "format"
HEIGHT = "height"
WIDTH = "width"
PREDICTED_CLASS = "predicted_class"
PROBABILITY = "probability"
UNCERTAIN = "uncertain"
ERROR = "error"
IMAGE_B64 = "image_b64"
# The content statistics keep common/image_content.STATISTICS' names. image_content (TensorFlow) is
# imported where an image is described, so that writing and reading records loads no TensorFlow.

# Sources.
SOURCE_PREDICT = "predict"
SOURCE_TFLITE = "tflite"
SOURCE_VERTEX = "vertex"
SOURCE_VERTEX_LOGGING = "vertex_request_response"
SOURCE_TF_SERVING_LOG = "tf_serving_prediction_log"

# The answer's word for an abstention (predict's CSV column, the serving answer's field).
UNCERTAIN_ANSWER = "uncertain"

LOG_FILE = "predictions.jsonl"
LOG_GLOB = "predictions*.jsonl"
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_FILES = 10

# What the image-bytes knob keeps in a record (never the bytes unless asked).
KEEP_NONE, KEEP_UNCERTAIN, KEEP_ALL = "none", "uncertain", "all"
KEEP_CHOICES = (KEEP_NONE, KEEP_UNCERTAIN, KEEP_ALL)


def now() -> str:
    """The current time as a record writes it."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def parse_time(text: str) -> datetime.datetime:
    """A record's time (or a --since/--until value: ISO 8601, UTC when no zone is given)."""
    value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)


def describe_image(data: bytes, content: bool = True) -> Dict:
    """What a record keeps of an image without its bytes: size, format, header dimensions and the
    content statistics (absent when it does not decode: the model's error says why; and with
    content=False, where TensorFlow is not at hand: the serving container)."""
    described: Dict = {BYTES: len(data), FORMAT: image_format.sniff_format(data) or ""}
    dimensions = image_format.image_dimensions(data)
    if dimensions:
        described[WIDTH], described[HEIGHT] = dimensions
    if not content:
        return described
    from common import image_content

    try:
        pixels = image_content.decode(data)
    except Exception:  # noqa: BLE001 - TensorFlow's decode errors; the model reports them
        return described
    described[HEIGHT], described[WIDTH] = int(pixels.shape[0]), int(pixels.shape[1])
    described.update(image_content.statistics(pixels))
    return described


def record(source: str, model_version: str, data: Optional[bytes], predicted_class: str = "",
           probability: Optional[float] = None, error: str = "", threshold: float = 0.0,
           path: str = "", keep_bytes: str = KEEP_NONE, time: Optional[str] = None, content: bool = True) -> Dict:
    """One record; `data` None when the request never reached the model (unreadable, over budget)."""
    rec: Dict = {TIME: time or now(), SOURCE: source, MODEL_VERSION: model_version}
    if path:
        rec[PATH] = path
    if data is not None:
        rec.update(describe_image(data, content))
    uncertain = bool(not error and probability is not None and probability < threshold)
    rec.update({PREDICTED_CLASS: predicted_class, PROBABILITY: probability, UNCERTAIN: uncertain,
                ERROR: error})
    if data is not None and (keep_bytes == KEEP_ALL or (keep_bytes == KEEP_UNCERTAIN and uncertain)):
        rec[IMAGE_B64] = base64.b64encode(data).decode("ascii")
    return rec


@dataclasses.dataclass
class LogSettings:
    """The logging knobs: where, what share of requests, how much disk, and the image bytes."""
    folder: str
    sample: float = 1.0  # share of requests logged, 0..1
    max_bytes: int = DEFAULT_MAX_BYTES  # per file, before it is rotated
    max_files: int = DEFAULT_MAX_FILES  # rotated files kept beside the current one
    keep_bytes: str = KEEP_NONE  # KEEP_CHOICES
    seed: Optional[int] = None  # of the sampling (tests)

    def check(self) -> Optional[Tuple[str, str]]:
        """(knob, what is wrong with its value) for the first bad knob (None when they are fine);
        knobs: sample, max-bytes, max-files, image-bytes."""
        if not 0.0 <= self.sample <= 1.0:
            return "sample", f"{self.sample}: must be between 0 and 1"
        if self.max_bytes < 1024:
            return "max-bytes", f"{self.max_bytes}: must be at least 1024"
        if self.max_files < 0:
            return "max-files", f"{self.max_files}: must be >= 0"
        if self.keep_bytes not in KEEP_CHOICES:
            return "image-bytes", f"{self.keep_bytes!r}: one of {', '.join(KEEP_CHOICES)}"
        return None


class PredictionLogWriter:
    """Appends records to <folder>/predictions.jsonl, rotating at max_bytes (see the module
    docstring). Thread-safe (the serving container answers requests on several threads)."""

    def __init__(self, settings: LogSettings):
        problem = settings.check()
        if problem:
            raise ValueError("log {}={}".format(*problem))
        self.settings = settings
        os.makedirs(settings.folder, exist_ok=True)
        self.path = os.path.join(settings.folder, LOG_FILE)
        self._random = random.Random(settings.seed)
        self._lock = threading.Lock()
        self._fd = self._open()
        self.written = 0

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def sampled(self) -> bool:
        """Whether the next request is logged (the sample knob)."""
        with self._lock:
            return self._random.random() < self.settings.sample

    def write(self, rec: Dict) -> None:
        """Appends one record as one line in one write()."""
        line = (json.dumps(rec, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")
        with self._lock:
            if os.fstat(self._fd).st_size + len(line) > self.settings.max_bytes and os.fstat(self._fd).st_size:
                self._rotate()
            os.write(self._fd, line)
            self.written += 1

    def _rotate(self) -> None:
        os.close(self._fd)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        n = len(glob.glob(os.path.join(self.settings.folder, LOG_GLOB)))
        os.replace(self.path, os.path.join(self.settings.folder, f"predictions.{stamp}.{n:06d}.jsonl"))
        rotated = sorted(p for p in glob.glob(os.path.join(self.settings.folder, LOG_GLOB)) if p != self.path)
        for old in rotated[:max(0, len(rotated) - self.settings.max_files)]:
            os.remove(old)
        self._fd = self._open()

    def close(self) -> None:
        with self._lock:
            os.close(self._fd)


class RequestLogger:
    """What a client calls per request: samples it (the sample knob) and writes its record."""

    def __init__(self, settings: LogSettings, source: str, model_version: str, threshold: float = 0.0,
                 content: bool = True):
        self.writer = PredictionLogWriter(settings)
        self.source, self.model_version, self.threshold = source, model_version, threshold
        self.content = content  # False: no content statistics (no TensorFlow; read_records adds them
        # from the kept bytes)

    def log(self, data: Optional[bytes], predicted_class: str, probability: Optional[float], error: str,
            path: str = "", threshold: Optional[float] = None) -> None:
        if self.writer.sampled():
            self.writer.write(record(self.source, self.model_version, data, predicted_class, probability, error,
                                     self.threshold if threshold is None else threshold, path,
                                     self.writer.settings.keep_bytes, content=self.content))

    def close(self) -> None:
        self.writer.close()


# ---------------------------------------------------------------- reading

@dataclasses.dataclass
class ReadResult:
    """The records read (in time order) and what could not be read: (where, why) per line or file."""
    records: List[Dict]
    skipped: List[Tuple[str, str]]


def log_files(paths: Sequence[str]) -> List[str]:
    """Files named, and under each folder the prediction logs (rotated ones first) and any other
    .jsonl/.json (Vertex exports) or .tfrecord/.gz (TF Serving logs)."""
    found = []
    for path in paths:
        if os.path.isdir(path):
            found += sorted(p for p in glob.glob(os.path.join(path, "**", "*"), recursive=True)
                            if os.path.isfile(p) and p.endswith((".jsonl", ".json", ".tfrecord", ".gz"))
                            and os.path.basename(p) != LOG_FILE)
            current = os.path.join(path, LOG_FILE)
            if os.path.isfile(current):
                found.append(current)
        else:
            found.append(path)
    return found


def _has_content(row: Dict) -> bool:
    from common import image_content

    return image_content.BRIGHTNESS in row


def _vertex_rows(row: Dict) -> Iterator[Dict]:
    """Records of one row of Vertex AI's request-response logging (its BigQuery table)."""
    request = json.loads(row["request_payload"][0] if isinstance(row["request_payload"], list)
                         else row["request_payload"])
    response = json.loads(row["response_payload"][0] if isinstance(row["response_payload"], list)
                          else row["response_payload"]) if row.get("response_payload") else {}
    instances = request.get("instances", [])
    predictions = response.get("predictions", [None] * len(instances))
    version = str(row.get("deployed_model_id", ""))
    time = row.get("logging_time") or now()
    for instance, prediction in zip(instances, predictions):
        encoded = instance.get(names.SERVING_BYTES_INPUT, instance) if isinstance(instance, dict) else instance
        data = base64.b64decode(encoded["b64"] if isinstance(encoded, dict) else encoded)
        prediction = prediction or {}
        error = prediction.get(names.ERROR_OUTPUT, "") if prediction else "no prediction in the response"
        yield record(SOURCE_VERTEX_LOGGING, version, data, prediction.get(names.PREDICTED_CLASS_OUTPUT, ""),
                     prediction.get(names.PREDICTED_PROBABILITY_OUTPUT), error, time=str(time))


def _json_lines(path: str, result: ReadResult) -> None:
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError("not a JSON object")
                if "request_payload" in row:
                    result.records.extend(_vertex_rows(row))
                else:
                    parse_time(row[TIME])
                    if row.get(IMAGE_B64) and not row.get(ERROR) and not _has_content(row):
                        row.update(describe_image(base64.b64decode(row[IMAGE_B64])))  # the container's
                    result.records.append(row)
            except (ValueError, KeyError, TypeError) as e:
                result.skipped.append((f"{path}:{number}", f"not a record ({type(e).__name__}: {e})"[:200]))


def _prediction_logs(path: str, result: ReadResult) -> None:
    """TF Serving's PredictionLog TFRecords (predict_log: request inputs image_bytes, response
    outputs predicted_class/predicted_probability/error)."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    compression = "GZIP" if path.endswith(".gz") else ""
    mtime = datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.timezone.utc).isoformat()
    try:
        for number, raw in enumerate(tf.data.TFRecordDataset(path, compression).as_numpy_iterator(), 1):
            log = prediction_log_pb2.PredictionLog.FromString(raw)
            if not log.HasField("predict_log"):
                result.skipped.append((f"{path}:{number}", "not a predict_log"))
                continue
            request, response = log.predict_log.request, log.predict_log.response
            version = str(request.model_spec.version.value or log.log_metadata.model_spec.version.value or "")
            images = list(tf.make_ndarray(request.inputs[names.SERVING_BYTES_INPUT]).reshape(-1))
            outputs = response.outputs

            def column(key, convert, empty):  # a response tensor (values or packed tensor_content)
                if key not in outputs:
                    return [empty] * len(images)
                return [convert(v) for v in tf.make_ndarray(outputs[key]).reshape(-1)]

            classes = column(names.PREDICTED_CLASS_OUTPUT, bytes.decode, "")
            probabilities = column(names.PREDICTED_PROBABILITY_OUTPUT, float, None)
            errors = column(names.ERROR_OUTPUT, bytes.decode, "")
            for data, cls, prob, err in zip(images, classes, probabilities, errors):
                result.records.append(record(SOURCE_TF_SERVING_LOG, version, data, cls, prob, err, time=mtime))
    except tf.errors.OpError as e:
        result.skipped.append((path, f"not a TFRecord file of PredictionLogs ({e.message[:120]})"))


def read_records(paths: Sequence[str], since: Optional[datetime.datetime] = None,
                 until: Optional[datetime.datetime] = None) -> ReadResult:
    """Every record in the files and folders `paths` whose time is in [since, until), in time order."""
    result = ReadResult([], [])
    for path in log_files(paths):
        if not os.path.isfile(path):
            result.skipped.append((path, "no such file"))
        elif path.endswith((".tfrecord", ".gz")):
            _prediction_logs(path, result)
        else:
            _json_lines(path, result)
    kept = []
    for rec in result.records:
        when = parse_time(rec[TIME])
        if (since is None or when >= since) and (until is None or when < until):
            kept.append(rec)
    kept.sort(key=lambda r: parse_time(r[TIME]))
    result.records = kept
    return result


def image_of(rec: Dict) -> Optional[bytes]:
    """The request's image: the bytes kept in the record, else the local file it names (None when
    neither is there)."""
    if rec.get(IMAGE_B64):
        return base64.b64decode(rec[IMAGE_B64])
    path = rec.get(PATH)
    if path and os.path.isfile(path):
        with open(path, "rb") as f:
            return f.read()
    return None


def classified(records: Iterable[Dict]) -> List[Dict]:
    """The records of requests the model answered (no error)."""
    return [r for r in records if not r.get(ERROR) and r.get(PREDICTED_CLASS)]
