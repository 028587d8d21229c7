r"""Classify image files with the pushed SavedModel, as a TF Serving client would see it.

    python -m serving_client.predict --model outputs/serving_model/intel-scenes photos/ extra.jpg \
        [--out predictions.csv] [--top-k 3] [--batch-size 32]

--model is a serving dir (the highest numeric version is used), one version dir, or a Trainer
model artifact. Folders are searched recursively for .jpg/.jpeg/.png/.gif/.bmp; files named on the
command line are read whatever their extension. The CSV has one row per file:
  path, predicted_class, probability, top_k ("class:probability" joined by ";"), error
A file that cannot be read or decoded gets an error and no prediction; the others are still
classified. Exit status: 0 when every file was classified, 1 when some failed, 2 on bad usage.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow loads

import argparse  # noqa: E402
import csv  # noqa: E402
import dataclasses  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
from typing import Dict, List, Optional, Sequence, Tuple  # noqa: E402

import tensorflow as tf  # noqa: E402

from trainer_module import names  # noqa: E402

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")  # what a folder is searched for
CSV_FIELDS = ("path", "predicted_class", "probability", "top_k", "error")


@dataclasses.dataclass
class Prediction:
    """One file's result: its top class and top-k (class, probability), or why it failed."""
    path: str
    predicted_class: str = ""
    probability: Optional[float] = None
    top_k: Tuple[Tuple[str, float], ...] = ()
    error: str = ""


# ---------------------------------------------------------------- model

def resolve_model_dir(path: str) -> str:
    """The SavedModel dir: `path` itself, its Format-Serving, or its highest numeric version.

    The Pusher (and TF Serving) lay models out as <serving dir>/<version>/saved_model.pb.
    """
    if tf.io.gfile.exists(os.path.join(path, names.SAVED_MODEL_FILE)):
        return path
    if tf.io.gfile.exists(os.path.join(path, names.TRAINER_SERVING_SUBDIR, names.SAVED_MODEL_FILE)):
        return os.path.join(path, names.TRAINER_SERVING_SUBDIR)
    if not tf.io.gfile.isdir(path):
        raise FileNotFoundError(f"no model at {path}")
    versions = [name.rstrip("/") for name in tf.io.gfile.listdir(path)]
    versions = sorted((int(v) for v in versions if v.isdigit()
                       and tf.io.gfile.exists(os.path.join(path, v, names.SAVED_MODEL_FILE))), reverse=True)
    if not versions:
        raise FileNotFoundError(f"no SavedModel in {path}: expected {names.SAVED_MODEL_FILE} or "
                                f"<version>/{names.SAVED_MODEL_FILE} (nothing pushed yet?)")
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
    return loaded, signature


# ---------------------------------------------------------------- files

def list_images(paths: Sequence[str]) -> List[str]:
    """Named files as they are, folders searched recursively for image extensions (sorted)."""
    found = []
    for path in paths:
        if tf.io.gfile.isdir(path):
            found += sorted(os.path.join(d, f) for d, _, files in tf.io.gfile.walk(path) for f in files
                            if f.lower().endswith(IMAGE_EXTENSIONS))
        else:
            found.append(path)  # a missing file gets its error row later
    return found


_TF_NOISE = re.compile(r"^(Graph execution error|Detected at node|<stack traces|\[\[)")


def _op_message(error: tf.errors.OpError) -> str:
    """The op's own words, without TF's graph-error preamble, "{{function_node ...}}" or "[Op:...]"."""
    lines = [line.strip() for line in error.message.splitlines()
             if line.strip() and not _TF_NOISE.match(line.strip())]
    message = re.sub(r"\{\{[^}]*\}\}\s*", "", lines[0] if lines else str(error))
    return re.sub(r"\s*\[Op:[^\]]*\]", "", message).strip()


def read_file(path: str) -> Tuple[Optional[bytes], str]:
    """(bytes, "") or (None, why the file cannot be read).

    Bytes are not decoded here: the serving signature decodes them, and a batch it rejects is
    retried file by file (_run_batch), so each image is decoded once on the normal path.
    """
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read(), ""
    except (OSError, tf.errors.OpError) as e:
        return None, f"unreadable: {getattr(e, 'message', None) or e}"


def _predictions(paths: Sequence[str], outputs: Dict[str, tf.Tensor], top_k: int) -> List[Prediction]:
    probabilities = outputs[names.PROBABILITIES_OUTPUT].numpy()
    class_names = [n.decode("utf-8") for n in outputs[names.CLASS_NAMES_OUTPUT].numpy()[0]]
    results = []
    for path, row in zip(paths, probabilities):
        order = row.argsort()[::-1][:top_k]
        results.append(Prediction(path, class_names[order[0]], float(row[order[0]]),
                                  tuple((class_names[i], float(row[i])) for i in order)))
    return results


def classify(signature, paths: Sequence[str], batch_size: int = 32, top_k: int = 3,
             progress=None) -> List[Prediction]:
    """One Prediction per path, in order; failures carry an error instead of a class.

    signature: load_signature's; progress(done, total, failed) is called after each batch.
    """
    results: Dict[str, Prediction] = {}
    for start in range(0, len(paths), batch_size):
        batch = []
        for path in paths[start:start + batch_size]:
            data, error = read_file(path)
            if error:
                results[path] = Prediction(path, error=error)
            else:
                batch.append((path, data))
        for prediction in _run_batch(signature, batch, top_k):
            results[prediction.path] = prediction
        if progress:
            progress(min(start + batch_size, len(paths)), len(paths),
                     sum(1 for r in results.values() if r.error))
    return [results[p] for p in paths]


def _run_batch(signature, batch, top_k: int) -> List[Prediction]:
    """Predicts a batch; if the model rejects it, retries file by file to isolate the bad one."""
    if not batch:
        return []
    paths, data = zip(*batch)
    try:
        return _predictions(paths, signature(**{names.SERVING_BYTES_INPUT: tf.constant(data)}), top_k)
    except tf.errors.InvalidArgumentError as e:
        if len(batch) == 1:
            return [Prediction(paths[0], error=f"not a decodable image: {_op_message(e)}")]
        return [p for item in batch for p in _run_batch(signature, [item], top_k)]


def write_csv(predictions: Sequence[Prediction], path: str) -> None:
    """One row per prediction, with the CSV_FIELDS header."""
    with tf.io.gfile.GFile(path, "w") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_FIELDS)
        for p in predictions:
            writer.writerow([p.path, p.predicted_class,
                             "" if p.probability is None else f"{p.probability:.6f}",
                             ";".join(f"{name}:{prob:.6f}" for name, prob in p.top_k), p.error])


def _print_progress(done: int, total: int, failed: int) -> None:
    print(f"[predict] {done}/{total} files ({failed} failed)", file=sys.stderr, flush=True)


def main(argv: Optional[List[str]] = None) -> int:
    """The command line (see the module docstring); returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m serving_client.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="serving dir, version dir or Trainer model artifact")
    parser.add_argument("paths", nargs="+", help="image files and/or folders")
    parser.add_argument("--out", default="predictions.csv", help="CSV to write (default: %(default)s)")
    parser.add_argument("--top-k", type=int, default=3, help="classes listed per file (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="files per model call (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.top_k < 1 or args.batch_size < 1:
        parser.error("--top-k and --batch-size must be >= 1")
    paths = list_images(args.paths)
    if not paths:
        parser.error(f"no image files in {args.paths}")
    model_dir = resolve_model_dir(args.model)
    print(f"[predict] model {model_dir}; {len(paths)} files", file=sys.stderr, flush=True)
    _loaded, signature = load_signature(model_dir)
    predictions = classify(signature, paths, args.batch_size, args.top_k, _print_progress)
    write_csv(predictions, args.out)
    failed = [p for p in predictions if p.error]
    print(f"[predict] classified {len(predictions) - len(failed)} of {len(predictions)} files; "
          f"{len(failed)} failed; wrote {args.out}", file=sys.stderr)
    for p in failed:
        print(f"[predict]   FAILED {p.path}: {p.error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
