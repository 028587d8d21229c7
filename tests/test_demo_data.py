"""Tests for the embedded demo dataset (pipeline/demo_data.py) and the tests' image factory."""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from common.dataset import INTEL_CLASS_NAMES as CLASS_NAMES
from data_sources import demo_data
from data_sources.demo_data import MANIFEST_NAME, make_demo_dataset, render_image

try:  # tests/ is on sys.path when it is not a package; fall back to the package import.
    import image_factory
except ImportError:  # pragma: no cover
    from tests import image_factory

SMALL = dict(train_per_class=4, eval_per_class=2, size=48, seed=3)


def _tree_mtimes(root) -> dict[str, int]:
    return {os.path.relpath(os.path.join(d, f), root): os.stat(os.path.join(d, f)).st_mtime_ns
            for d, _, files in os.walk(root) for f in files}


@pytest.fixture(scope="module")
def default_dataset(tmp_path_factory):
    """The demo dataset with default arguments, built once for the module."""
    return make_demo_dataset(str(tmp_path_factory.mktemp("default") / "demo"))


# ------------------------------------------------------------------------------ layout and files
def test_layout_counts_and_manifest(tmp_path):
    dest = str(tmp_path / "demo")
    assert make_demo_dataset(dest, **SMALL) == dest
    assert sorted(os.listdir(dest)) == sorted(["train", "val", MANIFEST_NAME])
    for split, n in (("train", 4), ("val", 2)):
        assert sorted(os.listdir(os.path.join(dest, split))) == sorted(CLASS_NAMES)
        for c in CLASS_NAMES:
            assert sorted(os.listdir(os.path.join(dest, split, c))) == [f"{c}_{i:04d}.jpg" for i in range(n)]
    with open(os.path.join(dest, MANIFEST_NAME)) as f:
        manifest = json.load(f)
    assert manifest["params"]["train_per_class"] == 4
    assert manifest["params"]["eval_per_class"] == 2
    assert manifest["params"]["size"] == 48
    assert manifest["params"]["seed"] == 3
    assert manifest["counts"] == {"train": {c: 4 for c in CLASS_NAMES}, "val": {c: 2 for c in CLASS_NAMES}}
    assert manifest["file_count"] == 6 * (4 + 2) + 1 == len(image_factory.tree_digest(dest))
    # Built in a sibling temp dir and moved into place: nothing else may be left next to it.
    assert os.listdir(tmp_path) == ["demo"]


def test_every_file_is_a_real_jpeg_of_requested_size(tmp_path):
    dest = make_demo_dataset(str(tmp_path / "demo"), **SMALL)
    paths = image_factory.files_under(dest, (".jpg",))
    assert len(paths) == 36
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (48, 48)
            im.load()


def test_render_image_contract():
    for c in CLASS_NAMES:
        a = render_image(c, np.random.default_rng(7), size=40)
        assert a.shape == (40, 40, 3) and a.dtype == np.uint8
        assert np.array_equal(a, render_image(c, np.random.default_rng(7), size=40))
    with pytest.raises(ValueError, match="unknown demo class"):
        render_image("desert", np.random.default_rng(0))


def test_module_does_not_import_tensorflow():
    code = "import sys, data_sources.demo_data; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


# ------------------------------------------------------------------------------ determinism
def test_two_builds_are_byte_identical(tmp_path):
    a = image_factory.tree_digest(make_demo_dataset(str(tmp_path / "a"), **SMALL))
    b = image_factory.tree_digest(make_demo_dataset(str(tmp_path / "b"), **SMALL))
    assert a == b and len(a) == 37


def test_counts_do_not_shift_other_images(tmp_path):
    small = image_factory.tree_digest(make_demo_dataset(str(tmp_path / "a"), 2, 1, size=48, seed=3))
    big = image_factory.tree_digest(make_demo_dataset(str(tmp_path / "b"), **SMALL))
    common = [k for k in small if k != MANIFEST_NAME]
    assert len(common) == 18 and all(small[k] == big[k] for k in common)


def test_seed_changes_images(tmp_path):
    a = image_factory.tree_digest(make_demo_dataset(str(tmp_path / "a"), **SMALL))
    b = image_factory.tree_digest(make_demo_dataset(str(tmp_path / "b"), **{**SMALL, "seed": 4}))
    assert not set(v for k, v in a.items() if k != MANIFEST_NAME) & set(b.values())


# ------------------------------------------------------------------------------ idempotence/safety
def test_second_call_is_a_no_op(tmp_path):
    dest = make_demo_dataset(str(tmp_path / "demo"), **SMALL)
    before_hash, before_mtime = image_factory.tree_digest(dest), _tree_mtimes(dest)
    dir_mtime = os.stat(dest).st_mtime_ns
    assert make_demo_dataset(dest, **SMALL) == dest
    assert image_factory.tree_digest(dest) == before_hash and _tree_mtimes(dest) == before_mtime
    assert os.stat(dest).st_mtime_ns == dir_mtime
    assert os.listdir(tmp_path) == ["demo"]


def test_different_params_on_existing_dataset_raise(tmp_path):
    dest = make_demo_dataset(str(tmp_path / "demo"), **SMALL)
    before = image_factory.tree_digest(dest)
    for change in ({"seed": 9}, {"size": 64}, {"train_per_class": 5}, {"eval_per_class": 0}):
        with pytest.raises(FileExistsError, match="different parameters") as err:
            make_demo_dataset(dest, **{**SMALL, **change})
        assert dest in str(err.value)
    assert image_factory.tree_digest(dest) == before
    assert os.listdir(tmp_path) == ["demo"]


def test_existing_non_demo_dir_raises_and_is_untouched(tmp_path):
    dest = tmp_path / "mine"
    image_factory.make_image_tree(dest, {"train": {"cats": 2}})
    image_factory.write_file(dest / "notes.txt", b"user data")
    before, mtimes = image_factory.tree_digest(dest), _tree_mtimes(dest)
    with pytest.raises(FileExistsError, match="not a demo dataset") as err:
        make_demo_dataset(str(dest), **SMALL)
    assert str(dest) in str(err.value)
    assert image_factory.tree_digest(dest) == before and _tree_mtimes(dest) == mtimes
    assert os.listdir(tmp_path) == ["mine"]


def test_existing_file_raises(tmp_path):
    dest = image_factory.write_file(tmp_path / "demo", b"not a dir")
    with pytest.raises(FileExistsError, match="not a directory"):
        make_demo_dataset(dest, **SMALL)


def test_incomplete_dataset_is_detected(tmp_path):
    dest = make_demo_dataset(str(tmp_path / "demo"), **SMALL)
    os.remove(os.path.join(dest, "val", "sea", "sea_0001.jpg"))
    with pytest.raises(FileExistsError, match="incomplete or modified"):
        make_demo_dataset(dest, **SMALL)


def test_empty_existing_dir_is_filled(tmp_path):
    dest = tmp_path / "demo"
    dest.mkdir()
    assert make_demo_dataset(str(dest), **SMALL) == str(dest)
    assert len(image_factory.tree_digest(dest)) == 37


def test_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = demo_data.render_image

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 10:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(demo_data, "render_image", flaky)
    with pytest.raises(RuntimeError, match="boom"):
        make_demo_dataset(str(tmp_path / "demo"), **SMALL)
    assert os.listdir(tmp_path) == []


def test_bad_arguments(tmp_path):
    for bad in ({"train_per_class": 0}, {"size": 8}, {"seed": -1}, {"eval_per_class": 1.5}):
        with pytest.raises(ValueError):
            make_demo_dataset(str(tmp_path / "demo"), **{**SMALL, **bad})
    assert not (tmp_path / "demo").exists()


# ------------------------------------------------------------------------------ the default dataset
def test_default_dataset_shape_and_size(default_dataset):
    paths = image_factory.files_under(default_dataset, (".jpg",))
    assert len(paths) == 6 * (40 + 10)
    total = sum(os.path.getsize(p) for p in paths)
    print(f"default demo dataset: {len(paths)} JPEGs, {total / 1e6:.2f} MB")
    assert total < 8e6  # small enough to build on every fresh run
    with Image.open(paths[0]) as im:
        assert im.size == (150, 150)


def _load_split(root: str, split: str):
    pixels, labels = [], []
    for label, c in enumerate(CLASS_NAMES):
        for p in image_factory.files_under(os.path.join(root, split, c)):
            with Image.open(p) as im:
                pixels.append(np.asarray(im.convert("RGB"), dtype=np.float64))
            labels.append(label)
    return pixels, np.array(labels)


def _features(img: np.ndarray) -> np.ndarray:
    """Mean RGB plus simple texture statistics (mean |horizontal| and |vertical| gradients)."""
    grey = img.mean(axis=2)
    dx = np.abs(np.diff(grey, axis=1)).mean()
    dy = np.abs(np.diff(grey, axis=0)).mean()
    return np.array([*img.reshape(-1, 3).mean(axis=0), dx, dy, grey.std()])


def test_classes_are_separable_by_nearest_class_mean(default_dataset):
    train_px, train_y = _load_split(default_dataset, "train")
    val_px, val_y = _load_split(default_dataset, "val")
    x_train = np.stack([_features(p) for p in train_px])
    x_val = np.stack([_features(p) for p in val_px])
    mu, sd = x_train.mean(axis=0), x_train.std(axis=0) + 1e-9
    x_train, x_val = (x_train - mu) / sd, (x_val - mu) / sd
    centroids = np.stack([x_train[train_y == k].mean(axis=0) for k in range(len(CLASS_NAMES))])
    pred = np.argmin(((x_val[:, None, :] - centroids[None]) ** 2).sum(axis=2), axis=1)
    accuracy = float((pred == val_y).mean())
    print(f"nearest-class-mean accuracy on val: {accuracy:.3f} ({len(val_y)} images)")
    assert accuracy >= 0.9


def test_images_vary_within_each_class(default_dataset):
    for split in ("train", "val"):
        for c in CLASS_NAMES:
            paths = image_factory.files_under(os.path.join(default_dataset, split, c))
            imgs = [np.asarray(Image.open(p), dtype=np.int16) for p in paths]
            digests = {hashlib.sha256(a.tobytes()).hexdigest() for a in imgs}
            assert len(digests) == len(imgs), f"duplicate images in {split}/{c}"
            # Not just noise apart: consecutive images differ substantially in layout/colour.
            diffs = [np.abs(a - b).mean() for a, b in zip(imgs, imgs[1:])]
            assert min(diffs) > 5.0, f"{split}/{c} images too similar ({min(diffs):.1f})"


# ------------------------------------------------------------------------------ image_factory
@pytest.fixture(scope="module")
def tf():
    import tensorflow

    return tensorflow


def _decode(tf, data: bytes):
    return tf.io.decode_image(data, channels=3, expand_animations=False)


def test_factory_valid_images_decode(tf):
    cases = [
        (image_factory.jpeg_bytes(20, 10), (10, 20, 3)),
        (image_factory.jpeg_bytes(20, 10, color=(200, 10, 10)), (10, 20, 3)),
        (image_factory.jpeg_bytes(16, 16, mode="L"), (16, 16, 3)),
        (image_factory.png_bytes(12, 8), (8, 12, 3)),
        (image_factory.png_bytes(12, 8, mode="RGBA"), (8, 12, 3)),
        (image_factory.png_bytes(12, 8, mode="L"), (8, 12, 3)),
        (image_factory.bmp_bytes(9, 7), (7, 9, 3)),
        (image_factory.gif_bytes(10, 10, frames=3), (10, 10, 3)),
    ]
    for data, shape in cases:
        assert tuple(_decode(tf, data).shape) == shape
    red = _decode(tf, image_factory.jpeg_bytes(8, 8, color=(200, 10, 10))).numpy()
    assert abs(int(red[..., 0].mean()) - 200) < 8 and red[..., 1].mean() < 20
    assert image_factory.jpeg_bytes(8, 8, seed=1) != image_factory.jpeg_bytes(8, 8, seed=2)
    assert image_factory.jpeg_bytes(8, 8, seed=1) == image_factory.jpeg_bytes(8, 8, seed=1)
    with Image.open(io.BytesIO(image_factory.jpeg_bytes(8, 8, mode="L"))) as im:
        assert im.mode == "L"
    with Image.open(io.BytesIO(image_factory.png_bytes(8, 8, mode="RGBA"))) as im:
        assert im.mode == "RGBA"


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_factory_truncated_jpeg_fails_to_decode(tf, seed, mode):
    data = image_factory.truncated_jpeg_bytes(64, 64, seed=seed, mode=mode)
    full = image_factory.jpeg_bytes(64, 64, seed=seed, mode=mode)
    assert full.startswith(data) and data[:2] == b"\xff\xd8" and not data.endswith(b"\xff\xd9")
    assert 0.3 * len(full) < len(data) < 0.7 * len(full)
    # TF 2.16 (try_recover_truncated=False by default) rejects truncated JPEGs outright rather
    # than returning a partially decoded image; PIL refuses them too.
    with pytest.raises(tf.errors.InvalidArgumentError, match="Invalid JPEG data"):
        _decode(tf, data)
    with pytest.raises(OSError, match="truncated"):
        Image.open(io.BytesIO(data)).load()


def test_factory_jpeg_missing_only_eoi_also_fails(tf):
    # Even a complete scan with only the final EOI marker missing is an error for TF.
    with pytest.raises(tf.errors.InvalidArgumentError):
        _decode(tf, image_factory.jpeg_bytes(64, 64)[:-2])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_factory_corrupt_jpeg_fails_to_decode(tf, seed, mode):
    data = image_factory.corrupt_jpeg_bytes(64, 64, seed=seed, mode=mode)
    full = image_factory.jpeg_bytes(64, 64, seed=seed, mode=mode)
    assert len(data) == len(full) and data[:2] == b"\xff\xd8" and data.endswith(b"\xff\xd9")
    # Headers survive: PIL can still read the size without decoding pixels.
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG" and im.size == (64, 64)
    with pytest.raises(tf.errors.InvalidArgumentError):
        _decode(tf, data)
    with pytest.raises(OSError):
        Image.open(io.BytesIO(data)).load()


def test_factory_write_file_and_image_tree(tmp_path, tf):
    p = image_factory.write_file(tmp_path / "x" / "y" / "z.bin", b"abc")
    assert open(p, "rb").read() == b"abc" and isinstance(p, str)
    layout = {"train": {"a": 3, "b": 3}, "val": {"a": 1}}
    paths = image_factory.make_image_tree(tmp_path / "tree", layout, size=(24, 16))
    assert len(paths) == 7 and all(isinstance(p, str) and os.path.isfile(p) for p in paths)
    assert sorted(os.path.relpath(p, tmp_path / "tree") for p in paths) == sorted(
        os.path.join(s, c, f"{c}_{i:03d}.jpg") for s, cs in layout.items() for c, n in cs.items()
        for i in range(n))
    blobs = [open(p, "rb").read() for p in paths]
    assert len(set(blobs)) == 7  # every image distinct
    for b in blobs:
        assert tuple(_decode(tf, b).shape) == (16, 24, 3)
    # Deterministic: the same layout elsewhere gives the same bytes.
    again = image_factory.make_image_tree(tmp_path / "tree2", layout, size=(24, 16))
    assert [open(p, "rb").read() for p in again] == blobs
