"""The benches' input: a folder of class folders (real or generated) written as ImageExampleGen writes it.

The folder is read with ImageExampleGen's own layout rules (image_files.list_image_files) and each
file checked with its own decoder check (image_files.inspect_image); the records are its
make_example's, gzipped like its output.
"""
import os
from typing import Callable, Dict, List, Tuple

from pipeline.configs import REPO_ROOT
from trainer_module import names

# intel-dev's train split beside the repository (only ever read).
DEFAULT_DATA_DIR = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "data", "intel-dev", "train"))


def raw_feature_spec() -> Dict:
    """The raw features the Trainer parses, as SchemaGen infers them (fixed-length scalars).

    The one definition for the benches' tft_beam runs (which have no SchemaGen) and their tests;
    once a Transform graph exists, the benches read the spec back from it, as the Trainer does
    (transform_runs.transform_layer).
    """
    import tensorflow as tf
    return {names.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
            names.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}


def list_class_images(data_dir: str) -> Tuple[List[str], List[List[str]]]:
    """(class names, file paths per class) of a folder of class folders, by ImageExampleGen's rules."""
    from components.image_example_gen import image_files
    try:
        listing = image_files.list_image_files(data_dir)
    except image_files.DatasetLayoutError as e:
        raise SystemExit(f"{e} (pass --data-dir <folder of class folders>, or --synthetic to generate images)")
    per_class = [[f.path for f in listing.files if f.class_name == c] for c in listing.class_names]
    keep = [(c, files) for c, files in zip(listing.class_names, per_class) if files]
    if len(keep) < 2:
        raise SystemExit(f"{data_dir} needs at least two class folders with images")
    return [c for c, _ in keep], [files for _, files in keep]


def make_synthetic_images(root: str, per_class: int) -> str:
    """`per_class` 150x150 demo JPEGs of each of the six demo classes under <root>/train; returns that folder."""
    from data_sources import demo_data
    demo_data.make_demo_dataset(root, train_per_class=per_class, eval_per_class=0, size=150)
    return os.path.join(root, demo_data.TRAIN_SPLIT)


def _local_make_example(data: bytes, label: int, class_name: str, relpath: str, height: int, width: int,
                        fmt: str):
    """ImageExampleGen's make_example where TFX is not installed (a GPU box with TensorFlow only).

    tests/test_bench_smoke.py checks that it serializes exactly like the real one.
    """
    import tensorflow as tf

    def as_bytes(value: bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def as_int(value: int):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    return tf.train.Example(features=tf.train.Features(feature={
        names.IMAGE_KEY: as_bytes(data), names.LABEL_KEY: as_int(label),
        names.CLASS_NAME_KEY: as_bytes(class_name.encode("utf-8")),
        names.PATH_KEY: as_bytes(relpath.encode("utf-8")),
        names.HEIGHT_KEY: as_int(height), names.WIDTH_KEY: as_int(width),
        names.FORMAT_KEY: as_bytes(fmt.encode("utf-8"))}))


def make_example_fn() -> Tuple[Callable, str]:
    """(ImageExampleGen's make_example, its name), or the local copy where TFX is not installed."""
    try:
        from components.image_example_gen.executor import make_example
    except ImportError:
        return _local_make_example, "bench.raw_examples local make_example (TFX not installed)"
    return make_example, "components.image_example_gen.executor.make_example"


def write_raw_examples(data_dir: str, n: int, out_prefix: str, shards: int = 1) -> Dict:
    """Writes `n` tf.Examples of the folder's images to `shards` gzipped TFRecord files.

    Images are taken round-robin over the classes in sorted order (a stable, balanced subset);
    when `n` exceeds the folder, files repeat (reported as `repeated`). Files that ImageExampleGen
    would skip are skipped (counted as `skipped`). Returns the files, counts and byte sizes.
    """
    import tensorflow as tf
    from components.image_example_gen.image_files import inspect_image, relative_path

    make_example, source = make_example_fn()
    classes, per_class = list_class_images(data_dir)
    total = sum(len(files) for files in per_class)
    order = [(label, files[i]) for i in range(max(len(files) for files in per_class))
             for label, files in enumerate(per_class) if i < len(files)]
    paths = [f"{out_prefix}-{s:05d}-of-{shards:05d}.gz" for s in range(shards)]
    writers = [tf.io.TFRecordWriter(p, options="GZIP") for p in paths]
    written, image_file_bytes, record_bytes, skipped, k = 0, 0, 0, 0, 0
    try:
        while written < n:
            if k >= len(order) * 2 and written == 0:
                raise SystemExit(f"no decodable image in {data_dir}")
            label, path = order[k % len(order)]
            k += 1
            with open(path, "rb") as f:
                data = f.read()
            reason, info = inspect_image(data)
            if reason:
                skipped += 1
                continue
            example = make_example(data, label, classes[label], relative_path(path, data_dir), *info)
            serialized = example.SerializeToString()
            writers[written % shards].write(serialized)
            written += 1
            image_file_bytes += len(data)
            record_bytes += len(serialized)
    finally:
        for writer in writers:
            writer.close()
    return {"files": paths, "n": written, "classes": classes, "file_bytes": sum(os.path.getsize(p) for p in paths),
            "record_bytes": record_bytes, "image_file_bytes": image_file_bytes, "skipped": skipped,
            "repeated": max(0, k - total), "folder_images": total, "make_example": source}
