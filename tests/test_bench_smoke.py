"""Tests of bench/: its helpers do what the benches rely on, and the benches run end to end.

The benches measure, they assert nothing about speed: the `slow` end-to-end tests call a script's
main(argv) in this process (no second TensorFlow and TFX start-up: about half the time of running
it as a subprocess) at tiny sizes on generated images and check that it finishes and prints its
tables.
"""
import json
import os
import re

import pytest
import tensorflow as tf

import image_factory
from bench import (content_cost, edge_latency, epoch_time, gpu_check, holdout_split, machine, pipeline_scale,
                   raw_examples, recipe_study, score_pool, tables, transform_throughput)
from common import dataset, pipeline_names
from components.image_example_gen import records
from trainer_module import names


def _table_rows(out):
    """The cells of every markdown table row printed in `out`."""
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in out.splitlines()
            if line.startswith("| ")]


def _meminfo_total_gib():
    with open("/proc/meminfo") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    return kib / 2**20


def test_machine_line_reports_this_machine():
    line = machine.machine_line()
    cores = re.search(r"(\d+) usable cores \((\d+) online\)", line)
    memory = re.search(r", ([\d.]+) GiB RAM,", line)
    assert cores and memory, line
    assert int(cores.group(1)) == len(os.sched_getaffinity(0))
    assert int(cores.group(2)) == os.cpu_count()
    assert abs(float(memory.group(1)) - _meminfo_total_gib()) <= 0.05


def test_command_line_reruns_the_module():
    line = machine.command_line("bench.transform_throughput", ["--n", "8", "--out", "a b"])
    assert line.endswith(" -m bench.transform_throughput --n 8 --out 'a b'")


def test_table_and_number_formats():
    assert tables.format_table(["a", "b"], [["x", 1234.5], ["y", 0.123], ["z", float("nan")]]) == (
        "| a | b     |\n"
        "|---|-------|\n"
        "| x | 1,234 |\n"
        "| y | 0.12  |\n"
        "| z | n/a   |")
    assert [tables.human_bytes(n) for n in (664, 14_200, 51.6e6, 4.39e9)] == ["664 B", "14.2 KB", "51.6 MB", "4.4 GB"]
    assert [tables.format_number(v) for v in (42.25, 3178.4, 12_345)] == ["42.2", "3,178", "12,345"]


def test_raw_examples_are_image_example_gen_records(tmp_path):
    image_factory.make_image_tree(tmp_path / "data", {"train": {"a": 3, "b": 2}}, size=(40, 30))
    image_factory.write_file(tmp_path / "data" / "train" / "a" / "broken.jpg", b"not an image")
    info = raw_examples.write_raw_examples(str(tmp_path / "data" / "train"), 7, str(tmp_path / "raw"), shards=2)
    # Round-robin a, b, a, b, a, (broken: skipped), then repeats from the start; shards alternate.
    assert (info["n"], info["classes"], info["skipped"], info["repeated"]) == (7, ["a", "b"], 1, 2)
    assert info["make_example"] == "components.image_example_gen.records.make_example"
    spec = dict(records.raw_feature_spec(), **{
        key: tf.io.FixedLenFeature([], tf.string) for key in (names.PATH_KEY, names.FORMAT_KEY)},
        **{key: tf.io.FixedLenFeature([], tf.int64) for key in (names.HEIGHT_KEY, names.WIDTH_KEY)})
    shards = [tf.io.parse_example(tf.stack(list(tf.data.TFRecordDataset(f, compression_type="GZIP"))), spec)
              for f in info["files"]]
    assert [p.decode() for p in shards[0][names.PATH_KEY].numpy()] == [
        "a/a_000.jpg", "a/a_001.jpg", "a/a_002.jpg", "b/b_000.jpg"]
    assert [p.decode() for p in shards[1][names.PATH_KEY].numpy()] == ["b/b_000.jpg", "b/b_001.jpg", "a/a_000.jpg"]
    assert shards[0][names.LABEL_KEY].numpy().tolist() == [0, 0, 0, 1]
    assert shards[1][names.LABEL_KEY].numpy().tolist() == [1, 1, 0]
    assert shards[0][names.HEIGHT_KEY].numpy()[0] == 30 and shards[0][names.WIDTH_KEY].numpy()[0] == 40
    assert tf.io.decode_jpeg(shards[1][names.IMAGE_KEY][0]).shape == (30, 40, 3)


def test_synthetic_images_are_the_demo_classes(tmp_path):
    folder = raw_examples.make_synthetic_images(str(tmp_path / "images"), per_class=2)
    classes, files = raw_examples.list_class_images(folder)
    assert classes == list(dataset.INTEL_CLASS_NAMES)
    assert [len(f) for f in files] == [2] * 6


def test_pipeline_scale_repeats_files_as_distinct_copies(tmp_path):
    image_factory.make_image_tree(tmp_path / "src", {"train": {"a": 2}, "val": {"a": 1}})
    assert pipeline_scale.make_repeated(str(tmp_path / "src"), str(tmp_path / "x3"), 3) == 9
    copied = sorted(os.listdir(tmp_path / "x3" / "train" / "a"))
    assert copied == ["r0_a_000.jpg", "r0_a_001.jpg", "r1_a_000.jpg", "r1_a_001.jpg", "r2_a_000.jpg", "r2_a_001.jpg"]
    copy, original = tmp_path / "x3" / "train" / "a" / "r2_a_001.jpg", tmp_path / "src" / "train" / "a" / "a_001.jpg"
    assert copy.read_bytes() == original.read_bytes() and not os.path.samefile(copy, original)
    # ImageExampleGen reads each real file once: copies count, links to one file would not.
    assert pipeline_scale.count_images(str(tmp_path / "x3")) == 9


def test_pipeline_scale_report_flags_superlinear_growth_and_peak(tmp_path, capsys):
    run = dict(rc=0, bytes={"ImageExampleGen.examples": 1000}, rss={})
    results = {1: dict(run, wall=100.0, maxrss=2e9, tree_peak=2.1e9, images=3600,
                       times={"ImageExampleGen": 10.0, "Trainer": 20.0}),
               5: dict(run, wall=300.0, maxrss=3e9, tree_peak=13e9, images=18000,
                       times={"ImageExampleGen": 40.0, "Trainer": 200.0})}
    saved = tmp_path / "bench_results.json"
    saved.write_text(json.dumps({"epochs": 1, "runner_args": [], "results": results}))
    assert pipeline_scale.main(["--report", str(saved)]) == 0
    rows = {row[0]: row[1:] for row in _table_rows(capsys.readouterr().out)}
    assert rows["Trainer"][-2:] == ["10.0", "2.00"]  # 10x the time at 5x the data: growth 2
    assert rows["ImageExampleGen"][-2:] == ["4.00", "0.80"]
    assert rows["every component grows no faster than linearly (growth <= 1.1 or < 5 s over linear)"] == [
        "faster than linear: Trainer", "MISSED"]
    assert rows["peak RSS of the x5 run <= 12 GB"] == ["13.00 GB (18,000 images)", "MISSED"]
    assert rows["every run finished"] == ["x1: rc 0, x5: rc 0", "MET"]


@pytest.mark.slow
def test_transform_throughput_runs_end_to_end(tmp_path, capsys):
    argv = ["--synthetic", "--n", "8", "--no-warmup", "--out", str(tmp_path)]
    assert transform_throughput.main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"^command: \S+ -m bench.transform_throughput --synthetic --n 8 ", out, re.M)
    assert "via components.image_example_gen.records.make_example" in out
    variants = [row[0] for row in _table_rows(out) if row[0] in ("ours", "anchor")]
    assert variants == ["ours", "anchor", "ours", "anchor"]  # the Transform table and the Trainer-side table
    assert "bytes per example the Trainer reads <= 0.3x the anchor's" in [row[0] for row in _table_rows(out)]


@pytest.mark.slow
def test_gpu_check_runs_on_cpu_without_tft(tmp_path, capsys):
    argv = ["--allow-cpu", "--tiny", "--synthetic", "--no-tft", "--precisions", "float32", "--out", str(tmp_path)]
    assert gpu_check.main(argv) == 0
    out = capsys.readouterr().out
    assert "ALL CHECKS PASSED" in out and "transform: preprocessing_fn applied directly (no TFT)" in out
    float32_rows = [row[1] for row in _table_rows(out) if row[0] == "float32"]
    assert float32_rows == ["in-memory tensors (model-bound limit)",
                            "make_dataset as the Trainer runs it (decoded images cached)",
                            "make_dataset, decoded_cache_gb=0 (decode every epoch)"]


def test_edge_latency_helpers():
    assert edge_latency.percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5  # numpy's linear interpolation
    assert edge_latency.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 90) == pytest.approx(4.6)
    assert edge_latency.percentile([7.0], 90) == 7.0
    # Every item in a batch, every batch full: the sequence wraps around.
    assert edge_latency.cycled_batches([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5, 1]]
    assert edge_latency.cycled_batches([1, 2], 3) == [[1, 2, 1]]


EDGE_CLASSES = ("red", "green", "blue")
EDGE_SIZE, EDGE_RESIZE = 32, 36


def _tiny_model_artifact(folder) -> str:
    """A Trainer Model artifact of a tiny network: Format-Serving/ through the real serving export
    (a stand-in Transform layer: the project's decoder) and Format-TFLite/ through the real edge export."""
    import numpy as np
    import tf_keras as keras

    from trainer_module import preprocessing, signatures, tflite_export
    from trainer_module.train_config import TrainConfig

    class Decode(keras.layers.Layer):
        def call(self, features):
            return {names.TRANSFORMED_IMAGE_KEY: preprocessing.decode_and_resize(
                tf.reshape(features[names.IMAGE_KEY], [-1]), EDGE_RESIZE, 10**6)}

    keras.utils.set_random_seed(0)
    inputs = keras.Input([EDGE_SIZE, EDGE_SIZE, 3])
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(16, 3, activation="relu")(x)
    x = keras.layers.Conv2D(64, 3, activation="relu")(x)  # enough weights that int8's saving shows
    outputs = keras.layers.Dense(len(EDGE_CLASSES), activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    cfg = TrainConfig(class_names=EDGE_CLASSES, image_size=EDGE_SIZE, resize_size=EDGE_RESIZE,
                      tflite_calibration_images=8)
    crops = np.random.default_rng(0).uniform(0, 255, (8, EDGE_SIZE, EDGE_SIZE, 3)).astype(np.float32)
    tflite_export.export_edge_models(model, cfg, tf.data.Dataset.from_tensor_slices(crops).batch(4),
                                     str(folder / names.EDGE_MODEL_SUBDIR))
    signatures.export_serving_model(model, Decode(), {names.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string)},
                                    cfg, str(folder / pipeline_names.TRAINER_SERVING_SUBDIR))
    return str(folder)


@pytest.mark.slow
def test_edge_latency_runs_end_to_end(tmp_path, capsys):
    model = _tiny_model_artifact(tmp_path / "model")
    images = tmp_path / "images"
    for name, color in zip(EDGE_CLASSES, ((250, 10, 10), (10, 250, 10), (10, 10, 250))):
        for j in range(3):
            image_factory.write_file(images / name / f"{name}_{j}.jpg",
                                     image_factory.jpeg_bytes(40 + j, 30, color=color))
    argv = ["--model", model, "--images", str(images), "--n", "7", "--batch-size", "4", "--repeats", "2",
            "--warmup", "1"]
    assert edge_latency.main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"^command: \S+ -m bench.edge_latency --model ", out, re.M)
    assert re.search(r"^commit: \S+", out, re.M) and re.search(r"^machine: \d+ usable cores", out, re.M)
    assert "images: 7 from" in out and "(7 in a class folder the model knows)" in out
    rows = _table_rows(out)
    sizes = {(r[0], r[1]): int(r[2].replace(",", "")) for r in rows if r[1].endswith((".tflite", "(the weights)"))}
    assert set(sizes) == {("SavedModel", "variables/ (the weights)"), ("float16", "model_float16.tflite"),
                          ("int8", "model_int8.tflite")}
    assert all(n > 0 for n in sizes.values())
    assert sizes[("int8", "model_int8.tflite")] < sizes[("float16", "model_float16.tflite")]
    accuracy = {r[0]: r[1:] for r in rows if len(r) == 5 and r[1] == "7"}
    assert sorted(accuracy) == ["SavedModel", "float16", "int8"]
    assert all(0.0 <= float(v[1]) <= 1.0 and 0.0 <= float(v[3]) <= 1.0 for v in accuracy.values())
    assert accuracy["SavedModel"][2:] == ["n/a", "1.0000"]  # its own drop and agreement
    latency = [r for r in rows if len(r) == 7 and r[1] in (edge_latency.MODEL_ONLY, edge_latency.END_TO_END)]
    assert [(r[0], r[1], r[2]) for r in latency] == [
        (model_name, path, per_call) for path in (edge_latency.MODEL_ONLY, edge_latency.END_TO_END)
        for per_call in ("1", "4") for model_name in ("SavedModel", "float16", "int8")]
    for row in latency:
        median, p90, cpu, ratio = (float(v.replace(",", "")) for v in row[3:])
        assert 0 < median <= p90 and cpu >= 0 and ratio > 0, row
    assert all(row[6] == "1.00" for row in latency if row[0] == "SavedModel")


def test_recipe_study_errors_are_the_pools_and_the_paired_ones():
    import numpy as np

    a = np.array([1, 1, 0, 0, 1, 1, 0, 1], bool)
    b = np.array([1, 0, 1, 1, 1, 1, 0, 1], bool)
    assert recipe_study.accuracy_with_se(a) == pytest.approx((5 / 8, (5 / 8 * 3 / 8 / 8) ** 0.5))
    diff, se, only_a, only_b = recipe_study.paired_difference(a, b)
    assert (only_a, only_b) == (1, 2) and diff == pytest.approx(1 / 8) and se == pytest.approx(3 ** 0.5 / 8)
    assert recipe_study.paired_difference(a, a)[:2] == (0.0, 0.0)
    recall = recipe_study.per_class_recall(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 4)
    assert recall[:3] == [1.0, 1.0, 0.5] and np.isnan(recall[3])


@pytest.mark.slow
def test_recipe_study_runs_end_to_end_and_a_rerun_reuses_its_rows(tmp_path, capsys):
    argv = ["ablation", "--synthetic", "--epochs", "1", "--only", "2", "--out", str(tmp_path)]
    assert recipe_study.main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"^command: \S+ -m bench.recipe_study ablation --synthetic", out, re.M)
    assert "pool: 24 images = 24 from" in out
    rows = [r for r in _table_rows(out) if r[0] in ("0", "1")]
    # The study's second row only evaluates differently (test_image_size): it reuses the first's fit.
    assert [(r[0], r[2], r[8]) for r in rows[:2]] == [("0", "24", "trained"),
                                                       ("1", "24", "eval only: fit of an earlier row")]
    assert re.fullmatch(r"\d+\.\d ± \d+\.\d", rows[0][3]) and rows[0][4] == ""
    assert re.fullmatch(r"row 0: [+-]\d+\.\d\d ± \d+\.\d\d", rows[1][4])
    # Then per row: the accuracy on each --eval folder (one here), the recall of each of the 6 classes, BN.
    assert len(rows[2]) == 1 + 1 + 6 + 1 and rows[2][1] == rows[0][3].split(" ")[0]
    assert recipe_study.main(argv) == 0  # everything kept in --out: nothing trained again
    again = [r for r in _table_rows(capsys.readouterr().out) if r[0] in ("0", "1")]
    assert [r[8] for r in again[:2]] == ["cached", "cached"] and [r[3] for r in again[:2]] == [r[3] for r in rows[:2]]
    # --skip 2 leaves out row 2 and row 3, which is measured against it: nothing to train.
    assert recipe_study.main([*argv[:-3], "4", *argv[-2:], "--skip", "2"]) == 0
    assert [r[0] for r in _table_rows(capsys.readouterr().out) if r[0].isdigit() and r[2] == "24"] == ["0", "1"]
    assert recipe_study.main([*argv, "--skip", "0"]) == 2  # later rows build on row 0
    assert "error: --skip 0: later rows build on row 0" in capsys.readouterr().err


def test_holdout_split_holds_back_a_fixed_stratified_pool(tmp_path):
    data = tmp_path / "data"
    for split, per_class in (("intel-dev/train", 3), ("intel-dev/val", 2), ("intel-rest/train", 10)):
        for cls in ("forest", "sea"):
            for j in range(per_class):
                name = f"{split.split('/')[0]}{j}.jpg"
                image_factory.write_file(data / split / cls / name, f"jpeg {split} {cls} {name}".encode())
    counts = holdout_split.make_split(str(data), str(tmp_path / "a"), 4)
    assert counts == {"train": 2 * (3 + 10 - 4), "val": 2 * 2, "holdout": 2 * 4, "left_out": 0}
    held = sorted(os.listdir(tmp_path / "a" / "holdout" / "sea"))
    assert held == sorted(holdout_split.held_back([f"intel-rest{j}.jpg" for j in range(10)], 4))
    assert not set(held) & set(os.listdir(tmp_path / "a" / "train" / "sea"))  # never trained on
    link = tmp_path / "a" / "holdout" / "sea" / held[0]
    assert os.path.realpath(link) == str(data / "intel-rest/train/sea" / held[0])
    holdout_split.make_split(str(data), str(tmp_path / "b"), 4)
    assert sorted(os.listdir(tmp_path / "b" / "holdout" / "sea")) == held  # fixed: the same pool every time
    with pytest.raises(FileExistsError):
        holdout_split.make_split(str(data), str(tmp_path / "a"), 4)


def test_holdout_split_keeps_copies_out_of_the_pool_and_val_copies_out_of_train(tmp_path):
    data = tmp_path / "data"
    for split, per_class in (("intel-dev/train", 3), ("intel-dev/val", 2), ("intel-rest/train", 10)):
        for j in range(per_class):
            image_factory.write_file(data / split / "sea" / f"{split.split('/')[0]}{j}.jpg", f"{split} {j}".encode())
    rest = [f"intel-rest{j}.jpg" for j in range(10)]
    first, second = holdout_split.held_back(rest, 2)  # the pool's first picks without copies
    rest_dir = data / "intel-rest/train/sea"
    (rest_dir / first).write_bytes((data / "intel-dev/train/sea/intel-dev0.jpg").read_bytes())  # a train copy
    (rest_dir / second).write_bytes((data / "intel-dev/val/sea/intel-dev1.jpg").read_bytes())  # a val copy
    counts = holdout_split.make_split(str(data), str(tmp_path / "a"), 4)
    held = os.listdir(tmp_path / "a" / "holdout" / "sea")
    train = os.listdir(tmp_path / "a" / "train" / "sea")
    assert first not in held and second not in held and len(held) == 4
    assert first in train and second not in train  # a duplicate inside train is only counted by the pipeline
    assert counts == {"train": 3 + 10 - 4 - 1, "val": 2, "holdout": 4, "left_out": 1}


@pytest.mark.slow
def test_score_pool_scores_a_saved_model_and_a_tflite_model_on_the_same_pool(tmp_path, capsys):
    model = _tiny_model_artifact(tmp_path / "model")
    images = tmp_path / "pool"
    for name, color in zip(EDGE_CLASSES, ((250, 10, 10), (10, 250, 10), (10, 10, 250))):
        for j in range(2):
            image_factory.write_file(images / name / f"{name}_{j}.jpg",
                                     image_factory.jpeg_bytes(40 + j, 30, color=color))
    tflite = os.path.join(model, names.EDGE_MODEL_SUBDIR, names.TFLITE_FILE.format(flavour="float16"))
    assert score_pool.main(["--model", model, "--model", tflite, "--images", str(images), "--batch-size", "4"]) == 0
    out = capsys.readouterr().out
    assert "pool: 6 images from" in out
    rows = [r for r in _table_rows(out) if r[0] in (model, tflite)]
    assert [(r[1], r[2]) for r in rows] == [("6", "0"), ("6", "0")]
    assert re.fullmatch(r"\d+\.\d\d ± \d+\.\d\d", rows[0][3]) and rows[0][4] == ""
    assert re.fullmatch(r"[+-]\d+\.\d\d ± \d+\.\d\d \(\d+ / \d+\)", rows[1][4])


@pytest.mark.slow
def test_epoch_time_runs_end_to_end_on_every_side_of_a_progressive_recipe(capsys):
    argv = ["--synthetic", "--n", "24", "--steps", "1", "--warmup-steps", "1", "--rounds", "1", "--eval-n", "8",
            "--variant", "progressive_start_size=96,epochs=4"]
    assert epoch_time.main(argv) == 0
    rows = _table_rows(capsys.readouterr().out)
    progressive = [r[1] for r in rows if r[0] == "cpu (today), progressive_start_size=96,epochs=4" and "px" in r[1]]
    assert progressive == ["96 px (1 epochs)", "112 px (1 epochs)", "128 px (2 epochs)"]
    ratios = [r[3] for r in rows if len(r) == 4 and r[0].startswith("cpu (")]
    assert ratios[0] == "1.000" and len(ratios) == 3


@pytest.mark.slow  # a Beam pipeline
def test_content_cost_times_both_readers_and_finds_the_planted_copy(tmp_path, capsys):
    root = tmp_path / "data"
    for split, seeds in (("train", (1, 2)), ("val", (3,))):
        for cls in ("a", "b"):
            for seed in seeds:
                image_factory.write_file(root / split / cls / f"{seed}.jpg",
                                         image_factory.jpeg_bytes(40, 30, seed=seed * 7 + ord(cls)))
    image_factory.write_file(root / "val" / "a" / "copy.jpg", (root / "train" / "a" / "1.jpg").read_bytes())
    assert content_cost.main(["--data-dir", str(root), "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^command: \S+ -m bench.content_cost --data-dir \S+ --repeats 1$", out, re.M)
    rows = {row[0]: row for row in _table_rows(out)}
    assert rows["with"][1] == rows["without"][1] == "7" and "ratio with / without" in rows
    assert "7 images): " in out and "1 exact and 0 near train/eval pairs" in out
