"""The per-class gate and the fixed reference set, through TFX's own Evaluator executor with the
pipeline's eval config (pipeline/evaluation.py) on ImageExampleGen's examples, candidate against
baseline; then what the console, the report and the Pusher make of its verdict.

The models are tiny SavedModels with the pipeline's serving_examples signature that return stored
probabilities for each example's path: every number below is known in advance, and a TFMA run takes
seconds rather than a training.
"""
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tfx.components.evaluator import executor as evaluator_executor
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

import image_factory
from common import dataset, pipeline_names, tfma_results
from components.image_example_gen.records import make_example
from pipeline import configs, evaluation
from run_control import figures
from run_report import tables
from trainer_module import names

CLASSES = list(dataset.INTEL_CLASS_NAMES)
GLACIER = CLASSES.index("glacier")
PER_CLASS = 20  # eval images per class


class _StoredPredictions(tf.Module):
    """serving_examples: the probabilities stored for each example's path."""

    def __init__(self, paths, probabilities):
        super().__init__()
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(paths), tf.range(len(paths), dtype=tf.int64)), -1)
        self.probabilities = tf.constant(np.asarray(probabilities, np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=names.SERVING_EXAMPLES_INPUT)])
    def serve(self, examples):
        paths = tf.io.parse_example(examples, {names.PATH_KEY: tf.io.FixedLenFeature([1], tf.string)})[names.PATH_KEY]
        return {names.PROBABILITIES_OUTPUT: tf.gather(self.probabilities, self.table.lookup(paths[:, 0]))}


def _model(root, name, paths, probabilities):
    """A Model artifact holding _StoredPredictions where TFX's Trainer puts the SavedModel."""
    model = standard_artifacts.Model()
    model.uri = str(root / name)
    model.id = 1 if name == "baseline" else 2
    module = _StoredPredictions(paths, probabilities)
    tf.saved_model.save(module, os.path.join(model.uri, pipeline_names.TRAINER_SERVING_SUBDIR),
                        signatures={names.SERVING_EXAMPLES_SIGNATURE: module.serve})
    return model


def _examples(root, name, splits):
    """An Examples artifact as ImageExampleGen writes it: {split: [label, ...]} -> GZIP TFRecords of
    make_example records (a tiny JPEG each); returns (artifact, {split: [(path, label)]})."""
    examples = standard_artifacts.Examples()
    examples.uri = str(root / name)
    examples.split_names = artifact_utils.encode_split_names(list(splits))
    examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
    examples_utils.set_file_format(examples, "tfrecords_gzip")
    listed = {}
    jpeg = image_factory.jpeg_bytes(8, 8, seed=0)
    for split, labels in splits.items():
        os.makedirs(artifact_utils.get_split_uri([examples], split))
        path = os.path.join(artifact_utils.get_split_uri([examples], split), "data_tfrecord-00000-of-00001.gz")
        listed[split] = [(f"{name}/{split}/{CLASSES[label]}/{i}.jpg", label) for i, label in enumerate(labels)]
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for relpath, label in listed[split]:
                writer.write(make_example(jpeg, label, CLASSES[label], relpath, 8, 8, "jpeg").SerializeToString())
    return examples, listed


def _probabilities(labels, wrong):
    """One row per example: 0.7 on its class, or on the next class where `wrong`."""
    rows = np.full([len(labels), len(CLASSES)], 0.06)
    for i, (label, is_wrong) in enumerate(zip(labels, wrong)):
        rows[i, (label + 1) % len(CLASSES) if is_wrong else label] = 0.7
    return rows


def _evaluate(root, name, examples, candidate, baseline, splits=None):
    """TFX's Evaluator executor with the pipeline's eval config and default gate knobs; returns
    (the evaluation output folder, the blessing artifact)."""
    evaluation_out, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
    evaluation_out.uri, blessing.uri = str(root / name / "evaluation"), str(root / name / "blessing")
    os.makedirs(blessing.uri)
    eval_config = evaluation.make_eval_config(configs.PipelineConfig(), CLASSES)
    evaluator_executor.Executor().Do(
        {standard_component_specs.EXAMPLES_KEY: [examples], standard_component_specs.MODEL_KEY: [candidate],
         standard_component_specs.BASELINE_MODEL_KEY: [baseline]},
        {standard_component_specs.EVALUATION_KEY: [evaluation_out], standard_component_specs.BLESSING_KEY: [blessing]},
        {standard_component_specs.EVAL_CONFIG_KEY: proto_utils.proto_to_json(eval_config),
         standard_component_specs.EXAMPLE_SPLITS_KEY: json.dumps(splits)})
    return evaluation_out.uri, blessing


@pytest.fixture(scope="module")
def class_drop(tmp_path_factory):
    """The eval split of a drop: baseline 18 of 20 right in every class (accuracy 0.9); the
    candidate loses glacier (14 of 20: recall 0.9 -> 0.7, more than the default 0.1) and gains as
    many on buildings and forest (20 of 20): accuracy 0.9, no overall drop, above the floor 0.5."""
    root = tmp_path_factory.mktemp("class_drop")
    labels = [c for c in range(len(CLASSES)) for _ in range(PER_CLASS)]
    examples, listed = _examples(root, "drop", {dataset.EVAL: labels})
    paths = [p for p, _ in listed[dataset.EVAL]]
    index = np.arange(len(labels)) % PER_CLASS
    labels = np.array(labels)
    baseline_wrong = index < 2
    candidate_wrong = np.where(labels == GLACIER, index < 6, (index < 2) & (labels >= 3))
    baseline = _model(root, "baseline", paths, _probabilities(labels, baseline_wrong))
    candidate = _model(root, "candidate", paths, _probabilities(labels, candidate_wrong))
    assert (1 - candidate_wrong.mean(), 1 - baseline_wrong.mean()) == (0.9, 0.9)
    return _evaluate(root, "evaluator", examples, candidate, baseline)


def test_a_class_that_loses_its_recall_fails_the_gate_while_overall_accuracy_passes(class_drop):
    uri, blessing = class_drop
    assert blessing.get_int_custom_property(pipeline_names.PROP_BLESSED) == 0
    validation = tfma.load_validation_result(uri)
    failures = [(s.slice_key, f) for s in validation.metric_validations_per_slice for f in s.failures]
    [(slice_key, failure)] = failures  # one failure: glacier's drop; the overall slice passed
    assert tfma_results.class_slice("glacier") == tuple(
        (k.column, k.bytes_value.decode()) for k in slice_key.single_slice_keys)
    assert failure.metric_key.name == evaluation.ACCURACY and failure.metric_key.is_diff
    assert failure.metric_value.double_value.value == pytest.approx(-0.2)
    assert evaluation.failure_lines(uri) == [
        "class glacier: recall 0.900 -> 0.700 (-0.200; the largest drop allowed is 0.1)"]


def test_the_report_and_the_console_say_which_class_failed_and_why(class_drop):
    uri, blessing = class_drop
    results = tfma_results.load(uri, len(CLASSES))
    overall = {(t.kind, t.slice_desc): t for t in results.thresholds if t.slice_key == ()}
    assert overall[("lower bound", "overall")].status == "passed"
    assert overall[("change vs baseline", "overall")].status == "passed"
    assert overall[("change vs baseline", "overall")].value == pytest.approx(0.0, abs=1e-6)
    gate = {r.name: r for r in tables.class_gate_rows(results, CLASSES)}
    assert (gate["glacier"].recall, gate["glacier"].baseline_recall) == (pytest.approx(0.7), pytest.approx(0.9))
    assert (gate["glacier"].floor, gate["glacier"].max_drop) == ("passed", "FAILED")
    assert gate["forest"].change == pytest.approx(0.1) and gate["forest"].max_drop == "passed"
    assert [r.name for r in gate.values() if "FAILED" in (r.floor, r.max_drop)] == ["glacier"]
    node = _node(uri, blessing)
    assert figures._FIGURES[pipeline_names.EVALUATOR_NODE](node) == (
        "NOT blessed: class glacier: recall 0.900 -> 0.700 (-0.200; the largest drop allowed is 0.1)")


def _node(uri, blessing):
    from common import store
    from ml_metadata.proto import metadata_store_pb2

    def artifact(a):
        pb = metadata_store_pb2.Artifact(uri=a.uri)
        pb.custom_properties[pipeline_names.PROP_BLESSED].int_value = a.get_int_custom_property(
            pipeline_names.PROP_BLESSED)
        return pb

    evaluation_pb = metadata_store_pb2.Artifact(uri=uri)
    return store.NodeRun(pipeline_names.EVALUATOR_NODE, "COMPLETE",
                         {pipeline_names.EVALUATION_OUTPUT: [evaluation_pb],
                          pipeline_names.BLESSING_OUTPUT: [artifact(blessing)]})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A fixed reference set in two splits (as a <class>/<image> folder is hashed into), 10 images
    per class: the candidate is right on all of them, the baseline misses one forest image."""
    root = tmp_path_factory.mktemp("reference")
    labels = {split: [c for c in range(len(CLASSES)) for _ in range(5)] for split in dataset.SPLITS}
    examples, listed = _examples(root, "reference", labels)
    rows = [(p, label) for split in dataset.SPLITS for p, label in listed[split]]
    paths, all_labels = [p for p, _ in rows], np.array([label for _, label in rows])
    candidate = _model(root, "candidate", paths, _probabilities(all_labels, np.zeros(len(rows), bool)))
    baseline_wrong = np.zeros(len(rows), bool)
    baseline_wrong[list(all_labels).index(CLASSES.index("forest"))] = True
    baseline = _model(root, "baseline", paths, _probabilities(all_labels, baseline_wrong))
    return _evaluate(root, "reference_evaluator", examples, candidate, baseline, splits=list(dataset.SPLITS))


def test_the_reference_evaluator_scores_every_image_of_the_set(reference):
    uri, blessing = reference
    assert blessing.get_int_custom_property(pipeline_names.PROP_BLESSED) == 1
    results = tfma_results.load(uri, len(CLASSES))
    assert results.metric(evaluation.EXAMPLE_COUNT) == 60  # both splits
    assert results.metric(evaluation.ACCURACY) == 1.0
    assert results.metric(evaluation.ACCURACY, results.baseline,
                          slice_key=tfma_results.class_slice("forest")) == pytest.approx(0.9)
    assert figures._FIGURES[pipeline_names.REFERENCE_EVALUATOR_NODE](_node(uri, blessing)) == (
        "BLESSED: accuracy 1.000, weakest class buildings (recall 1.000)")


# ---------------------------------------------------------------- the reference set in the DAG and the runner

def _nodes(reference_eval_dir: str = ""):
    from tfx.dsl.compiler import compiler

    from pipeline.pipeline import Platform, create_pipeline
    from trainer_module.train_config import TrainConfig

    platform = Platform(pipeline_root="/tmp/p", data_root="/tmp/data", serving_model_dir="/tmp/serving")
    ir = compiler.Compiler().compile(create_pipeline(
        configs.PipelineConfig(pipeline_name="p", reference_eval_dir=reference_eval_dir),
        TrainConfig(class_names=("a", "b")), platform))
    return {n.pipeline_node.node_info.id: n.pipeline_node for n in ir.nodes}


def _producers(node, key):
    return [c.producer_node_query.id for c in node.inputs.inputs[key].channels]


def _parameter(node, name):
    return node.parameters.parameters[name].field_value.string_value


def test_without_a_reference_set_the_dag_is_todays():
    nodes = _nodes()
    assert pipeline_names.REFERENCE_EXAMPLE_GEN_NODE not in nodes
    assert pipeline_names.REFERENCE_EVALUATOR_NODE not in nodes
    inputs = set(nodes[pipeline_names.PUSHER_NODE].inputs.inputs)
    assert {"model", "model_blessing", pipeline_names.EDGE_EVALUATION_OUTPUT} <= inputs
    assert pipeline_names.REFERENCE_BLESSING_INPUT not in inputs


def test_a_reference_set_is_ingested_and_gated_like_the_eval_split_and_the_pusher_needs_both():
    nodes = _nodes("/data/reference")
    generator = nodes[pipeline_names.REFERENCE_EXAMPLE_GEN_NODE]
    assert _parameter(generator, "input_base") == "/data/reference"
    assert _parameter(generator, "class_names") == _parameter(nodes[pipeline_names.EXAMPLE_GEN_NODE], "class_names")
    # Both splits are scored: an even split of a folder of class folders leaves neither empty.
    assert generator.parameters.parameters["eval_fraction"].field_value.double_value == 0.5
    reference = nodes[pipeline_names.REFERENCE_EVALUATOR_NODE]
    assert _producers(reference, "examples") == [pipeline_names.REFERENCE_EXAMPLE_GEN_NODE]
    assert _producers(reference, "model") == [pipeline_names.TRAINER_NODE]
    assert _producers(reference, "baseline_model") == [pipeline_names.RESOLVER_NODE]
    # The same thresholds as on the eval split, over every split of the set.
    evaluator = nodes[pipeline_names.EVALUATOR_NODE]
    assert _parameter(reference, "eval_config") == _parameter(evaluator, "eval_config")
    assert json.loads(_parameter(reference, "example_splits")) == list(dataset.SPLITS)
    pusher = nodes[pipeline_names.PUSHER_NODE]
    assert _producers(pusher, "model_blessing") == [pipeline_names.EVALUATOR_NODE]
    assert _producers(pusher, pipeline_names.REFERENCE_BLESSING_INPUT) == [pipeline_names.REFERENCE_EVALUATOR_NODE]


def test_the_runner_checks_the_reference_set_and_makes_its_path_absolute(tmp_path, monkeypatch):
    from components.image_example_gen.image_files import DatasetLayoutError
    from run_control import exit_codes, local_run

    image_factory.make_image_tree(tmp_path, {"reference": {"a": 1, "b": 1}}, size=(8, 8))  # <class>/<image>
    monkeypatch.chdir(tmp_path)
    checked = local_run.check_reference(configs.PipelineConfig(reference_eval_dir="reference"), ["a", "b"])
    assert checked.reference_eval_dir == str(tmp_path / "reference")
    assert local_run.check_reference(configs.PipelineConfig(), ["a", "b"]).reference_eval_dir == ""
    with pytest.raises(DatasetLayoutError, match=r"reference_eval_dir reference: configured class\(es\) \['c'\] "
                                                 r"have no folder in .*reference.*a folder for each of the classes"):
        local_run.check_reference(configs.PipelineConfig(reference_eval_dir="reference"), ["a", "b", "c"])
    with pytest.raises(exit_codes.UsageError, match="is inside --reference-eval-dir"):
        local_run.check_output_dir(configs.PipelineConfig(output_dir=str(tmp_path / "reference" / "out"),
                                                          reference_eval_dir=str(tmp_path / "reference")))


# ---------------------------------------------------------------- the report of such a run

def _artifact(uri, **properties):
    from ml_metadata.proto import metadata_store_pb2

    artifact = metadata_store_pb2.Artifact(uri=uri)
    for name, value in properties.items():
        if isinstance(value, int):
            artifact.custom_properties[name].int_value = value
        else:
            artifact.custom_properties[name].string_value = value
    return artifact


def test_the_report_names_the_failed_class_shows_the_reference_set_and_the_temperature(class_drop, reference):
    """The page of a run whose candidate failed glacier's drop on the eval split and passed on the
    reference set, from the real TFMA outputs above and a Trainer history with a temperature."""
    from test_report import _Page

    from common import ingest_report, store
    from run_report import html_page, run_data

    (uri, blessing), (reference_uri, reference_blessing) = class_drop, reference
    blessed = pipeline_names.PROP_BLESSED

    def evaluator(node_id, evaluation_uri, artifact):
        return store.NodeRun(node_id, "COMPLETE", {
            pipeline_names.EVALUATION_OUTPUT: [_artifact(evaluation_uri)],
            pipeline_names.BLESSING_OUTPUT: [_artifact(artifact.uri, **{blessed: artifact.get_int_custom_property(blessed)})]})

    nodes = {pipeline_names.EVALUATOR_NODE: evaluator(pipeline_names.EVALUATOR_NODE, uri, blessing),
             pipeline_names.REFERENCE_EVALUATOR_NODE: evaluator(pipeline_names.REFERENCE_EVALUATOR_NODE, reference_uri,
                                                                reference_blessing),
             pipeline_names.PUSHER_NODE: store.NodeRun(pipeline_names.PUSHER_NODE, "COMPLETE", {
                 pipeline_names.PUSHED_MODEL_OUTPUT: [_artifact("/root/Pusher/pushed_model/9",
                                                               **{pipeline_names.PROP_PUSHED: 0})]})}
    history = {names.HISTORY_CALIBRATION: {
        names.CALIBRATION_TEMPERATURE: 0.651, names.CALIBRATION_EXAMPLES: 600, names.CALIBRATION_AT_BOUND: False,
        names.CALIBRATION_ACCURACY: 0.808, names.CALIBRATION_ECE_BEFORE: 0.127, names.CALIBRATION_ECE_AFTER: 0.025,
        names.CALIBRATION_NLL_BEFORE: 0.632, names.CALIBRATION_NLL_AFTER: 0.560,
        names.CALIBRATION_MEAN_TOP1_BEFORE: 0.682, names.CALIBRATION_MEAN_TOP1_AFTER: 0.812}}
    reference_ingest = ingest_report.IngestReport.from_dict({
        "data_root": "/data/reference", "split_mode": "hash", "class_names": CLASSES, "files_seen": 60,
        "ingested": 60, "skipped": 0,
        "ingested_by_split_and_class": {split: {c: 5 for c in CLASSES} for split in dataset.SPLITS}})
    data = run_data.RunData(
        "/m.sqlite", "p", "run-2", nodes, "/root", CLASSES, None, history, {},
        tfma_results.load(uri, len(CLASSES)), reference=tfma_results.load(reference_uri, len(CLASSES)),
        reference_ingest=reference_ingest, reference_fingerprint="5dfa15f1434aebf8aa")
    page = _Page(html_page.render(data)[0])
    assert page.ids[:6] == ["verdict", "overall-metrics", "per-class-metrics", "confusion-matrix", "baseline",
                            html_page.REFERENCE_SECTION_ID]
    assert ("NOT BLESSED: the candidate failed the gate on the eval split; nothing was pushed and the served "
            "model is unchanged. Failed on the eval split: class glacier: recall 0.900 -> 0.700 (-0.200; the "
            "largest drop allowed is 0.1)") in page.text
    assert ("sparse_categorical_accuracy change vs baseline class_name=glacier -0.200 candidate - baseline >= -0.1 "
            "(higher is better) FAILED") in page.text
    # Per-class gate: recall, baseline, change, floor, largest drop.
    assert "Per-class gate class recall baseline recall change floor largest drop details" in page.text
    assert "glacier 0.700 0.900 -0.200 passed FAILED" in page.text
    assert "forest 1.000 0.900 0.100 passed passed" in page.text
    assert ("Fixed reference set /data/reference : 60 images (buildings 10, forest 10, glacier 10, mountain 10, "
            "sea 10, street 10), version (fingerprint of its files) 5dfa15f1434aebf8 .") in page.text
    assert "Passed on the reference set." in page.text
    assert "forest 1.000 0.900 0.100 passed passed" in page.text.split("Reference set")[1]
    assert "T = 0.651" in page.text
    assert "expected calibration error, eval split (Trainer) 0.127 0.025" in page.text
    assert "top-1 accuracy, eval split (Trainer) 0.808 0.808" in page.text
    assert re.search(r"expected calibration error, reference set \(Evaluator, the served model\) – [0-9.]+",
                     page.text)
