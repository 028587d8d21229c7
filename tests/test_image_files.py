"""Dataset layout detection, split assignment and per-file checks (components/image_files.py)."""
import os
import struct

import pytest

import image_factory
from common import ingest_report
from components.image_example_gen import image_files
from components.image_example_gen.image_files import DatasetLayoutError


def _classes_by_split(listing):
    out = {}
    for f in listing.files:
        out.setdefault(f.split, {}).setdefault(f.class_name, 0)
        out[f.split][f.class_name] += 1
    return out


def test_split_folders_are_recognised(tmp_path):
    image_factory.make_image_tree(str(tmp_path), {"train": {"b": 2, "a": 3}, "val": {"a": 1, "b": 1}})
    listing = image_files.list_image_files(str(tmp_path))
    assert listing.split_mode == "folders"
    assert listing.class_names == ["a", "b"]
    assert _classes_by_split(listing) == {"train": {"a": 3, "b": 2}, "eval": {"a": 1, "b": 1}}
    assert all(not f.relpath.startswith("/") and f.relpath.count("/") == 2 for f in listing.files)


@pytest.mark.parametrize("train,evaluation", [("seg_train", "seg_test"), ("train", "test"), ("TRAIN", "Eval")])
def test_split_folder_names(tmp_path, train, evaluation):
    image_factory.make_image_tree(str(tmp_path), {train: {"a": 1, "b": 1}, evaluation: {"a": 1}})
    listing = image_files.list_image_files(str(tmp_path))
    assert _classes_by_split(listing) == {"train": {"a": 1, "b": 1}, "eval": {"a": 1}}


def test_kaggle_doubled_folders(tmp_path):
    root = str(tmp_path)
    image_factory.make_image_tree(os.path.join(root, "seg_train"), {"seg_train": {"sea": 2, "street": 1}})
    image_factory.make_image_tree(os.path.join(root, "seg_test"), {"seg_test": {"sea": 1}})
    image_factory.make_image_tree(os.path.join(root, "seg_pred"), {"seg_pred": {"x": 2}})
    listing = image_files.list_image_files(root)
    assert listing.class_names == ["sea", "street"]
    assert _classes_by_split(listing) == {"train": {"sea": 2, "street": 1}, "eval": {"sea": 1}}
    assert listing.split_dirs["train"].endswith(os.path.join("seg_train", "seg_train"))
    assert [why for _, why in listing.ignored_dirs] == ["unlabelled images, not a split"]


def test_single_split_uses_a_stable_path_hash(tmp_path):
    image_factory.make_image_tree(str(tmp_path), {".": {"a": 100, "b": 100}})
    first = image_files.list_image_files(str(tmp_path), eval_fraction=0.25)
    second = image_files.list_image_files(str(tmp_path), eval_fraction=0.25)
    assert first.split_mode == "hash"
    assert [(f.relpath, f.split) for f in first.files] == [(f.relpath, f.split) for f in second.files]
    n_eval = sum(f.split == "eval" for f in first.files)
    assert 30 <= n_eval <= 70  # 200 files x 0.25 = 50 expected; binomial sd ~6
    for f in first.files:
        assert f.split == image_files.hash_split(f.relpath, 0.25)


def test_hash_split_does_not_depend_on_other_files():
    assert image_files.hash_split("a/x.jpg", 0.5) == image_files.hash_split("a/x.jpg", 0.5)
    share = sum(image_files.hash_split(f"c/{i}.jpg", 0.3) == "eval" for i in range(2000)) / 2000
    assert 0.26 < share < 0.34


def test_unlabelled_folder_is_ignored_and_root_files_listed(tmp_path):
    image_factory.make_image_tree(str(tmp_path), {"train": {"a": 1, "b": 1}, "val": {"a": 1},
                                                  "unlabeled": {".": 3}})
    image_factory.write_file(str(tmp_path / "README.md"), b"hello")
    image_factory.write_file(str(tmp_path / "train" / "loose.jpg"), image_factory.jpeg_bytes(8, 8))
    listing = image_files.list_image_files(str(tmp_path))
    assert len(listing.files) == 3
    assert listing.other_files == [str(tmp_path / "README.md")]
    assert [(u.path, u.reason) for u in listing.unread] == [("train/loose.jpg",
                                                             ingest_report.SKIP_OUTSIDE_CLASS_FOLDER)]


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetLayoutError, match="does not exist.*nowhere"):
        image_files.list_image_files(str(tmp_path / "nowhere"))


def test_eval_class_missing_from_train_is_an_error(tmp_path):
    image_factory.make_image_tree(str(tmp_path), {"train": {"a": 1, "b": 1}, "val": {"a": 1, "zebra": 1}})
    with pytest.raises(DatasetLayoutError, match=r"\['zebra'\].*no counterpart"):
        image_files.list_image_files(str(tmp_path))


def test_empty_dataset_is_an_error(tmp_path):
    os.makedirs(tmp_path / "train" / "a")
    os.makedirs(tmp_path / "train" / "b")
    with pytest.raises(DatasetLayoutError, match="no files found"):
        image_files.list_image_files(str(tmp_path))
    os.makedirs(tmp_path / "empty")
    with pytest.raises(DatasetLayoutError, match="no class folders"):
        image_files.list_image_files(str(tmp_path / "empty"))


def test_eval_without_train_is_an_error(tmp_path):
    image_factory.make_image_tree(str(tmp_path), {"val": {"a": 1}})
    with pytest.raises(DatasetLayoutError, match="no train folder"):
        image_files.list_image_files(str(tmp_path))


def test_configured_class_names_must_match_the_folders(tmp_path):
    image_factory.make_image_tree(str(tmp_path), {"train": {"a": 1, "b": 1}})
    assert image_files.list_image_files(str(tmp_path), class_names=["a", "b"]).class_names == ["a", "b"]
    with pytest.raises(DatasetLayoutError, match=r"\['b'\].*not among"):
        image_files.list_image_files(str(tmp_path), class_names=["a", "c"])
    with pytest.raises(DatasetLayoutError, match=r"configured class\(es\) \['c'\]"):
        image_files.list_image_files(str(tmp_path), class_names=["a", "b", "c"])


def test_the_label_space_is_read_from_folders_alone(tmp_path):
    image_factory.make_image_tree(str(tmp_path), {"seg_train": {"z": 1, "m": 1}, "seg_test": {"m": 1}})
    listing = image_files.list_image_files(str(tmp_path), list_files=False)
    assert (listing.class_names, listing.files) == (["m", "z"], [])


def _fingerprint(root) -> str:
    return image_files.list_image_files(str(root)).fingerprint()


def test_fingerprint_changes_with_the_data(tmp_path):
    paths = image_factory.make_image_tree(str(tmp_path), {"train": {"a": 2}})
    before = _fingerprint(tmp_path)
    assert before == _fingerprint(tmp_path)
    image_factory.write_file(paths[0], image_factory.jpeg_bytes(9, 9, seed=5))
    changed = _fingerprint(tmp_path)
    assert changed != before
    os.mkfifo(tmp_path / "train" / "a" / "pipe.jpg")  # an unread entry counts too
    assert _fingerprint(tmp_path) != changed


@pytest.mark.parametrize("data,expected", [
    (image_factory.jpeg_bytes(150, 150), (150, 150, "jpeg")),
    (image_factory.jpeg_bytes(7, 301, mode="L"), (301, 7, "jpeg")),
    (image_factory.png_bytes(33, 20, mode="RGBA"), (20, 33, "png")),
    (image_factory.png_bytes(5, 5, mode="L"), (5, 5, "png")),
    (image_factory.bmp_bytes(12, 10), (10, 12, "bmp")),
])
def test_valid_images_pass_with_their_size(data, expected):
    assert image_files.inspect_image(data) == (None, expected)


@pytest.mark.parametrize("data,reason", [
    (b"", ingest_report.SKIP_EMPTY),
    (b"just some text\n", ingest_report.SKIP_NOT_IMAGE),
    (b"%PDF-1.4 not an image", ingest_report.SKIP_NOT_IMAGE),
    (image_factory.truncated_jpeg_bytes(), ingest_report.SKIP_TRUNCATED),
    (image_factory.corrupt_jpeg_bytes(), ingest_report.SKIP_UNDECODABLE),
    (image_factory.png_bytes(40, 40)[:60], ingest_report.SKIP_TRUNCATED),
    # A real PNG whose IHDR declares 20000x20000: refused from the header, never decoded.
    (image_factory.png_bytes(16, 16)[:16] + struct.pack(">II", 20000, 20000)
     + image_factory.png_bytes(16, 16)[24:], ingest_report.SKIP_TOO_MANY_PIXELS),
])
def test_bad_bytes_get_a_reason(data, reason):
    assert image_files.inspect_image(data) == (reason, None)


def test_jpeg_with_bytes_after_the_end_marker_is_accepted():
    data = image_factory.jpeg_bytes(20, 20) + b"trailing camera junk"
    assert image_files.inspect_image(data)[0] is None
