"""Finding a labelled image folder's files, assigning splits, and checking each file's bytes.

Layout rules (the ones users of image datasets expect):
- `<root>/<split>/<class>/<file>` where `train|seg_train` is the train split and
  `val|validation|eval|test|seg_test` the eval split; the Kaggle Intel archive's doubled folders
  (`seg_train/seg_train/<class>`) are recognised.
- `<root>/<class>/<file>` (one split only): each file goes to eval by a stable hash of its path
  relative to the root, so the split never changes between runs or machines.

Local folders are walked by common/file_walk.py (links, loops, FIFOs, odd names); `gs://` buckets
through `tf.io.gfile`, so the same code lists them on Dataflow.
"""
import dataclasses
import hashlib
import json
import os
import posixpath
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from common import file_walk
from common.dataset import EVAL, EVAL_DIR_NAMES, TRAIN, TRAIN_DIR_NAMES, UNLABELLED_DIR_NAMES
from common.ingest_report import (
    SKIP_EMPTY,
    SKIP_NOT_IMAGE,
    SKIP_OUTSIDE_CLASS_FOLDER,
    SKIP_TOO_MANY_PIXELS,
    SKIP_TRUNCATED,
    SKIP_UNDECODABLE,
    SkippedFile,
)
from trainer_module import image_format
from trainer_module.preprocessing import decode_image


class DatasetLayoutError(ValueError):
    """The folder cannot be read as a labelled image dataset; the message names the path."""


@dataclasses.dataclass(frozen=True)
class ImageFile:
    """One candidate input file: where it is, its path relative to the data root, split and class."""
    path: str
    relpath: str
    split: str
    class_name: str


@dataclasses.dataclass
class DatasetListing:
    """Everything found under a data root, before any file is read."""
    root: str
    class_names: List[str]
    files: List[ImageFile]
    split_mode: str  # "folders" or "hash"
    split_dirs: Dict[str, str]  # split -> folder it was read from ("" for the root in hash mode)
    ignored_dirs: List[Tuple[str, str]]  # (path, why) for folders deliberately not read
    other_files: List[str]  # files beside the split folders (READMEs, manifests): listed, not read
    # Entries the readers never see, each a skipped file: under class folders but not read (FIFOs,
    # duplicates through links, undecodable names), or outside any class folder.
    unread: List[SkippedFile] = dataclasses.field(default_factory=list)
    stats: Dict[str, Tuple[int, int]] = dataclasses.field(default_factory=dict)  # path -> (size, mtime ns)

    def fingerprint(self) -> str:
        """A hash of every listed file's relative path, size and modification time, and of every
        unread entry: what TFX's cache keys ImageExampleGen on (driver.py)."""
        digest = hashlib.sha256(json.dumps([self.class_names, self.split_mode]).encode())
        for f in self.files:
            digest.update(json.dumps([f.relpath, f.split, f.class_name, *self.stats.get(f.path, ())]).encode())
        for s in self.unread:
            digest.update(json.dumps([s.path, s.split, s.class_name, s.reason]).encode())
        return digest.hexdigest()


_join = file_walk.join


def _listdir(path: str) -> List[Tuple[str, bool]]:
    """(name, is a folder) of the entries of `path`, undecodable names left out (the walk reports them)."""
    local = file_walk.local_path(path)
    if local is None:
        import tensorflow as tf

        return [(n.rstrip("/"), tf.io.gfile.isdir(_join(path, n.rstrip("/")))) for n in tf.io.gfile.listdir(path)]
    try:
        return [(e.name, e.is_dir()) for e in os.scandir(local) if file_walk.is_valid_name(e.name)]
    except OSError as e:
        raise DatasetLayoutError(f"cannot list {path}: {e.strerror or e}") from None


def _subdirs(path: str, ignored: Optional[List[Tuple[str, str]]] = None) -> List[str]:
    """The sub-folders that can be splits or classes; hidden and junk ones go to `ignored`."""
    names = sorted(n for n, is_dir in _listdir(path) if is_dir)
    if ignored is not None:
        ignored.extend((_join(path, n), file_walk.HIDDEN_DIR_WHY) for n in names if file_walk.is_hidden_or_junk(n))
    return [n for n in names if not file_walk.is_hidden_or_junk(n)]


def _files(path: str) -> List[str]:
    return sorted(n for n, is_dir in _listdir(path) if not is_dir)


def _unwrap_doubled(path: str) -> str:
    """`seg_train/seg_train/<class>` -> the inner folder, when the outer holds only that folder."""
    name = posixpath.basename(path.rstrip("/"))
    while True:
        subdirs = _subdirs(path)
        if subdirs == [name] and not _files(path):
            path = _join(path, name)
        else:
            return path


def hash_split(relpath: str, eval_fraction: float) -> str:
    """Stable split of one file by the SHA-256 of its relative path (same answer on every machine)."""
    bucket = int(hashlib.sha256(relpath.encode("utf-8")).hexdigest()[:8], 16) / 0x100000000
    return EVAL if bucket < eval_fraction else TRAIN


def _find_split_dirs(root: str, ignored: List[Tuple[str, str]]) -> Dict[str, str]:
    by_lower = {d.lower(): d for d in _subdirs(root, ignored)}
    found = {}
    for split, names in ((TRAIN, TRAIN_DIR_NAMES), (EVAL, EVAL_DIR_NAMES)):
        present = [by_lower[n] for n in names if n in by_lower]
        if present:
            found[split] = _unwrap_doubled(_join(root, present[0]))
            for extra in present[1:]:
                ignored.append((_join(root, extra), f"another {split} folder; using {present[0]}"))
    return found


def relative_path(path: str, root: str) -> str:
    """`path` relative to `root`, with forward slashes (as stored in the examples and report).

    Only a Windows separator is turned into a slash: on POSIX a backslash is part of a name
    (and of the \\xNN escapes of an undecodable one)."""
    if os.sep != "/":
        path, root = path.replace(os.sep, "/"), root.replace(os.sep, "/")
    return posixpath.relpath(path, root)


def list_image_files(root: str, class_names: Optional[Sequence[str]] = None,
                     eval_fraction: float = 0.2, list_files: bool = True) -> DatasetListing:
    """Lists the candidate image files under `root` with split and class.

    Args:
      root: data folder (local path or gs:// URI).
      class_names: the label space. None: the sorted train class folders. Given: every class
        folder must be one of them and every class must have a train folder.
      eval_fraction: share of files sent to eval by path hash when only one split exists.
      list_files: False lists folders only (for discovering class names cheaply).

    Raises:
      DatasetLayoutError: missing root, no class folders, a class in eval but not in train, a
        class folder outside `class_names`, or (with list_files) no files at all.
    """
    if not 0.0 < eval_fraction < 1.0:
        raise DatasetLayoutError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    if not tf.io.gfile.isdir(root):
        raise DatasetLayoutError(f"data directory does not exist or is not a folder: {root}")
    ignored: List[Tuple[str, str]] = []
    split_dirs = _find_split_dirs(root, ignored)
    for d in _subdirs(root):
        if d.lower() in UNLABELLED_DIR_NAMES:
            ignored.append((_join(root, d), "unlabelled images, not a split"))

    if split_dirs:
        if TRAIN not in split_dirs:
            raise DatasetLayoutError(
                f"{root} has an eval folder ({split_dirs[EVAL]}) but no train folder "
                f"(expected one of {', '.join(TRAIN_DIR_NAMES)})")
        split_mode = "folders"
        class_dirs = {s: {c: _join(d, c) for c in _subdirs(d, ignored)} for s, d in split_dirs.items()}
    else:
        split_mode = "hash"
        split_dirs = {TRAIN: root, EVAL: root}
        classes = [c for c in _subdirs(root) if c.lower() not in UNLABELLED_DIR_NAMES]
        class_dirs = {TRAIN: {c: _join(root, c) for c in classes}}

    train_classes = sorted(class_dirs[TRAIN])
    if not train_classes:
        raise DatasetLayoutError(f"no class folders found in {split_dirs[TRAIN]}")
    for split, classes in class_dirs.items():
        extra = sorted(set(classes) - set(train_classes))
        if extra:
            raise DatasetLayoutError(
                f"class folder(s) {extra} in {split_dirs[split]} have no counterpart in the train "
                f"folder {split_dirs[TRAIN]}: the model could never learn them")
    if class_names is None:
        class_names = train_classes
    else:
        class_names = list(class_names)
        unknown = sorted(set(train_classes) - set(class_names))
        missing = sorted(set(class_names) - set(train_classes))
        if unknown:
            raise DatasetLayoutError(f"class folder(s) {unknown} in {split_dirs[TRAIN]} are not among "
                                     f"the configured class names {class_names}")
        if missing:
            raise DatasetLayoutError(f"configured class(es) {missing} have no folder in {split_dirs[TRAIN]}")

    files: List[ImageFile] = []
    unread: List[SkippedFile] = []
    other: List[str] = []
    walk = file_walk.Walk()  # one walk state: a file linked into two classes is read once
    if list_files:
        for split, classes in class_dirs.items():
            for class_name, class_dir in sorted(classes.items()):
                found = len(walk.files), len(walk.unread)
                file_walk.walk_files(class_dir, walk, root)
                for path in walk.files[found[0]:]:
                    rel = relative_path(path, root)
                    file_split = hash_split(rel, eval_fraction) if split_mode == "hash" else split
                    files.append(ImageFile(path, rel, file_split, class_name))
                for path, reason, detail in walk.unread[found[1]:]:
                    rel = relative_path(path, root)
                    file_split = hash_split(rel, eval_fraction) if split_mode == "hash" else split
                    unread.append(SkippedFile(rel, file_split, class_name, reason, detail))
            split_root = split_dirs[split]
            unread.extend(SkippedFile(relative_path(_join(split_root, f), root), "", "", SKIP_OUTSIDE_CLASS_FOLDER)
                          for f in _files(split_root))
        if split_mode == "folders":
            other = [_join(root, f) for f in _files(root)]
        if not files:
            raise DatasetLayoutError(f"no files found in the class folders under {root}")
        ignored.extend(walk.not_entered)
    unread = sorted({(u.path, u.reason): u for u in unread}.values(), key=lambda u: u.path)
    return DatasetListing(root=root, class_names=list(class_names), files=files, split_mode=split_mode,
                          split_dirs=dict(split_dirs), ignored_dirs=ignored, other_files=other,
                          unread=unread, stats=walk.stats)


def _looks_truncated(data: bytes, fmt: str) -> bool:
    if fmt == "jpeg":
        # The end-of-image marker must follow the last start-of-scan (an EXIF thumbnail has its own
        # EOI earlier; bytes after the EOI are tolerated, as decoders do).
        return data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda")
    if fmt == "png":
        return b"IEND" not in data[-16:]
    return False


def check_and_decode(data: bytes, max_pixels: int = image_format.DEFAULT_MAX_IMAGE_PIXELS
                     ) -> Tuple[Optional[str], str, Optional[Tuple[int, int, str]], Optional[np.ndarray]]:
    """check_image, and the decoded pixels (H x W x 3 uint8) of an image that passed, so
    ingestion computes its content statistics and hashes without decoding it twice."""
    if not data:
        return SKIP_EMPTY, "", None, None
    fmt = image_format.sniff_format(data)
    if fmt is None:
        return SKIP_NOT_IMAGE, "", None, None
    over = image_format.over_budget(data, max_pixels)
    if over:
        return SKIP_TOO_MANY_PIXELS, over, None, None
    try:
        image = decode_image(data, max_pixels)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
        over = image_format.over_budget_in_error(e.message)
        if over:  # TensorFlow's header reading refused what the Python reader could not size
            return SKIP_TOO_MANY_PIXELS, over, None, None
        return (SKIP_TRUNCATED if _looks_truncated(data, fmt) else SKIP_UNDECODABLE), "", None, None
    # libjpeg can return a partial image for a cut-off file; the model must not learn grey bands.
    if _looks_truncated(data, fmt):
        return SKIP_TRUNCATED, "", None, None
    height, width = int(image.shape[0]), int(image.shape[1])
    if height == 0 or width == 0:
        return SKIP_UNDECODABLE, "", None, None
    return None, "", (height, width, fmt), image.numpy()


def check_image(data: bytes, max_pixels: int = image_format.DEFAULT_MAX_IMAGE_PIXELS
                ) -> Tuple[Optional[str], str, Optional[Tuple[int, int, str]]]:
    """Checks one file's bytes: the pixel budget from the header, then the decoder Transform uses.

    Returns (skip_reason, detail, None) for bad input, or (None, "", (height, width, format)) when
    the bytes decode. A file that decodes here decodes in Transform and in the serving signature.
    An image over `max_pixels` is refused from its header (detail: "WxH = N pixels >
    max_image_pixels = B") and never decoded.
    """
    return check_and_decode(data, max_pixels)[:3]


def inspect_image(data: bytes, max_pixels: int = image_format.DEFAULT_MAX_IMAGE_PIXELS
                  ) -> Tuple[Optional[str], Optional[Tuple[int, int, str]]]:
    """check_image without the detail: (skip_reason, None) or (None, (height, width, format))."""
    reason, _, info = check_image(data, max_pixels)
    return reason, info
