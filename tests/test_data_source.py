"""Tests for data_sources.sources: checksums, downloads (urllib, gdown), safe extraction, caching.

No internet: archives are served from a temp dir by a local http.server on 127.0.0.1.
"""
from __future__ import annotations

import collections
import functools
import hashlib
import http.server
import io
import os
import socket
import stat
import tarfile
import threading
import urllib.parse
import zipfile

import pytest

from data_sources import archives, sources as ds
from data_sources.archives import dataset_root, safe_extract
from data_sources.errors import ChecksumMismatchError, DataSourceError, UnsafeArchiveError
from data_sources.sources import (
    download,
    file_digest,
    gdrive_file_id,
    is_url,
    parse_checksum,
    resolve_data_source,
    verify_checksum,
)
from local_http import LocalHttpServer

pytestmark = pytest.mark.timeout(60)

# Small fake dataset: two class folders wrapped in "intel/seg_train/" like the real archive.
DATASET = {
    "intel/seg_train/buildings/b1.jpg": b"building-1",
    "intel/seg_train/buildings/b2.jpg": b"building-2",
    "intel/seg_train/forest/f1.jpg": b"forest-1",
    "intel/seg_train/forest/f2.jpg": b"forest-2",
}


# --------------------------------------------------------------------------- helpers


def sha256_of(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def snapshot(root) -> dict:
    """Every path under root (dirs included) -> (mode, size, mtime_ns); detects any write."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def make_zip(path, files: dict, *, dirs: bool = True) -> str:
    with zipfile.ZipFile(path, "w") as zf:
        if dirs:
            seen = set()
            for name in files:
                parts = name.split("/")[:-1]
                for i in range(1, len(parts) + 1):
                    d = "/".join(parts[:i]) + "/"
                    if d not in seen:
                        seen.add(d)
                        zf.writestr(zipfile.ZipInfo(d), b"")
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name), data)  # ZipInfo keeps the name verbatim.
    return str(path)


def tar_file_member(name: str, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    return info, io.BytesIO(data)


def tar_link_member(name: str, target: str, *, hard: bool = False):
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info, None


def tar_dir_member(name: str):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info, None


def make_tar(path, members, mode: str = "w:gz") -> str:
    """members: list of (TarInfo, fileobj|None) or a {name: bytes} dict."""
    if isinstance(members, dict):
        members = [tar_file_member(n, d) for n, d in members.items()]
    with tarfile.open(path, mode) as tf:
        for info, fileobj in members:
            tf.addfile(info, fileobj)
    return str(path)


def assert_dataset(root, prefix="intel/seg_train/"):
    assert sorted(os.listdir(root)) == ["buildings", "forest"]
    for name, data in DATASET.items():
        rel = name[len(prefix):]
        with open(os.path.join(root, rel), "rb") as f:
            assert f.read() == data


class _Server:
    def __init__(self, root):
        self.root = root
        self.hits = collections.Counter()
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                with server.lock:
                    server.hits[urllib.parse.urlsplit(self.path).path] += 1
                super().do_GET()

            def log_message(self, *args):  # Keep pytest output clean.
                pass

        self.http = LocalHttpServer(functools.partial(Handler, directory=str(root)))
        self.url = self.http.url

    def close(self):
        self.http.close()


@pytest.fixture
def server(tmp_path, monkeypatch):
    # urllib and requests (gdown) both honour proxy env vars; never route 127.0.0.1 through one.
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    root = tmp_path / "served"
    root.mkdir()
    srv = _Server(root)
    yield srv
    srv.close()


@pytest.fixture
def cache_dir(tmp_path):
    return str(tmp_path / "cache")


def downloads_files(cache_dir) -> list:
    base = os.path.join(cache_dir, "downloads")
    if not os.path.isdir(base):
        return []
    return sorted(os.path.relpath(os.path.join(d, f), base)
                  for d, _, files in os.walk(base) for f in files)


def extracted_dirs(cache_dir) -> list:
    base = os.path.join(cache_dir, "extracted")
    return sorted(os.listdir(base)) if os.path.isdir(base) else []


# --------------------------------------------------------------------------- checksums


def test_parse_checksum_good_specs():
    hex64 = "AB" * 32
    assert parse_checksum(f"SHA256:{hex64}") == ("sha256", "ab" * 32)
    assert parse_checksum(f" sha256:{'0' * 64} ") == ("sha256", "0" * 64)
    assert parse_checksum(f"Md5:{'f' * 32}") == ("md5", "f" * 32)
    assert parse_checksum(None) is None


@pytest.mark.parametrize("spec, fragment", [
    ("sha256", "expected"),
    (f"sha1:{'a' * 40}", "unsupported algorithm"),
    (f"sha256:{'a' * 63}", "64 hex digits"),
    (f"sha256:{'a' * 65}", "64 hex digits"),
    (f"md5:{'a' * 64}", "32 hex digits"),
    (f"md5:{'g' * 32}", "32 hex digits"),
    ("sha256:", "64 hex digits"),
    ("", "expected"),
])
def test_parse_checksum_bad_specs(spec, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_checksum(spec)


def test_file_digest_and_verify(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"hello")
    assert file_digest(str(p), "sha256") == hashlib.sha256(b"hello").hexdigest()
    assert file_digest(str(p), "MD5") == hashlib.md5(b"hello").hexdigest()
    verify_checksum(str(p), None)
    verify_checksum(str(p), "sha256:" + hashlib.sha256(b"hello").hexdigest().upper())
    wrong = "md5:" + "0" * 32
    with pytest.raises(ChecksumMismatchError) as exc:
        verify_checksum(str(p), wrong)
    assert exc.value.expected == wrong
    assert exc.value.actual == "md5:" + hashlib.md5(b"hello").hexdigest()
    assert exc.value.path == str(p)
    assert str(p) in str(exc.value) and wrong in str(exc.value)
    assert isinstance(exc.value, DataSourceError)


# --------------------------------------------------------------------------- source kinds


def test_is_url():
    assert is_url("http://example.com/a.zip")
    assert is_url("HTTPS://example.com/a.zip")
    assert not is_url("gs://bucket/data")
    assert not is_url("/tmp/data")
    assert not is_url("http://")
    assert not is_url("gdrive:abc")


@pytest.mark.parametrize("source, expected", [
    ("gdrive:1AbC_d-EfG", "1AbC_d-EfG"),
    ("GDRIVE:1AbC_d-EfG", "1AbC_d-EfG"),
    ("https://drive.google.com/file/d/1AbC_d-EfG/view?usp=sharing", "1AbC_d-EfG"),
    ("https://drive.google.com/file/d/1AbC_d-EfG/view", "1AbC_d-EfG"),
    ("https://drive.google.com/file/u/0/d/1AbC_d-EfG/edit", "1AbC_d-EfG"),
    ("https://drive.google.com/uc?id=1AbC_d-EfG&export=download", "1AbC_d-EfG"),
    ("https://drive.google.com/uc?export=download&id=1AbC_d-EfG", "1AbC_d-EfG"),
    ("https://drive.google.com/open?id=1AbC_d-EfG", "1AbC_d-EfG"),
    ("https://example.com/file/d/1AbC_d-EfG/view", None),
    ("https://drive.google.com/drive/folders/1AbC_d-EfG", None),
    ("https://drive.google.com/uc?export=download", None),
    ("gdrive:", None),
    ("gdrive:bad/id", None),
    ("/local/path", None),
    ("gs://bucket/x", None),
])
def test_gdrive_file_id(source, expected):
    assert gdrive_file_id(source) == expected


def test_dataset_root_descends_single_dirs_ignoring_macosx_and_dotfiles(tmp_path):
    d = tmp_path / "x"
    (d / "__MACOSX" / "junk").mkdir(parents=True)
    (d / ".DS_Store").write_bytes(b"")
    (d / "top" / "inner" / "cls_a").mkdir(parents=True)
    (d / "top" / "inner" / "cls_b").mkdir(parents=True)
    (d / "top" / ".hidden").write_bytes(b"")
    assert dataset_root(str(d)) == str(d / "top" / "inner")
    # A single *file* is not descended into.
    f = tmp_path / "y"
    f.mkdir()
    (f / "only.txt").write_bytes(b"")
    assert dataset_root(str(f)) == str(f)


# --------------------------------------------------------------------------- HTTP downloads


def test_http_zip_resolves_to_dataset_root(server, cache_dir):
    make_zip(server.root / "intel.zip", DATASET)
    root = resolve_data_source(f"{server.url}/intel.zip", cache_dir)
    assert_dataset(root)
    assert root.endswith(os.path.join("intel", "seg_train"))
    key = hashlib.sha256(f"{server.url}/intel.zip".encode()).hexdigest()[:16]
    assert downloads_files(cache_dir) == [os.path.join(key, "intel.zip")]
    archive_key = sha256_of(server.root / "intel.zip")[:16]
    extracted = os.path.join(os.path.abspath(cache_dir), "extracted", archive_key)
    assert root.startswith(extracted + os.sep)
    assert server.hits["/intel.zip"] == 1


def test_http_tar_gz_resolves_to_dataset_root_with_checksum(server, cache_dir):
    archive = make_tar(server.root / "intel.tar.gz", DATASET)
    checksum = "sha256:" + sha256_of(archive)
    root = resolve_data_source(f"{server.url}/intel.tar.gz", cache_dir, checksum=checksum)
    assert_dataset(root)
    assert server.hits["/intel.tar.gz"] == 1


def test_checksum_mismatch_leaves_nothing(server, cache_dir):
    make_zip(server.root / "intel.zip", DATASET)
    url = f"{server.url}/intel.zip"
    with pytest.raises(ChecksumMismatchError) as exc:
        resolve_data_source(url, cache_dir, checksum="sha256:" + "0" * 64)
    assert exc.value.actual == "sha256:" + sha256_of(server.root / "intel.zip")
    assert exc.value.path.endswith("intel.zip.part")
    assert downloads_files(cache_dir) == []  # Neither the final name nor the .part.
    assert extracted_dirs(cache_dir) == []


def test_cache_reuse_does_not_hit_server(server, cache_dir):
    archive = make_zip(server.root / "intel.zip", DATASET)
    url = f"{server.url}/intel.zip"
    first = resolve_data_source(url, cache_dir)
    assert server.hits["/intel.zip"] == 1
    extracted_before = snapshot(os.path.join(cache_dir, "extracted"))

    second = resolve_data_source(url, cache_dir, checksum="md5:" + hashlib.md5(
        open(archive, "rb").read()).hexdigest())
    assert second == first
    assert server.hits["/intel.zip"] == 1  # No network on the second call.
    assert snapshot(os.path.join(cache_dir, "extracted")) == extracted_before  # Not re-extracted.

    # A given checksum is still checked against the cached file, and a mismatch is not papered
    # over by a silent re-download.
    with pytest.raises(ChecksumMismatchError):
        resolve_data_source(url, cache_dir, checksum="sha256:" + "1" * 64)
    assert server.hits["/intel.zip"] == 1


def test_http_404_names_url(server, cache_dir):
    url = f"{server.url}/missing.zip"
    with pytest.raises(DataSourceError, match="404") as exc:
        resolve_data_source(url, cache_dir)
    assert url in str(exc.value)
    assert server.hits["/missing.zip"] == 1
    assert downloads_files(cache_dir) == []


def test_unreachable_host_names_url(tmp_path):
    with socket.socket() as s:  # A port that nothing listens on.
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.zip"
    dest = tmp_path / "dl" / "x.zip"
    with pytest.raises(DataSourceError, match="cannot reach") as exc:
        download(url, str(dest))
    assert url in str(exc.value)
    assert not dest.exists() and not (tmp_path / "dl" / "x.zip.part").exists()


def test_download_is_atomic_and_verifies(server, tmp_path):
    (server.root / "blob.bin").write_bytes(b"x" * 5000)
    dest = tmp_path / "out" / "blob.bin"
    good = "sha256:" + hashlib.sha256(b"x" * 5000).hexdigest()
    assert download(f"{server.url}/blob.bin", str(dest), good) == str(dest)
    assert dest.read_bytes() == b"x" * 5000
    assert sorted(os.listdir(tmp_path / "out")) == ["blob.bin"]

    dest2 = tmp_path / "out2" / "blob.bin"
    with pytest.raises(ChecksumMismatchError):
        download(f"{server.url}/blob.bin", str(dest2), "md5:" + "0" * 32)
    assert os.listdir(tmp_path / "out2") == []


def test_bad_checksum_spec_fails_before_network(server, cache_dir):
    make_zip(server.root / "intel.zip", DATASET)
    with pytest.raises(ValueError):
        resolve_data_source(f"{server.url}/intel.zip", cache_dir, checksum="sha256:nothex")
    assert server.hits["/intel.zip"] == 0


def test_downloaded_non_archive_is_rejected_and_dropped(server, cache_dir):
    (server.root / "page.zip").write_bytes(b"<html>not a zip</html>")
    with pytest.raises(DataSourceError, match="not a supported archive"):
        resolve_data_source(f"{server.url}/page.zip", cache_dir)
    assert downloads_files(cache_dir) == []  # So a retry refetches.


# --------------------------------------------------------------------------- Google Drive (gdown)


def test_gdrive_download_through_gdown(server, cache_dir, monkeypatch):
    (server.root / "drive").mkdir()
    make_zip(server.root / "drive" / "FILEid_123-x", DATASET)
    monkeypatch.setattr(ds, "GDRIVE_URL_TEMPLATE", server.url + "/drive/{id}")
    calls = []
    import gdown
    real = gdown.download
    monkeypatch.setattr(gdown, "download", lambda *a, **k: calls.append((a, k)) or real(*a, **k))

    root = resolve_data_source("gdrive:FILEid_123-x", cache_dir)
    assert_dataset(root)
    assert server.hits["/drive/FILEid_123-x"] == 1
    assert len(calls) == 1 and calls[0][0][0] == f"{server.url}/drive/FILEid_123-x"
    key = hashlib.sha256(b"gdrive:FILEid_123-x").hexdigest()[:16]
    assert downloads_files(cache_dir) == [os.path.join(key, "gdrive-FILEid_123-x")]

    # The share-link form of the same id maps to the same cache entry: no second download.
    again = resolve_data_source(
        "https://drive.google.com/file/d/FILEid_123-x/view?usp=sharing", cache_dir)
    assert again == root
    assert server.hits["/drive/FILEid_123-x"] == 1 and len(calls) == 1


def test_gdrive_missing_file_is_an_error(server, cache_dir, monkeypatch):
    # gdown does not check HTTP status for non-Drive hosts: it saves the 404 page. The archive
    # check must catch that and not leave the page in the cache.
    monkeypatch.setattr(ds, "GDRIVE_URL_TEMPLATE", server.url + "/drive/{id}")
    with pytest.raises(DataSourceError, match="not a supported archive"):
        resolve_data_source("gdrive:nope", cache_dir)
    assert downloads_files(cache_dir) == []


def test_gdown_download_checksum_mismatch(server, tmp_path):
    (server.root / "blob.bin").write_bytes(b"payload")
    dest = tmp_path / "g" / "blob.bin"
    with pytest.raises(ChecksumMismatchError):
        download(f"{server.url}/blob.bin", str(dest), "sha256:" + "0" * 64, use_gdown=True)
    assert os.listdir(tmp_path / "g") == []
    ok = "sha256:" + hashlib.sha256(b"payload").hexdigest()
    assert download(f"{server.url}/blob.bin", str(dest), ok, use_gdown=True) == str(dest)
    assert dest.read_bytes() == b"payload"
    assert os.listdir(tmp_path / "g") == ["blob.bin"]


# --------------------------------------------------------------------------- local sources


def test_local_directory_passthrough(tmp_path, cache_dir, monkeypatch):
    d = tmp_path / "images"
    (d / "cls").mkdir(parents=True)
    assert resolve_data_source(str(d), cache_dir) == str(d)
    monkeypatch.chdir(tmp_path)
    assert resolve_data_source("images", cache_dir) == str(d)  # Relative -> absolute.
    assert not os.path.exists(cache_dir)  # Nothing cached for a directory.


def test_local_archive_extracted_once(tmp_path, cache_dir, monkeypatch):
    # Named .bin on purpose: the format is sniffed from content, not the extension.
    archive = make_tar(tmp_path / "dataset.bin", DATASET)
    checksum = "sha256:" + sha256_of(archive)
    root = resolve_data_source(archive, cache_dir, checksum=checksum)
    assert_dataset(root)
    assert extracted_dirs(cache_dir) == [sha256_of(archive)[:16]]
    assert downloads_files(cache_dir) == []

    # Second resolve reuses the extraction (safe_extract must not run again).
    monkeypatch.setattr(archives, "safe_extract", lambda *a: pytest.fail("re-extracted"))
    assert resolve_data_source(archive, cache_dir, checksum=checksum) == root

    with pytest.raises(ChecksumMismatchError):
        resolve_data_source(archive, cache_dir, checksum="md5:" + "0" * 32)


@pytest.mark.parametrize("source", [
    "gs://bucket/intel/seg_train", "s3://bucket/x", "hdfs://namenode/data"])
def test_remote_uri_passthrough(source, cache_dir):
    assert resolve_data_source(source, cache_dir) == source
    assert not os.path.exists(cache_dir)


def test_missing_path_and_non_archive_file(tmp_path, cache_dir):
    missing = str(tmp_path / "nope")
    with pytest.raises(DataSourceError, match="nope"):
        resolve_data_source(missing, cache_dir)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(DataSourceError, match="not a supported archive") as exc:
        resolve_data_source(str(text), cache_dir)
    assert "notes.txt" in str(exc.value)
    assert extracted_dirs(cache_dir) == []


def test_read_only_source_directory(tmp_path, cache_dir):
    src = tmp_path / "readonly"
    for name, data in DATASET.items():
        p = src / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    make_zip(src / "bundle.zip", DATASET)
    all_paths = [src] + [src / p for p in snapshot(src)]
    for p in sorted(all_paths, key=lambda p: -len(str(p))):
        os.chmod(p, os.stat(p).st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    before = snapshot(src)
    try:
        assert resolve_data_source(str(src / "intel" / "seg_train"), cache_dir) == str(
            src / "intel" / "seg_train")
        root = resolve_data_source(str(src / "bundle.zip"), cache_dir)
        assert_dataset(root)
        assert root.startswith(os.path.abspath(cache_dir))
        # Root ignores permission bits, so compare a full snapshot rather than rely on EACCES.
        assert snapshot(src) == before
    finally:
        for p in all_paths:
            os.chmod(p, os.stat(p).st_mode | stat.S_IWUSR)


# --------------------------------------------------------------------------- unsafe archives


def _assert_refused_leaving_nothing(archive, dest, offending: str, root) -> None:
    """safe_extract refuses the archive naming the offending member, and writes nothing at all
    under root: no dest, nothing outside it, no temporary folder."""
    before = snapshot(root)
    with pytest.raises(UnsafeArchiveError) as exc:
        safe_extract(archive, str(dest))
    assert offending in str(exc.value)
    assert not dest.exists()
    assert snapshot(root) == before


@pytest.mark.parametrize("bad_name", ["../evil.txt", "/abs.txt", "ok/../../evil.txt"])
def test_zip_slip_rejected(tmp_path, bad_name):
    work = tmp_path / "work"
    work.mkdir()
    # No synthesized directory entries: the bad name must be the only offending member.
    archive = make_zip(tmp_path / "slip.zip", {"good/a.txt": b"a", bad_name: b"evil"}, dirs=False)
    _assert_refused_leaving_nothing(archive, work / "dest", bad_name, tmp_path)


@pytest.mark.parametrize("make_members, offending", [
    (lambda t: [tar_file_member("data/ok.txt", b"ok"), tar_file_member("../evil.txt", b"x")],
     "../evil.txt"),
    (lambda t: [tar_file_member(f"{t}/abs/evil.txt", b"x")], "evil.txt"),
    (lambda t: [tar_dir_member("data"), tar_link_member("data/link", "../../outside")],
     "data/link"),
    (lambda t: [tar_link_member("abslink", "/etc/passwd")], "abslink"),
    (lambda t: [tar_link_member("hard", "../outside.txt", hard=True)], "hard"),
    # Each link looks inside on its own; chained they escape: sub/l2 -> sub/l1/.. -> ../
    (lambda t: [tar_dir_member("sub"), tar_link_member("sub/l1", ".."),
                tar_link_member("sub/l2", "l1/.."), tar_file_member("sub/l2/evil.txt", b"x")],
     "sub/l2"),
])
def test_tar_unsafe_members_rejected(tmp_path, make_members, offending):
    work = tmp_path / "work"
    work.mkdir()
    archive = make_tar(tmp_path / "bad.tar.gz", make_members(str(tmp_path)))
    _assert_refused_leaving_nothing(archive, work / "dest", offending, tmp_path)


def test_tar_device_file_rejected(tmp_path):
    info = tarfile.TarInfo("dev/null0")
    info.type = tarfile.CHRTYPE
    info.devmajor, info.devminor = 1, 3
    archive = make_tar(tmp_path / "dev.tar", [(info, None)], mode="w")
    with pytest.raises(UnsafeArchiveError, match="device"):
        safe_extract(archive, str(tmp_path / "dest"))
    assert not (tmp_path / "dest").exists()


def test_tar_internal_symlink_accepted(tmp_path):
    members = [tar_file_member(n, d) for n, d in DATASET.items()]
    members.append(tar_link_member("intel/seg_train/forest/alias.jpg", "f1.jpg"))
    members.append(tar_link_member("intel/seg_train/more", "forest"))
    archive = make_tar(tmp_path / "ok.tgz", members)
    dest = safe_extract(archive, str(tmp_path / "dest"))
    assert dest == str(tmp_path / "dest")
    alias = tmp_path / "dest" / "intel" / "seg_train" / "forest" / "alias.jpg"
    assert alias.is_symlink() and os.readlink(alias) == "f1.jpg"
    assert alias.read_bytes() == b"forest-1"
    more = tmp_path / "dest" / "intel" / "seg_train" / "more"
    assert (more / "f2.jpg").read_bytes() == b"forest-2"
    # No temp sibling left behind.
    assert sorted(os.listdir(tmp_path)) == ["dest", "ok.tgz"]


def test_plain_tar_and_leading_dot_members(tmp_path):
    members = [tar_dir_member(".")] + [tar_file_member("./" + n, d) for n, d in DATASET.items()]
    archive = make_tar(tmp_path / "plain.tar", members, mode="w")
    dest = safe_extract(archive, str(tmp_path / "dest"))
    assert_dataset(dataset_root(dest))


def test_safe_extract_refuses_non_empty_dest(tmp_path):
    archive = make_zip(tmp_path / "a.zip", DATASET)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_bytes(b"keep")
    with pytest.raises(DataSourceError, match="not empty"):
        safe_extract(archive, str(dest))
    assert os.listdir(dest) == ["keep.txt"]
