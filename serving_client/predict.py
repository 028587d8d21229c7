"""Classify image files with the pushed SavedModel, as a TF Serving client would see it.

    python -m pipeline.predict --model outputs/serving_model/intel-scenes photos/ extra.jpg \
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
import base64  # noqa: E402
import csv  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union  # noqa: E402

import tensorflow as tf  # noqa: E402

SIGNATURE = "serving_default"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
SAVED_MODEL_FILE = "saved_model.pb"
TRAINER_SERVING_SUBDIR = "Format-Serving"  # inside a TFX Trainer's model artifact
CSV_FIELDS = ("path", "predicted_class", "probability", "top_k", "error")


@dataclasses.dataclass
class Prediction:
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
    if tf.io.gfile.exists(os.path.join(path, SAVED_MODEL_FILE)):
        return path
    if tf.io.gfile.exists(os.path.join(path, TRAINER_SERVING_SUBDIR, SAVED_MODEL_FILE)):
        return os.path.join(path, TRAINER_SERVING_SUBDIR)
    if not tf.io.gfile.isdir(path):
        raise FileNotFoundError(f"no model at {path}")
    versions = [name.rstrip("/") for name in tf.io.gfile.listdir(path)]
    versions = sorted((int(v) for v in versions if v.isdigit()
                       and tf.io.gfile.exists(os.path.join(path, v, SAVED_MODEL_FILE))), reverse=True)
    if not versions:
        raise FileNotFoundError(f"no SavedModel in {path}: expected {SAVED_MODEL_FILE} or "
                                f"<version>/{SAVED_MODEL_FILE} (nothing pushed yet?)")
    return os.path.join(path, str(versions[0]))


def load_signature(model_dir: str):
    """(loaded SavedModel, its serving_default); keep the first alive while using the second."""
    loaded = tf.saved_model.load(resolve_model_dir(model_dir))
    if SIGNATURE not in loaded.signatures:
        raise ValueError(f"{model_dir} has no {SIGNATURE!r} signature: {list(loaded.signatures)}")
    return loaded, loaded.signatures[SIGNATURE]


def input_specs(signature) -> Dict[str, tf.TensorSpec]:
    return dict(signature.structured_input_signature[1])


# ---------------------------------------------------------------- TF Serving REST requests

def _decode_b64(value: Any) -> Any:
    """{"b64": s} -> bytes, recursively (TF Serving's JSON encoding of binary strings)."""
    if isinstance(value, dict):
        if set(value) == {"b64"}:
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (TypeError, ValueError) as e:
                raise ValueError(f'invalid base64 in a "b64" value: {e}') from e
        return {k: _decode_b64(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_b64(v) for v in value]
    return value


def _is_named(value: Any) -> bool:
    """An object of named inputs, as opposed to a value (a {"b64": ...} object is a value)."""
    return isinstance(value, dict) and set(value) != {"b64"}


def _tensor(values: Any, spec: tf.TensorSpec, name: str) -> tf.Tensor:
    if spec.dtype == tf.string:
        # JSON strings are UTF-8 text; binary data must come as {"b64": ...}.
        encode = lambda v: v.encode("utf-8") if isinstance(v, str) else v  # noqa: E731
        values = tf.nest.map_structure(encode, values)
    try:
        tensor = tf.constant(values, dtype=spec.dtype)
    except (TypeError, ValueError) as e:
        raise ValueError(f"input {name!r}: cannot make a {spec.dtype.name} tensor: {e}") from e
    if not spec.shape.is_compatible_with(tensor.shape):
        raise ValueError(f"input {name!r}: shape {tensor.shape} does not match {spec.shape}")
    return tensor


def rest_request_to_inputs(body: Union[str, bytes, Dict[str, Any]], signature) -> Dict[str, tf.Tensor]:
    """Maps a TF Serving REST `:predict` request body onto `signature`'s input tensors.

    Follows TF Serving's REST API (tensorflow.org/tfx/serving/api_rest, "Predict API"):
      * row format `{"instances": [...]}`: one element per example, stacked along a new batch
        dimension. An element is an object `{input name: value}` naming every input or, when
        the signature has exactly one input, may be the bare value, e.g.
        `{"instances": [{"b64": "<base64 JPEG>"}, ...]}` for our `image_bytes`.
      * columnar format `{"inputs": {input name: batched values}}`, or `{"inputs": values}` for
        a single-input signature.
      * `{"b64": "<standard base64>"}` is binary data for a DT_STRING tensor; plain JSON strings
        are taken as UTF-8 text. (A lone {"b64": ...} is a value, never an input named "b64".)
      * `signature_name` may be present; picking the signature is the caller's job.
    Returns {input name: tensor} to call the signature with (`signature(**inputs)`); raises
    ValueError where TF Serving would answer 400 Bad Request.
    """
    if isinstance(body, (str, bytes)):
        body = json.loads(body)
    if not isinstance(body, dict) or ("instances" in body) == ("inputs" in body):
        raise ValueError('the request body must be a JSON object with "instances" or "inputs"')
    specs = input_specs(signature)
    single = next(iter(specs)) if len(specs) == 1 else None
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise ValueError('"instances" must be a non-empty list')
        if single is not None and not _is_named(instances[0]):
            columns = {single: [_decode_b64(i) for i in instances]}
        else:
            if not all(_is_named(i) for i in instances):
                raise ValueError(f"each instance must be an object with the inputs {sorted(specs)}")
            names = sorted(instances[0])
            for n, instance in enumerate(instances):
                if sorted(instance) != names:
                    raise ValueError(f"instances[{n}] has inputs {sorted(instance)}, instances[0] {names}")
            columns = {name: [_decode_b64(i.get(name)) for i in instances] for name in names}
    else:
        inputs = body["inputs"]
        columns = ({k: _decode_b64(v) for k, v in inputs.items()} if _is_named(inputs)
                   else {single: _decode_b64(inputs)})
    missing = sorted(set(specs) - set(columns))
    unknown = sorted(str(k) for k in set(columns) - set(specs))
    if missing or unknown:
        raise ValueError(f"inputs missing {missing}, unknown {unknown}; the signature takes {sorted(specs)}")
    return {name: _tensor(values, specs[name], name) for name, values in columns.items()}


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
    probabilities = outputs["probabilities"].numpy()
    names = [n.decode("utf-8") for n in outputs["class_names"].numpy()[0]]
    results = []
    for path, row in zip(paths, probabilities):
        order = row.argsort()[::-1][:top_k]
        results.append(Prediction(path, names[order[0]], float(row[order[0]]),
                                  tuple((names[i], float(row[i])) for i in order)))
    return results


def classify(signature, paths: Sequence[str], batch_size: int = 32, top_k: int = 3,
             progress=None) -> List[Prediction]:
    """One Prediction per path, in order; failures carry an error instead of a class."""
    input_name = next(iter(input_specs(signature)))
    results: Dict[str, Prediction] = {}
    for start in range(0, len(paths), batch_size):
        batch = []
        for path in paths[start:start + batch_size]:
            data, error = read_file(path)
            if error:
                results[path] = Prediction(path, error=error)
            else:
                batch.append((path, data))
        for prediction in _run_batch(signature, input_name, batch, top_k):
            results[prediction.path] = prediction
        if progress:
            progress(min(start + batch_size, len(paths)), len(paths),
                     sum(1 for r in results.values() if r.error))
    return [results[p] for p in paths]


def _run_batch(signature, input_name: str, batch, top_k: int) -> List[Prediction]:
    """Predicts a batch; if the model still rejects it, retries file by file to isolate the bad one."""
    if not batch:
        return []
    paths, data = zip(*batch)
    try:
        return _predictions(paths, signature(**{input_name: tf.constant(data)}), top_k)
    except tf.errors.InvalidArgumentError as e:
        if len(batch) == 1:
            return [Prediction(paths[0], error=f"not a decodable image: {_op_message(e)}")]
        return [p for item in batch for p in _run_batch(signature, input_name, [item], top_k)]


def write_csv(predictions: Sequence[Prediction], path: str) -> None:
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
