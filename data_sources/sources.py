"""Resolve the pipeline's image source into a local dataset directory.

A data source may be a local directory, a local archive (.zip/.tar/.tar.gz/.tgz), an http(s)
URL to an archive, a Google Drive file ("gdrive:<id>" or a Drive share link), or a remote
"scheme://" URI such as gs://bucket/images (passed through for tf.io.gfile).

Downloads and extractions are cached under ``cache_dir`` so a second run is offline and
cheap. Source data is treated as read-only: every write goes under ``cache_dir``, and every
write that produces a final artifact is atomic (temp name + os.replace), so an interrupted run
never leaves a half file or half extraction that a later run would mistake for a good one.
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile

logger = logging.getLogger(__name__)

# Where a Drive file id is fetched from; a module constant so tests can point it at a local server.
GDRIVE_URL_TEMPLATE = "https://drive.google.com/uc?id={id}"

# Socket timeout (seconds) for each blocking network operation of a plain HTTP download.
DOWNLOAD_TIMEOUT_S = 60.0

_CHUNK = 1024 * 1024
_HEX_LENGTHS = {"sha256": 64, "md5": 32}
_KEY_LEN = 16
_URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_DRIVE_ID_RE = re.compile(r"^[A-Za-z0-9_\-]+$")
_DRIVE_HOSTS = {"drive.google.com", "docs.google.com"}
_DRIVE_FILE_PATH_RE = re.compile(r"^/file/(?:u/\d+/)?d/([A-Za-z0-9_\-]+)(?:/.*)?$")
_MAX_LINK_DEPTH = 40
_SPECIAL_FILE_TYPES = {stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK}


class DataSourceError(Exception):
    """A data source could not be resolved, downloaded or extracted."""


class ChecksumMismatchError(DataSourceError):
    """A file's digest differs from the expected checksum."""

    def __init__(self, expected: str, actual: str, path: str):
        # args kept as the constructor's arguments so the exception pickles (Beam, multiprocessing).
        super().__init__(expected, actual, path)
        self.expected = expected
        self.actual = actual
        self.path = path

    def __str__(self) -> str:
        return f"Checksum mismatch for {self.path}: expected {self.expected}, got {self.actual}"


class UnsafeArchiveError(DataSourceError):
    """An archive member would be written outside the destination, or is a special file."""


# --------------------------------------------------------------------------- checksums


def parse_checksum(spec: str | None) -> tuple[str, str] | None:
    """Parse "sha256:<hex>" / "md5:<hex>" into (algo, lowercase hex); None stays None.

    Raises ValueError for an unknown algorithm, a missing ':' or hex of the wrong length/characters.
    """
    if spec is None:
        return None
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(
            f"Invalid checksum {spec!r}: expected 'sha256:<64 hex digits>' or "
            f"'md5:<32 hex digits>'")
    algo, _, hexdigest = spec.strip().partition(":")
    algo = algo.strip().lower()
    hexdigest = hexdigest.strip().lower()
    if algo not in _HEX_LENGTHS:
        raise ValueError(f"Invalid checksum {spec!r}: unsupported algorithm {algo!r} "
                         f"(use one of {sorted(_HEX_LENGTHS)})")
    want = _HEX_LENGTHS[algo]
    if len(hexdigest) != want or not re.fullmatch(r"[0-9a-f]+", hexdigest):
        raise ValueError(f"Invalid checksum {spec!r}: {algo} needs exactly {want} hex digits, "
                         f"got {len(hexdigest)} characters")
    return algo, hexdigest


def file_digest(path: str, algo: str) -> str:
    """Return the lowercase hex digest of the file at ``path`` ("sha256" or "md5"), streamed."""
    algo = algo.lower()
    if algo not in _HEX_LENGTHS:
        raise ValueError(
            f"Unsupported digest algorithm {algo!r} (use one of {sorted(_HEX_LENGTHS)})")
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_checksum(path: str, checksum: str | None) -> None:
    """Raise ChecksumMismatchError if ``path`` does not match ``checksum`` (no-op when None)."""
    parsed = parse_checksum(checksum)
    if parsed is None:
        return
    algo, expected = parsed
    actual = file_digest(path, algo)
    if actual != expected:
        raise ChecksumMismatchError(f"{algo}:{expected}", f"{algo}:{actual}", path)
    logger.info("Checksum %s:%s verified for %s", algo, expected, path)


# --------------------------------------------------------------------------- source kinds


def is_url(source: str) -> bool:
    """True for http:// and https:// URLs (case-insensitive scheme, with a host)."""
    if not isinstance(source, str):
        return False
    parsed = urllib.parse.urlparse(source.strip())
    return parsed.scheme.lower() in ("http", "https") and bool(parsed.netloc)


def gdrive_file_id(source: str) -> str | None:
    """Extract a Google Drive file id from "gdrive:<id>" or a Drive link; None otherwise.

    Accepted links: drive.google.com/file/d/<id>/view?..., drive.google.com/uc?id=<id>&...,
    drive.google.com/open?id=<id>.
    """
    if not isinstance(source, str):
        return None
    source = source.strip()
    if source[:7].lower() == "gdrive:":
        file_id = source[7:]
        file_id = file_id[2:] if file_id.startswith("//") else file_id
        return file_id if _DRIVE_ID_RE.match(file_id) else None
    if not is_url(source):
        return None
    parsed = urllib.parse.urlparse(source)
    if (parsed.hostname or "").lower() not in _DRIVE_HOSTS:
        return None
    m = _DRIVE_FILE_PATH_RE.match(parsed.path)
    if m:
        return m.group(1)
    if parsed.path.rstrip("/") in ("/uc", "/open"):
        ids = urllib.parse.parse_qs(parsed.query).get("id", [])
        if len(ids) == 1 and _DRIVE_ID_RE.match(ids[0]):
            return ids[0]
    return None


# --------------------------------------------------------------------------- download


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _http_fetch(url: str, part_path: str) -> int:
    """Stream ``url`` into ``part_path`` with urllib; returns the byte count."""
    request = urllib.request.Request(url, headers={"User-Agent": "intel-scenes-tfx/0.1"})
    try:
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response, \
                open(part_path, "wb") as out:
            expected_len = response.headers.get("Content-Length")
            size = 0
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
                size += len(chunk)
    except urllib.error.HTTPError as e:
        raise DataSourceError(f"Download of {url} failed: HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        raise DataSourceError(f"Download of {url} failed: cannot reach host ({e.reason})") from e
    except (OSError, http.client.HTTPException) as e:  # timeouts, resets, IncompleteRead
        raise DataSourceError(f"Download of {url} failed: {type(e).__name__}: {e}") from e
    if expected_len is not None and expected_len.isdigit() and int(expected_len) != size:
        raise DataSourceError(
            f"Download of {url} truncated: got {size} of {expected_len} bytes")
    return size


def _gdown_fetch(url: str, part_path: str) -> int:
    """Download ``url`` into ``part_path`` through gdown (handles Drive's confirmation pages)."""
    import gdown  # Lazy: pulls in requests/bs4/tqdm, only needed for Drive sources.

    try:
        # use_cookies=False: don't read/write ~/.cache/gdown/cookies.txt (all writes stay under
        # cache_dir); the in-call session still carries Drive's confirmation cookies.
        out = gdown.download(url, output=part_path, quiet=True, use_cookies=False)
    except Exception as e:  # gdown raises FileURLRetrievalError, requests errors, ...
        raise DataSourceError(f"Download of {url} via gdown failed: {type(e).__name__}: {e}") from e
    if not out or not os.path.isfile(part_path):
        raise DataSourceError(f"Download of {url} via gdown produced no file")
    return os.path.getsize(part_path)


def download(url: str, dest_path: str, checksum: str | None = None, *,
             use_gdown: bool = False) -> str:
    """Download ``url`` to ``dest_path`` atomically and return ``dest_path``.

    Bytes go to ``dest_path + ".part"``, the checksum (if given) is verified, and only then is the
    file renamed into place, so ``dest_path`` never holds a partial or unverified file. On any
    failure the .part file is removed. ``use_gdown`` routes the transfer through gdown.
    """
    parse_checksum(checksum)  # Fail on a malformed spec before touching the network.
    os.makedirs(os.path.dirname(os.path.abspath(dest_path)), exist_ok=True)
    part_path = dest_path + ".part"
    _remove_quietly(part_path)  # A stale .part from an interrupted run is never resumed.
    logger.info("Downloading %s -> %s%s", url, dest_path, " (gdown)" if use_gdown else "")
    try:
        fetch = _gdown_fetch if use_gdown else _http_fetch
        size = fetch(url, part_path)
        verify_checksum(part_path, checksum)
        os.replace(part_path, dest_path)
    except BaseException:
        _remove_quietly(part_path)
        raise
    logger.info("Downloaded %d bytes from %s", size, url)
    return dest_path


# --------------------------------------------------------------------------- extraction


def _archive_kind(path: str) -> str | None:
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
                target = zf.read(info).decode("utf-8", "replace")
                _check_link(info.filename, parts, target, True, {}, archive_path)
            elif stat.S_IFMT(mode) in _SPECIAL_FILE_TYPES:  # Type bits 0 (common) = regular.
                raise UnsafeArchiveError(
                    f"Unsafe archive {archive_path}: member {info.filename!r} is a device/special "
                    f"file")


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


def safe_extract(archive_path: str, dest_dir: str) -> str:
    """Safely extract a .zip/.tar/.tar.gz/.tgz archive into ``dest_dir`` and return it.

    The format is sniffed from content. Every member is checked before anything is written;
    absolute paths, '..' components, links resolving outside ``dest_dir`` and device/special
    files raise UnsafeArchiveError. Extraction goes to a temporary sibling directory that is
    renamed to ``dest_dir`` only on success, so a failure leaves no ``dest_dir``.
    """
    if not os.path.isfile(archive_path):
        raise DataSourceError(f"Archive {archive_path} does not exist or is not a file")
    dest_dir = os.path.abspath(dest_dir)
    if os.path.isdir(dest_dir) and os.listdir(dest_dir):
        raise DataSourceError(
            f"Cannot extract {archive_path}: {dest_dir} already exists and is not empty")
    kind = _archive_kind(archive_path)
    if kind is None:
        raise DataSourceError(
            f"{archive_path} is not a supported archive (expected .zip, .tar, .tar.gz or .tgz)")

    tmp_dir = None
    try:
        if kind == "tar":
            with tarfile.open(archive_path, "r:*") as tar:
                _scan_tar(tar, archive_path)
                os.makedirs(os.path.dirname(dest_dir), exist_ok=True)
                tmp_dir = tempfile.mkdtemp(prefix=f".{os.path.basename(dest_dir)}.tmp-",
                                           dir=os.path.dirname(dest_dir))
                if hasattr(tarfile, "data_filter"):
                    # The stdlib filter re-checks at write time against the real filesystem
                    # (belt and braces on top of the pre-scan) and drops unsafe permission bits.
                    tar.extractall(tmp_dir, filter="data")
                else:  # Python < 3.10.12: the pre-scan above is the only guard.
                    tar.extractall(tmp_dir)
        else:
            with zipfile.ZipFile(archive_path) as zf:
                _scan_zip(zf, archive_path)
                os.makedirs(os.path.dirname(dest_dir), exist_ok=True)
                tmp_dir = tempfile.mkdtemp(prefix=f".{os.path.basename(dest_dir)}.tmp-",
                                           dir=os.path.dirname(dest_dir))
                zf.extractall(tmp_dir)
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


# --------------------------------------------------------------------------- resolution


def _key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_KEY_LEN]


def _extract_cached(archive_path: str, cache_dir: str, source: str) -> str:
    """Extract ``archive_path`` once into cache_dir/extracted/<sha256[:16]>/, return its root."""
    if _archive_kind(archive_path) is None:
        raise DataSourceError(
            f"Data source {source!r}: {archive_path} is not a supported archive "
            f"(expected .zip, .tar, .tar.gz or .tgz)")
    key = file_digest(archive_path, "sha256")[:_KEY_LEN]
    dest = os.path.join(os.path.abspath(cache_dir), "extracted", key)
    # dest only ever appears via an atomic rename of a completed extraction, so existence = done.
    if os.path.isdir(dest):
        logger.info("Reusing extraction of %s at %s", archive_path, dest)
    else:
        safe_extract(archive_path, dest)
    root = dataset_root(dest)
    logger.info("Data source %s resolved to %s", source, root)
    return root


def _download_cached(source: str, url: str, key_text: str, filename: str, cache_dir: str,
                     checksum: str | None, use_gdown: bool) -> str:
    dest = os.path.join(os.path.abspath(cache_dir), "downloads", _key(key_text), filename)
    if os.path.isfile(dest):
        logger.info("Reusing cached download of %s at %s", source, dest)
        # A cached file that fails the checksum is an error, not a cue to silently refetch.
        verify_checksum(dest, checksum)
    else:
        download(url, dest, checksum, use_gdown=use_gdown)
        if _archive_kind(dest) is None:
            # Typically an HTML error/consent page; drop it so a retry refetches.
            _remove_quietly(dest)
            raise DataSourceError(
                f"Data source {source!r}: downloaded file from {url} is not a supported archive "
                f"(an HTML error or permission page?)")
    return _extract_cached(dest, cache_dir, source)


def _url_filename(url: str) -> str:
    name = posixpath.basename(urllib.parse.unquote(urllib.parse.urlparse(url).path))
    name = re.sub(r"[^A-Za-z0-9._\-]", "_", name).lstrip(".")
    return name or "download"


def resolve_data_source(source: str, cache_dir: str, checksum: str | None = None) -> str:
    """Resolve ``source`` to a local dataset directory (or pass a remote URI through).

    - "scheme://" URIs other than http(s) (gs://, s3://, ...): returned unchanged.
    - local directory: its absolute path (read-only; never written to).
    - local archive: checksum-verified, extracted once into cache_dir/extracted/<sha256[:16]>/.
    - http(s) URL or Google Drive id/link: downloaded once into
      cache_dir/downloads/<key>/<filename>, verified, then extracted as above. Later calls reuse
      the cache without network access (a given checksum is still verified).
    Returns the dataset root (single wrapper directories are descended). Raises DataSourceError.
    """
    if not isinstance(source, str) or not source.strip():
        raise DataSourceError(f"Data source {source!r} is empty")
    source = source.strip()
    parse_checksum(checksum)  # Malformed spec -> ValueError up front.

    file_id = gdrive_file_id(source)
    if file_id is not None:
        url = GDRIVE_URL_TEMPLATE.format(id=file_id)
        return _download_cached(source, url, f"gdrive:{file_id}", f"gdrive-{file_id}", cache_dir,
                                checksum, use_gdown=True)
    if is_url(source):
        return _download_cached(source, source, source, _url_filename(source), cache_dir,
                                checksum, use_gdown=False)
    if _URI_RE.match(source):
        logger.info("Data source %s is a remote URI; passing it through", source)
        return source

    path = os.path.abspath(os.path.expanduser(source))
    if os.path.isdir(path):
        if checksum is not None:
            logger.warning("Checksum %s ignored: data source %s is a directory", checksum, path)
        logger.info("Data source %s is a local directory", path)
        return path
    if os.path.isfile(path):
        verify_checksum(path, checksum)
        return _extract_cached(path, cache_dir, source)
    raise DataSourceError(
        f"Data source {source!r} not found: not an existing directory or archive file, an "
        f"http(s) URL, a Google Drive id/link, or a scheme:// URI")
