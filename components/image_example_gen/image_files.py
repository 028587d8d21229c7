"""Finding a labelled image folder's files, assigning splits, and checking each file's bytes.

Layout rules (the ones users of image datasets expect):
- `<root>/<split>/<class>/<file>` where `train|seg_train` is the train split and
  `val|validation|eval|test|seg_test` the eval split; the Kaggle Intel archive's doubled folders
  (`seg_train/seg_train/<class>`) are recognised.
- `<root>/<class>/<file>` (one split only): each file goes to eval by a stable hash of its path
  relative to the root, so the split never changes between runs or machines.

Paths go through `tf.io.gfile`, so the same code lists `gs://` buckets on Dataflow.
"""
import dataclasses
import hashlib
import json
import os
import posixpath
import stat
from typing import Dict, List, Optional, Sequence, Tuple

import tensorflow as tf

from trainer_module import image_header
from trainer_module.preprocessing import decode_image
from trainer_module.train_config import TrainConfig

TRAIN = "train"
EVAL = "eval"
SPLITS = (TRAIN, EVAL)

# Folder names recognised as splits, in order of preference when several eval folders exist.
TRAIN_DIR_NAMES = ("train", "seg_train")
EVAL_DIR_NAMES = ("val", "validation", "eval", "test", "seg_test")
# Folders that hold unlabelled images: never read as a class or a split.
UNLABELLED_DIR_NAMES = ("unlabeled", "unlabelled", "pred", "seg_pred", "predict")
# Folders that tools leave in datasets: never a class, never read (hidden folders neither).
JUNK_DIR_NAMES = ("__MACOSX", "__pycache__", "Thumbs.db")
HIDDEN_DIR_WHY = "hidden or tool folder: never a class, not read"

# Why a file was not ingested. Every file under a class folder ends up ingested or in one of these.
SKIP_EMPTY = "empty_file"
SKIP_NOT_IMAGE = "not_an_image"
SKIP_TRUNCATED = "truncated_image"
SKIP_UNDECODABLE = "undecodable_image"
SKIP_UNREADABLE = "unreadable_file"
SKIP_NOT_REGULAR = "not_a_regular_file"  # FIFO, socket, device: never opened (a FIFO would block)
SKIP_DUPLICATE = "duplicate_file"  # the same file reached again through a link: read once
# The header declares more than max_image_pixels (a decompression bomb?): never decoded.
SKIP_TOO_MANY_PIXELS = image_header.TOO_MANY_PIXELS
SKIP_REASONS = (SKIP_EMPTY, SKIP_NOT_IMAGE, SKIP_TRUNCATED, SKIP_UNDECODABLE, SKIP_UNREADABLE,
                SKIP_NOT_REGULAR, SKIP_DUPLICATE, SKIP_TOO_MANY_PIXELS)


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
    stray_files: List[str]  # files in a split folder but outside any class folder (skipped, counted)
    other_files: List[str]  # files beside the split folders (READMEs, manifests): listed, not read
    # Entries under class folders that are not read (skipped, counted): (path, split, class, reason, detail).
    unread_files: List[Tuple[str, str, str, str, str]] = dataclasses.field(default_factory=list)


def _join(*parts: str) -> str:
    return posixpath.join(*parts) if parts[0].startswith(("gs://", "s3://")) else tf.io.gfile.join(*parts)


def is_hidden_or_junk(name: str) -> bool:
    """Hidden entries (.git, .ipynb_checkpoints, .DS_Store) and tools' folders (__MACOSX)."""
    return name.startswith(".") or name in JUNK_DIR_NAMES


def _all_subdirs(path: str) -> List[str]:
    return sorted(n.rstrip("/") for n in tf.io.gfile.listdir(path)
                  if tf.io.gfile.isdir(_join(path, n.rstrip("/"))))


def _subdirs(path: str, ignored: Optional[List[Tuple[str, str]]] = None) -> List[str]:
    """The sub-folders that can be splits or classes; hidden and junk ones go to `ignored`."""
    names = _all_subdirs(path)
    if ignored is not None:
        ignored.extend((_join(path, n), HIDDEN_DIR_WHY)
                       for n in names if is_hidden_or_junk(n))
    return [n for n in names if not is_hidden_or_junk(n)]


def _files(path: str) -> List[str]:
    return sorted(n for n in tf.io.gfile.listdir(path)
                  if not n.endswith("/") and not tf.io.gfile.isdir(_join(path, n)))


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


def _local_path(path: str) -> Optional[str]:
    """The OS path of a local folder or file:// URI; None for remote file systems (gs://)."""
    if path.startswith("file://"):
        return path[len("file://"):]
    return None if "://" in path else path


@dataclasses.dataclass
class _Walk:
    """What a bounded walk found: regular files, and entries not read with why."""
    files: List[str] = dataclasses.field(default_factory=list)
    unread: List[Tuple[str, str, str]] = dataclasses.field(default_factory=list)  # (path, reason, detail)
    not_entered: List[Tuple[str, str]] = dataclasses.field(default_factory=list)  # (folder, why)
    seen_files: Dict[Tuple[int, int], str] = dataclasses.field(default_factory=dict)  # (dev, ino) -> path


def _walk_files(path: str, walk: Optional[_Walk] = None, root: Optional[str] = None) -> _Walk:
    """Every regular file under `path`, each real file once, following links, never looping.

    Local folders are walked with os.scandir and stat: FIFOs, sockets and devices are reported
    without being opened; a link to a folder that holds the one being walked (a loop) or into
    another part of the dataset under `root` (another class) is not entered; a file reached
    again is reported as a duplicate. Links that point outside the root are followed (users link
    their class folders). Remote file systems have no links: tf.io.gfile lists them.
    """
    walk = walk if walk is not None else _Walk()
    local = _local_path(path)
    if local is None:
        for dirpath, _, filenames in tf.io.gfile.walk(path):
            walk.files.extend(sorted(_join(dirpath, f) for f in filenames))
        return walk
    top = os.path.realpath(local)
    root_local = _local_path(root) if root else None
    _walk_local(path, local, walk, top, os.path.realpath(root_local) if root_local else top)
    return walk


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _walk_local(path: str, local: str, walk: _Walk, top: str, root: str) -> None:
    for entry in sorted(os.scandir(local), key=lambda e: e.name):
        entry_path = _join(path, entry.name)
        try:
            entry_info = entry.stat(follow_symlinks=True)
        except OSError as e:
            walk.unread.append((entry_path, SKIP_UNREADABLE, f"cannot stat: {e.strerror or e}"))
            continue
        if stat.S_ISDIR(entry_info.st_mode):
            real = os.path.realpath(entry.path)
            if is_hidden_or_junk(entry.name):
                walk.not_entered.append((entry_path, HIDDEN_DIR_WHY))
            elif entry.is_symlink() and _inside(top, real):
                walk.not_entered.append((entry_path, f"link loop: points to {real}, which holds this folder"))
            elif entry.is_symlink() and _inside(real, root) and not _inside(real, top):
                walk.not_entered.append((entry_path, f"link into another part of the dataset ({real}): not read, "
                                               "its files keep their own folder's label"))
            else:
                _walk_local(entry_path, entry.path, walk, top, root)
        elif stat.S_ISREG(entry_info.st_mode):
            file_key = (entry_info.st_dev, entry_info.st_ino)
            if file_key in walk.seen_files:
                walk.unread.append((entry_path, SKIP_DUPLICATE, f"same file as {walk.seen_files[file_key]}"))
            else:
                walk.seen_files[file_key] = entry_path
                walk.files.append(entry_path)
        else:
            walk.unread.append((entry_path, SKIP_NOT_REGULAR, _file_kind(entry_info.st_mode)))


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return f"{kind}: not opened"
    return "not a regular file: not opened"


def relative_path(path: str, root: str) -> str:
    """`path` relative to `root`, with forward slashes (as stored in the examples and report)."""
    return posixpath.relpath(path.replace("\\", "/"), root.replace("\\", "/"))


def discover_class_names(root: str) -> List[str]:
    """Sorted class folder names of the train split (or of the root in one-split layout).

    Cheap (lists folders only); used when building the pipeline to fix the label space.
    """
    listing = list_image_files(root, class_names=None, eval_fraction=0.2, list_files=False)
    return listing.class_names


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
    stray: List[str] = []
    other: List[str] = []
    unread: List[Tuple[str, str, str, str, str]] = []
    if list_files:
        walk = _Walk()  # one walk state: a file linked into two classes is read once
        for split, classes in class_dirs.items():
            for class_name, class_dir in sorted(classes.items()):
                found = len(walk.files), len(walk.unread)
                _walk_files(class_dir, walk, root)
                for path in walk.files[found[0]:]:
                    rel = relative_path(path, root)
                    file_split = hash_split(rel, eval_fraction) if split_mode == "hash" else split
                    files.append(ImageFile(path, rel, file_split, class_name))
                for path, reason, detail in walk.unread[found[1]:]:
                    rel = relative_path(path, root)
                    file_split = hash_split(rel, eval_fraction) if split_mode == "hash" else split
                    unread.append((path, file_split, class_name, reason, detail))
            split_root = split_dirs[split]
            stray.extend(_join(split_root, f) for f in _files(split_root))
        if split_mode == "folders":
            other = [_join(root, f) for f in _files(root)]
        if not files:
            raise DatasetLayoutError(f"no files found in the class folders under {root}")
        ignored.extend(walk.not_entered)
    return DatasetListing(root=root, class_names=list(class_names), files=files, split_mode=split_mode,
                          split_dirs=dict(split_dirs), ignored_dirs=ignored, stray_files=sorted(set(stray)),
                          other_files=other, unread_files=unread)


def fingerprint_tree(root: str) -> str:
    """A hash of every file's relative path, size and mtime under `root`.

    Passed to ExampleGen as an execution property so that TFX's cache is invalidated when the
    data changes (a component without inputs is otherwise cached on its parameters alone).
    """
    digest = hashlib.sha256()
    walk = _walk_files(root)
    for path in walk.files:
        info = tf.io.gfile.stat(path)
        digest.update(json.dumps([relative_path(path, root), info.length, info.mtime_nsec]).encode())
    for path, reason, _ in walk.unread:
        digest.update(json.dumps([relative_path(path, root), reason]).encode())
    return digest.hexdigest()


# Magic numbers of the formats tf.io.decode_image reads.
_SIGNATURES = ((b"\xff\xd8\xff", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF87a", "gif"),
               (b"GIF89a", "gif"), (b"BM", "bmp"))


def sniff_format(data: bytes) -> Optional[str]:
    """The image format from the magic number, or None when the bytes are no image TF can read."""
    for magic, fmt in _SIGNATURES:
        if data.startswith(magic):
            return fmt
    return None


def _looks_truncated(data: bytes, fmt: str) -> bool:
    if fmt == "jpeg":
        # The end-of-image marker must follow the last start-of-scan (an EXIF thumbnail has its own
        # EOI earlier; bytes after the EOI are tolerated, as decoders do).
        return data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda")
    if fmt == "png":
        return b"IEND" not in data[-16:]
    return False


def check_image(data: bytes, max_pixels: int = TrainConfig.max_image_pixels
                ) -> Tuple[Optional[str], str, Optional[Tuple[int, int, str]]]:
    """Checks one file's bytes: the pixel budget from the header, then the decoder Transform uses.

    Returns (skip_reason, detail, None) for bad input, or (None, "", (height, width, format)) when
    the bytes decode. A file that decodes here decodes in Transform and in the serving signature.
    An image over `max_pixels` is refused from its header (detail: "WxH = N pixels >
    max_image_pixels = B") and never decoded.
    """
    if not data:
        return SKIP_EMPTY, "", None
    fmt = sniff_format(data)
    if fmt is None:
        return SKIP_NOT_IMAGE, "", None
    over = image_header.over_budget(data, max_pixels)
    if over:
        return SKIP_TOO_MANY_PIXELS, over, None
    try:
        image = decode_image(data, max_pixels)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
        over = image_header.over_budget_in_error(e.message)
        if over:  # TensorFlow's header reading refused what the Python reader could not size
            return SKIP_TOO_MANY_PIXELS, over, None
        return (SKIP_TRUNCATED if _looks_truncated(data, fmt) else SKIP_UNDECODABLE), "", None
    # libjpeg can return a partial image for a cut-off file; the model must not learn grey bands.
    if _looks_truncated(data, fmt):
        return SKIP_TRUNCATED, "", None
    height, width = int(image.shape[0]), int(image.shape[1])
    if height == 0 or width == 0:
        return SKIP_UNDECODABLE, "", None
    return None, "", (height, width, fmt)


def inspect_image(data: bytes, max_pixels: int = TrainConfig.max_image_pixels
                  ) -> Tuple[Optional[str], Optional[Tuple[int, int, str]]]:
    """check_image without the detail: (skip_reason, None) or (None, (height, width, format))."""
    reason, _, info = check_image(data, max_pixels)
    return reason, info
