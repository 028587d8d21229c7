"""Safe extraction of .zip/.tar/.tar.gz/.tgz archives, and finding the dataset root inside one.

Every member is checked before anything is written: absolute paths, '..' components, links that
resolve outside the destination (also through chains of links) and device/special files are
refused. The members' declared sizes are held to the SourceLimits (total, compression ratio) and to
the free disk space before anything is written, and zip members are counted as they are written (a
header may lie). Extraction goes to a temporary sibling folder renamed into place only on success.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile

from data_sources.errors import DataSourceError, UnsafeArchiveError
from data_sources.limits import SourceLimits, format_bytes, limit_error, require_free_space

logger = logging.getLogger(__name__)

# Below this many bytes a high compression ratio is harmless (text, padding, blank images), so the
# ratio is only judged for members and archives that decompress to more.
RATIO_MIN_BYTES = 1024 * 1024

_CHUNK = 1024 * 1024
_MAX_LINK_DEPTH = 40
_MAX_LINK_TARGET_BYTES = 4096  # PATH_MAX: a zip "symlink" is read whole to check its target.
_SPECIAL_FILE_TYPES = {stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK}


def archive_kind(path: str) -> str | None:
    """'tar', 'zip' or None, sniffed from content (not the file name)."""
    # Tar first: a zip stored as the last member of an uncompressed tar can fool is_zipfile,
    # which only looks for an end-of-central-directory record near the end of the file.
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except OSError:
        pass
    try:
        if zipfile.is_zipfile(path):
            return "zip"
    except OSError:
        pass
    return None


def _split_member(name: str, archive_path: str) -> list[str]:
    """Split a member name into components, rejecting absolute names and '..' components."""
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[\\/]", name):
        raise UnsafeArchiveError(
            f"Unsafe archive {archive_path}: member {name!r} is an absolute path")
    # Backslash counts as a separator too: harmless on POSIX, but such names are never legit.
    parts = [p for p in re.split(r"[\\/]", name) if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"Unsafe archive {archive_path}: member {name!r} contains '..'")
    return parts


def _resolve_in_tree(parts: list[str], links: dict[str, str], depth: int = 0) -> list[str] | None:
    """Resolve a path inside the archive's own namespace, following symlinks seen so far.

    Returns the resolved components relative to the extraction root, or None if the path
    escapes the root (including through a chain of individually harmless-looking symlinks).
    """
    if depth > _MAX_LINK_DEPTH:
        return None  # Symlink loop: treat as unsafe rather than guess.
    resolved: list[str] = []
    for i, part in enumerate(parts):
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                return None
            resolved.pop()
            continue
        resolved.append(part)
        target = links.get("/".join(resolved))
        if target is not None:
            if target.startswith("/"):
                return None
            rest = parts[i + 1:]
            return _resolve_in_tree(resolved[:-1] + target.split("/") + rest, links, depth + 1)
    return resolved


def _check_link(name: str, parts: list[str], target: str, is_symlink: bool,
                links: dict[str, str], archive_path: str) -> None:
    kind = "symlink" if is_symlink else "hardlink"
    if not target or target.startswith(("/", "\\")):
        raise UnsafeArchiveError(
            f"Unsafe archive {archive_path}: {kind} {name!r} points to absolute path {target!r}")
    # Symlink targets are relative to the link's directory; hardlink targets to the archive root.
    base = parts[:-1] if is_symlink else []
    if _resolve_in_tree(base + target.split("/"), links) is None:
        raise UnsafeArchiveError(
            f"Unsafe archive {archive_path}: {kind} {name!r} -> {target!r} points outside the "
            f"destination")


def _scan_tar(tar: tarfile.TarFile, archive_path: str) -> None:
    links: dict[str, str] = {}
    for member in tar.getmembers():
        parts = _split_member(member.name, archive_path)
        if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
            raise UnsafeArchiveError(
                f"Unsafe archive {archive_path}: member {member.name!r} is a device/special file")
        if parts and _resolve_in_tree(parts[:-1], links) is None:
            raise UnsafeArchiveError(
                f"Unsafe archive {archive_path}: member {member.name!r} is written through a "
                f"symlink that leaves the destination")
        if member.issym() or member.islnk():
            _check_link(member.name, parts, member.linkname, member.issym(), links, archive_path)
        if member.issym():
            links["/".join(parts)] = member.linkname
        else:
            links.pop("/".join(parts), None)  # A later regular member replaces an earlier link.


def _scan_zip(zf: zipfile.ZipFile, archive_path: str) -> None:
    # zipfile.extractall silently rewrites '..' and leading '/': unsafe names must be caught here.
    for info in zf.infolist():
        parts = _split_member(info.filename, archive_path)
        mode = info.external_attr >> 16
        if info.create_system == 3 and mode:  # Unix attributes present.
            if stat.S_ISLNK(mode):
                # zipfile writes links as small regular files holding the target; only reject
                # targets that would be unsafe if some other tool honoured the link.
                if info.file_size > _MAX_LINK_TARGET_BYTES:
                    raise UnsafeArchiveError(
                        f"Unsafe archive {archive_path}: symlink {info.filename!r} declares a "
                        f"{info.file_size:,}-byte target")
                target = zf.read(info).decode("utf-8", "replace")
                _check_link(info.filename, parts, target, True, {}, archive_path)
            elif stat.S_IFMT(mode) in _SPECIAL_FILE_TYPES:  # Type bits 0 (common) = regular.
                raise UnsafeArchiveError(
                    f"Unsafe archive {archive_path}: member {info.filename!r} is a device/special "
                    f"file")


def _check_total(total: int, archive_path: str, limits: SourceLimits) -> None:
    if total > limits.max_extract_bytes:
        raise limit_error(
            f"Extraction of {archive_path} refused: its members hold at least "
            f"{format_bytes(total)}, over the limit of {format_bytes(limits.max_extract_bytes)}",
            "extract_max_gb")


def _check_ratio(size: int, packed: int, what: str, limits: SourceLimits) -> None:
    if size > RATIO_MIN_BYTES and size > limits.max_extract_ratio * packed:
        ratio = f"{size / packed:,.0f}" if packed else "infinite"
        raise limit_error(
            f"Extraction refused: {what} expands {format_bytes(packed)} to at least "
            f"{format_bytes(size)}, a ratio of {ratio}, over the limit of "
            f"{limits.max_extract_ratio:g} (a zip bomb?)", "extract_max_ratio")


def _check_zip_sizes(zf: zipfile.ZipFile, archive_path: str, limits: SourceLimits) -> int:
    """Refuse a zip whose declared sizes break ``limits``; return their total (from the central
    directory alone: nothing is decompressed)."""
    total = 0
    for info in zf.infolist():
        _check_ratio(info.file_size, info.compress_size,
                     f"member {info.filename!r} of {archive_path}", limits)
        total += info.file_size
    _check_total(total, archive_path, limits)
    _check_ratio(total, os.path.getsize(archive_path), archive_path, limits)
    return total


def _check_tar_sizes(tar: tarfile.TarFile, archive_path: str, limits: SourceLimits) -> int:
    """Refuse a tar whose declared sizes break ``limits``; return their total.

    Headers are read lazily and checked one by one, so a compressed bomb is refused after
    decompressing at most about max_extract_ratio times the archive's size.
    """
    packed = os.path.getsize(archive_path)
    total = 0
    for member in tar:
        total += member.size
        _check_total(total, archive_path, limits)
        # The stream position counts headers too: a flood of empty members is a bomb as well.
        _check_ratio(member.offset_data + member.size, packed, archive_path, limits)
    return total


def _copy_member(src, dst, declared: int, name: str, archive_path: str) -> None:
    """Copy one member's bytes, refusing any beyond its declared size (a lying header).

    CPython's zipfile itself stops at the declared size (and then fails the CRC); counting here
    keeps the bound whatever the library does.
    """
    written = 0
    while True:
        chunk = src.read(min(_CHUNK, declared - written + 1))
        if not chunk:
            return
        written += len(chunk)
        if written > declared:
            raise UnsafeArchiveError(
                f"Unsafe archive {archive_path}: member {name!r} holds more than the "
                f"{declared:,} bytes its header declares")
        dst.write(chunk)


def _extract_zip(zf: zipfile.ZipFile, tmp_dir: str, archive_path: str) -> None:
    for info in zf.infolist():
        # The names zipfile.extractall would write on POSIX; unsafe names were refused by _scan_zip.
        target = os.path.join(tmp_dir, *[p for p in info.filename.split("/") if p not in ("", ".")])
        if info.is_dir():
            os.makedirs(target, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with zf.open(info) as src, open(target, "wb") as dst:
            _copy_member(src, dst, info.file_size, info.filename, archive_path)


def _make_tmp_dir(dest_dir: str) -> str:
    os.makedirs(os.path.dirname(dest_dir), exist_ok=True)
    return tempfile.mkdtemp(prefix=f".{os.path.basename(dest_dir)}.tmp-",
                            dir=os.path.dirname(dest_dir))


def _rmtree(path: str) -> None:
    """rmtree that also copes with read-only directories extracted from an archive."""
    def onerror(func, p, _exc):
        try:
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
        except OSError:
            pass
        try:
            func(p)
        except OSError:
            pass
    shutil.rmtree(path, onerror=onerror)


def safe_extract(archive_path: str, dest_dir: str, limits: SourceLimits | None = None) -> str:
    """Safely extract a .zip/.tar/.tar.gz/.tgz archive into ``dest_dir`` and return it.

    The format is sniffed from content. Every member is checked before anything is written;
    absolute paths, '..' components, links resolving outside ``dest_dir`` and device/special
    files raise UnsafeArchiveError. Declared sizes over ``limits`` (default SourceLimits()) or
    over the free space raise SourceLimitError. Extraction goes to a temporary sibling directory
    that is renamed to ``dest_dir`` only on success, so a failure leaves no ``dest_dir``.
    """
    limits = SourceLimits() if limits is None else limits
    if not os.path.isfile(archive_path):
        raise DataSourceError(f"Archive {archive_path} does not exist or is not a file")
    dest_dir = os.path.abspath(dest_dir)
    if os.path.isdir(dest_dir) and os.listdir(dest_dir):
        raise DataSourceError(
            f"Cannot extract {archive_path}: {dest_dir} already exists and is not empty")
    kind = archive_kind(archive_path)
    if kind is None:
        raise DataSourceError(
            f"{archive_path} is not a supported archive (expected .zip, .tar, .tar.gz or .tgz)")

    tmp_dir = None
    try:
        if kind == "tar":
            with tarfile.open(archive_path, "r:*") as tar:
                total = _check_tar_sizes(tar, archive_path, limits)
                _scan_tar(tar, archive_path)
                require_free_space(os.path.dirname(dest_dir), total,
                                   f"Extraction of {archive_path}")
                tmp_dir = _make_tmp_dir(dest_dir)
                # tarfile writes exactly each header's size (the header defines the data), so the
                # declared total checked above bounds what lands on disk.
                if hasattr(tarfile, "data_filter"):
                    # The stdlib filter re-checks at write time against the real filesystem
                    # (belt and braces on top of the pre-scan) and drops unsafe permission bits.
                    tar.extractall(tmp_dir, filter="data")
                else:  # Python < 3.10.12: the pre-scan above is the only guard.
                    tar.extractall(tmp_dir)
        else:
            with zipfile.ZipFile(archive_path) as zf:
                total = _check_zip_sizes(zf, archive_path, limits)
                _scan_zip(zf, archive_path)
                require_free_space(os.path.dirname(dest_dir), total,
                                   f"Extraction of {archive_path}")
                tmp_dir = _make_tmp_dir(dest_dir)
                _extract_zip(zf, tmp_dir, archive_path)
        os.replace(tmp_dir, dest_dir)
        tmp_dir = None
    except UnsafeArchiveError:
        raise
    except Exception as e:
        filter_error = getattr(tarfile, "FilterError", None)
        if filter_error is not None and isinstance(e, filter_error):
            raise UnsafeArchiveError(f"Unsafe archive {archive_path}: {e}") from e
        if isinstance(e, DataSourceError):
            raise
        raise DataSourceError(
            f"Extraction of {archive_path} into {dest_dir} failed: {type(e).__name__}: {e}") from e
    finally:
        if tmp_dir is not None:
            _rmtree(tmp_dir)
    logger.info("Extracted %s (%s) into %s", archive_path, kind, dest_dir)
    return dest_dir


def dataset_root(extracted_dir: str) -> str:
    """Descend through single-directory wrappers (ignoring __MACOSX, dotfiles); return the root."""
    current = os.path.abspath(extracted_dir)
    while True:
        entries = [e for e in os.listdir(current) if e != "__MACOSX" and not e.startswith(".")]
        if len(entries) != 1:
            return current
        child = os.path.join(current, entries[0])
        # Never descend through a symlink: an internal link to '.' would loop forever.
        if not os.path.isdir(child) or os.path.islink(child):
            return current
        current = child
