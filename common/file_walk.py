"""The one walk of a user's folder: ingestion (ImageExampleGen's listing and fingerprint) and the
prediction client list files through it, so both treat odd entries the same way.

Every regular file is listed once, following links, never looping. What is not read is said, with
why, never silently dropped:
- FIFOs, sockets and devices are reported without being opened (opening a FIFO blocks);
- a file reached again (through a link, or named twice) is reported as a duplicate of the first
  (in each folder, real entries are walked before links, so a file keeps its own path);
- a name that is not valid UTF-8 is reported (it cannot be stored in an example, a report or a
  CSV as it is; shown with its bytes escaped, display_path);
- a folder that cannot be listed, a link loop (a link to a folder holding it), a link into another
  part of the dataset under `root` (another class), hidden folders (.git, .ipynb_checkpoints) and
  tools' folders (__MACOSX) are not entered, each with why.
Links that point outside the root are followed (users link their class folders). Remote file
systems (gs://) have no links and no FIFOs: tf.io.gfile lists them.
"""
import dataclasses
import os
import posixpath
import stat
from typing import Dict, List, Optional, Tuple

# Why an entry under a walked folder is not read (ingestion's skip reasons; predict's error rows).
SKIP_UNREADABLE = "unreadable_file"
SKIP_NOT_REGULAR = "not_a_regular_file"  # FIFO, socket, device: never opened (a FIFO would block)
SKIP_DUPLICATE = "duplicate_file"  # the same file reached again through a link: read once
SKIP_BAD_NAME = "undecodable_file_name"  # not valid UTF-8: cannot be stored or reported as it is
WALK_SKIP_REASONS = (SKIP_UNREADABLE, SKIP_NOT_REGULAR, SKIP_DUPLICATE, SKIP_BAD_NAME)

# Folders that tools leave in datasets: never a class, never read (hidden folders neither).
JUNK_DIR_NAMES = ("__MACOSX", "__pycache__", "Thumbs.db")
HIDDEN_DIR_WHY = "hidden or tool folder: never a class, not read"


@dataclasses.dataclass
class Walk:
    """What a walk found: regular files (with size and modification time), and entries not read
    or folders not entered, each with why. One Walk can take several walks (a file linked into two
    of them is read once)."""
    files: List[str] = dataclasses.field(default_factory=list)
    stats: Dict[str, Tuple[int, int]] = dataclasses.field(default_factory=dict)  # path -> (size, mtime ns)
    unread: List[Tuple[str, str, str]] = dataclasses.field(default_factory=list)  # (path, reason, detail)
    not_entered: List[Tuple[str, str]] = dataclasses.field(default_factory=list)  # (folder, why)
    seen_files: Dict[Tuple[int, int], str] = dataclasses.field(default_factory=dict)  # (dev, ino) -> path


def is_hidden_or_junk(name: str) -> bool:
    """Hidden entries (.git, .ipynb_checkpoints, .DS_Store) and tools' folders (__MACOSX)."""
    return name.startswith(".") or name in JUNK_DIR_NAMES


def is_valid_name(path: str) -> bool:
    """Whether a path is valid UTF-8 (Python keeps undecodable bytes as surrogates)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def display_path(path: str) -> str:
    """A path safe to print, store and write to JSON or CSV: undecodable bytes as \\xNN escapes."""
    if is_valid_name(path):
        return path
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def join(*parts: str) -> str:
    """Joins path parts, with forward slashes for remote URIs (gs://, s3://)."""
    if "://" in parts[0] and not parts[0].startswith("file://"):
        return posixpath.join(*parts)
    return os.path.join(*parts)


def local_path(path: str) -> Optional[str]:
    """The OS path of a local folder or file:// URI; None for remote file systems (gs://)."""
    if path.startswith("file://"):
        return path[len("file://"):]
    return None if "://" in path else path


def walk_files(path: str, walk: Optional[Walk] = None, root: Optional[str] = None) -> Walk:
    """Every regular file under `path`, each real file once (module docstring); `root` is the
    dataset the walk is part of (default: `path`), for links into other parts of it."""
    walk = walk if walk is not None else Walk()
    local = local_path(path)
    if local is None:
        _walk_remote(path, walk)
        return walk
    top = os.path.realpath(local)
    root_local = local_path(root) if root else None
    _walk_local(path, local, walk, top, os.path.realpath(root_local) if root_local else top)
    return walk


def file_key(path: str) -> Optional[Tuple[int, int]]:
    """(st_dev, st_ino) of what a local `path` points to; None for a missing or remote path."""
    local = local_path(path)
    if local is None:
        return None
    try:
        info = os.stat(local)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def regular_file_problem(path: str) -> Optional[Tuple[str, str]]:
    """(reason, detail) when a named local file must not be opened (a FIFO, a device, a bad name);
    None for a regular file, a missing one (its reader says so) or a remote path."""
    if not is_valid_name(path):
        return SKIP_BAD_NAME, "the file name is not valid UTF-8"
    local = local_path(path)
    if local is None:
        return None
    try:
        mode = os.stat(local).st_mode
    except OSError:
        return None
    return None if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else (SKIP_NOT_REGULAR, file_kind(mode))


def file_kind(mode: int) -> str:
    """What a non-regular file is, for the reports: "a FIFO (named pipe): not opened"."""
    for test, kind in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return f"{kind}: not opened"
    return "not a regular file: not opened"


def _walk_remote(path: str, walk: Walk) -> None:
    import tensorflow as tf  # remote file systems only: a local walk loads no TensorFlow

    for dirpath, _, filenames in tf.io.gfile.walk(path):
        for name in sorted(filenames):
            file_path = posixpath.join(dirpath, name)
            info = tf.io.gfile.stat(file_path)
            walk.files.append(file_path)
            walk.stats[file_path] = (int(info.length), int(info.mtime_nsec))


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _walk_local(path: str, local: str, walk: Walk, top: str, root: str) -> None:
    try:
        # Real entries before links: what is reachable both ways keeps its own path.
        entries = sorted(os.scandir(local), key=lambda e: (e.is_symlink(), e.name))
    except OSError as e:
        walk.not_entered.append((display_path(path), f"cannot list it: {e.strerror or e}"))
        return
    for entry in entries:
        entry_path = join(path, entry.name)
        try:
            info = entry.stat(follow_symlinks=True)
        except OSError as e:
            walk.unread.append((display_path(entry_path), SKIP_UNREADABLE, f"cannot stat: {e.strerror or e}"))
            continue
        if stat.S_ISDIR(info.st_mode):
            _enter(entry, entry_path, walk, top, root)
        elif not is_valid_name(entry.name):
            walk.unread.append((display_path(entry_path), SKIP_BAD_NAME, "the file name is not valid UTF-8"))
        elif stat.S_ISREG(info.st_mode):
            key = (info.st_dev, info.st_ino)
            if key in walk.seen_files:
                walk.unread.append((entry_path, SKIP_DUPLICATE, f"same file as {walk.seen_files[key]}"))
            else:
                walk.seen_files[key] = entry_path
                walk.files.append(entry_path)
                walk.stats[entry_path] = (info.st_size, info.st_mtime_ns)
        else:
            walk.unread.append((entry_path, SKIP_NOT_REGULAR, file_kind(info.st_mode)))


def _enter(entry: os.DirEntry, entry_path: str, walk: Walk, top: str, root: str) -> None:
    real = os.path.realpath(entry.path)
    if is_hidden_or_junk(entry.name):
        walk.not_entered.append((display_path(entry_path), HIDDEN_DIR_WHY))
    elif not is_valid_name(entry.name):
        walk.not_entered.append((display_path(entry_path), "the folder name is not valid UTF-8: not read"))
    elif entry.is_symlink() and _inside(top, real):
        walk.not_entered.append((entry_path, f"link loop: points to {real}, which holds this folder"))
    elif entry.is_symlink() and _inside(real, root) and not _inside(real, top):
        walk.not_entered.append((entry_path, f"link into another part of the dataset ({real}): not read, "
                                             "its files keep their own folder's label"))
    else:
        _walk_local(entry_path, entry.path, walk, top, root)
