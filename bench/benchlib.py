"""Shared helpers of the bench/ scripts: machine line, tables, example files, transform graphs, timers.

Not a test helper and not part of the pipeline: the scripts in bench/ import it as `benchlib`
(they run as `python bench/<script>.py` from the repository root, so bench/ is on sys.path).
Heavy imports (TensorFlow, Beam, TFX) happen inside the functions that need them, so the GPU
check can run where only TensorFlow and tf_keras are installed.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow loads: TFT needs Keras 2
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Callable, Dict, List, Optional, Sequence, Tuple  # noqa: E402

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
if REPO_ROOT not in sys.path:  # the project's packages, also when it is not installed
    sys.path.insert(1, REPO_ROOT)

DEFAULT_DATA_DIR = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "data", "intel-dev", "train"))
INTEL_CLASS_NAMES = ("buildings", "forest", "glacier", "mountain", "sea", "street")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


# ---------------------------------------------------------------------------------------------
# Machine line, command line, tables.
# ---------------------------------------------------------------------------------------------

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_gib() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def _gpus() -> str:
    """GPU names from nvidia-smi (no TensorFlow import needed); 'none' when there is none."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        lines = [l.strip() for l in out.stdout.splitlines() if l.strip()]
        if out.returncode == 0 and lines:
            return "; ".join(lines)
    except (OSError, subprocess.SubprocessError):
        pass
    return "none"


def machine_line() -> str:
    """cores, CPU model, memory, GPU, load average: the context every number needs."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return (f"machine: {usable} usable cores ({os.cpu_count()} online), {_cpu_model()}, "
            f"{_mem_total_gib():.1f} GiB RAM, GPU: {_gpus()}, load average at start "
            f"{load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}, Python {platform.python_version()}")


def print_header(title: str) -> None:
    """The command (re-runnable as printed) and the machine line."""
    command = " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable, os.getcwd())
                                                 if sys.executable.startswith(os.getcwd()) else sys.executable,
                                                 *sys.argv])
    print(f"== {title}", flush=True)
    print(f"command: {command}")
    print(machine_line())
    try:
        import tensorflow as tf
        print(f"tensorflow {tf.__version__}; TF_USE_LEGACY_KERAS={os.environ.get('TF_USE_LEGACY_KERAS')}; "
              f"inter/intra-op threads {tf.config.threading.get_inter_op_parallelism_threads()}/"
              f"{tf.config.threading.get_intra_op_parallelism_threads()} (0 = all cores)")
    except ImportError:
        pass
    sys.stdout.flush()


def format_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub-markdown table (pastes into bench/README.md as is)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [line(r) for r in cells[1:]])


def _fmt(value) -> str:
    if isinstance(value, float):
        if value != value:
            return "n/a"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{n:,.0f} B"
        n /= 1000.0
    return f"{n:.1f} GB"


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def make_out_dir(out: Optional[str], prefix: str) -> str:
    """--out (created) or a fresh temporary folder; never inside the data folder."""
    if out:
        os.makedirs(out, exist_ok=True)
        return os.path.abspath(out)
    return tempfile.mkdtemp(prefix=prefix)


def remove_out_dir_unless_kept(out: str, keep: bool) -> None:
    """Deletes a bench's temporary output folder, or says where its outputs are kept."""
    if keep:
        print(f"outputs kept under {out}")
    else:
        import shutil
        shutil.rmtree(out, ignore_errors=True)


def check_not_inside(path: str, data_dir: str) -> None:
    """Refuses to write into the data folder (the input is only ever read)."""
    path, data_dir = os.path.realpath(path), os.path.realpath(data_dir)
    if path == data_dir or path.startswith(data_dir + os.sep):
        raise SystemExit(f"refusing to write under the data folder {data_dir}: choose another --out")


# ---------------------------------------------------------------------------------------------
# Raw examples, as ImageExampleGen writes them.
# ---------------------------------------------------------------------------------------------

def list_class_images(data_dir: str) -> Tuple[List[str], List[List[str]]]:
    """(sorted class names, sorted image paths per class) of `<data_dir>/<class>/<image>`."""
    if not os.path.isdir(data_dir):
        raise SystemExit(f"data folder not found: {data_dir} (pass --data-dir <split folder of class "
                         "folders>, or --synthetic to generate images)")
    classes = sorted(d for d in os.listdir(data_dir) if os.path.isdir(os.path.join(data_dir, d)))
    per_class = [sorted(os.path.join(data_dir, c, f) for f in os.listdir(os.path.join(data_dir, c))
                        if f.lower().endswith(IMAGE_SUFFIXES)) for c in classes]
    keep = [(c, files) for c, files in zip(classes, per_class) if files]
    if len(keep) < 2:
        raise SystemExit(f"{data_dir} needs at least two class folders with images")
    return [c for c, _ in keep], [files for _, files in keep]


def make_synthetic_images(root: str, per_class: int = 40, size: Tuple[int, int] = (150, 150)) -> str:
    """150x150 JPEGs of six classes under <root>/train (tests/image_factory); returns that folder."""
    sys.path.insert(0, os.path.join(REPO_ROOT, "tests"))
    import image_factory  # noqa: E402  (numpy + PIL only)
    layout = {"train": {c: per_class for c in INTEL_CLASS_NAMES}}
    image_factory.make_image_tree(root, layout, size=size)
    return os.path.join(root, "train")


def _make_example_fn():
    """ImageExampleGen's make_example; an identical local copy where TFX is not installed (GPU box)."""
    try:
        from components.image_example_gen.executor import make_example
        return make_example, "components.image_example_gen.make_example"
    except ImportError:
        import tensorflow as tf

        def make_example(data, label, class_name, relpath, height, width, fmt):
            b = lambda v: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))  # noqa: E731
            i = lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))  # noqa: E731
            return tf.train.Example(features=tf.train.Features(feature={
                "image": b(data), "label": i(label), "class_name": b(class_name.encode()),
                "path": b(relpath.encode()), "height": i(height), "width": i(width),
                "format": b(fmt.encode())}))
        return make_example, "local copy of make_example (TFX not installed)"


def _inspect(data: bytes):
    """(height, width, format) with the project's checker, or TF's decoder where TFX is missing."""
    try:
        from components.image_example_gen.image_files import inspect_image
        reason, info = inspect_image(data)
        return None if reason else info
    except ImportError:
        import tensorflow as tf
        try:
            image = tf.io.decode_image(data, channels=3, expand_animations=False)
        except tf.errors.OpError:
            return None
        return int(image.shape[0]), int(image.shape[1]), "jpeg" if data[:2] == b"\xff\xd8" else "other"


def write_raw_examples(data_dir: str, n: int, out_prefix: str, shards: int = 1) -> Dict:
    """Writes `n` tf.Examples (ImageExampleGen's make_example; gzipped TFRecords like its output).

    Images are taken round-robin over the classes in sorted order (a stable, balanced subset);
    when `n` exceeds the folder, files repeat (reported as `repeated`). Undecodable files are
    skipped like ImageExampleGen skips them. Returns file list, counts, byte sizes.
    """
    import tensorflow as tf

    make_example, source = _make_example_fn()
    classes, per_class = list_class_images(data_dir)
    total = sum(len(f) for f in per_class)
    order = [files[i] for i in range(max(len(f) for f in per_class))
             for files in per_class if i < len(files)]
    label_of = {p: classes.index(os.path.basename(os.path.dirname(p))) for p in order}
    paths = [f"{out_prefix}-{s:05d}-of-{shards:05d}.gz" for s in range(shards)]
    writers = [tf.io.TFRecordWriter(p, options="GZIP") for p in paths]
    written, raw_file_bytes, record_bytes, skipped, k = 0, 0, 0, 0, 0
    try:
        while written < n:
            if k >= len(order) * 2 and written == 0:
                raise SystemExit(f"no decodable image in {data_dir}")
            path = order[k % len(order)]
            k += 1
            with open(path, "rb") as f:
                data = f.read()
            info = _inspect(data)
            if info is None:
                skipped += 1
                continue
            label = label_of[path]
            example = make_example(data, label, classes[label], os.path.relpath(path, data_dir), *info)
            serialized = example.SerializeToString()
            writers[written % shards].write(serialized)
            written += 1
            raw_file_bytes += len(data)
            record_bytes += len(serialized)
    finally:
        for w in writers:
            w.close()
    return {"files": paths, "n": written, "classes": classes, "file_bytes": sum(os.path.getsize(p) for p in paths),
            "record_bytes": record_bytes, "image_file_bytes": raw_file_bytes, "skipped": skipped,
            "repeated": max(0, k - total) if k > total else 0, "folder_images": total,
            "make_example": source}


def raw_feature_spec() -> Dict:
    """The raw features the Trainer parses (SchemaGen infers these as fixed-length scalars)."""
    import tensorflow as tf
    return {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}


# ---------------------------------------------------------------------------------------------
# tf.Transform through Beam (the DirectRunner, in memory, one worker: the pipeline's LOCAL_BEAM_ARGS).
# ---------------------------------------------------------------------------------------------

BEAM_ARGS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def _example_tfxio(file_pattern: str):
    from tensorflow_transform.tf_metadata import schema_utils
    from tfx_bsl.public import tfxio
    schema = schema_utils.schema_from_feature_spec(raw_feature_spec())
    return tfxio.TFExampleRecord(file_pattern=file_pattern, schema=schema,
                                 telemetry_descriptors=["bench"])


def run_transform(file_pattern: str, preprocessing_fn: Callable, custom_config: Dict, work_dir: str,
                  materialize: bool) -> Dict:
    """tft_beam on the raw examples, as TFX's Transform executor does it; returns timings and sizes.

    materialize=False: AnalyzeDataset + WriteTransformFn (this pipeline: graph only).
    materialize=True:  AnalyzeAndTransformDataset + WriteTransformFn + the transformed examples
                       written as gzipped tf.Examples (record batches -> tf.Example, like TFX).
    The timer covers pipeline construction and run (Beam start-up, tracing, the data pass).
    """
    import apache_beam as beam
    import tensorflow_transform.beam as tft_beam
    from apache_beam.options.pipeline_options import PipelineOptions

    source = _example_tfxio(file_pattern)
    transform_fn_dir = os.path.join(work_dir, "transform_graph")
    transformed_prefix = os.path.join(work_dir, "transformed_examples", "transformed_examples")
    fn = lambda inputs: preprocessing_fn(inputs, custom_config)  # noqa: E731
    start = time.perf_counter()
    with beam.Pipeline(options=PipelineOptions(BEAM_ARGS)) as p:
        with tft_beam.Context(temp_dir=os.path.join(work_dir, "tmp"), force_tf_compat_v1=False):
            raw = p | "Read" >> source.BeamSource()
            dataset = (raw, source.TensorAdapterConfig())
            if materialize:
                (transformed_data, transformed_metadata), transform_fn = (
                    dataset | "AnalyzeAndTransform" >> tft_beam.AnalyzeAndTransformDataset(
                        fn, output_record_batches=True))
                schema = getattr(transformed_metadata, "dataset_metadata", transformed_metadata).schema
                _ = (transformed_data
                     | "Encode" >> beam.FlatMapTuple(_RecordBatchEncoder(schema))
                     | "Write" >> beam.io.WriteToTFRecord(transformed_prefix, file_name_suffix=".gz"))
            else:
                transform_fn = dataset | "Analyze" >> tft_beam.AnalyzeDataset(fn)
            _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(transform_fn_dir)
    seconds = time.perf_counter() - start
    out = {"seconds": seconds, "transform_graph": transform_fn_dir, "transformed_files": [],
           "transformed_bytes": 0}
    if materialize:
        import glob
        out["transformed_files"] = sorted(glob.glob(transformed_prefix + "*"))
        out["transformed_bytes"] = sum(os.path.getsize(f) for f in out["transformed_files"])
    out["graph_bytes"] = dir_bytes(transform_fn_dir)
    return out


class _RecordBatchEncoder:
    """(RecordBatch, passthrough) -> serialized tf.Examples (tfx_bsl's encoder, as TFX's Transform)."""

    def __init__(self, schema):
        self._schema = schema
        self._encoder = None

    def __call__(self, record_batch, _unused_passthrough):
        if self._encoder is None:
            from tfx_bsl.coders import example_coder
            self._encoder = example_coder.RecordBatchToExamplesEncoder(self._schema)
        return self._encoder.encode(record_batch)


def dir_bytes(path: str) -> int:
    """Bytes of the regular files under `path` (links not followed, not counted)."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            p = os.path.join(d, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def transform_layer(transform_graph_dir: Optional[str], custom_config: Dict):
    """The Trainer's `tft_layer`: TFTransformOutput(...).transform_features_layer() of a written graph.

    With transform_graph_dir=None (TensorFlow Transform not installed, e.g. the GPU box), the same
    preprocessing_fn applied directly as a function: the same ops without the SavedModel wrapper.
    """
    if transform_graph_dir:
        import tensorflow_transform as tft
        return tft.TFTransformOutput(transform_graph_dir).transform_features_layer(), "tft_layer"
    from trainer_module import preprocessing
    return (lambda inputs: preprocessing.preprocessing_fn(inputs, custom_config),
            "preprocessing_fn applied directly (no TFT)")


# ---------------------------------------------------------------------------------------------
# Training and input-pipeline timers.
# ---------------------------------------------------------------------------------------------

def train_config(class_names: Sequence[str], batch_size: int, image_size: int, resize_size: int,
                 **overrides):
    from trainer_module.train_config import TrainConfig
    return TrainConfig(class_names=tuple(class_names), batch_size=batch_size, image_size=image_size,
                       resize_size=resize_size, **overrides)


def in_memory_dataset(real_ds, batches: int = 1):
    """`batches` batches taken from the real pipeline, held as tensors and repeated forever.

    The model sees the same values and shapes as from the real pipeline; the input costs nothing
    but handing over a tensor: this is the model-bound limit.
    """
    import tensorflow as tf
    taken = list(real_ds.take(batches))
    images = tf.stack([x for x, _ in taken])
    labels = tf.stack([y for _, y in taken])
    return tf.data.Dataset.from_tensor_slices((images, labels)).repeat().prefetch(2)


def cpu_seconds() -> float:
    """CPU seconds of this process so far (all threads, user + system)."""
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def time_fit(model, dataset, warmup_steps: int, steps: int, batch_size: int) -> Dict:
    """One model.fit of warmup + steps steps; images/s over the last `steps` (timed per batch end).

    A single fit call (one iterator): the pipeline's start (shuffle-buffer fill, tracing) and the
    train-function trace fall in the warm-up steps. Also the process CPU time over the timed
    steps: CPU ms per image (load-independent cost) and cores used (CPU s / wall s).
    """
    import tf_keras as keras
    stamps: List[Tuple[float, float]] = []
    losses: List[float] = []

    class _Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            stamps.append((time.perf_counter(), cpu_seconds()))
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    start = (time.perf_counter(), cpu_seconds())
    model.fit(dataset, epochs=1, steps_per_epoch=warmup_steps + steps, verbose=0, callbacks=[_Clock()])
    total = time.perf_counter() - start[0]
    if len(stamps) != warmup_steps + steps:
        raise RuntimeError(f"expected {warmup_steps + steps} batches, got {len(stamps)}")
    t0, c0 = stamps[warmup_steps - 1] if warmup_steps > 0 else start
    seconds, cpu = stamps[-1][0] - t0, stamps[-1][1] - c0
    return {"images_per_s": steps * batch_size / seconds, "seconds": seconds, "fit_seconds": total,
            "step_ms": 1000 * seconds / steps, "cpu_ms_per_image": 1000 * cpu / (steps * batch_size),
            "cores_used": cpu / seconds, "last_loss": losses[-1] if losses else float("nan")}


def time_iterate(dataset, warmup_batches: int, batches: int) -> Dict:
    """Images/s (and CPU ms/image) of iterating (images, labels) batches alone, after warm-up."""
    it = iter(dataset)
    for _ in range(warmup_batches):
        next(it)
    images = 0
    start, cpu0 = time.perf_counter(), cpu_seconds()
    for _ in range(batches):
        images += int(next(it)[0].shape[0])
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu0
    return {"images_per_s": images / seconds, "seconds": seconds, "images": images,
            "cpu_ms_per_image": 1000 * cpu / images, "cores_used": cpu / seconds}


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def median(values: Sequence[float]) -> float:
    v = sorted(values)
    if not v:
        return float("nan")
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else 0.5 * (v[mid - 1] + v[mid])


def peak_rss_mib() -> float:
    """This process's peak RSS so far (ru_maxrss is in KiB on Linux)."""
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def dump_json(obj, path: str) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, default=str)
