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
import time
import urllib.error
import urllib.parse
import urllib.request

from data_sources import archives
from data_sources.errors import ChecksumMismatchError, DataSourceError, UnsafeRedirectError
from data_sources.limits import SourceLimits, format_bytes, limit_error, require_free_space

logger = logging.getLogger(__name__)

# Where a Drive file id is fetched from; a module constant so tests can point it at a local server.
GDRIVE_URL_TEMPLATE = "https://drive.google.com/uc?id={id}"

# Socket timeout (seconds) for each blocking network operation of a plain HTTP download.
DOWNLOAD_TIMEOUT_S = 60.0

_DEADLINE_KNOB = "download_deadline_minutes"
_DOWNLOAD_SIZE_KNOB = "download_max_gb"

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


class _HttpOnlyRedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to an http(s) URL, without reading the redirect page's body.

    The stdlib handler refuses file:// and data: targets with a bare HTTPError but follows ftp://,
    and reads the whole redirect body (unbounded) before following.
    """

    def http_error_302(self, req, fp, code, msg, headers):
        target = headers.get("location") or headers.get("uri")
        fp.close()  # The base handler's fp.read() then returns b"" instead of draining the body.
        if target is not None:
            new_url = urllib.parse.urljoin(req.full_url, target.strip())
            if urllib.parse.urlsplit(new_url).scheme.lower() not in ("http", "https"):
                raise UnsafeRedirectError(
                    f"Download of {req.full_url} refused: it redirects (HTTP {code}) to "
                    f"{new_url!r}; only http:// and https:// redirects are followed")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_302


class _Budget:
    """The byte budget and the deadline of one download, checked as bytes arrive."""

    def __init__(self, url: str, limits: SourceLimits):
        self.url = url
        self.limits = limits
        self.size = 0
        self.started = time.monotonic()

    def next_read(self) -> int:
        """Bytes to ask for next: one past the budget at most, enough to prove a breach."""
        return max(1, min(_CHUNK, self.limits.max_download_bytes - self.size + 1))

    def check_announced(self, length: int, folder: str) -> None:
        """Refuse an announced length over the budget or over the free space of ``folder``."""
        if length > self.limits.max_download_bytes:
            raise limit_error(
                f"Download of {self.url} refused: the server announces {format_bytes(length)}, "
                f"over the limit of {format_bytes(self.limits.max_download_bytes)}",
                _DOWNLOAD_SIZE_KNOB)
        require_free_space(folder, length, f"Download of {self.url}")

    def add(self, n: int) -> None:
        """Count ``n`` more bytes; raise once over the budget or past the deadline."""
        self.size += n
        if self.size > self.limits.max_download_bytes:
            raise limit_error(
                f"Download of {self.url} stopped after {self.size:,} bytes: over the limit of "
                f"{format_bytes(self.limits.max_download_bytes)}", _DOWNLOAD_SIZE_KNOB)
        self.check_deadline()

    def check_deadline(self) -> None:
        elapsed = time.monotonic() - self.started
        if elapsed > self.limits.deadline_s:
            raise limit_error(
                f"Download of {self.url} stopped after {elapsed:.1f} s ({self.size:,} bytes "
                f"received): past the deadline of {self.limits.deadline_s:g} s "
                f"({self.limits.deadline_s / 60:g} min)", _DEADLINE_KNOB)


def _announced_length(response) -> int | None:
    value = (response.headers.get("Content-Length") or "").strip()
    return int(value) if value.isdigit() else None


def _stream(response, out, budget: _Budget) -> None:
    # read1 returns whatever one socket read brings, so a slow drip still hands control back to
    # the deadline check (read(n) would block until n bytes arrived).
    for chunk in iter(lambda: response.read1(budget.next_read()), b""):
        budget.add(len(chunk))  # Before writing: never a byte over the budget on disk.
        out.write(chunk)


def _http_fetch(url: str, part_path: str, limits: SourceLimits) -> int:
    """Stream ``url`` into ``part_path`` with urllib within ``limits``; returns the byte count.

    The deadline is checked after every socket read, and each read waits at most the socket
    timeout (capped at the deadline), so a stalled or dripping server is stopped at most one
    socket timeout past the deadline.
    """
    budget = _Budget(url, limits)
    request = urllib.request.Request(url, headers={"User-Agent": "intel-scenes-tfx/0.1"})
    opener = urllib.request.build_opener(_HttpOnlyRedirectHandler)
    try:
        with opener.open(request, timeout=min(DOWNLOAD_TIMEOUT_S, limits.deadline_s)) as response:
            budget.check_deadline()
            expected_len = _announced_length(response)
            if expected_len is not None:
                budget.check_announced(expected_len, os.path.dirname(os.path.abspath(part_path)))
            with open(part_path, "wb") as out:
                _stream(response, out, budget)
    except urllib.error.HTTPError as e:
        raise DataSourceError(f"Download of {url} failed: HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        raise DataSourceError(f"Download of {url} failed: cannot reach host ({e.reason})") from e
    except (OSError, http.client.HTTPException) as e:  # timeouts, resets, IncompleteRead
        budget.check_deadline()  # A read that timed out at the deadline is a deadline breach.
        raise DataSourceError(f"Download of {url} failed: {type(e).__name__}: {e}") from e
    if expected_len is not None and expected_len != budget.size:
        raise DataSourceError(
            f"Download of {url} truncated: got {budget.size} of {expected_len} bytes")
    return budget.size


class _BudgetedWriter:
    """The file object gdown writes to: every chunk is counted against the budget first."""

    def __init__(self, out, budget: _Budget):
        self._out = out
        self._budget = budget

    def write(self, chunk: bytes) -> int:
        self._budget.add(len(chunk))
        return self._out.write(chunk)


def _gdown_fetch(url: str, part_path: str, limits: SourceLimits) -> int:
    """Download ``url`` into ``part_path`` through gdown (handles Drive's confirmation pages).

    The byte budget and the deadline are checked on every chunk gdown writes (512 KB each, read
    until full). gdown exposes neither the announced length (so no up-front refusal or free-space
    check) nor a socket timeout: a slow drip is stopped only at the end of a chunk, and a server
    that stalls completely, or drips its confirmation pages, is not stopped at all.
    """
    import gdown  # Lazy: pulls in requests/bs4/tqdm, only needed for Drive sources.

    budget = _Budget(url, limits)
    try:
        with open(part_path, "wb") as f:
            # A file object (not a path) as output: gdown then writes no temp file of its own, and
            # use_cookies=False keeps ~/.cache/gdown untouched; all writes stay under cache_dir.
            out = gdown.download(url, output=_BudgetedWriter(f, budget), quiet=True,
                                 use_cookies=False)
    except DataSourceError:
        raise
    except Exception as e:  # gdown raises FileURLRetrievalError, requests errors, ...
        raise DataSourceError(f"Download of {url} via gdown failed: {type(e).__name__}: {e}") from e
    if out is None:
        raise DataSourceError(f"Download of {url} via gdown produced no file")
    return budget.size


def download(url: str, dest_path: str, checksum: str | None = None, *,
             use_gdown: bool = False, limits: SourceLimits | None = None) -> str:
    """Download ``url`` to ``dest_path`` atomically and return ``dest_path``.

    Bytes go to ``dest_path + ".part"``, the checksum (if given) is verified, and only then is the
    file renamed into place, so ``dest_path`` never holds a partial or unverified file. On any
    failure the .part file is removed. ``use_gdown`` routes the transfer through gdown.
    ``limits`` (default SourceLimits()) bounds the size and duration: a breach raises
    SourceLimitError; a redirect to a non-http(s) URL raises UnsafeRedirectError.
    """
    limits = SourceLimits() if limits is None else limits
    parse_checksum(checksum)  # Fail on a malformed spec before touching the network.
    os.makedirs(os.path.dirname(os.path.abspath(dest_path)), exist_ok=True)
    part_path = dest_path + ".part"
    _remove_quietly(part_path)  # A stale .part from an interrupted run is never resumed.
    logger.info("Downloading %s -> %s%s", url, dest_path, " (gdown)" if use_gdown else "")
    try:
        fetch = _gdown_fetch if use_gdown else _http_fetch
        size = fetch(url, part_path, limits)
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


def _extract_cached(archive_path: str, cache_dir: str, source: str,
                    limits: SourceLimits) -> str:
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
        archives.safe_extract(archive_path, dest, limits)
    root = archives.dataset_root(dest)
    logger.info("Data source %s resolved to %s", source, root)
    return root


def _download_cached(source: str, url: str, key_text: str, filename: str, cache_dir: str,
                     checksum: str | None, use_gdown: bool, limits: SourceLimits) -> str:
    dest = os.path.join(os.path.abspath(cache_dir), "downloads", _key(key_text), filename)
    if os.path.isfile(dest):
        logger.info("Reusing cached download of %s at %s", source, dest)
        # A cached file that fails the checksum is an error, not a cue to silently refetch.
        verify_checksum(dest, checksum)
    else:
        download(url, dest, checksum, use_gdown=use_gdown, limits=limits)
        if archives.archive_kind(dest) is None:
            # Typically an HTML error/consent page; drop it so a retry refetches.
            _remove_quietly(dest)
            raise DataSourceError(
                f"Data source {source!r}: downloaded file from {url} is not a supported archive "
                f"(an HTML error or permission page?)")
    return _extract_cached(dest, cache_dir, source, limits)


def _url_filename(url: str) -> str:
    name = posixpath.basename(urllib.parse.unquote(urllib.parse.urlparse(url).path))
    name = re.sub(r"[^A-Za-z0-9._\-]", "_", name).lstrip(".")
    return name or "download"


def resolve_data_source(source: str, cache_dir: str, checksum: str | None = None,
                        limits: SourceLimits | None = None) -> str:
    """Resolve ``source`` to a local dataset directory (or pass a remote URI through).

    - "scheme://" URIs other than http(s) (gs://, s3://, ...): returned unchanged.
    - local directory: its absolute path (read-only; never written to).
    - local archive: checksum-verified, extracted once into cache_dir/extracted/<sha256[:16]>/.
    - http(s) URL or Google Drive id/link: downloaded once into
      cache_dir/downloads/<key>/<filename>, verified, then extracted as above. Later calls reuse
      the cache without network access (a given checksum is still verified).
    ``limits`` (default SourceLimits()) bounds every download and extraction; a breach raises
    SourceLimitError and leaves nothing in the cache.
    Returns the dataset root (single wrapper directories are descended). Raises DataSourceError.
    """
    limits = SourceLimits() if limits is None else limits
    if not isinstance(source, str) or not source.strip():
        raise DataSourceError(f"Data source {source!r} is empty")
    source = source.strip()
    parse_checksum(checksum)  # Malformed spec -> ValueError up front.

    file_id = gdrive_file_id(source)
    if file_id is not None:
        url = GDRIVE_URL_TEMPLATE.format(id=file_id)
        return _download_cached(source, url, f"gdrive:{file_id}", f"gdrive-{file_id}", cache_dir,
                                checksum, use_gdown=True, limits=limits)
    if is_url(source):
        return _download_cached(source, source, source, _url_filename(source), cache_dir,
                                checksum, use_gdown=False, limits=limits)
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
        return _extract_cached(path, cache_dir, source, limits)
    raise DataSourceError(
        f"Data source {source!r} not found: not an existing directory or archive file, an "
        f"http(s) URL, a Google Drive id/link, or a scheme:// URI")
