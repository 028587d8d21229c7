"""The benches' input: a folder of class folders (real or generated) written as ImageExampleGen writes it.

The folder is read with ImageExampleGen's own layout rules (image_files.list_image_files) and each
file checked with its own decoder check (image_files.inspect_image); the records are its
make_example's, gzipped like its output.
"""
import os
from typing import Dict, List, Tuple

from pipeline.configs import REPO_ROOT

# intel-dev's train split beside the repository (only ever read).
DEFAULT_DATA_DIR = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "data", "intel-dev", "train"))


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


def write_raw_examples(data_dir: str, n: int, out_prefix: str, shards: int = 1) -> Dict:
    """Writes `n` tf.Examples of the folder's images to `shards` gzipped TFRecord files.

    Images are taken round-robin over the classes in sorted order (a stable, balanced subset);
    when `n` exceeds the folder, files repeat (reported as `repeated`). Files that ImageExampleGen
    would skip are skipped (counted as `skipped`). Returns the files, counts and byte sizes.
    """
    import tensorflow as tf

    from components.image_example_gen.image_files import inspect_image, relative_path
    from components.image_example_gen.records import make_example
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
            "repeated": max(0, k - total), "folder_images": total,
            "make_example": "components.image_example_gen.records.make_example"}
