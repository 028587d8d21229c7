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
import urllib.error
import urllib.parse
import urllib.request

from data_sources import archives
from data_sources.errors import ChecksumMismatchError, DataSourceError

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


# --------------------------------------------------------------------------- resolution


def _key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_KEY_LEN]


def _extract_cached(archive_path: str, cache_dir: str, source: str) -> str:
    """Extract ``archive_path`` once into cache_dir/extracted/<sha256[:16]>/, return its root."""
    if archives.archive_kind(archive_path) is None:
        raise DataSourceError(
            f"Data source {source!r}: {archive_path} is not a supported archive "
            f"(expected .zip, .tar, .tar.gz or .tgz)")
    key = file_digest(archive_path, "sha256")[:_KEY_LEN]
    dest = os.path.join(os.path.abspath(cache_dir), "extracted", key)
    # dest only ever appears via an atomic rename of a completed extraction, so existence = done.
    if os.path.isdir(dest):
        logger.info("Reusing extraction of %s at %s", archive_path, dest)
    else:
        archives.safe_extract(archive_path, dest)
    root = archives.dataset_root(dest)
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
        if archives.archive_kind(dest) is None:
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
