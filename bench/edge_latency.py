"""Bench 5: the edge models against the SavedModel they were converted from: size and CPU latency
(and accuracy on a labelled folder), side by side in one run.

Given a Trainer Model artifact (--model: Format-Serving/ and Format-TFLite/, as the Trainer writes
it) and a folder of images (--images: class folders, or images alone), it measures on this CPU:
  size      the SavedModel's variables/ (the weights; the EdgeEvaluator's reference) and its whole
            folder (graph and Transform graph too) against each .tflite file;
  latency   wall ms per image, median and p90 over --repeats calls, one image per call and
            --batch-size images per call, each in two paths:
              model only   crops prepared beforehand (common.tflite_classifier.preprocess:
                           the serving signature's pixels), as float32 into the SavedModel's network,
                           as uint8 into the TFLite interpreter;
              end to end   from the encoded bytes: the SavedModel's serving_default (Transform graph
                           and network), a TFLite model's TFLiteClassifier.classify_encoded (what
                           an app runs);
            and CPU ms per image (process CPU time: the cores a call keeps busy);
  accuracy  on the same crops, and the top-1 agreement with the SavedModel (also without labels).
The models take turns call by call, in rotating order, so the ratios to the SavedModel hold on a
shared machine. TensorFlow runs on the CPU (tf.device, also on a GPU machine), the TFLite
interpreter with --threads (default: TFLite's own choice, as the EdgeEvaluator and an app run it).

    .venv/bin/python -m bench.edge_latency --model OUTPUT/pipelines/intel-scenes/Trainer/model/ID
    .venv/bin/python -m bench.edge_latency --model DIR --images ../shared/data/intel-dev/val --n 128 --repeats 50
"""
import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from bench import machine, raw_examples, tables, workdir
from common import pipeline_names
from pipeline.configs import REPO_ROOT
from trainer_module import names

DEFAULT_IMAGES = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "data", "intel-dev", "val"))
SAVED_MODEL = "SavedModel"
MODEL_ONLY, END_TO_END = "model only (crops)", "end to end (bytes)"
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True,
                   help=f"a Trainer Model artifact: a folder with {pipeline_names.TRAINER_SERVING_SUBDIR}/ and "
                        f"{names.EDGE_MODEL_SUBDIR}/")
    p.add_argument("--images", default=DEFAULT_IMAGES,
                   help="a folder of class folders (accuracy too) or of images (default: %(default)s)")
    p.add_argument("--n", type=int, default=64, help="images read, round-robin over the classes (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=32, help="images per call of the batched rows")
    p.add_argument("--repeats", type=int, default=20, help="timed calls per model and row (default %(default)s)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per model and row first")
    p.add_argument("--threads", type=int, default=None, help="TFLite interpreter threads (default: TFLite's choice)")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="the end-to-end pixel budget (default: the pipeline's max_image_pixels)")
    args = p.parse_args(argv)
    if min(args.n, args.batch_size, args.repeats) < 1 or args.warmup < 0:
        p.error("--n, --batch-size and --repeats must be >= 1, --warmup >= 0")
    return args


# ---------------------------------------------------------------- inputs

def model_paths(model_dir: str) -> Tuple[str, Dict[str, str]]:
    """(the SavedModel folder, {flavour: .tflite path}) of a Model artifact; exits naming what is missing."""
    saved = os.path.join(model_dir, pipeline_names.TRAINER_SERVING_SUBDIR)
    if not os.path.isfile(os.path.join(saved, pipeline_names.SAVED_MODEL_FILE)):
        raise SystemExit(f"no SavedModel in {saved}: --model takes a Trainer Model artifact")
    edge_dir = os.path.join(model_dir, names.EDGE_MODEL_SUBDIR)
    edge = {f: os.path.join(edge_dir, names.TFLITE_FILE.format(flavour=f)) for f in names.TFLITE_FLAVOURS}
    edge = {f: path for f, path in edge.items() if os.path.isfile(path)}
    if not edge:
        raise SystemExit(f"no TFLite model ({names.TFLITE_FILE}) in {edge_dir}: was the model trained "
                         "with tflite_export?")
    return saved, edge


def list_images(folder: str, n: int) -> Tuple[List[str], List[Optional[str]]]:
    """(up to n image paths, the class folder of each or None), round-robin over the classes."""
    if not os.path.isdir(folder):
        raise SystemExit(f"no image folder {folder} (pass --images)")
    if any(os.path.isdir(os.path.join(folder, name)) for name in os.listdir(folder)):
        classes, files = raw_examples.list_class_images(folder)
        order = [(c, per_class[i]) for i in range(max(map(len, files)))
                 for c, per_class in zip(classes, files) if i < len(per_class)]
    else:
        order = [(None, os.path.join(folder, name)) for name in sorted(os.listdir(folder))
                 if name.lower().endswith(_IMAGE_SUFFIXES)]
    if not order:
        raise SystemExit(f"no images in {folder}")
    return [path for _, path in order[:n]], [c for c, _ in order[:n]]


def read_bytes(paths: Sequence[str]) -> List[bytes]:
    data = []
    for path in paths:
        with open(path, "rb") as f:
            data.append(f.read())
    return data


def cycled_batches(items: Sequence, size: int) -> List[list]:
    """Consecutive batches of `size` items, the sequence cycled so that every batch is full."""
    count = -(-len(items) // size)  # every item in at least one batch
    return [[items[(b * size + j) % len(items)] for j in range(size)] for b in range(count)]


# ---------------------------------------------------------------- the models

@dataclasses.dataclass
class Contender:
    """One model's two paths."""
    label: str
    model_only: Callable  # prepare(crops) -> probabilities
    end_to_end: Callable  # a list of encoded images -> probabilities
    prepare: Callable  # uint8 crops [n, S, S, 3] -> model_only's input
    holds: Any = None  # what the calls need alive: the loaded SavedModel, the TFLiteClassifier


def saved_model_contender(saved_dir: str, image_size: int):
    """The SavedModel on the CPU: its network on float32 crops, serving_default on bytes."""
    import tensorflow as tf

    loaded = tf.saved_model.load(saved_dir)
    serve = loaded.signatures[names.SERVING_BYTES_SIGNATURE]
    # One graph call, as a signature is: the restored Keras __call__ alone adds Python dispatch per call.
    network = tf.function(lambda images: loaded(images, training=False), input_signature=[
        tf.TensorSpec([None, image_size, image_size, 3], tf.float32)]).get_concrete_function()

    def model_only(images):
        with tf.device("/CPU:0"):
            return network(images).numpy()

    def end_to_end(encoded):
        with tf.device("/CPU:0"):
            return serve(**{names.SERVING_BYTES_INPUT: tf.constant(encoded)})[names.PROBABILITIES_OUTPUT].numpy()

    def prepare(crops):  # the network's float32 input, made before the clock starts
        with tf.device("/CPU:0"):
            return tf.constant(crops, tf.float32)

    return Contender(SAVED_MODEL, model_only, end_to_end, prepare, holds=loaded)


def tflite_contender(flavour: str, path: str, threads: Optional[int], max_pixels: int):
    """A TFLite flavour as an app runs it (common.tflite_classifier)."""
    from common import tflite_classifier

    classifier = tflite_classifier.TFLiteClassifier(path, num_threads=threads)
    return Contender(flavour, classifier.predict, lambda encoded: classifier.classify_encoded(encoded, max_pixels)[0],
                     lambda crops: crops, holds=classifier)


def make_crops(encoded: Sequence[bytes], classifier, max_pixels: int):
    """uint8 [n, S, S, 3]: every image as the models' input (the serving signature's pixels)."""
    from common import tflite_classifier

    return np.stack([tflite_classifier.preprocess(data, classifier.resize_size, classifier.image_size, max_pixels)
                     for data in encoded])


# ---------------------------------------------------------------- measurements

def time_calls(contenders: Sequence[Contender], path: str, inputs: Dict[str, list], per_call: int,
               repeats: int, warmup: int) -> Dict[str, Dict[str, float]]:
    """{label: {median_ms, p90_ms, cpu_ms}} per image of `path` calls on inputs[label] (cycled),
    the contenders taking turns call by call, in rotating order."""
    def call(contender, i):
        function = contender.model_only if path == MODEL_ONLY else contender.end_to_end
        batches = inputs[contender.label]
        return function(batches[i % len(batches)])

    for contender in contenders:
        for i in range(warmup):
            call(contender, i)
    wall: Dict[str, List[float]] = {c.label: [] for c in contenders}
    cpu: Dict[str, List[float]] = {c.label: [] for c in contenders}
    for r in range(repeats):
        for contender in contenders[r % len(contenders):] + contenders[:r % len(contenders)]:
            start, cpu_start = time.perf_counter(), machine.cpu_seconds()
            call(contender, r)
            wall[contender.label].append(1000 * (time.perf_counter() - start) / per_call)
            cpu[contender.label].append(1000 * (machine.cpu_seconds() - cpu_start) / per_call)
    return {label: {"median_ms": statistics.median(times), "p90_ms": percentile(times, 90),
                    "cpu_ms": statistics.median(cpu[label])} for label, times in wall.items()}


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile, linear between the nearest ranks (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def size_rows(saved_dir: str, edge: Dict[str, str]) -> List[list]:
    """[model, what, bytes, size, x the SavedModel's variables] rows."""
    reference = workdir.dir_bytes(os.path.join(saved_dir, "variables"))
    sizes = [(SAVED_MODEL, "variables/ (the weights)", reference),
             (SAVED_MODEL, f"whole {pipeline_names.TRAINER_SERVING_SUBDIR}/ folder", workdir.dir_bytes(saved_dir))]
    sizes += [(flavour, os.path.basename(path), os.path.getsize(path)) for flavour, path in edge.items()]
    return [[model, what, n, tables.human_bytes(n), n / reference] for model, what, n in sizes]


def accuracy_rows(predictions: Dict[str, np.ndarray], labels: List[Optional[int]]) -> List[list]:
    """[model, images, accuracy, drop vs the SavedModel, top-1 agreement with it] rows; accuracy
    over the images whose class the model knows (nan without labels)."""
    reference = predictions[SAVED_MODEL].argmax(axis=1)
    known = [i for i, label in enumerate(labels) if label is not None]

    def accuracy(top1):
        return sum(int(top1[i] == labels[i]) for i in known) / len(known) if known else float("nan")

    def text(value):  # 4 decimals: a drop against a 0.002 margin must not read 0.00
        return "n/a" if value != value else f"{value:.4f}"

    rows = []
    for label, probabilities in predictions.items():
        top1 = probabilities.argmax(axis=1)
        drop = accuracy(reference) - accuracy(top1) if label != SAVED_MODEL else float("nan")
        rows.append([label, len(top1), text(accuracy(top1)), text(drop), text(float((top1 == reference).mean()))])
    return rows


def latency_rows(results: Dict[Tuple[str, int], Dict[str, Dict[str, float]]]) -> List[list]:
    """[model, path, images per call, median, p90, CPU ms, x the SavedModel's median] rows."""
    rows = []
    for (path, per_call), by_model in results.items():
        reference = by_model[SAVED_MODEL]["median_ms"]
        for label, r in by_model.items():
            rows.append([label, path, per_call, r["median_ms"], r["p90_ms"], r["cpu_ms"], r["median_ms"] / reference])
    return rows


def main(argv=None) -> int:
    """Runs the bench with command-line arguments `argv` (default: sys.argv[1:]); returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    saved_dir, edge = model_paths(args.model)
    paths, folders = list_images(args.images, args.n)
    machine.print_header(__spec__.name, "edge models (TFLite) vs the SavedModel: size, CPU latency, accuracy", argv)
    from trainer_module import image_format

    max_pixels = args.max_pixels or image_format.DEFAULT_MAX_IMAGE_PIXELS
    contenders = [tflite_contender(f, path, args.threads, max_pixels) for f, path in edge.items()]
    classifier = contenders[0].holds
    contenders.insert(0, saved_model_contender(saved_dir, classifier.image_size))
    with open(os.path.join(saved_dir, names.EXTRA_ASSETS_DIR, names.CLASS_NAMES_ASSET)) as f:
        class_names = json.load(f)
    if list(classifier.labels) != list(class_names):
        raise SystemExit(f"the TFLite labels {classifier.labels} are not the SavedModel's {class_names}")
    labels = [class_names.index(c) if c in class_names else None for c in folders]
    print(f"model: {args.model} ({classifier.image_size} px crops of {classifier.resize_size} px images, "
          f"{len(class_names)} classes); TFLite threads: {args.threads or 'default'}")
    print(f"images: {len(paths)} from {args.images} ({sum(l is not None for l in labels)} in a class folder "
          f"the model knows); {args.repeats} timed calls per model and row after {args.warmup} untimed")
    encoded = read_bytes(paths)
    crops = make_crops(encoded, classifier, max_pixels)
    print("\n## Size\n")
    print(tables.format_table(["model", "file", "bytes", "size", "x SavedModel variables"],
                              size_rows(saved_dir, edge)))
    predictions = {c.label: c.model_only(c.prepare(crops)) for c in contenders}
    print("\n## Accuracy on the same crops\n")
    print(tables.format_table(["model", "images", "accuracy", "drop vs SavedModel", "top-1 agreement with SavedModel"],
                              accuracy_rows(predictions, labels)))
    results = {}
    for path in (MODEL_ONLY, END_TO_END):
        for per_call in (1, args.batch_size):
            if path == MODEL_ONLY:  # each model's own input type, made before the clock starts
                inputs = {c.label: [c.prepare(np.stack(b)) for b in cycled_batches(list(crops), per_call)]
                          for c in contenders}
            else:
                inputs = {c.label: cycled_batches(encoded, per_call) for c in contenders}
            results[(path, per_call)] = time_calls(contenders, path, inputs, per_call, args.repeats, args.warmup)
    print("\n## CPU latency per image (ms)\n")
    print(tables.format_table(["model", "path", "images per call", "median ms", "p90 ms", "CPU ms (median)",
                               "x SavedModel (median)"], latency_rows(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
