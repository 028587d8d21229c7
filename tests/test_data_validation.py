"""Data validation: the curated schema, the drift baseline, the data gate, the report's Data section
and the schema update command.

Fast tests check the schema and the gate on statistics made here, running TFX's own validator
executors. The slow ones read the session's pipeline runs (tests/pipeline_runs.py): C, a clean
second drop, passes; D (a class missing) and E (images 4x larger) are stopped before Transform;
F is D's drop with --proceed-despite-anomalies. A label outside the range comes in through TFX's
ImportExampleGen from a hand-written TFRecord (one small pipeline up to the gate).
"""
import html
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tensorflow_data_validation.statistics import stats_impl
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2
from tensorflow_transform.tf_metadata import schema_utils
from tfx import v1 as tfx
from tfx.components.distribution_validator import executor as distribution_executor
from tfx.components.example_validator import executor as example_validator_executor
from tfx.dsl.compiler import compiler
from tfx.types import artifact_utils, standard_artifacts
from tfx_bsl.coders import example_coder

import image_factory
import kubeflow_v2_runner
import local_runner
import pipeline_runs
from common import dataset, image_content, ingest_report, pipeline_names, store
from components import curated_schema_gen, statistics_resolver
from components.curated_schema_gen import CuratedSchemaGen
from components.data_gate import executor as gate_executor, findings
from components.data_gate.component import DataGate, DataValidationResult
from components.image_example_gen import records
from pipeline import configs, data_validation
from pipeline.schema import curated
from run_control import exit_codes, local_run, schema_update as update
from run_report import data_validation as report_validation, writer
from trainer_module import image_format, names
from trainer_module.train_config import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CLASSES = ("cat", "dog", "eel")
BUDGET = 10_000
IMAGE = image_factory.jpeg_bytes(8, 8)
IMAGE_CONTENT = image_content.statistics(image_content.decode(IMAGE))


# ---------------------------------------------------------------- the curated schema (fast)

def test_checked_in_schema_is_its_canonical_text_after_a_comment_header():
    """So a proposal equal to it diffs as nothing, and the update command rewrites it as it is."""
    with open(curated.TEMPLATE_FILE) as f:
        text = f.read()
    header = curated.header_of()
    assert header.startswith("# The data contract") and text.startswith(header)
    assert text[len(header):] == curated.to_text(curated.read_schema())


def test_schema_takes_the_configured_class_names_and_pixel_budget():
    template = curated.read_schema()
    assert list(curated.feature(template, names.CLASS_NAME_KEY).string_domain.value) == list(dataset.INTEL_CLASS_NAMES)
    schema = text_format.Parse(curated.render_schema(CLASSES, BUDGET), schema_pb2.Schema())
    assert list(curated.feature(schema, names.CLASS_NAME_KEY).string_domain.value) == list(CLASSES)
    label = curated.feature(schema, names.LABEL_KEY).int_domain
    assert (label.min, label.max) == (0, 2)
    for name in (names.HEIGHT_KEY, names.WIDTH_KEY):
        size = curated.feature(schema, name).int_domain
        assert (size.min, size.max, size.is_categorical) == (1, BUDGET, True)
    # Everything else is the template's.
    untouched = [f for f in template.feature if f.name not in (*curated.CLASS_FEATURES, *curated.SIZE_FEATURES)]
    assert untouched == [f for f in schema.feature if f.name not in (*curated.CLASS_FEATURES, *curated.SIZE_FEATURES)]
    default = curated.render_schema(dataset.INTEL_CLASS_NAMES, image_format.DEFAULT_MAX_IMAGE_PIXELS)
    assert default == curated.to_text(template)
    assert curated_schema_gen.schema_version(default) != curated_schema_gen.schema_version(curated.render_schema(CLASSES, BUDGET))
    assert re.fullmatch(r"[0-9a-f]{12}", curated_schema_gen.schema_version(default))


def test_format_domain_is_the_set_the_decoder_reads():
    domain = set(curated.feature(curated.read_schema(), names.FORMAT_KEY).string_domain.value)
    made = [image_factory.jpeg_bytes(), image_factory.png_bytes(), image_factory.gif_bytes(), image_factory.bmp_bytes()]
    assert {image_format.sniff_format(data) for data in made} == domain == {"jpeg", "png", "gif", "bmp"}


def test_transform_reads_one_value_of_each_feature_as_before():
    """The raw feature spec SchemaGen inferred (infer_feature_shape): Transform and the Trainer
    parse the examples as they did."""
    spec = schema_utils.schema_as_feature_spec(curated.read_schema()).feature_spec
    strings = (names.IMAGE_KEY, names.CLASS_NAME_KEY, names.PATH_KEY, names.FORMAT_KEY)
    assert spec == {**{k: tf.io.FixedLenFeature([1], tf.string if k in strings else tf.int64)
                       for k in (*strings, names.LABEL_KEY, names.HEIGHT_KEY, names.WIDTH_KEY)},
                    **{k: tf.io.FixedLenFeature([1], tf.float32) for k in image_content.STATISTICS}}


def _example(label=0, class_name="cat", height=8, width=8, fmt="jpeg", image=IMAGE, extra=None,
             path="x.jpg", content=None) -> bytes:
    data = image if isinstance(image, bytes) else IMAGE
    example = records.make_example(data, label, class_name, path, height, width, fmt, content or IMAGE_CONTENT)
    if image is None:
        del example.features.feature[names.IMAGE_KEY]
    elif isinstance(image, list):
        example.features.feature[names.IMAGE_KEY].bytes_list.value[:] = image
    for key, value in (extra or {}).items():
        example.features.feature[key].int64_list.value.append(value)
    return example.SerializeToString()


def _stats(serialized, schema) -> statistics_pb2.DatasetFeatureStatistics:
    """Statistics as StatisticsGen computes them (its options, the schema given), in memory."""
    batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(list(serialized))
    options = data_validation.stats_options()
    options.schema = schema
    return stats_impl.generate_statistics_in_memory(batch, options).datasets[0]


def _balanced(n_per_class=40, classes=CLASSES, **kwargs):
    return [_example(label=i, class_name=c, **kwargs) for i, c in enumerate(classes) for _ in range(n_per_class)]


SCHEMA_CASES = {
    # case: (examples replacing the first 10 of 120, [(feature, expected, found)])
    "clean": ([], []),
    "label 99": ([_example(label=99)] * 10, [
        (names.LABEL_KEY, "an integer in [0, 2]",
         "values from 0 to 99 in 120 examples (Unexpectedly large value: 99.)")]),
    "class not configured": ([_example(class_name="zebra")] * 10, [
        (names.CLASS_NAME_KEY, "one of {cat, dog, eel}", "zebra in 10 of 120 examples")]),
    "format not decodable": ([_example(fmt="tiff")] * 10, [
        (names.FORMAT_KEY, "one of {bmp, gif, jpeg, png}", "tiff in 10 of 120 examples")]),
    "no image": ([_example(image=None)] * 10, [
        (names.IMAGE_KEY, "exactly one value per example", "110 of 120 examples with 1 to 1 values"),
        (names.IMAGE_KEY, "a value in every example", "values in 110 of 120 examples")]),
    "two images": ([_example(image=[IMAGE, IMAGE])] * 10, [
        (names.IMAGE_KEY, "exactly one value per example", "120 of 120 examples with 1 to 2 values")]),
    "height 0": ([_example(height=0)] * 10, [
        (names.HEIGHT_KEY, "an integer in [1, 10000]",
         "values from 0 to 8 in 120 examples (Unexpectedly small value: 0.)")]),
    "width over the budget": ([_example(width=BUDGET + 1)] * 10, [
        (names.WIDTH_KEY, "an integer in [1, 10000]",
         "values from 8 to 10001 in 120 examples (Unexpectedly large value: 10001.)")]),
    "not an image": ([_example(image=b"GIF7 not an image")] * 10, [
        (names.IMAGE_KEY, "at least 1 of the values images TensorFlow decodes (jpeg, png, gif, bmp)",
         "Fraction of values containing TensorFlow supported images: 0.916667 is lower than the "
         "threshold set in the Schema: 1.000000.")]),
    "a feature not in the schema": ([_example(extra={"rotation": 90})] * 10, [
        ("rotation", "no such feature (not in the schema)", "values in 10 of 120 examples")]),
}


@pytest.mark.parametrize("case", SCHEMA_CASES)
def test_schema_catches_what_it_protects(case):
    import tensorflow_data_validation as tfdv

    replaced, expected = SCHEMA_CASES[case]
    schema = curated.configure(curated.read_schema(), CLASSES, BUDGET)
    examples = _balanced()
    examples[:len(replaced)] = replaced
    stats = _stats(examples, schema)
    anomalies = tfdv.validate_statistics(statistics_pb2.DatasetFeatureStatisticsList(datasets=[stats]), schema)
    found = findings.schema_findings({findings.TRAIN: anomalies}, schema, {findings.TRAIN: stats})
    assert [(f.feature, f.expected, f.found) for f in found] == expected
    assert all(f.blocking and f.check == findings.SCHEMA for f in found)


# ---------------------------------------------------------------- the gate on TFX's validators (fast)

def _stats_artifact(uri, by_split):
    for split, stats in by_split.items():
        os.makedirs(os.path.join(uri, f"Split-{split}"))
        with open(os.path.join(uri, f"Split-{split}", findings.STATS_FILE), "wb") as f:
            f.write(statistics_pb2.DatasetFeatureStatisticsList(datasets=[stats]).SerializeToString())
    artifact = standard_artifacts.ExampleStatistics()
    artifact.uri = uri
    artifact.split_names = artifact_utils.encode_split_names(list(by_split))
    return artifact


def _artifact(cls, uri):
    artifact = cls()
    artifact.uri = uri
    os.makedirs(uri, exist_ok=True)
    return artifact


def _validate_and_gate(tmp_path, train, eval_, baseline_train=None, proceed=False, stop_on_skew=False,
                       cfg=None, examples=None):
    """TFX's ExampleValidator and DistributionValidator executors, then the DataGate's, on
    statistics of these examples; returns the gate's result artifact (or raises). cfg: the knobs
    of the comparators and the gate (thresholds 0.1 otherwise); examples: an Examples artifact
    whose ingest report the gate reads."""
    schema = curated.configure(curated.read_schema(), CLASSES, BUDGET)
    schema_artifact = _artifact(standard_artifacts.Schema, str(tmp_path / "schema"))
    with open(os.path.join(schema_artifact.uri, "schema.pbtxt"), "w") as f:
        f.write(curated.to_text(schema))
    stats = _stats_artifact(str(tmp_path / "stats"), {findings.TRAIN: _stats(train, schema),
                                                      findings.EVAL: _stats(eval_, schema)})
    anomalies = _artifact(standard_artifacts.ExampleAnomalies, str(tmp_path / "anomalies"))
    example_validator_executor.Executor().Do(
        {"statistics": [stats], "schema": [schema_artifact]}, {"anomalies": [anomalies]}, {"exclude_splits": "[]"})
    config = data_validation.distribution_config(0.1, 0.1, 0.1) if cfg is None else data_validation.comparator_config(cfg)

    def distribution(name, baseline, pair):
        out = _artifact(standard_artifacts.ExampleAnomalies, str(tmp_path / name))
        distribution_executor.Executor().Do(
            {"statistics": [stats], "baseline_statistics": [baseline]}, {"anomalies": [out]},
            {"distribution_validator_config": config, "include_split_pairs": json.dumps([pair])})
        return out

    inputs = {pipeline_names.STATISTICS_OUTPUT: [stats], pipeline_names.SCHEMA_OUTPUT: [schema_artifact],
              pipeline_names.ANOMALIES_OUTPUT: [anomalies],
              gate_executor.SKEW_KEY: [distribution("skew", stats, findings.SKEW_PAIR)]}
    if baseline_train is not None:
        baseline = _stats_artifact(str(tmp_path / "baseline"), {findings.TRAIN: _stats(baseline_train, schema)})
        inputs[gate_executor.DRIFT_KEY] = [distribution("drift", baseline, findings.DRIFT_PAIR)]
        inputs[gate_executor.BASELINE_KEY] = [baseline]
    if examples is not None:
        inputs[pipeline_names.EXAMPLES_OUTPUT] = [examples]
    result = _artifact(DataValidationResult, str(tmp_path / "result"))
    properties = {gate_executor.PROCEED_KEY: int(proceed), gate_executor.STOP_ON_SKEW_KEY: int(stop_on_skew)}
    if cfg is not None:
        properties[gate_executor.DRIFT_WARN_ONLY_KEY] = json.dumps(data_validation.drift_warn_only(cfg))
        properties[gate_executor.STOP_ON_DUPLICATES_KEY] = int(cfg.stop_on_cross_split_duplicates)
    gate_executor.Executor().Do(inputs, {pipeline_names.DATA_GATE_OUTPUT: [result]}, properties)
    return result


DRIFT_LINE = ("class_name (train vs the served model's training data): High Linfty distance between current and "
              "previous: expected L-infinity distance <= 0.1, found 0.333: eel 33.3% (30 of 90) -> 0.0% (0 of 60); "
              "now cat 50.0% (30 of 60), dog 50.0% (30 of 60)")


def test_gate_stops_on_drift_naming_the_class_distribution(tmp_path):
    with pytest.raises(findings.DataValidationError) as stopped:
        _validate_and_gate(tmp_path, _balanced(30, CLASSES[:2]), _balanced(10, CLASSES[:2]),
                           baseline_train=_balanced(30))
    assert str(stopped.value) == (
        "data validation stopped the run before Transform (nothing trained or pushed): 1 anomaly: "
        + DRIFT_LINE + ". Fix the data, or rerun with --proceed-despite-anomalies to train on it anyway (for "
        "data that is right but breaks the schema: python -m run_control.schema_update)")
    assert exit_codes.classify(stopped.value) == (exit_codes.DATA_ERROR, str(stopped.value))
    assert not os.listdir(tmp_path / "result")  # nothing recorded: a failed component publishes nothing


def test_gate_proceeds_when_told_and_records_that_it_did(tmp_path):
    result = _validate_and_gate(tmp_path, _balanced(30, CLASSES[:2]), _balanced(10, CLASSES[:2]),
                                baseline_train=_balanced(30), proceed=True)
    assert [result.get_int_custom_property(p) for p in (pipeline_names.PROP_FINDINGS, pipeline_names.PROP_BLOCKING,
                                                        pipeline_names.PROP_OVERRIDDEN)] == [1, 1, 1]
    with open(os.path.join(result.uri, pipeline_names.DATA_VALIDATION_FILE)) as f:
        recorded = json.load(f)
    assert [findings.Finding(**f).line() for f in recorded["findings"]] == [DRIFT_LINE]
    assert recorded["drift_compared"] is True
    assert {(m["check"], m["feature"], m["metric"], round(m["value"], 3)) for m in recorded["measurements"]} == {
        (check, feature, metric, value)
        for check in ("drift", "skew")
        for feature, metric, value in [
            ("class_name", "L-infinity distance", 0.333 if check == "drift" else 0.0),
            *((f, "Jensen-Shannon divergence", 0.0) for f in ("height", "width", *data_validation.CONTENT_FEATURES))]}


def test_skew_between_eval_and_train_warns_unless_told_to_stop(tmp_path):
    train, eval_ = _balanced(30), _balanced(10, height=32)  # eval images 4x as tall as train's
    result = _validate_and_gate(tmp_path / "warn", train, eval_)
    assert [result.get_int_custom_property(p) for p in (pipeline_names.PROP_FINDINGS,
                                                        pipeline_names.PROP_BLOCKING)] == [1, 0]
    with pytest.raises(findings.DataValidationError, match=r": 1 anomaly: height \(eval vs train\): .*"
                       r"expected Jensen-Shannon divergence <= 0\.1, found 1\.000: 8 100\.0% \(90 of 90\) -> "
                       r"0\.0% \(0 of 30\); now 32 100\.0% \(30 of 30\)\. Fix"):
        _validate_and_gate(tmp_path / "stop", train, eval_, stop_on_skew=True)


def test_no_baseline_no_drift_and_no_finding(tmp_path):
    result = _validate_and_gate(tmp_path, _balanced(30), _balanced(10))
    with open(os.path.join(result.uri, pipeline_names.DATA_VALIDATION_FILE)) as f:
        recorded = json.load(f)
    assert recorded["findings"] == [] and recorded["drift_compared"] is False
    assert {m["check"] for m in recorded["measurements"]} == {"skew"}


def test_thresholds_are_knobs_in_0_1():
    cfg = configs.PipelineConfig()
    assert (cfg.class_drift_max_linf, cfg.size_drift_max_jsd, cfg.stop_on_skew, cfg.proceed_despite_anomalies) \
        == (0.1, 0.1, False, False)
    for knob in ("class_drift_max_linf", "size_drift_max_jsd"):
        with pytest.raises(ConfigError, match=rf"^{knob}=1\.5: must be in \[0, 1\]"):
            configs.PipelineConfig(**{knob: 1.5})
    cfg, _ = local_runner.parse_args(["--class-drift-max-linf", "0.2", "--stop-on-skew", "--proceed-despite-anomalies"])
    assert (cfg.class_drift_max_linf, cfg.stop_on_skew, cfg.proceed_despite_anomalies) == (0.2, True, True)


def test_content_and_duplicate_knobs():
    cfg = configs.PipelineConfig()
    assert (cfg.content_drift_max_jsd, cfg.content_drift_stops, cfg.near_duplicate_max_hamming,
            cfg.stop_on_cross_split_duplicates) == (0.2, True, 4, True)
    assert data_validation.drift_warn_only(cfg) == []
    with pytest.raises(ConfigError, match=r"^content_drift_max_jsd=1\.5: must be in \[0, 1\]"):
        configs.PipelineConfig(content_drift_max_jsd=1.5)
    with pytest.raises(ConfigError, match=r"^near_duplicate_max_hamming=17: must be in \[0, 16\]"):
        configs.PipelineConfig(near_duplicate_max_hamming=17)
    cfg, _ = local_runner.parse_args(["--content-drift-max-jsd", "0.3", "--no-content-drift-stops",
                                      "--no-stop-on-cross-split-duplicates"])
    assert (cfg.content_drift_max_jsd, cfg.content_drift_stops, cfg.stop_on_cross_split_duplicates) == (0.3, False, False)
    assert data_validation.drift_warn_only(cfg) == list(data_validation.CONTENT_FEATURES)


# ---------------------------------------------------------------- image content drift (fast, real images)

SIDE = 24


def _photos(n: int, seed: int = 0):
    """n real RGB JPEGs (image_factory's textured patterns, each its own seed)."""
    return [image_factory.jpeg_bytes(SIDE, SIDE, seed=seed + i) for i in range(n)]


def _grayscale_darkened(data: bytes, factor: float = 0.4) -> bytes:
    """The operator's failure case: the same photo, grayscale, at 40 % of its brightness (JPEG)."""
    import io

    from PIL import Image

    gray = Image.open(io.BytesIO(data)).convert("L").point(lambda v: int(v * factor))
    out = io.BytesIO()
    gray.save(out, "JPEG", quality=90)
    return out.getvalue()


def _content_examples(images):
    """Examples as ImageExampleGen writes them: its content statistics of each decoded image."""
    return [_example(label=i % len(CLASSES), class_name=CLASSES[i % len(CLASSES)], image=data, height=SIDE,
                     width=SIDE, path=f"{i}.jpg", content=image_content.statistics(image_content.decode(data)))
            for i, data in enumerate(images)]


@pytest.fixture(scope="module")
def darkened_drop():
    """(baseline train, this drop's train, its eval): the same 90 + 30 photos, the drop's grayscale
    and darkened; the same files, sizes and classes."""
    photos = _photos(120)
    drop = [_grayscale_darkened(p) for p in photos]
    return _content_examples(photos[:90]), _content_examples(drop[:90]), _content_examples(drop[90:])


def test_a_grayscale_darkened_drop_trips_the_content_drift_and_stops(tmp_path, darkened_drop):
    baseline, train, eval_ = darkened_drop
    with pytest.raises(findings.DataValidationError) as stopped:
        _validate_and_gate(tmp_path, train, eval_, baseline_train=baseline, cfg=configs.PipelineConfig())
    message = str(stopped.value)
    lines = message.split(" anomalies: ", 1)[1].split(" | ")
    drifted = [line.split(" ")[0] for line in lines]
    # Saturation and colourfulness fall to 0, brightness to 40 %: each named with its figures.
    assert {image_content.SATURATION, image_content.COLOURFULNESS, image_content.BRIGHTNESS} <= set(drifted)
    assert set(drifted) <= set(data_validation.CONTENT_FEATURES)  # same classes, sizes, formats
    saturation = next(line for line in lines if line.startswith(image_content.SATURATION))
    assert re.match(r"content_saturation \(train vs the served model's training data\): High approximate "
                    r"Jensen-Shannon divergence.*: expected Jensen-Shannon divergence <= 0\.2, found 1\.000: "
                    r"mean 0\.\d+ .* -> mean 0 \(0 to 0, 90 examples\)", saturation), saturation
    assert exit_codes.classify(stopped.value)[0] == exit_codes.DATA_ERROR
    assert message.endswith("; content drift that is expected: --no-content-drift-stops or a larger "
                            "--content-drift-max-jsd")


def test_content_drift_only_warns_with_the_knob(tmp_path, darkened_drop):
    baseline, train, eval_ = darkened_drop
    cfg = configs.PipelineConfig(content_drift_stops=False)
    result = _validate_and_gate(tmp_path, train, eval_, baseline_train=baseline, cfg=cfg)
    with open(os.path.join(result.uri, pipeline_names.DATA_VALIDATION_FILE)) as f:
        recorded = json.load(f)
    warned = {f["feature"] for f in recorded["findings"] if f["check"] == "drift" and not f["blocking"]}
    assert {image_content.SATURATION, image_content.BRIGHTNESS} <= warned
    assert result.get_int_custom_property(pipeline_names.PROP_BLOCKING) == 0


def test_the_same_photos_again_pass_the_content_comparators(tmp_path, darkened_drop):
    baseline, _, _ = darkened_drop
    photos = _content_examples(_photos(120, seed=1000))  # other photos of the same kind
    result = _validate_and_gate(tmp_path, photos[:90], photos[90:], baseline_train=baseline,
                                cfg=configs.PipelineConfig())
    with open(os.path.join(result.uri, pipeline_names.DATA_VALIDATION_FILE)) as f:
        recorded = json.load(f)
    assert recorded["findings"] == []
    content = [m for m in recorded["measurements"] if m["feature"] in data_validation.CONTENT_FEATURES]
    assert len(content) == 2 * len(data_validation.CONTENT_FEATURES)
    assert max(m["value"] for m in content) < 0.2



# ---------------------------------------------------------------- duplicates and leakage (fast, real images)

def _resized_copy(data: bytes, scale: float = 0.75, quality: int = 75) -> bytes:
    """The same photo, resized and re-encoded (another file, other bytes, other pixels)."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(data)).convert("RGB")
    out = io.BytesIO()
    image.resize((int(image.width * scale), int(image.height * scale)), Image.LANCZOS).save(out, "JPEG", quality=quality)
    return out.getvalue()


@pytest.fixture(scope="module")
def leaky_examples(tmp_path_factory):
    """ImageExampleGen's executor on a tree where a train image was copied into eval, another one
    resized and re-encoded into eval, and a third copied within train."""
    from tfx.dsl.components.base import base_beam_executor

    from components.image_example_gen import executor as gen_executor

    root = tmp_path_factory.mktemp("leaky") / "data"
    photos = {name: image_factory.jpeg_bytes(64, 64, seed=seed) for seed, name in enumerate("abcdefgh")}
    w = image_factory.write_file
    for name in "abc":
        w(root / "train" / "cat" / f"{name}.jpg", photos[name])
    for name in "def":
        w(root / "train" / "dog" / f"{name}.jpg", photos[name])
    w(root / "train" / "dog" / "d_again.jpg", photos["d"])  # within train
    w(root / "val" / "cat" / "g.jpg", photos["g"])
    w(root / "val" / "cat" / "leak.jpg", photos["b"])  # train/cat/b.jpg, byte for byte
    w(root / "val" / "dog" / "h.jpg", photos["h"])
    w(root / "val" / "dog" / "smaller.jpg", _resized_copy(photos["e"]))  # train/dog/e.jpg, 48 px, q75
    examples = standard_artifacts.Examples()
    examples.uri = str(root.parent / "examples")
    gen_executor.Executor(base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=list(configs.LOCAL_BEAM_ARGS), tmp_dir=str(root.parent / "tmp"))).Do(
        {}, {pipeline_names.EXAMPLES_OUTPUT: [examples]},
        {"input_base": str(root), "class_names": "[]", "eval_fraction": 0.2, "near_duplicate_max_hamming": 4})
    return examples


def test_duplicates_within_and_across_splits_are_counted_and_listed(leaky_examples):
    report = ingest_report.read(os.path.join(leaky_examples.uri, pipeline_names.INGEST_REPORT_FILE))
    dup = report.duplicates
    assert (dup.within_split, dup.cross_split_exact, dup.cross_split_near, dup.near_max_hamming) == (1, 1, 1, 4)
    assert dup.within_split_groups == [{"split": "train", "paths": ["train/dog/d.jpg", "train/dog/d_again.jpg"]}]
    assert [(p["train"], p["eval"], p["kind"]) for p in dup.cross_split_pairs] == [
        ("train/cat/b.jpg", "val/cat/leak.jpg", "exact"), ("train/dog/e.jpg", "val/dog/smaller.jpg", "near")]
    assert dup.cross_split_pairs[0]["hamming"] == 0 and 0 <= dup.cross_split_pairs[1]["hamming"] <= 4
    assert report.ingested == 11  # duplicates are ingested: counted, and the gate decides


LEAK_LINE = ("image (eval images vs train images): eval images duplicate train images: expected no eval image "
             "that is a copy of a train image, found 2 train/eval pairs (1 exact, 1 near: perceptual hash "
             "within 4 bits): train/cat/b.jpg = val/cat/leak.jpg, train/dog/e.jpg ~ val/dog/smaller.jpg")


def test_a_cross_split_duplicate_stops_the_run_naming_both_paths(tmp_path, leaky_examples):
    with pytest.raises(findings.DataValidationError) as stopped:
        _validate_and_gate(tmp_path, _balanced(30), _balanced(10), cfg=configs.PipelineConfig(),
                           examples=leaky_examples)
    assert str(stopped.value).startswith("data validation stopped the run before Transform (nothing trained or "
                                         "pushed): 1 anomaly: " + LEAK_LINE + ". Fix the data")
    assert str(stopped.value).endswith("; remove the eval copies (ingest_report.json lists them), or "
                                       "--no-stop-on-cross-split-duplicates")


def test_a_cross_split_duplicate_only_warns_with_the_knob(tmp_path, leaky_examples):
    result = _validate_and_gate(tmp_path, _balanced(30), _balanced(10), examples=leaky_examples,
                                cfg=configs.PipelineConfig(stop_on_cross_split_duplicates=False))
    with open(os.path.join(result.uri, pipeline_names.DATA_VALIDATION_FILE)) as f:
        recorded = json.load(f)
    assert [(findings.Finding(**f).line(), f["blocking"]) for f in recorded["findings"]] == [(LEAK_LINE, False)]


def test_banded_search_finds_every_pair_within_the_distance():
    """The pigeonhole bands against all pairs, on hashes made to sit 0 to 8 bits apart."""
    import random

    from components.image_example_gen import duplicates

    rng = random.Random(7)
    thumb = image_content.luma_thumbnail(np.asarray(image_content.decode(IMAGE))).tobytes()
    train = [duplicates.ImageHash("train", f"t{i}", f"t{i}", rng.getrandbits(64), thumb) for i in range(200)]
    evals = []
    for i, t in enumerate(train[:60]):
        flipped = t.perceptual_hash
        for bit in rng.sample(range(64), i % 9):
            flipped ^= 1 << bit
        evals.append(duplicates.ImageHash("eval", f"e{i}", f"e{i}", flipped, thumb))
    evals += [duplicates.ImageHash("eval", f"r{i}", f"r{i}", rng.getrandbits(64), thumb) for i in range(100)]
    for distance in (0, 4, 6):
        layout = duplicates.bands(distance)
        buckets = {}
        for h in train + evals:
            for key, member in duplicates.band_keys(h, layout):
                buckets.setdefault(key, []).append(member)
        found = [item for key, members in buckets.items()
                 for _, item in duplicates.near_pairs_in_bucket(key, members, distance, layout)]
        brute = {(t.path, e.path, image_content.hamming(t.perceptual_hash, e.perceptual_hash))
                 for t in train for e in evals
                 if image_content.hamming(t.perceptual_hash, e.perceptual_hash) <= distance}
        assert len(found) == len(set(found)) and set(found) == brute  # each pair once, none missed
        assert len(brute) >= 60 * (min(distance, 8) + 1) // 9


# ---------------------------------------------------------------- the DAG (fast)

def _nodes(pipeline):
    return {n.pipeline_node.node_info.id: n.pipeline_node for n in compiler.Compiler().compile(pipeline).nodes}


def test_the_gate_runs_before_transform_and_after_every_validator(tmp_path):
    cfg, overrides = local_runner.parse_args(["--output-dir", str(tmp_path), "--proceed-despite-anomalies"])
    nodes = _nodes(local_run.build(cfg, overrides, str(tmp_path / "data"), list(CLASSES))[0])
    order = list(nodes)
    gate = nodes[pipeline_names.DATA_GATE_NODE]
    assert set(gate.upstream_nodes) == {pipeline_names.STATISTICS_GEN_NODE, pipeline_names.SCHEMA_GEN_NODE,
                                        pipeline_names.EXAMPLE_VALIDATOR_NODE,
                                        pipeline_names.SKEW_VALIDATOR_NODE, pipeline_names.DRIFT_VALIDATOR_NODE,
                                        pipeline_names.STATISTICS_RESOLVER_NODE, pipeline_names.EXAMPLE_GEN_NODE}
    # The ingest report (duplicates) comes with the examples; drift of the content statistics stops.
    assert set(gate.inputs.inputs) >= {pipeline_names.EXAMPLES_OUTPUT}
    assert gate.parameters.parameters[gate_executor.DRIFT_WARN_ONLY_KEY].field_value.string_value == "[]"
    assert gate.parameters.parameters[gate_executor.STOP_ON_DUPLICATES_KEY].field_value.int_value == 1
    assert order.index(pipeline_names.DATA_GATE_NODE) < order.index(pipeline_names.TRANSFORM_NODE)
    transform = nodes[pipeline_names.TRANSFORM_NODE]
    assert pipeline_names.DATA_GATE_NODE in transform.upstream_nodes
    # An order, not data: Transform's inputs (what TFX's cache keys on) are the examples and schema.
    assert set(transform.inputs.inputs) == {"examples", "schema"}
    assert gate.parameters.parameters[gate_executor.PROCEED_KEY].field_value.int_value == 1
    schema_text = nodes[pipeline_names.SCHEMA_GEN_NODE].parameters.parameters["schema_text"].field_value.string_value
    assert schema_text == curated.render_schema(CLASSES, image_format.DEFAULT_MAX_IMAGE_PIXELS)


def test_kubeflow_pipeline_has_the_gate_but_no_drift_baseline(tmp_path):
    cfg = kubeflow_v2_runner.parse_args(["--project", "p", "--bucket", "gs://b", "--image", "gcr.io/p/i:1",
                                         "--output-file", str(tmp_path / "job.json")])
    nodes = _nodes(kubeflow_v2_runner.build_pipeline(cfg))
    assert pipeline_names.DATA_GATE_NODE in nodes[pipeline_names.TRANSFORM_NODE].upstream_nodes
    assert not {pipeline_names.DRIFT_VALIDATOR_NODE, pipeline_names.STATISTICS_RESOLVER_NODE} & set(nodes)


# ---------------------------------------------------------------- the drift baseline resolver (fast)

class _Lineage:
    """A fake ML Metadata store with the events TFX records for StatisticsGen and the Trainer."""

    def __init__(self):
        config = metadata_store_pb2.ConnectionConfig()
        config.fake_database.SetInParent()
        self.store = metadata_store.MetadataStore(config)
        self.execution_type = self.store.put_execution_type(metadata_store_pb2.ExecutionType(name="component"))

    def artifact(self, cls, **properties):
        type_id = self.store.put_artifact_type(metadata_store_pb2.ArtifactType(name=cls.TYPE_NAME))
        [artifact_id] = self.store.put_artifacts([metadata_store_pb2.Artifact(type_id=type_id, uri="/x")])
        artifact = cls()
        artifact.id = artifact_id
        for name, value in properties.items():
            artifact.set_int_custom_property(name, value)
        return artifact

    def execution(self, inputs, outputs, state=metadata_store_pb2.Execution.COMPLETE):
        events = []
        for event_type, by_key in ((metadata_store_pb2.Event.INPUT, inputs),
                                   (metadata_store_pb2.Event.OUTPUT, outputs)):
            for key, artifact in by_key.items():
                event = metadata_store_pb2.Event(type=event_type)
                event.path.steps.add().key = key
                events.append((metadata_store_pb2.Artifact(id=artifact.id), event))
        self.store.put_execution(metadata_store_pb2.Execution(type_id=self.execution_type, last_known_state=state),
                                 events, [])


def test_drift_baseline_is_the_statistics_of_the_latest_blessed_models_examples():
    lineage = _Lineage()
    examples_a, examples_c = (lineage.artifact(standard_artifacts.Examples) for _ in range(2))
    stats_a, stats_c = (lineage.artifact(standard_artifacts.ExampleStatistics) for _ in range(2))
    model_a, model_c = (lineage.artifact(standard_artifacts.Model) for _ in range(2))
    lineage.execution({"examples": examples_a}, {"statistics": stats_a})  # StatisticsGen of run A
    lineage.execution({"examples": examples_a}, {"statistics": stats_a}, metadata_store_pb2.Execution.CACHED)
    lineage.execution({"examples": examples_a, "schema": stats_c}, {"model": model_a})  # Trainer of run A
    lineage.execution({"examples": examples_c}, {"statistics": stats_c})
    lineage.execution({"examples": examples_c}, {"model": model_c})
    blessings = [lineage.artifact(standard_artifacts.ModelBlessing, current_model_id=model_a.id, blessed=1),
                 lineage.artifact(standard_artifacts.ModelBlessing, current_model_id=model_c.id, blessed=0)]

    def resolve(candidate, blessed=blessings):
        result = statistics_resolver.BlessedModelStatisticsStrategy().resolve_artifacts(lineage.store, {
            "model": [model_a, model_c], "model_blessing": blessed, "statistics": [stats_a, stats_c],
            "candidate": [candidate]})
        return [s.id for s in result["statistics"]]

    assert resolve(stats_c) == [stats_a.id]  # A's model is served; C's was not blessed
    assert resolve(stats_a) == []  # an unchanged rerun: not compared with itself
    assert resolve(stats_c, blessed=blessings[1:]) == []  # nothing blessed yet


# ---------------------------------------------------------------- the shared pipeline runs (slow)

A, B, C, D, E, F = range(6)


@pytest.fixture(scope="module")
def runs(gate_runs):
    return gate_runs


def _validation(runs, index) -> report_validation.DataValidationView:
    return report_validation.collect(runs.cfg.metadata_path, runs.run_ids[index], runs.nodes[index])


def _figures(view):
    return {(m.check, m.feature): round(m.value, 3) for m in view.validation.measurements}


AFTER_GATE = (pipeline_names.TRANSFORM_NODE, pipeline_names.TRAINER_NODE, pipeline_names.RESOLVER_NODE,
              pipeline_names.EVALUATOR_NODE, pipeline_names.PUSHER_NODE)


def _assert_stopped_and_nothing_pushed(runs, index):
    nodes = runs.nodes[index]
    assert runs.exit_codes[index] == exit_codes.DATA_ERROR
    assert nodes[pipeline_names.DATA_GATE_NODE].state == "FAILED"
    assert not set(AFTER_GATE) & set(nodes)  # nothing after the gate ran
    assert runs.serving[index] == runs.serving[A] and runs.serving[A]  # the served version is A's
    assert runs.evaluator_executions[index] == runs.evaluator_executions[index - 1]


def _error_line(runs, index) -> str:
    [line] = [x for x in runs.errors[index].splitlines() if x.startswith("error: ")]
    return line


@pytest.mark.slow
def test_first_run_compares_no_drift_and_the_unchanged_rerun_is_cached(runs):
    view = _validation(runs, A)
    assert view.gate_state == "COMPLETE" and view.validation.findings == []
    assert not view.validation.drift_compared and view.baseline_uri is None
    assert set(_figures(view)) == {("skew", f) for f in (names.CLASS_NAME_KEY, names.HEIGHT_KEY, names.WIDTH_KEY,
                                                         *data_validation.CONTENT_FEATURES)}
    for node in (pipeline_names.DRIFT_VALIDATOR_NODE, pipeline_names.DATA_GATE_NODE, pipeline_names.TRANSFORM_NODE):
        assert runs.nodes[B][node].state == "CACHED", node
    assert view.schema_version == curated_schema_gen.schema_version(
        curated.render_schema(dataset.INTEL_CLASS_NAMES, image_format.DEFAULT_MAX_IMAGE_PIXELS))


@pytest.mark.slow
def test_a_clean_second_drop_passes_against_the_served_models_data(runs):
    """(a) C: the demo data drawn afresh (same classes, counts, sizes) is compared with A's and trains."""
    view = _validation(runs, C)
    assert runs.exit_codes[C] == 0 and view.gate_state == "COMPLETE" and not view.overridden
    assert view.baseline_uri == runs.nodes[A][pipeline_names.STATISTICS_GEN_NODE].uri(pipeline_names.STATISTICS_OUTPUT)
    figures = _figures(view)
    assert {k: v for k, v in figures.items() if k[1] not in data_validation.CONTENT_FEATURES} == {
        (check, f): 0.0 for check in ("drift", "skew") for f in (names.CLASS_NAME_KEY, names.HEIGHT_KEY, names.WIDTH_KEY)}
    # Other photos of the same kind: every content statistic measured, each below the threshold 0.2
    # (144 train images against 144, and 36 eval images against 144).
    content = {k: v for k, v in figures.items() if k[1] in data_validation.CONTENT_FEATURES}
    assert set(content) == {(c, f) for c in ("drift", "skew") for f in data_validation.CONTENT_FEATURES}
    assert all(0.0 < v < configs.PipelineConfig().content_drift_max_jsd for v in content.values()), content
    assert view.validation.findings == []
    for node in (pipeline_names.TRANSFORM_NODE, pipeline_names.TRAINER_NODE, pipeline_names.EVALUATOR_NODE):
        assert runs.nodes[C][node].state == "COMPLETE", node
    assert view.counts == {"train": {c: 24 for c in dataset.INTEL_CLASS_NAMES},
                           "eval": {c: 6 for c in dataset.INTEL_CLASS_NAMES}}
    assert view.baseline_counts == {c: 24 for c in dataset.INTEL_CLASS_NAMES}


@pytest.mark.slow
def test_a_drop_without_a_class_is_stopped_before_transform(runs):
    """(b) D: a class removed: the class distribution drifted from the served model's data."""
    _assert_stopped_and_nothing_pushed(runs, D)
    view = _validation(runs, D)
    [finding] = view.validation.findings
    others = ", ".join(f"{c} 20.0% (24 of 120)" for c in dataset.INTEL_CLASS_NAMES if c != pipeline_runs.REMOVED_CLASS)
    assert (finding.check, finding.feature, finding.expected, finding.found) == (
        findings.DRIFT, names.CLASS_NAME_KEY, "L-infinity distance <= 0.1",
        f"0.167: {pipeline_runs.REMOVED_CLASS} 16.7% (24 of 144) -> 0.0% (0 of 120); now {others}")
    assert _error_line(runs, D).startswith(
        "error: data validation stopped the run before Transform (nothing trained or pushed): 1 anomaly: "
        f"{finding.line()}. Fix the data, or rerun with --proceed-despite-anomalies")
    assert "(exit 1; full log: " in _error_line(runs, D)


@pytest.mark.slow
def test_images_four_times_larger_are_flagged_by_the_size_comparator(runs):
    """(c) E: every image 600 px instead of 150: height and width drifted (Jensen-Shannon 1)."""
    _assert_stopped_and_nothing_pushed(runs, E)
    view = _validation(runs, E)
    size = pipeline_runs.LARGE_SIZE
    assert [(f.feature, f.expected, f.found) for f in view.validation.blocking] == [
        (name, "Jensen-Shannon divergence <= 0.1",
         f"1.000: {pipeline_runs.DEMO_SIZE} 100.0% (144 of 144) -> 0.0% (0 of 48); now {size} 100.0% (48 of 48)")
        for name in (names.HEIGHT_KEY, names.WIDTH_KEY)]
    # Its 12 eval images against its 48 train images: content skew by chance, a warning only.
    warnings = [f for f in view.validation.findings if not f.blocking]
    assert all(f.check == findings.SKEW and f.feature in data_validation.CONTENT_FEATURES for f in warnings)
    assert _figures(view)[("drift", names.CLASS_NAME_KEY)] == 0.0  # the classes did not change
    assert "2 anomalies: height (train vs the served model's training data)" in _error_line(runs, E)


@pytest.mark.slow
def test_the_override_lets_the_stopped_drop_proceed_and_the_run_records_it(runs):
    """(e) F: D's drop with --proceed-despite-anomalies: trained, not blessed, nothing pushed."""
    nodes, view = runs.nodes[F], _validation(runs, F)
    assert runs.exit_codes[F] == 0 and view.gate_state == "COMPLETE" and view.overridden
    gate_result = nodes[pipeline_names.DATA_GATE_NODE].outputs[pipeline_names.DATA_GATE_OUTPUT][0]
    assert [store.custom_property(gate_result, p) for p in (pipeline_names.PROP_BLOCKING,
                                                            pipeline_names.PROP_OVERRIDDEN)] == [1, 1]
    assert store.execution_property(runs.cfg.metadata_path, runs.run_ids[F], pipeline_names.DATA_GATE_NODE,
                                    gate_executor.PROCEED_KEY) == 1
    assert [f.line() for f in view.validation.findings] == [f.line() for f in _validation(runs, D).validation.findings]
    for node in (pipeline_names.TRANSFORM_NODE, pipeline_names.TRAINER_NODE, pipeline_names.EVALUATOR_NODE):
        assert nodes[node].state == "COMPLETE", node
    assert store.output_property(nodes[pipeline_names.PUSHER_NODE], pipeline_names.PUSHED_MODEL_OUTPUT,
                                 pipeline_names.PROP_PUSHED) == 0
    assert runs.serving[F] == runs.serving[A]
    assert view.overridden and len(view.validation.findings) == 1


def _page_text(path: str) -> str:
    with open(path) as f:
        page = f.read()
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


@pytest.mark.slow
def test_report_data_section_of_a_passing_and_a_stopped_run(runs, tmp_path):
    passed = _page_text(writer.write_report(runs.cfg.metadata_path, str(tmp_path / "c"), runs.run_ids[C]))
    stopped_report = writer.write_report(runs.cfg.metadata_path, str(tmp_path / "d"), runs.run_ids[D])
    stopped = _page_text(stopped_report)
    for text, index in ((passed, C), (stopped, D)):
        assert f"Schema version {_validation(runs, index).schema_version}" in text
        assert ("Drift baseline: the statistics of the examples that trained the latest blessed model, "
                + runs.nodes[A][pipeline_names.STATISTICS_GEN_NODE].uri(pipeline_names.STATISTICS_OUTPUT)) in text
    assert "PASSED: no anomaly stops this data." in passed
    assert "Anomalies No anomaly." in passed
    assert ("train vs the served model's training data class_name L-infinity distance 0.000 0.100 ok"
            in passed)
    assert ("class train eval served model's train buildings 24 6 24" in passed)
    # Sizes and content statistics beside the class counts, each compared for drift and skew.
    assert re.search(r"Image size and content \(mean, standard deviation\) feature train eval served model's "
                     r"train height 150\.000 \(0\.000\) 150\.000 \(0\.000\) 150\.000 \(0\.000\) ", passed)
    assert re.search(r" content_saturation (0\.\d{3} \(0\.\d{3}\) ){3}", passed)
    for feature in data_validation.CONTENT_FEATURES:
        assert re.search(rf"train vs the served model's training data {feature} Jensen-Shannon divergence "
                         r"0\.\d{3} 0\.200 ok", passed), feature
    assert ("Duplicates duplicates count extra copies within a split (same pixels) 0 train/eval pairs, same "
            "pixels 0 train/eval pairs, near (perceptual hash within 4 bits) 0") in passed
    banner = ("STOPPED by the data gate before Transform: 1 anomaly (below); nothing was trained or pushed "
              "and the served model is unchanged.")
    assert stopped.startswith(f"intel-scenes run {runs.run_ids[D]}") and f"Verdict {banner}" in stopped
    assert f"{pipeline_runs.REMOVED_CLASS} 0 0 24" in stopped  # counts: train, eval, served model's train
    assert ("drift train vs served model's train class_name High Linfty distance between current and previous "
            "L-infinity distance <= 0.1 0.167: glacier 16.7% (24 of 144) -> 0.0% (0 of 120)") in stopped
    assert "train vs the served model's training data class_name L-infinity distance 0.167 0.100 BREACHED" in stopped
    report_dir = os.path.dirname(stopped_report)
    assert report_validation.CLASS_DISTRIBUTION_PNG in os.listdir(report_dir)


# ---------------------------------------------------------------- a label outside the range (slow)

def _import_pipeline(data_dir: str, cfg: configs.PipelineConfig) -> tfx.dsl.Pipeline:
    """TFX's ImportExampleGen on a hand-written TFRecord, then the validation part of the DAG as
    create_pipeline wires it (no served model here, so no drift)."""
    example_gen = tfx.components.ImportExampleGen(input_base=data_dir)
    schema_gen = CuratedSchemaGen(schema_text=curated.render_schema(CLASSES, image_format.DEFAULT_MAX_IMAGE_PIXELS))
    statistics_gen = tfx.components.StatisticsGen(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        stats_options=data_validation.stats_options())
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    skew_validator = data_validation.skew_validator(statistics_gen.outputs["statistics"],
                                                    configs.PipelineConfig(class_drift_max_linf=0.1,
                                                                           size_drift_max_jsd=0.1))
    gate = DataGate(statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"],
                    anomalies=example_validator.outputs["anomalies"],
                    skew_anomalies=skew_validator.outputs["anomalies"])
    return tfx.dsl.Pipeline(
        pipeline_name=cfg.pipeline_name, pipeline_root=cfg.pipeline_root,
        components=[example_gen, schema_gen, statistics_gen, example_validator, skew_validator, gate],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(cfg.metadata_path),
        beam_pipeline_args=list(configs.LOCAL_BEAM_ARGS))


@pytest.fixture(scope="module")
def imported_run(tmp_path_factory):
    """(config, the DataValidationError) of the ImportExampleGen pipeline on 60 examples, 6 of
    them with label 99."""
    root = tmp_path_factory.mktemp("import")
    data = root / "data"
    data.mkdir()
    with tf.io.TFRecordWriter(str(data / "examples.tfrecord")) as writer_:
        for i in range(60):  # distinct paths: ImportExampleGen splits by a hash of each record
            label = 99 if i % 10 == 9 else i % len(CLASSES)
            writer_.write(_example(label=label, class_name=CLASSES[i % len(CLASSES)], path=f"{i}.jpg"))
    cfg = configs.PipelineConfig(output_dir=str(root / "out"), pipeline_name="imported")
    with pytest.raises(findings.DataValidationError) as stopped:
        tfx.orchestration.LocalDagRunner().run(_import_pipeline(str(data), cfg))
    return cfg, stopped.value


@pytest.mark.slow
def test_a_label_outside_the_range_through_import_example_gen_is_an_anomaly(imported_run):
    """(d) The schema's label domain [0, 2] catches 99 in Examples that did not come from image folders."""
    cfg, error = imported_run
    nodes = store.read_run(cfg.metadata_path)
    assert nodes[pipeline_names.DATA_GATE_NODE].state == "FAILED"
    view = report_validation.collect(cfg.metadata_path, store.run_ids(cfg.metadata_path)[-1], nodes)
    stats_uri = nodes[pipeline_names.STATISTICS_GEN_NODE].uri(pipeline_names.STATISTICS_OUTPUT)
    expected = []
    for split in (findings.TRAIN, findings.EVAL):
        stats = findings.load_statistics(stats_uri, split)
        label = [f for f in stats.features if f.path.step[0] == names.LABEL_KEY][0].num_stats
        if label.max == 99:
            expected.append((split, names.LABEL_KEY, "an integer in [0, 2]",
                             f"values from 0 to 99 in {stats.num_examples} examples (Unexpectedly large value: 99.)"))
    assert expected  # the 99s went into at least one split
    assert [(f.split, f.feature, f.expected, f.found) for f in view.validation.findings
            if f.check == findings.SCHEMA] == expected
    assert str(error).startswith(f"data validation stopped the run before Transform (nothing trained or pushed): "
                                 f"{len(expected)} anomal")
    assert view.validation.findings[0].line() in str(error)


@pytest.mark.slow
def test_schema_update_proposes_a_diff_and_writes_only_when_asked(imported_run, tmp_path, capsys):
    cfg, _ = imported_run
    schema_file = tmp_path / "schema.pbtxt"
    shutil.copy(curated.TEMPLATE_FILE, schema_file)
    before = schema_file.read_text()
    argv = ["--output-dir", cfg.output_dir, "--schema-file", str(schema_file)]
    assert update.main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"^Anomalies against the schema the run imported: [12]$", out, re.M)
    assert "  label (train split): Out-of-range values: expected an integer in [0, 2]" in out \
        or "  label (eval split): Out-of-range values: expected an integer in [0, 2]" in out
    # The class set of the run (cat, dog, eel) replaces the template's; label's range takes 99.
    assert "-    value: \"buildings\"\n" in out and "+    value: \"cat\"\n" in out
    assert re.search(r"^-    max: 5\n\+    max: 99\n", out, re.M)
    assert out.rstrip().endswith("Not written: rerun with --write to write the proposal.")
    assert schema_file.read_text() == before
    assert update.main([*argv, "--write"]) == 0
    assert capsys.readouterr().out.rstrip().endswith(f"Wrote {schema_file}")
    written = schema_file.read_text()
    assert written.startswith(curated.header_of(curated.TEMPLATE_FILE))
    assert curated.feature(curated.read_schema(str(schema_file)), names.LABEL_KEY).int_domain.max == 99
    assert update.main(argv) == 0
    assert "No change: " in capsys.readouterr().out


def test_schema_update_refuses_an_output_dir_without_runs(tmp_path):
    """As a user runs it (a real process, its quiet start-up included): the one line reaches the console."""
    done = subprocess.run([sys.executable, "-m", "run_control.schema_update", "--output-dir", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    err = done.stderr.strip().splitlines()
    assert (done.returncode, done.stdout) == (exit_codes.USAGE_ERROR, "")
    assert len(err) == 1 and err[0].startswith("error: no ML Metadata database") and err[0].endswith("(exit 2)"), err
