r"""Classify image files with the pushed SavedModel, as a TF Serving client would see it, or with
an exported TFLite model, as an app would.

    python -m serving_client.predict --model outputs/serving_model/intel-scenes photos/ extra.jpg \
        [--out predictions.csv] [--top-k 3] [--batch-size 32] [--max-image-pixels N] [--debug]
    python -m serving_client.predict --model <model>/Format-TFLite/model_int8.tflite photos/

--model is a serving dir (the highest numeric version is used), one version dir, or a Trainer
model artifact; or a .tflite file written by trainer_module/tflite_export.py, whose metadata holds
the labels and the input spec. A TFLite model runs in this process
(common/tflite_classifier.py) on the pixels the SavedModel's signature gives its network
(the same decoding, resize and centre crop), and a file it cannot decode gets the signature's words.

Folders are searched recursively for .jpg/.jpeg/.png/.gif/.bmp, following links but never into a
folder already searched (a link loop such as photos/loop -> ..), and each real file is listed
once; files named on the command line are read whatever their extension. The CSV has one row per
file:
  path, predicted_class, probability, top_k ("class:probability" joined by ";"), error, answer
answer is the predicted class, or "uncertain" when its probability is below --uncertain-below
(abstention; off by default), "" for a file that failed.

--log-dir appends a record per request to the prediction log (common/prediction_log.py: time,
model version, the file's path, size, format, content statistics, class, probability, error;
sampled by --log-sample, rotated at --log-max-bytes; the image itself only with --log-image-bytes),
which `python -m monitoring` and its labelling queue read (docs/monitoring.md).
A file that cannot be read or decoded gets an error and no prediction (the model's own reason,
such as `undecodable: corrupt or truncated JPEG data`, docs/serving.md); the others are still
classified. A file whose header declares more than --max-image-pixels (width x height; default:
the pipeline's max_image_pixels) gets `too_many_pixels: WxH = N pixels > max_image_pixels = B`
and is never sent to the model (a decompression bomb would exhaust its memory).

--out is checked first (its folder exists and is writable; it is not a folder), then the inputs,
then --model, so a mistake costs no model loading. Such a mistake is one line on stderr,
`error: ...`; --debug raises it with its traceback instead.

Exit status (run_control.exit_codes):
  0  every file was classified
  1  data: at least one file could not be classified (its row says why), or none could
  2  usage: a bad flag, an --out that cannot be written, a --model that is not a SavedModel with
     the serving signature (nor a .tflite with the labels and input spec in its metadata), or no
     input found
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow loads

if __name__ == "__main__":  # the project's Python (set up if missing), and a quiet start
    from run_control.environment import ensure_project_python
    from run_control.startup import quiet_startup

    ensure_project_python(__spec__.name)
    quiet_startup()

import argparse  # noqa: E402
import csv  # noqa: E402
import dataclasses  # noqa: E402
import sys  # noqa: E402
from typing import Dict, Iterator, List, Optional, Sequence, Tuple  # noqa: E402

import tensorflow as tf  # noqa: E402

from common import file_walk, pipeline_names, prediction_log  # noqa: E402
from run_control import exit_codes, startup  # noqa: E402
from run_control.exit_codes import UsageError  # noqa: E402
from trainer_module import image_format, missing_piece, names  # noqa: E402

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")  # what a folder is searched for
CSV_FIELDS = ("path", "predicted_class", "probability", "top_k", "error", "answer")
PARTIAL_SUFFIX = ".partial"  # <out>.partial: the rows so far, until the last one is written


@dataclasses.dataclass
class Prediction:
    """One file's result: its top class and top-k (class, probability), or why it failed."""
    path: str
    predicted_class: str = ""
    probability: Optional[float] = None
    top_k: Tuple[Tuple[str, float], ...] = ()
    error: str = ""
    uncertain: bool = False  # probability below the abstention threshold (--uncertain-below)

    @property
    def answer(self) -> str:
        """What the caller is told: the class, or "uncertain" below the threshold ("" on error)."""
        if self.error:
            return ""
        return prediction_log.UNCERTAIN_ANSWER if self.uncertain else self.predicted_class


# ---------------------------------------------------------------- model

def resolve_model_dir(path: str) -> str:
    """The SavedModel dir: `path` itself, its Format-Serving, or its highest numeric version.

    The Pusher (and TF Serving) lay models out as <serving dir>/<version>/saved_model.pb.
    Raises FileNotFoundError naming the path and what is expected there.
    """
    if tf.io.gfile.exists(os.path.join(path, pipeline_names.SAVED_MODEL_FILE)):
        return path
    if tf.io.gfile.exists(os.path.join(path, pipeline_names.TRAINER_SERVING_SUBDIR, pipeline_names.SAVED_MODEL_FILE)):
        return os.path.join(path, pipeline_names.TRAINER_SERVING_SUBDIR)
    expected = (f"expected {pipeline_names.SAVED_MODEL_FILE}, <version>/{pipeline_names.SAVED_MODEL_FILE} or "
                f"{pipeline_names.TRAINER_SERVING_SUBDIR}/{pipeline_names.SAVED_MODEL_FILE} in it")
    if not tf.io.gfile.isdir(path):
        kind = "is a file, not a folder" if tf.io.gfile.exists(path) else "does not exist"
        raise FileNotFoundError(f"no model at {path}: it {kind}; {expected}")
    versions = [name.rstrip("/") for name in tf.io.gfile.listdir(path)]
    versions = sorted((int(v) for v in versions if v.isdigit()
                       and tf.io.gfile.exists(os.path.join(path, v, pipeline_names.SAVED_MODEL_FILE))), reverse=True)
    if not versions:
        raise FileNotFoundError(f"no SavedModel in {path}: {expected} (nothing pushed yet?)")
    return os.path.join(path, str(versions[0]))


def load_signature(model_dir: str):
    """(loaded SavedModel, its encoded-bytes signature); keep the first alive while using the second."""
    loaded = tf.saved_model.load(resolve_model_dir(model_dir))
    signature = loaded.signatures.get(names.SERVING_BYTES_SIGNATURE)
    if signature is None:
        raise ValueError(f"{model_dir} has no {names.SERVING_BYTES_SIGNATURE!r} signature: "
                         f"{list(loaded.signatures)}")
    inputs = list(signature.structured_input_signature[1])
    if inputs != [names.SERVING_BYTES_INPUT]:
        raise ValueError(f"{model_dir}: {names.SERVING_BYTES_SIGNATURE!r} takes {inputs}, "
                         f"not [{names.SERVING_BYTES_INPUT!r}]")
    if names.ERROR_OUTPUT not in signature.structured_outputs:
        raise ValueError(f"{model_dir}: {names.SERVING_BYTES_SIGNATURE!r} has no {names.ERROR_OUTPUT!r} output "
                         "(per-image errors): it was exported by an older version; run the pipeline again")
    return loaded, signature


TFLITE_EXTENSION = ".tflite"


def is_tflite(path: str) -> bool:
    """Whether --model names a TFLite file (by its extension) rather than a SavedModel."""
    return path.lower().endswith(TFLITE_EXTENSION)


def tflite_signature(classifier, max_pixels: int):
    """A TFLite model behind serving_default's interface (image_bytes in; probabilities, class
    names and per-image errors out), so classify treats both kinds of model alike."""
    def signature(**inputs):
        encoded = inputs[names.SERVING_BYTES_INPUT].numpy().tolist()
        probabilities, errors = classifier.classify_encoded(encoded, max_pixels)
        return {names.PROBABILITIES_OUTPUT: tf.constant(probabilities),
                names.CLASS_NAMES_OUTPUT: tf.constant([list(classifier.labels)] * len(encoded)),
                names.ERROR_OUTPUT: tf.constant(errors, tf.string)}
    return signature


def _tflite():
    """The TFLite runtime (common/tflite_classifier.py), loaded when a .tflite model is asked for."""
    return missing_piece.import_for("TFLite models", "common.tflite_classifier")


def _load_tflite(path: str, max_pixels: int):
    """(classifier, tflite_signature), with what is wrong with the file as a one-line UsageError."""
    if not tf.io.gfile.exists(path):
        raise UsageError(f"--model: no model at {path}: it does not exist")
    print(f"[predict] model {path}", file=sys.stderr, flush=True)
    try:
        classifier = _tflite().TFLiteClassifier(path)
    except ValueError as e:  # not a TFLite model, or one without the labels and input spec
        raise UsageError(f"--model: {' '.join(str(e).split())}") from e
    except (OSError, tf.errors.OpError) as e:  # unreadable
        raise UsageError(f"--model: cannot read {path}: {' '.join(str(e).split())}") from e
    return classifier, tflite_signature(classifier, max_pixels)


def _load_model(path: str, max_pixels: int = image_format.DEFAULT_MAX_IMAGE_PIXELS):
    """load_signature (or _load_tflite for a .tflite), with what is wrong with the --model path
    as a one-line UsageError."""
    if is_tflite(path):
        return _load_tflite(path, max_pixels)
    try:
        model_dir = resolve_model_dir(path)
    except FileNotFoundError as e:
        raise UsageError(f"--model: {e}") from e
    print(f"[predict] model {model_dir}", file=sys.stderr, flush=True)
    try:
        return load_signature(model_dir)
    except ValueError as e:  # a SavedModel without the encoded-bytes signature
        raise UsageError(f"--model: {e}") from e
    except (OSError, tf.errors.OpError) as e:  # a broken SavedModel
        reason = " ".join(str(e).split())
        raise UsageError(f"--model: cannot load the SavedModel in {model_dir}: {reason}") from e


# ---------------------------------------------------------------- files

def check_out_path(path: str) -> None:
    """Raises UsageError unless `path` can be written as the CSV: not a folder, in a writable
    folder (local paths; a remote URI is checked when written)."""
    if "://" in path:
        return
    if os.path.isdir(path):
        raise UsageError(f"--out {path} is a folder; pass the CSV file to write")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"--out {path}: folder {folder} does not exist; create it or pass another path")
    if not os.access(folder, os.W_OK | os.X_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise UsageError(f"--out {path} is not writable; pass a path you can write")


@dataclasses.dataclass
class Inputs:
    """What the command line names: image files to classify, and entries that get an error row
    without being opened (a FIFO, a device, a name that is not valid UTF-8), each (path, why)."""
    files: List[str]
    refused: List[Tuple[str, str]]


def list_images(paths: Sequence[str]) -> Inputs:
    """Named files as they are, folders searched recursively for image extensions (sorted), through
    the same walk as ingestion (common/file_walk.py): links followed but no loop entered, hidden
    folders skipped, FIFOs and devices never opened, odd names reported.

    Each real file is listed once (by device and inode: a file linked twice, or named and also in
    a named folder, keeps its first path); a missing file is kept and gets its error row later.
    """
    found, refused, seen = [], [], set()
    for path in paths:
        if tf.io.gfile.isdir(path) if file_walk.is_valid_name(path) else os.path.isdir(path):
            walk = file_walk.walk_files(path)
            candidates = sorted(f for f in walk.files if f.lower().endswith(IMAGE_EXTENSIONS))
            refused += [(p, f"{reason}: {detail}") for p, reason, detail in walk.unread
                        if reason != file_walk.SKIP_DUPLICATE and p.lower().endswith(IMAGE_EXTENSIONS)]
        else:
            problem = file_walk.regular_file_problem(path)
            if problem:
                refused.append((file_walk.display_path(path), f"{problem[0]}: {problem[1]}"))
                continue
            candidates = [path]
        for candidate in candidates:
            key = file_walk.file_key(candidate)
            if key not in seen:
                found.append(candidate)
            if key is not None:
                seen.add(key)
    return Inputs(found, refused)


def read_file(path: str) -> Tuple[Optional[bytes], str]:
    """(bytes, "") or (None, why the file cannot be read).

    Bytes are not decoded here: the serving signature decodes them and answers per image, so each
    image is decoded once.
    """
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read(), ""
    except (OSError, tf.errors.OpError) as e:
        return None, f"unreadable: {getattr(e, 'message', None) or e}"


def read_checked(path: str, max_pixels: int) -> Tuple[Optional[bytes], str]:
    """read_file, then the pixel budget from the header: (None, "too_many_pixels: ...") over it."""
    data, error = read_file(path)
    over = image_format.over_budget(data, max_pixels) if data is not None else None
    if over:
        return None, f"{image_format.TOO_MANY_PIXELS}: {over}"
    return data, error


def _predictions(paths: Sequence[str], outputs: Dict[str, tf.Tensor], top_k: int,
                 threshold: float = 0.0) -> List[Prediction]:
    probabilities = outputs[names.PROBABILITIES_OUTPUT].numpy()
    class_names = [n.decode("utf-8") for n in outputs[names.CLASS_NAMES_OUTPUT].numpy()[0]]
    errors = [e.decode("utf-8") for e in outputs[names.ERROR_OUTPUT].numpy()]  # "" when classified
    results = []
    for path, row, error in zip(paths, probabilities, errors):
        if error:
            results.append(Prediction(path, error=error))
            continue
        order = row.argsort()[::-1][:top_k]
        results.append(Prediction(path, class_names[order[0]], float(row[order[0]]),
                                  tuple((class_names[i], float(row[i])) for i in order),
                                  uncertain=float(row[order[0]]) < threshold))
    return results


def classify(signature, paths: Sequence[str], batch_size: int = 32, top_k: int = 3,
             progress=None, max_pixels: int = image_format.DEFAULT_MAX_IMAGE_PIXELS,
             threshold: float = 0.0, log: Optional[prediction_log.RequestLogger] = None) -> List[Prediction]:
    """One Prediction per path, in order (classify_batches, gathered)."""
    return [p for batch in classify_batches(signature, paths, batch_size, top_k, progress, max_pixels,
                                            threshold, log)
            for p in batch]


def classify_batches(signature, paths: Sequence[str], batch_size: int = 32, top_k: int = 3, progress=None,
                     max_pixels: int = image_format.DEFAULT_MAX_IMAGE_PIXELS, threshold: float = 0.0,
                     log: Optional[prediction_log.RequestLogger] = None) -> Iterator[List[Prediction]]:
    """The Predictions of each batch of `paths`, in order; failures carry an error instead of a class.

    signature: load_signature's; progress(done, total, failed) is called after each batch. A file
    over `max_pixels` is refused from its header and never sent to the model. A prediction whose
    probability is below `threshold` is marked uncertain (abstention; class and probability kept).
    `log`: each request (a sample of them, by its knob) is written to the prediction log.
    """
    failed = 0
    for start in range(0, len(paths), batch_size):
        results: Dict[str, Prediction] = {}
        batch, read = [], {}
        for path in paths[start:start + batch_size]:
            data, error = read_checked(path, max_pixels)
            read[path] = data
            if error:
                results[path] = Prediction(path, error=error)
            else:
                batch.append((path, data))
        if batch:
            names_, data = zip(*batch)
            outputs = signature(**{names.SERVING_BYTES_INPUT: tf.constant(data)})
            results.update((p.path, p) for p in _predictions(names_, outputs, top_k, threshold))
        done = [results[p] for p in paths[start:start + batch_size]]
        if log is not None:
            for p in done:
                log.log(read[p.path], p.predicted_class, p.probability, p.error,
                        path=os.path.abspath(p.path))
        failed += sum(1 for p in done if p.error)
        if progress:
            progress(min(start + batch_size, len(paths)), len(paths), failed)
        yield done


class CsvOut:
    """The CSV, written as the rows come: each batch is flushed to `<out>.partial` (a killed or
    failed run keeps the rows it finished there), renamed to `<out>` once every row is in."""

    def __init__(self, path: str):
        self.path, self.partial = path, path + PARTIAL_SUFFIX
        self.rows = self.uncertain = 0
        self._file = tf.io.gfile.GFile(self.partial, "w")
        self._writer = csv.writer(self._file)
        self._writer.writerow(CSV_FIELDS)

    def write(self, predictions: Sequence[Prediction]) -> None:
        for p in predictions:
            self._writer.writerow([file_walk.display_path(p.path), p.predicted_class,
                                   "" if p.probability is None else f"{p.probability:.6f}",
                                   ";".join(f"{name}:{prob:.6f}" for name, prob in p.top_k), p.error,
                                   p.answer])
        self._file.flush()
        self.rows += len(predictions)
        self.uncertain += sum(1 for p in predictions if p.uncertain)

    def close(self) -> None:
        """Every row is in: the partial file becomes --out."""
        self._file.close()
        tf.io.gfile.rename(self.partial, self.path, overwrite=True)

    def abandon(self) -> str:
        """The run stops early: the rows written so far stay in the partial file; a line saying so."""
        self._file.close()
        return f"{self.rows} finished row(s) kept in {self.partial}"


def write_csv(predictions: Sequence[Prediction], path: str) -> None:
    """One row per prediction, with the CSV_FIELDS header."""
    out = CsvOut(path)
    out.write(predictions)
    out.close()


def _print_progress(done: int, total: int, failed: int) -> None:
    print(f"[predict] {done}/{total} files ({failed} failed)", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- command line

def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The flags; argparse's own errors (an unknown flag, a missing --model) exit 2."""
    parser = exit_codes.ArgumentParser(prog="python -m serving_client.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True,
                        help="serving dir, version dir, Trainer model artifact, or .tflite file")
    parser.add_argument("paths", nargs="+", help="image files and/or folders")
    parser.add_argument("--out", default="predictions.csv", help="CSV to write (default: %(default)s)")
    parser.add_argument("--top-k", type=int, default=3, help="classes listed per file (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="files per model call (default: %(default)s)")
    parser.add_argument("--max-image-pixels", type=int, default=image_format.DEFAULT_MAX_IMAGE_PIXELS,
                        help="refuse a file whose header declares more pixels, width x height "
                             "(default: the pipeline's max_image_pixels, %(default)s)")
    parser.add_argument("--uncertain-below", type=float, default=0.0,
                        help="abstention: a top-1 probability below this answers \"uncertain\" (the class and "
                             "probability still given; default: %(default)s, never)")
    logs = parser.add_argument_group("prediction logs (docs/monitoring.md)")
    logs.add_argument("--log-dir", default="",
                      help="append a record per request to <dir>/predictions.jsonl (default: no log)")
    logs.add_argument("--log-sample", type=float, default=1.0,
                      help="share of requests logged, 0..1 (default: %(default)s)")
    logs.add_argument("--log-max-bytes", type=int, default=prediction_log.DEFAULT_MAX_BYTES,
                      help="size of a log file before it is rotated (default: %(default)s)")
    logs.add_argument("--log-max-files", type=int, default=prediction_log.DEFAULT_MAX_FILES,
                      help="rotated log files kept; older ones are deleted (default: %(default)s)")
    logs.add_argument("--log-image-bytes", choices=prediction_log.KEEP_CHOICES, default=prediction_log.KEEP_NONE,
                      help="keep the image itself in the record: none, only uncertain requests (for the "
                           "labelling queue when the files may move), or all (default: %(default)s; the "
                           "record always names the local file)")
    parser.add_argument("--debug", action="store_true", help="raise a usage error with its traceback")
    return parser.parse_args(argv)


def _check_numbers(args: argparse.Namespace) -> None:
    for flag, value in (("--top-k", args.top_k), ("--batch-size", args.batch_size),
                        ("--max-image-pixels", args.max_image_pixels)):
        if value < 1:
            raise UsageError(f"{flag}={value}: must be >= 1")
    if not 0.0 <= args.uncertain_below <= 1.0:
        raise UsageError(f"--uncertain-below={args.uncertain_below}: must be between 0 and 1")
    problem = _log_settings(args).check() if args.log_dir else None
    if problem:
        raise UsageError("--log-{}={}".format(*problem))


def _log_settings(args: argparse.Namespace) -> prediction_log.LogSettings:
    return prediction_log.LogSettings(args.log_dir, args.log_sample, args.log_max_bytes, args.log_max_files,
                                      args.log_image_bytes)


def model_version(path: str) -> str:
    """What the prediction log calls the model: the serving dir's version number, else its path."""
    if is_tflite(path):
        return os.path.abspath(path)
    model_dir = resolve_model_dir(path)
    name = os.path.basename(os.path.normpath(model_dir))
    return name if name.isdigit() else os.path.abspath(model_dir)


def _request_logger(args: argparse.Namespace) -> Optional[prediction_log.RequestLogger]:
    """The prediction log --log-dir asks for (None without it); a folder that cannot be written is a
    UsageError."""
    if not args.log_dir:
        return None
    try:
        return prediction_log.RequestLogger(
            _log_settings(args), prediction_log.SOURCE_TFLITE if is_tflite(args.model) else prediction_log.SOURCE_PREDICT,
            model_version(args.model), args.uncertain_below)
    except OSError as e:
        raise UsageError(f"--log-dir {args.log_dir}: cannot write there ({e.strerror}); pass a writable folder") from e


def _inputs(paths: Sequence[str]) -> Inputs:
    """list_images, or a UsageError when no named path exists or no image file was found."""
    missing = [p for p in paths if not os.path.lexists(p) and not tf.io.gfile.exists(p)]
    if len(missing) == len(paths):
        raise UsageError(f"no such file or folder: {', '.join(missing)}")
    found = list_images(paths)
    if not found.files and not found.refused:
        raise UsageError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {', '.join(paths)}")
    return found


def run(args: argparse.Namespace) -> int:
    """Checks --out, the inputs and --model, in that order, then classifies, writing the CSV as it
    goes; returns the exit status."""
    _check_numbers(args)
    check_out_path(args.out)
    inputs = _inputs(args.paths)
    _loaded, signature = _load_model(args.model, args.max_image_pixels)
    log = _request_logger(args)
    # The model has loaded: this command's lines go to the console, libjpeg's per-file warnings stay
    # held. (Held with them until the exit, the progress, the summary and every FAILED line were
    # dropped: a run with failed files said nothing but exit 1.)
    startup.python_stderr_to_console()
    print(f"[predict] {len(inputs.files) + len(inputs.refused)} files", file=sys.stderr, flush=True)
    out = CsvOut(args.out)
    failed: List[Prediction] = []
    try:
        refused = [Prediction(path, error=why) for path, why in inputs.refused]
        out.write(refused)
        failed += refused
        for predictions in classify_batches(signature, inputs.files, args.batch_size, args.top_k,
                                            _print_progress, args.max_image_pixels, args.uncertain_below, log):
            out.write(predictions)
            failed += [p for p in predictions if p.error]
    except BaseException as e:
        e.partial_rows = out.abandon()  # the one-line error says where the finished rows are
        raise
    finally:
        if log is not None:
            log.close()
    out.close()
    uncertain = ""
    if args.uncertain_below > 0:
        uncertain = f"; {out.uncertain} uncertain (below {args.uncertain_below:g})"
    logged = f"; logged {log.writer.written} in {args.log_dir}" if log is not None else ""
    print(f"[predict] classified {out.rows - len(failed)} of {out.rows} files{uncertain}; "
          f"{len(failed)} failed; wrote {args.out}{logged}", file=sys.stderr)
    for p in failed:
        print(f"[predict]   FAILED {file_walk.display_path(p.path)}: {p.error}", file=sys.stderr)
    return exit_codes.DATA_ERROR if failed else exit_codes.OK


def main(argv: Optional[List[str]] = None) -> int:
    """The command line (see the module docstring); returns the exit status. Whatever stops it is
    one line on stderr with its code (run_control/exit_codes.py); --debug adds the traceback."""
    args = parse_args(argv)
    exit_codes.stop_on_sigterm()  # a stopped predict keeps its finished rows, whichever signal stopped it
    try:
        return run(args)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - every failure: one line, a documented code
        return exit_codes.fail(e, args.debug)


if __name__ == "__main__":
    sys.exit(main())
