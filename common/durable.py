"""Writing a file so that a reader never sees half of it: a temporary file beside it, fsync, rename.

A process killed mid-write (Ctrl-C, SIGTERM, a full disk, a power cut) leaves the previous file
or none, never a truncated one; the temporary file is removed on any failure the process sees.
"""
import contextlib
import os
import tempfile


def fsync_path(path: str) -> None:
    """fsync a file or a folder by path (a folder: the entries just created or renamed in it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: str, text: str, mode: int = 0o644) -> None:
    """Replaces `path` with `text` (UTF-8) in one rename; `mode`: readable by other users by default
    (a TF Serving container, a web server)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    fsync_path(folder)  # the rename itself survives a power cut
