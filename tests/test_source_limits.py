"""Tests of the bounds on data acquisition (data_sources.limits): zip/tar bombs, oversize archives,
lying zip headers, oversize/endless/slow downloads, redirects to other schemes, free disk space.

Every breach must raise the named error, say which knob to change, and leave nothing in the cache.
No internet: hostile servers are http.server handlers on 127.0.0.1, each loop bounded.
"""
from __future__ import annotations

import collections
import hashlib
import http.server
import io
import os
import tarfile
import threading
import time
import types
import urllib.parse
import zipfile

import pytest

from data_sources import archives, limits as limits_module, sources
from data_sources.errors import (
    DataSourceError,
    SourceLimitError,
    UnsafeArchiveError,
    UnsafeRedirectError,
)
from data_sources.limits import SourceLimits
from data_sources.sources import resolve_data_source
from local_http import LocalHttpServer

pytestmark = pytest.mark.timeout(30)

MB = 1024 * 1024
DATASET = {"intel/train/forest/f1.jpg": b"forest-1" * 100,
           "intel/train/forest/f2.jpg": b"forest-2" * 100,
           "intel/train/street/s1.jpg": b"street-1" * 100}


# --------------------------------------------------------------------------- helpers


def zip_bytes(files: dict, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def write(path, data: bytes) -> str:
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def leftovers(cache_dir) -> list:
    """Every file under cache_dir (.part files included) and every entry under extracted/."""
    found = [os.path.relpath(os.path.join(d, f), cache_dir)
             for d, _, files in os.walk(cache_dir) for f in files]
    extracted = os.path.join(cache_dir, "extracted")
    if os.path.isdir(extracted):
        found += [os.path.join("extracted", e) for e in os.listdir(extracted)]
    return sorted(found)


def download_folder(cache_dir, url: str) -> str:
    return os.path.join(cache_dir, "downloads", hashlib.sha256(url.encode()).hexdigest()[:16])


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory) -> str:
    """One member of 50 MB of zeros, deflated to about 50 KB (ratio about 1000)."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("intel/train/forest/zeros.jpg", "w") as member:
            for _ in range(50):
                member.write(bytes(MB))
    assert os.path.getsize(path) < 100 * 1024
    return str(path)


@pytest.fixture
def cache_dir(tmp_path) -> str:
    return str(tmp_path / "cache")


# --------------------------------------------------------------------------- local server


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1 whose paths map to handler functions (routes)."""

    def __init__(self):
        self.routes = {}
        self.hits = collections.Counter()
        self.stop = threading.Event()  # Ends every dripping/stalling handler at teardown.
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                path = urllib.parse.urlsplit(self.path).path
                server.hits[path] += 1
                route = server.routes.get(path)
                if route is None:
                    self.send_error(404)
                    return
                try:
                    route(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # The client gave up, as it should.

            def log_message(self, *args):
                pass

        self.http = LocalHttpServer(Handler)
        self.url = self.http.url

    def close(self):
        self.stop.set()
        self.http.close()


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    srv = _Server()
    yield srv
    srv.close()


def body(data: bytes, *, content_length: int | None = None):
    """A route answering 200 with ``data``, announcing ``content_length`` (default: the truth)."""
    def route(h):
        h.send_response(200)
        announced = len(data) if content_length is None else content_length
        h.send_header("Content-Length", str(announced))
        h.end_headers()
        h.wfile.write(data)
    return route


def endless(h):
    """200 without Content-Length, then up to 100 MB until the client hangs up or teardown."""
    h.send_response(200)
    h.end_headers()
    for _ in range(100_000):
        if h.server_stop.is_set():
            return
        h.wfile.write(b"\0" * 1024)


def redirect(to: str, *, endless_body: bool = False):
    def route(h):
        h.send_response(302)
        h.send_header("Location", to)
        if not endless_body:
            h.send_header("Content-Length", "0")
        h.end_headers()
        if endless_body:  # The stdlib handler would read this whole body before following.
            for _ in range(10_000):
                if h.server_stop.is_set():
                    return
                h.wfile.write(b"\0" * 1024)
                time.sleep(0.001)
    return route


def add_route(server, path, route):
    def wrapped(h):
        h.server_stop = server.stop
        route(h)
    server.routes[path] = wrapped


# --------------------------------------------------------------------------- extraction


def test_zip_bomb_is_refused_before_writing(zip_bomb, cache_dir):
    t0 = time.monotonic()
    with pytest.raises(SourceLimitError) as err:
        resolve_data_source(zip_bomb, cache_dir)
    message = str(err.value)
    assert "member 'intel/train/forest/zeros.jpg'" in message
    assert "52,428,800 bytes" in message and "over the limit of 100" in message
    assert "raise extract_max_ratio (--extract-max-ratio)" in message
    assert time.monotonic() - t0 < 2  # Refused from the central directory, nothing inflated.
    assert leftovers(cache_dir) == [] and not os.path.exists(cache_dir)


def test_zip_bomb_accepted_when_the_ratio_knob_allows_it(zip_bomb, tmp_path):
    dest = archives.safe_extract(zip_bomb, str(tmp_path / "out"),
                                 SourceLimits(max_extract_ratio=2000.0))
    assert os.path.getsize(os.path.join(dest, "intel/train/forest/zeros.jpg")) == 50 * MB


def test_whole_archive_ratio_is_checked_when_no_member_breaks_it(tmp_path, cache_dir):
    # 30 members of 0.9 MB zeros: each under the 1 MiB floor, together 27 MB from ~30 KB.
    files = {f"intel/train/forest/z{i}.jpg": bytes(900 * 1024) for i in range(30)}
    archive = write(tmp_path / "src" / "many.zip", zip_bytes(files))
    with pytest.raises(SourceLimitError, match=r"Extraction refused: .*many\.zip expands") as err:
        resolve_data_source(archive, cache_dir)
    assert "27,648,000 bytes" in str(err.value) and "--extract-max-ratio" in str(err.value)
    assert leftovers(cache_dir) == []


def test_tar_gz_bomb_is_refused_from_its_first_header(tmp_path, cache_dir):
    info = tarfile.TarInfo("intel/train/forest/zeros.jpg")
    info.size = 50 * MB
    archive = str(tmp_path / "src" / "bomb.tar.gz")
    os.makedirs(os.path.dirname(archive))
    with tarfile.open(archive, "w:gz") as tar:
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    with pytest.raises(SourceLimitError, match="ratio of .* over the limit of 100") as err:
        resolve_data_source(archive, cache_dir)
    assert "--extract-max-ratio" in str(err.value)
    assert leftovers(cache_dir) == []


def test_small_compressible_members_are_not_a_bomb(tmp_path):
    # 512 KB of zeros deflates ~500x, but under RATIO_MIN_BYTES the ratio is not judged.
    archive = write(tmp_path / "small.zip", zip_bytes({"a/zeros.jpg": bytes(512 * 1024)}))
    dest = archives.safe_extract(archive, str(tmp_path / "out"))
    assert os.path.getsize(os.path.join(dest, "a", "zeros.jpg")) == 512 * 1024


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_total_over_max_extract_bytes_is_refused(tmp_path, cache_dir, kind):
    archive = str(tmp_path / "src" / f"data.{kind}")
    os.makedirs(os.path.dirname(archive))
    if kind == "zip":
        write(archive, zip_bytes(DATASET))
    else:
        with tarfile.open(archive, "w:gz") as tar:
            for name, data in DATASET.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    small = SourceLimits(max_extract_bytes=2000)  # The members hold 3 x 800 bytes.
    with pytest.raises(SourceLimitError) as err:
        resolve_data_source(archive, cache_dir, limits=small)
    message = str(err.value)
    assert "over the limit of 2,000 bytes" in message
    assert "raise extract_max_gb (--extract-max-gb)" in message
    assert leftovers(cache_dir) == []
    # Within the limit the same archive extracts.
    root = resolve_data_source(archive, cache_dir, limits=SourceLimits(max_extract_bytes=2400))
    assert sorted(os.listdir(root)) == ["forest", "street"]


def _lying_zip(real: bytes, declared: int) -> bytes:
    """A zip whose central directory declares ``declared`` bytes for a member holding ``real``."""
    data = bytearray(zip_bytes({"intel/train/forest/big.jpg": real}))
    central = data.rfind(b"PK\x01\x02")
    data[central + 24:central + 28] = declared.to_bytes(4, "little")  # uncompressed size
    return bytes(data)


def test_lying_zip_header_fails_and_leaves_nothing(tmp_path, cache_dir):
    # 5 MB of zeros declared as 1,000 bytes: the declared sizes pass every check; zipfile stops
    # at the declared size and fails the CRC.
    archive = write(tmp_path / "src" / "liar.zip", _lying_zip(bytes(5 * MB), 1000))
    with pytest.raises(DataSourceError, match="Bad CRC-32 for file 'intel/train/forest/big.jpg'"):
        resolve_data_source(archive, cache_dir)
    assert leftovers(cache_dir) == []


def test_member_bigger_than_declared_is_stopped_while_writing(tmp_path, monkeypatch):
    # Without relying on zipfile's own truncation: the member stream yields 3 MB where 1,000
    # bytes are declared, and the copy must stop at the declared size.
    archive = write(tmp_path / "liar.zip", _lying_zip(bytes(3 * MB), 1000))
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda *a, **k: io.BytesIO(bytes(3 * MB)))
    with pytest.raises(UnsafeArchiveError, match=r"'intel/train/forest/big\.jpg' holds more than "
                                                  r"the 1,000 bytes its header declares"):
        archives.safe_extract(archive, str(tmp_path / "out"))
    assert sorted(os.listdir(tmp_path)) == ["liar.zip"]


def test_zip_symlink_with_an_oversize_target_is_refused(tmp_path):
    # _scan_zip reads a link member whole to check its target: it must be a path, not a payload.
    info = zipfile.ZipInfo("intel/link")
    info.create_system = 3
    info.external_attr = 0o120777 << 16  # S_IFLNK
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as zf:
        zf.writestr(info, b"a" * 5000)
    with pytest.raises(UnsafeArchiveError, match="'intel/link' declares a 5,000-byte target"):
        archives.safe_extract(str(tmp_path / "link.zip"), str(tmp_path / "out"))
    assert os.listdir(tmp_path) == ["link.zip"]


def test_copy_member_reads_at_most_one_byte_past_the_declared_size():
    src, dst = io.BytesIO(b"0123456789"), io.BytesIO()
    with pytest.raises(UnsafeArchiveError, match="member 'm' holds more than the 4 bytes"):
        archives._copy_member(src, dst, 4, "m", "a.zip")
    assert src.tell() == 5  # Never inflates further than declared + 1 byte.
    assert dst.getvalue() == b""  # The read that crossed the declared size is not written.
    dst = io.BytesIO()
    archives._copy_member(io.BytesIO(b"0123"), dst, 4, "m", "a.zip")
    assert dst.getvalue() == b"0123"


def test_extraction_checks_free_space(tmp_path, cache_dir, monkeypatch):
    archive = write(tmp_path / "src" / "data.zip", zip_bytes(DATASET))
    probed = []
    monkeypatch.setattr(limits_module.shutil, "disk_usage",
                        lambda p: probed.append(p) or types.SimpleNamespace(free=10 * MB))
    with pytest.raises(SourceLimitError) as err:
        resolve_data_source(archive, cache_dir)
    message = str(err.value)
    assert "needs 2,400 bytes (0.00 GB) plus 67,108,864 bytes" in message
    assert f"only 10,485,760 bytes (0.01 GB) is free in {os.path.join(cache_dir, 'extracted')};" \
        in message
    assert probed == [str(tmp_path)]  # The nearest existing folder: the cache is not made yet.
    assert leftovers(cache_dir) == []


# --------------------------------------------------------------------------- downloads


def test_normal_download_works_and_is_cached(server, cache_dir):
    add_route(server, "/data.zip", body(zip_bytes(DATASET)))
    root = resolve_data_source(server.url + "/data.zip", cache_dir)
    assert sorted(os.listdir(root)) == ["forest", "street"]
    assert resolve_data_source(server.url + "/data.zip", cache_dir) == root
    assert server.hits["/data.zip"] == 1
    assert not [p for p in leftovers(cache_dir) if p.endswith(".part")]


def test_http_redirect_is_followed_without_reading_its_body(server, cache_dir):
    add_route(server, "/data.zip", body(zip_bytes(DATASET)))
    add_route(server, "/moved", redirect("/data.zip", endless_body=True))
    t0 = time.monotonic()
    root = resolve_data_source(server.url + "/moved", cache_dir)
    assert time.monotonic() - t0 < 3  # The 10 MB, 10 s redirect body was not drained.
    assert sorted(os.listdir(root)) == ["forest", "street"]
    assert server.hits["/moved"] == 1 and server.hits["/data.zip"] == 1


def test_huge_content_length_is_refused_before_streaming(server, cache_dir):
    add_route(server, "/huge.zip", body(b"PK\x03\x04", content_length=10 ** 12))
    url = server.url + "/huge.zip"
    t0 = time.monotonic()
    with pytest.raises(SourceLimitError) as err:
        resolve_data_source(url, cache_dir)
    assert time.monotonic() - t0 < 2
    message = str(err.value)
    assert f"Download of {url} refused: the server announces 1,000,000,000,000 bytes" in message
    assert "over the limit of 20,000,000,000 bytes (20.00 GB)" in message
    assert "raise download_max_gb (--download-max-gb)" in message
    assert leftovers(cache_dir) == []


def test_stream_without_length_is_stopped_at_the_budget(server, cache_dir):
    add_route(server, "/endless.zip", endless)
    with pytest.raises(SourceLimitError, match=r"stopped after 10,001 bytes: over the limit of "
                                               r"10,000 bytes .* raise download_max_gb"):
        resolve_data_source(server.url + "/endless.zip", cache_dir,
                            limits=SourceLimits(max_download_bytes=10_000))
    assert leftovers(cache_dir) == []


def test_gdown_stream_is_stopped_at_the_budget(server, cache_dir, monkeypatch):
    add_route(server, "/drive/FILE1", endless)
    monkeypatch.setattr(sources, "GDRIVE_URL_TEMPLATE", server.url + "/drive/{id}")
    small = SourceLimits(max_download_bytes=10_000)
    with pytest.raises(SourceLimitError, match=r"limit of 10,000 bytes .*--download-max-gb"):
        resolve_data_source("gdrive:FILE1", cache_dir, limits=small)
    assert leftovers(cache_dir) == []


def drip(h):
    """Announces 100 bytes and sends one every 0.2 s (20 s in all, unless stopped)."""
    h.send_response(200)
    h.send_header("Content-Length", "100")
    h.end_headers()
    for _ in range(100):
        if h.server_stop.wait(0.2):
            return
        h.wfile.write(b"x")


def stall(h):
    """Announces 100 bytes and sends none (until teardown, at most 10 s)."""
    h.send_response(200)
    h.send_header("Content-Length", "100")
    h.end_headers()
    h.server_stop.wait(10)


@pytest.mark.parametrize("route", [drip, stall], ids=["drip", "stall"])
def test_slow_server_is_stopped_at_the_deadline(server, cache_dir, route):
    add_route(server, "/slow.zip", route)
    t0 = time.monotonic()
    with pytest.raises(SourceLimitError) as err:
        resolve_data_source(server.url + "/slow.zip", cache_dir,
                            limits=SourceLimits(deadline_s=1.0))
    assert 1.0 <= time.monotonic() - t0 < 2.5
    message = str(err.value)
    assert "past the deadline of 1 s (0.0166667 min)" in message
    assert "raise download_deadline_minutes (--download-deadline-minutes)" in message
    assert leftovers(cache_dir) == []


@pytest.mark.parametrize("target", ["ftp://127.0.0.1/data.zip", "file:///etc/hostname",
                                    "data:application/zip;base64,UEsFBg=="])
def test_redirect_to_another_scheme_is_refused(server, cache_dir, target):
    add_route(server, "/moved.zip", redirect(target))
    url = server.url + "/moved.zip"
    with pytest.raises(UnsafeRedirectError) as err:
        resolve_data_source(url, cache_dir)
    assert str(err.value) == (f"Download of {url} refused: it redirects (HTTP 302) to {target!r}; "
                              f"only http:// and https:// redirects are followed")
    assert server.hits["/moved.zip"] == 1
    assert leftovers(cache_dir) == []


def test_download_checks_free_space(server, cache_dir, monkeypatch):
    data = zip_bytes(DATASET)
    add_route(server, "/data.zip", body(data))
    url = server.url + "/data.zip"
    monkeypatch.setattr(limits_module.shutil, "disk_usage",
                        lambda p: types.SimpleNamespace(free=64 * MB + len(data) - 1))
    with pytest.raises(SourceLimitError) as err:
        resolve_data_source(url, cache_dir)
    message = str(err.value)
    assert f"Download of {url} needs {len(data):,} bytes" in message
    assert f"is free in {download_folder(cache_dir, url)}; free some space" in message
    assert "--output-dir" in message
    assert leftovers(cache_dir) == []
    # With room on the disk the same download goes through.
    monkeypatch.setattr(limits_module.shutil, "disk_usage",
                        lambda p: types.SimpleNamespace(free=10 ** 12))
    assert sorted(os.listdir(resolve_data_source(url, cache_dir))) == ["forest", "street"]
