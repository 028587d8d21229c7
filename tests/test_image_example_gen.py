"""ImageExampleGen's executor on real files, bad ones included (Beam DirectRunner)."""
import glob
import json
import os

import pytest
import tensorflow as tf
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.types import standard_artifacts

import image_factory
from common import dataset, image_content, ingest_report, pipeline_names
from components.image_example_gen import driver, executor, image_files
from pipeline import configs
from trainer_module import names


def _run(data_root, out_dir, class_names=(), eval_fraction=0.2):
    examples = standard_artifacts.Examples()
    examples.uri = str(out_dir)
    image_example_gen = executor.Executor(base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=list(configs.LOCAL_BEAM_ARGS), tmp_dir=str(out_dir) + "-tmp"))
    image_example_gen.Do({}, {"examples": [examples]}, {
        "input_base": str(data_root), "class_names": json.dumps(list(class_names)),
        "eval_fraction": eval_fraction})
    return examples


def _read_split(examples, split):
    files = glob.glob(os.path.join(examples.uri, f"Split-{split}", "*.gz"))
    out = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        ex = tf.train.Example.FromString(record.numpy())
        out.append({k: (v.bytes_list.value or v.int64_list.value or v.float_list.value)[0]
                    for k, v in ex.features.feature.items()})
    return out


@pytest.fixture()
def messy_tree(tmp_path):
    """Valid images of odd sizes and formats plus one of each kind of bad file."""
    root = tmp_path / "data"
    w = image_factory.write_file
    w(root / "train" / "cat" / "ok1.jpg", image_factory.jpeg_bytes(150, 150, seed=1))
    w(root / "train" / "cat" / "gray.jpg", image_factory.jpeg_bytes(31, 7, mode="L"))
    w(root / "train" / "cat" / "empty.jpg", b"")
    w(root / "train" / "cat" / "notes.txt", b"not an image")
    w(root / "train" / "dog" / "ok.png", image_factory.png_bytes(20, 40, mode="RGBA"))
    w(root / "train" / "dog" / "cut.jpg", image_factory.truncated_jpeg_bytes())
    w(root / "train" / "dog" / "sub" / "deep.jpg", image_factory.jpeg_bytes(64, 48, seed=3))
    w(root / "train" / "stray.jpg", image_factory.jpeg_bytes(10, 10))
    w(root / "val" / "cat" / "v1.jpg", image_factory.jpeg_bytes(50, 50, seed=4))
    w(root / "val" / "dog" / "broken.jpg", image_factory.corrupt_jpeg_bytes())
    w(root / "val" / "dog" / "v2.bmp", image_factory.bmp_bytes(16, 16))
    return root


def test_ingests_valid_files_and_reports_every_skip(messy_tree, tmp_path):
    examples = _run(messy_tree, tmp_path / "out")
    with open(os.path.join(examples.uri, "ingest_report.json")) as f:
        report = json.load(f)
    assert report["files_seen"] == 11
    assert report["ingested"] == 6 and report["skipped"] == 5
    assert report["ingested"] + report["skipped"] == report["files_seen"]
    assert report["skipped_by_reason"] == {
        "empty_file": 1, "not_an_image": 1, "outside_class_folder": 1, "truncated_image": 1,
        "undecodable_image": 1}
    assert {(s["path"], s["reason"]) for s in report["skipped_files"]} == {
        ("train/cat/empty.jpg", "empty_file"), ("train/cat/notes.txt", "not_an_image"),
        ("train/dog/cut.jpg", "truncated_image"), ("train/stray.jpg", "outside_class_folder"),
        ("val/dog/broken.jpg", "undecodable_image")}
    assert report["ingested_by_split_and_class"] == {"train": {"cat": 2, "dog": 2},
                                                      "eval": {"cat": 1, "dog": 1}}


def test_examples_hold_the_original_bytes_and_sorted_labels(messy_tree, tmp_path):
    examples = _run(messy_tree, tmp_path / "out")
    train = {r["path"].decode(): r for r in _read_split(examples, "train")}
    assert sorted(train) == ["train/cat/gray.jpg", "train/cat/ok1.jpg", "train/dog/ok.png",
                             "train/dog/sub/deep.jpg"]
    for path, record in train.items():
        assert record["image"] == (messy_tree / path).read_bytes()
        assert record["class_name"].decode() == path.split("/")[1]
        assert record["label"] == ["cat", "dog"].index(path.split("/")[1])
    assert (train["train/cat/gray.jpg"]["height"], train["train/cat/gray.jpg"]["width"]) == (7, 31)
    assert train["train/dog/ok.png"]["format"] == b"png"
    # The content statistics of the decoded pixels, one float each (common/image_content).
    gray = train["train/cat/gray.jpg"]
    expected = image_content.statistics(image_content.decode((messy_tree / "train/cat/gray.jpg").read_bytes()))
    assert {k: gray[k] for k in image_content.STATISTICS} == pytest.approx(expected, rel=1e-6)
    assert gray[image_content.SATURATION] == pytest.approx(0.0, abs=1e-6)
    assert gray[image_content.ASPECT_RATIO] == pytest.approx(31 / 7, rel=1e-6)
    evaluation = {r["path"].decode() for r in _read_split(examples, "eval")}
    assert evaluation == {"val/cat/v1.jpg", "val/dog/v2.bmp"}


def test_class_names_travel_with_the_artifact(messy_tree, tmp_path):
    examples = _run(messy_tree, tmp_path / "out")
    assert json.loads(examples.get_string_custom_property("class_names")) == ["cat", "dog"]
    with open(os.path.join(examples.uri, "class_names.json")) as f:
        assert json.load(f) == ["cat", "dog"]
    assert examples.get_int_custom_property("ingested") == 6
    assert examples.get_int_custom_property("skipped") == 5
    assert examples_utils.get_payload_format_string(examples) == "FORMAT_TF_EXAMPLE"
    assert json.loads(examples.split_names) == ["train", "eval"]


def test_input_folder_is_not_written(messy_tree, tmp_path):
    before = sorted((p, os.stat(p).st_mtime_ns) for p in glob.glob(f"{messy_tree}/**", recursive=True))
    _run(messy_tree, tmp_path / "out")
    after = sorted((p, os.stat(p).st_mtime_ns) for p in glob.glob(f"{messy_tree}/**", recursive=True))
    assert before == after


def test_no_usable_image_is_an_error_after_the_report(tmp_path):
    root = tmp_path / "data"
    image_factory.write_file(root / "train" / "a" / "x.jpg", b"")
    image_factory.write_file(root / "train" / "b" / "y.jpg", b"junk")
    with pytest.raises(ingest_report.ImageIngestError, match="no usable images"):
        _run(root, tmp_path / "out")
    assert os.path.exists(tmp_path / "out" / "ingest_report.json")


def test_class_without_usable_train_images_is_an_error(tmp_path):
    root = tmp_path / "data"
    image_factory.make_image_tree(str(root), {"train": {"a": 2}, "val": {"a": 1, "b": 1}})
    image_factory.write_file(root / "train" / "b" / "bad.jpg", image_factory.corrupt_jpeg_bytes())
    with pytest.raises(ingest_report.ImageIngestError, match=r"\['b'\] have no usable train images"):
        _run(root, tmp_path / "out")


def test_single_split_with_empty_eval_is_an_error(tmp_path):
    root = tmp_path / "data"
    image_factory.make_image_tree(str(root), {".": {"a": 1, "b": 1}})
    with pytest.raises(ingest_report.ImageIngestError, match="eval split is empty"):
        _run(root, tmp_path / "out", eval_fraction=0.01)


def test_missing_data_directory_names_the_path(tmp_path):
    with pytest.raises(image_files.DatasetLayoutError, match="does-not-exist"):
        _run(tmp_path / "does-not-exist", tmp_path / "out")


def _shard_paths(examples, split):
    """The relative paths of the records of each shard file, in file order."""
    shards = sorted(glob.glob(os.path.join(examples.uri, f"Split-{split}", "*.gz")))
    return [[tf.train.Example.FromString(r.numpy()).features.feature[names.PATH_KEY].bytes_list.value[0].decode()
             for r in tf.data.TFRecordDataset(shard, compression_type="GZIP")] for shard in shards]


def test_each_shard_is_written_sorted_by_path_hash_with_classes_mixed(tmp_path, monkeypatch):
    image_factory.make_image_tree(tmp_path / "data", {"train": {"a": 12, "b": 12, "c": 12},
                                                      "val": {"a": 1, "b": 1, "c": 1}}, size=(16, 16))
    monkeypatch.setattr(executor, "EXAMPLES_PER_SHARD", 10)  # 36 train records -> 4 shards
    shards = _shard_paths(_run(tmp_path / "data", tmp_path / "out1"), "train")
    assert len(shards) == 4 and sum(map(len, shards)) == 36
    # The order is what the executor writes, whatever order the runner delivered the records in.
    for paths in shards:
        assert paths == sorted(paths, key=executor.order_key)
    # Listed order would change class twice; an order independent of the class changes it often.
    labels = [p.split("/")[1] for paths in shards for p in paths]
    assert sum(a != b for a, b in zip(labels, labels[1:])) > 12
    # A second run writes the same files.
    assert _shard_paths(_run(tmp_path / "data", tmp_path / "out2"), "train") == shards


def _report(examples):
    with open(os.path.join(examples.uri, pipeline_names.INGEST_REPORT_FILE)) as f:
        return json.load(f)


def _labels_by_path(examples):
    return {r[names.PATH_KEY].decode(): r[names.CLASS_NAME_KEY].decode()
            for split in dataset.SPLITS for r in _read_split(examples, split)}


def test_hidden_and_tool_folders_are_never_classes(tmp_path):
    root = tmp_path / "data"
    image_factory.make_image_tree(root, {"train": {"a": 2, "b": 2}, "val": {"a": 1, "b": 1}}, size=(16, 16))
    for junk in ("train/.git/objects", "train/.ipynb_checkpoints", "train/__MACOSX/a", ".git", "val/.cache"):
        image_factory.write_file(root / junk / "x.jpg", image_factory.jpeg_bytes(8, 8))
    listing = image_files.list_image_files(str(root))
    assert listing.class_names == ["a", "b"]
    ignored = {os.path.relpath(p, root) for p, _ in listing.ignored_dirs}
    assert {"train/.git", "train/.ipynb_checkpoints", "train/__MACOSX", ".git", "val/.cache"} <= ignored
    assert all("x.jpg" not in f.path for f in listing.files)


@pytest.mark.timeout(120)  # a FIFO that was opened would block forever
def test_a_fifo_in_a_class_folder_is_skipped_without_being_opened(tmp_path):
    root = tmp_path / "data"
    image_factory.make_image_tree(root, {"train": {"a": 2, "b": 2}, "val": {"a": 1, "b": 1}}, size=(16, 16))
    os.mkfifo(root / "train" / "a" / "pipe.jpg")
    report = _report(_run(root, tmp_path / "out"))
    [skip] = report["skipped_files"]
    assert (skip["path"], skip["reason"], skip["split"], skip["class_name"]) == (
        "train/a/pipe.jpg", ingest_report.SKIP_NOT_REGULAR, "train", "a")
    assert "FIFO" in skip["detail"]
    assert report["ingested"] + report["skipped"] == report["files_seen"] == 7


def test_a_link_loop_neither_duplicates_nor_mislabels(tmp_path):
    root = tmp_path / "data"
    image_factory.make_image_tree(root, {"train": {"cat": 2, "dog": 3}, "val": {"cat": 1, "dog": 1}},
                                  size=(16, 16))
    os.symlink("..", root / "train" / "dog" / "loop")  # train/dog/loop/cat/... would be "dog"
    examples = _run(root, tmp_path / "out")
    report = _report(examples)
    assert report["ingested_by_split_and_class"]["train"] == {"cat": 2, "dog": 3}
    assert report["ingested"] == report["files_seen"] == 7 and report["skipped"] == 0
    assert all(not p.startswith("train/dog/loop") for p in _labels_by_path(examples))
    [loop] = [d for d in report["ignored_dirs"] if d["path"].endswith("train/dog/loop")]
    assert "link loop" in loop["why"]


def test_linked_class_folders_outside_the_root_are_read_and_a_file_linked_twice_once(tmp_path):
    outside = tmp_path / "elsewhere" / "more-dogs"
    image_factory.make_image_tree(outside.parent, {"more-dogs": {"x": 2}}, size=(16, 16))
    root = tmp_path / "data"
    image_factory.make_image_tree(root, {"train": {"cat": 2}, "val": {"cat": 1, "dog": 1}}, size=(16, 16))
    os.symlink(outside / "x", root / "train" / "dog")  # a class folder kept elsewhere: valid input
    os.symlink(root / "train" / "cat" / "cat_000.jpg", root / "train" / "cat" / "again.jpg")
    examples = _run(root, tmp_path / "out")
    report = _report(examples)
    assert report["ingested_by_split_and_class"]["train"] == {"cat": 2, "dog": 2}
    [dup] = report["skipped_files"]
    assert (dup["path"], dup["reason"]) == ("train/cat/again.jpg", ingest_report.SKIP_DUPLICATE)
    assert dup["detail"].endswith("train/cat/cat_000.jpg")  # the file keeps its own path, the link is the copy
    assert report["ingested"] + report["skipped"] == report["files_seen"]


def test_a_file_name_that_is_not_utf8_is_a_counted_skip_and_the_fingerprint_holds(tmp_path):
    """Such a name can be stored in no example, report or fingerprint as it is: it is one more
    skipped file, shown with its bytes escaped, and the driver's fingerprint of the tree holds."""
    root = tmp_path / "data"
    image_factory.make_image_tree(root, {"train": {"a": 2, "b": 2}, "val": {"a": 1, "b": 1}}, size=(16, 16))
    with open(os.fsencode(str(root / "train" / "a")) + b"/bad\xff.jpg", "wb") as f:
        f.write(image_factory.jpeg_bytes(16, 16))
    os.makedirs(os.fsencode(str(root / "train" / "b")) + b"/folder\xfe")  # a folder of that kind: not entered
    properties = {driver.INPUT_BASE_KEY: str(root), driver.CLASS_NAMES_KEY: "[]", driver.EVAL_FRACTION_KEY: 0.2}
    fingerprint = driver.resolve_exec_properties(properties)[driver.INPUT_FINGERPRINT_KEY]
    assert fingerprint == driver.resolve_exec_properties(properties)[driver.INPUT_FINGERPRINT_KEY]
    report = _report(_run(root, tmp_path / "out"))
    [skip] = report["skipped_files"]
    assert (skip["path"], skip["reason"], skip["split"], skip["class_name"]) == (
        "train/a/bad\\xff.jpg", ingest_report.SKIP_BAD_NAME, "train", "a")
    assert report["ingested"] == 6 and report["ingested"] + report["skipped"] == report["files_seen"] == 7
    assert any(d["path"].endswith("train/b/folder\\xfe") and "not valid UTF-8" in d["why"]
               for d in report["ignored_dirs"])
