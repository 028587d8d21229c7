"""Label vetting: the latest blessed model scores the new labelled data before training, and a class
whose agreement with the new labels collapses (or whose disagreements concentrate on one other
class: a swap) stops the run, naming the classes and the figures.

Fast tests: the decision on counts; the executor on PIL-made JPEGs of coloured classes with a real
SavedModel made here (its serving signature takes encoded image bytes and classifies by the
dominant colour, as a trained model would by content); the resolver on an in-memory ML Metadata
store; the DAG. Slow: what the LabelVetter recorded in the suite's shared pipeline runs.
"""
import io
import json
import os
import random

import numpy as np
import pytest
import tensorflow as tf
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from PIL import Image
from tfx.dsl.compiler import compiler
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils, standard_artifacts

import kubeflow_v2_runner
import local_runner
from common import pipeline_names, store
from components.label_vetter import executor, vetting
from components.label_vetter.component import BlessedModelTrainingDataStrategy, LabelVettingResult
from run_control import exit_codes, local_run
from run_report import html_page, label_vetting as report_vetting
from trainer_module import names

CLASSES = ("forest", "sea", "street")
COLOURS = {"forest": (40, 160, 50), "sea": (30, 60, 170), "street": (170, 60, 50)}  # dominant channel: G, B, R


# ---------------------------------------------------------------- the decision (counts)

def _counts(**rows):
    """{label: {predicted: n}} from label=(agree, {other: n})."""
    return {label: {label: agree, **others} for label, (agree, others) in rows.items()}


REFERENCE = _counts(forest=(96, {"sea": 2, "street": 2}), sea=(95, {"forest": 3, "street": 2}),
                    street=(90, {"forest": 5, "sea": 5}))


def test_a_two_class_swap_is_found_and_both_classes_named():
    # forest and sea exchanged: the model sees forests labelled sea, and seas labelled forest.
    swapped = _counts(forest=(3, {"sea": 91, "street": 6}), sea=(4, {"forest": 94, "street": 2}),
                      street=(89, {"forest": 6, "sea": 5}))
    result = vetting.vet(REFERENCE, swapped)
    assert [(c.name, c.anomaly) for c in result.anomalies] == [("forest", vetting.COLLAPSE), ("sea", vetting.COLLAPSE)]
    assert result.swaps() == [["forest", "sea"]]
    forest = result.classes[0]
    assert forest.reference == pytest.approx(0.96) and forest.agreement == pytest.approx(0.03)
    assert forest.top_other == "sea" and forest.top_other_share == pytest.approx(91 / 97)
    assert forest.line() == "forest: 96 % -> 3 %, 94 % of the disagreements predicted sea (100 images)"
    with pytest.raises(vetting.LabelVettingError) as stopped:
        vetting.check(result)
    message = str(stopped.value)
    assert "forest: 96 % -> 3 %" in message and "sea: 95 % -> 4 %" in message
    assert "forest and sea look swapped" in message and "--label-vetting-warn-only" in message
    assert exit_codes.classify(stopped.value)[0] == exit_codes.DATA_ERROR  # like the data gate


def test_an_honest_drop_with_ordinary_noise_passes():
    # The same classes drawn afresh: agreement a few points off, errors as scattered as before, and
    # street's errors mostly on one class (like glacier -> mountain) with no real drop.
    honest = _counts(forest=(90, {"sea": 6, "street": 4}), sea=(97, {"forest": 2, "street": 1}),
                     street=(82, {"forest": 15, "sea": 3}))
    result = vetting.vet(REFERENCE, honest)
    assert result.anomalies == [] and not result.stops
    assert [round(c.drop, 2) for c in result.classes] == [0.06, -0.02, 0.08]
    assert result.classes[2].top_other_share == pytest.approx(15 / 18)  # concentrated, but no drop
    vetting.check(result)  # does not raise
    assert result.summary().startswith("label vetting: the blessed model agrees")


def test_a_single_class_collapse_and_a_concentration_are_found():
    one_bad = _counts(forest=(50, {"sea": 25, "street": 25}), sea=(95, {"forest": 5}),
                      street=(62, {"forest": 34, "sea": 4}))
    result = vetting.vet(REFERENCE, one_bad)
    assert [(c.name, c.anomaly) for c in result.anomalies] == [("forest", vetting.COLLAPSE),
                                                             ("street", vetting.CONCENTRATION)]
    assert result.swaps() == []  # forest's errors are spread; street's go to forest, forest's not to street
    assert result.finding_lines() == [
        "forest: 96 % -> 50 %, 50 % of the disagreements predicted sea (100 images)",
        "street: 90 % -> 62 %, 89 % of the disagreements predicted forest (100 images)"]


def test_knobs_warn_only_and_small_classes():
    swapped = _counts(forest=(3, {"sea": 97}), sea=(4, {"forest": 96}), street=(5, {"forest": 5}))
    result = vetting.vet(REFERENCE, swapped, vetting.Knobs(warn_only=True))
    vetting.check(result)  # warn only: recorded, not stopped
    assert len(result.anomalies) == 2 and not json.loads(result.to_json())["stopped"]
    assert result.classes[2].line() == "street: not compared (10 new and 100 reference images, fewer than 20)"
    assert vetting.vet(REFERENCE, swapped, vetting.Knobs(max_drop=0.95, concentration_min_drop=0.95)).anomalies == []
    again = vetting.from_json(result.to_json())
    assert again.finding_lines() == result.finding_lines() and again.knobs.warn_only


# ---------------------------------------------------------------- the executor (real SavedModel, JPEGs)

class _DominantColour(tf.Module):
    """Serves like the Trainer's export: encoded images in, predicted_class and error out."""

    def __init__(self, class_names):
        super().__init__()
        channel = {"street": 0, "forest": 1, "sea": 2}
        self.names = tf.constant([n for n, _ in sorted(channel.items(), key=lambda kv: kv[1])])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, image_bytes):
        means = tf.map_fn(lambda b: tf.reduce_mean(tf.cast(tf.io.decode_jpeg(b, channels=3), tf.float32), [0, 1]),
                          image_bytes, fn_output_signature=tf.TensorSpec([3], tf.float32))
        predicted = tf.gather(self.names, tf.argmax(means, axis=1))
        return {names.PROBABILITIES_OUTPUT: tf.nn.softmax(means / 50.0), names.PREDICTED_CLASS_OUTPUT: predicted,
                names.ERROR_OUTPUT: tf.fill(tf.shape(image_bytes), "")}


@pytest.fixture(scope="module")
def blessed_model(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("model")
    module = _DominantColour(CLASSES)
    tf.saved_model.save(module, str(model_dir / pipeline_names.TRAINER_SERVING_SUBDIR),
                        signatures={names.SERVING_BYTES_SIGNATURE: module.serve})
    model = standard_artifacts.Model()
    model.uri, model.id = str(model_dir), 7
    return model


def _jpeg(colour, rng) -> bytes:
    pixels = np.clip(np.array(colour) + rng.normal(0, 25, size=(12, 12, 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def _examples(root, artifact_id, seed, per_class, relabel=None, noisy=0):
    """An ImageExampleGen-like Examples artifact: GZIP TFRecords per split of (image, label,
    class_name); `relabel` maps a true class to the label it gets; `noisy` images per class and split
    carry another class's colour (honest labelling noise)."""
    rng, shuffle = np.random.default_rng(seed), random.Random(seed)
    relabel = relabel or {}
    for split, n in per_class.items():
        rows = []
        for true in CLASSES:
            label = relabel.get(true, true)
            for i in range(n):
                colour = COLOURS[CLASSES[(CLASSES.index(true) + 1) % 3]] if i < noisy else COLOURS[true]
                rows.append((_jpeg(colour, rng), label))
        shuffle.shuffle(rows)
        os.makedirs(os.path.join(root, f"Split-{split}"))
        with tf.io.TFRecordWriter(os.path.join(root, f"Split-{split}", "data.gz"), options="GZIP") as writer:
            for image, label in rows:
                writer.write(tf.train.Example(features=tf.train.Features(feature={
                    names.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
                    names.CLASS_NAME_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[label.encode()])),
                    names.LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[CLASSES.index(label)])),
                })).SerializeToString())
    examples = standard_artifacts.Examples()
    examples.uri, examples.id = str(root), artifact_id
    examples.split_names = artifact_utils.encode_split_names(list(per_class))
    return examples


PROPS = {executor.TRAIN_SAMPLE_KEY: 30, executor.MAX_DROP_KEY: 0.4, executor.CONCENTRATION_KEY: 0.6,
         executor.CONCENTRATION_MIN_DROP_KEY: 0.2, executor.MIN_EXAMPLES_KEY: 20, executor.WARN_ONLY_KEY: 0}
SIZES = {"train": 40, "eval": 20}  # per class; 30 train records are scored (classes mixed)


def _do(tmp_path, examples, model=None, baseline=None, **props):
    result = LabelVettingResult()
    result.uri = str(tmp_path / "result")
    inputs = {executor.EXAMPLES_KEY: [examples], executor.MODEL_KEY: [model] if model else [],
              executor.BASELINE_EXAMPLES_KEY: [baseline] if baseline else []}
    context = base_executor.BaseExecutor.Context(stateful_working_dir=str(tmp_path / "stateful"),
                                                 pipeline_run_id="run-2")
    try:
        executor.Executor(context).Do(inputs, {pipeline_names.LABEL_VETTING_OUTPUT: [result]}, {**PROPS, **props})
    finally:
        with open(os.path.join(result.uri, pipeline_names.LABEL_VETTING_FILE)) as f:
            recorded = json.load(f)
    return result, recorded


@pytest.fixture(scope="module")
def old_data(tmp_path_factory):
    return _examples(tmp_path_factory.mktemp("old"), 1, seed=0, per_class=SIZES, noisy=1)


def test_executor_stops_a_forest_sea_swap_naming_both(tmp_path, blessed_model, old_data):
    swapped = _examples(tmp_path / "new", 2, seed=1, per_class=SIZES, relabel={"forest": "sea", "sea": "forest"})
    with pytest.raises(vetting.LabelVettingError) as stopped:
        _do(tmp_path, swapped, blessed_model, old_data)
    message = str(stopped.value)
    assert "forest: 95 % -> 0 %, 100 % of the disagreements predicted sea" in message
    assert "sea: 95 % -> 0 %, 100 % of the disagreements predicted forest" in message
    assert "forest and sea look swapped" in message
    with open(tmp_path / "result" / pipeline_names.LABEL_VETTING_FILE) as f:
        recorded = json.load(f)
    assert recorded["stopped"] and recorded["swaps"] == [["forest", "sea"]] and recorded["run_id"] == "run-2"
    # TFX removes a failed execution's outputs; the copy in its stateful working dir stays.
    with open(tmp_path / "stateful" / pipeline_names.LABEL_VETTING_FILE) as f:
        assert json.load(f) == recorded
    # The eval split (20 a class) and the first 30 train records were scored.
    assert sum(c["examples"] for c in recorded["classes"]) == 3 * 20 + 30


def test_executor_passes_an_honest_second_drop(tmp_path, blessed_model, old_data):
    honest = _examples(tmp_path / "new", 2, seed=2, per_class=SIZES, noisy=2)
    result, recorded = _do(tmp_path, honest, blessed_model, old_data)
    assert not recorded["stopped"] and recorded["findings"] == [] and recorded["compared"]
    assert {c["name"]: round(c["reference"], 2) for c in recorded["classes"]} == {n: 0.95 for n in CLASSES}
    assert all(c["drop"] < 0.1 for c in recorded["classes"])
    assert result.get_int_custom_property(pipeline_names.PROP_VETTING_ANOMALIES) == 0
    assert result.get_int_custom_property(pipeline_names.PROP_VETTING_COMPARED) == 1
    assert not (tmp_path / "stateful").exists()  # a record elsewhere only when it stops


def test_executor_with_too_few_images_a_class_compares_nothing_and_loads_no_model(tmp_path, old_data):
    swapped = _examples(tmp_path / "new", 2, seed=3, per_class={"train": 4, "eval": 5},
                        relabel={"forest": "sea", "sea": "forest"})
    missing = standard_artifacts.Model()
    missing.uri, missing.id = str(tmp_path / "no-model-here"), 8  # loading it would fail
    result, recorded = _do(tmp_path, swapped, missing, old_data)
    assert recorded["compared"] and not recorded["stopped"] and recorded["findings"] == []
    assert [vetting.ClassVetting(**{k: v for k, v in c.items() if k != "drop"}).line()
            for c in recorded["classes"]] == [f"{n}: not compared (9 new and 20 reference images, fewer than 20)"
                                              for n in ("forest", "sea", "street")]


def test_executor_on_the_first_run_says_there_is_nothing_to_compare(tmp_path, old_data):
    result, recorded = _do(tmp_path, old_data)
    assert recorded["note"] == vetting.NO_BASELINE == "label vetting: no blessed model yet, nothing to compare"
    assert result.get_int_custom_property(pipeline_names.PROP_VETTING_COMPARED) == 0


# ---------------------------------------------------------------- the resolver (in-memory ML Metadata)

def test_resolver_gives_the_blessed_model_and_the_examples_it_was_trained_on():
    config = metadata_store_pb2.ConnectionConfig()
    config.fake_database.SetInParent()
    mlmd = metadata_store.MetadataStore(config)
    execution_type = mlmd.put_execution_type(metadata_store_pb2.ExecutionType(name="component"))

    def artifact(cls, **properties):
        type_id = mlmd.put_artifact_type(metadata_store_pb2.ArtifactType(name=cls.TYPE_NAME))
        [artifact_id] = mlmd.put_artifacts([metadata_store_pb2.Artifact(type_id=type_id, uri="/x")])
        a = cls()
        a.id = artifact_id
        for name, value in properties.items():
            a.set_int_custom_property(name, value)
        return a

    def trainer(examples, model):
        events = [(metadata_store_pb2.Artifact(id=a.id), metadata_store_pb2.Event(type=t)) for a, t in (
            (examples, metadata_store_pb2.Event.INPUT), (model, metadata_store_pb2.Event.OUTPUT))]
        for (_, event), key in zip(events, ("examples", "model")):
            event.path.steps.add().key = key
        mlmd.put_execution(metadata_store_pb2.Execution(type_id=execution_type), events, [])

    examples_a, examples_c = artifact(standard_artifacts.Examples), artifact(standard_artifacts.Examples)
    model_a, model_c = artifact(standard_artifacts.Model), artifact(standard_artifacts.Model)
    trainer(examples_a, model_a)
    trainer(examples_c, model_c)
    blessings = [artifact(standard_artifacts.ModelBlessing, current_model_id=model_a.id, blessed=1),
                 artifact(standard_artifacts.ModelBlessing, current_model_id=model_c.id, blessed=0)]

    def resolve(candidate, blessed=blessings):
        result = BlessedModelTrainingDataStrategy().resolve_artifacts(mlmd, {
            "model": [model_a, model_c], "model_blessing": blessed, "examples": [examples_a, examples_c],
            "candidate": [candidate]})
        return [a.id for a in result["model"]], [a.id for a in result["examples"]]

    assert resolve(examples_c) == ([model_a.id], [examples_a.id])  # A is served; C's data is vetted
    assert resolve(examples_a) == ([], [])  # an unchanged rerun: the model's own data, cached
    assert resolve(examples_c, blessed=blessings[1:]) == ([], [])  # nothing blessed yet


# ---------------------------------------------------------------- the DAG (fast)

def _nodes(pipeline):
    return {n.pipeline_node.node_info.id: n.pipeline_node for n in compiler.Compiler().compile(pipeline).nodes}


def test_the_vetter_runs_before_the_trainer_whose_inputs_stay_its_own(tmp_path):
    cfg, overrides = local_runner.parse_args(["--output-dir", str(tmp_path), "--label-vetting-warn-only",
                                              "--label-vetting-max-drop", "0.3"])
    nodes = _nodes(local_run.build(cfg, overrides, str(tmp_path / "data"), list(CLASSES))[0])
    vetter, trainer = nodes[pipeline_names.LABEL_VETTER_NODE], nodes[pipeline_names.TRAINER_NODE]
    assert set(vetter.upstream_nodes) == {pipeline_names.EXAMPLE_GEN_NODE, pipeline_names.LABEL_VETTING_RESOLVER_NODE,
                                          pipeline_names.DATA_GATE_NODE}  # after the data gate
    assert pipeline_names.LABEL_VETTER_NODE in trainer.upstream_nodes
    assert pipeline_names.LABEL_VETTER_NODE not in {ch.producer_node_query.id for i in trainer.inputs.inputs.values()
                                                    for ch in i.channels}  # an order, not data
    params = vetter.parameters.parameters
    assert params[executor.WARN_ONLY_KEY].field_value.int_value == 1
    assert params[executor.MAX_DROP_KEY].field_value.double_value == pytest.approx(0.3)
    assert params[executor.TRAIN_SAMPLE_KEY].field_value.int_value == 2000


def test_kubeflow_pipeline_has_no_label_vetter(tmp_path):
    cfg = kubeflow_v2_runner.parse_args(["--project", "p", "--bucket", "gs://b", "--image", "gcr.io/p/i:1",
                                         "--output-file", str(tmp_path / "job.json")])
    nodes = _nodes(kubeflow_v2_runner.build_pipeline(cfg))
    assert not {pipeline_names.LABEL_VETTER_NODE, pipeline_names.LABEL_VETTING_RESOLVER_NODE} & set(nodes)


# ---------------------------------------------------------------- the run report (fast)

def test_report_section_shows_each_class_and_finds_a_stopped_runs_file(tmp_path):
    swapped = _counts(forest=(3, {"sea": 91, "street": 6}), sea=(4, {"forest": 94, "street": 2}),
                      street=(89, {"forest": 6, "sea": 5}))
    result = vetting.vet(REFERENCE, swapped)
    # A stopped run: the LabelVetter FAILED, published nothing, and TFX removed its output folder; its
    # record is in its stateful working dir, found by the run id among earlier failed executions'.
    folder = tmp_path / "root" / pipeline_names.LABEL_VETTER_NODE / pipeline_names.TFX_STATEFUL_WORKING_DIRS
    earlier = vetting.vet(REFERENCE, _counts(forest=(3, {"street": 97}), sea=(95, {}), street=(90, {})))
    for name, run_id, record in (("a", "run-1", earlier), ("b", "run-2", result)):
        record.run_id = run_id
        (folder / name).mkdir(parents=True)
        (folder / name / pipeline_names.LABEL_VETTING_FILE).write_text(record.to_json())
    gen_output = metadata_store_pb2.Artifact(uri=str(tmp_path / "root" / pipeline_names.EXAMPLE_GEN_NODE /
                                                     pipeline_names.EXAMPLES_OUTPUT / "3"))
    nodes = {pipeline_names.EXAMPLE_GEN_NODE: store.NodeRun(pipeline_names.EXAMPLE_GEN_NODE, "COMPLETE",
                                                            {pipeline_names.EXAMPLES_OUTPUT: [gen_output]}),
             pipeline_names.LABEL_VETTER_NODE: store.NodeRun(pipeline_names.LABEL_VETTER_NODE, "FAILED", {})}
    found = report_vetting.collect(nodes, "run-2")
    assert found.finding_lines() == result.finding_lines()
    page = report_vetting.section_html(found, "FAILED", html_page.table)
    assert "STOPPED: the run stopped before training" in page and "forest and sea look swapped" in page
    assert "<td>forest</td>" in page and "-93" in page and "94 %" in page
    assert report_vetting.collect({}, "run-2") is None and report_vetting.collect(nodes, "run-3") is None
    assert "no blessed model yet" in report_vetting.section_html(vetting.not_compared(vetting.NO_BASELINE),
                                                                  "COMPLETE", html_page.table)


# ---------------------------------------------------------------- the shared pipeline runs (slow)

A, B, C = range(3)


def _recorded(runs, index):
    return report_vetting.collect(runs.nodes[index], runs.run_ids[index])


@pytest.mark.slow
def test_pipeline_runs_vet_the_second_drop_and_cache_the_unchanged_rerun(gate_runs):
    assert _recorded(gate_runs, A).note == vetting.NO_BASELINE  # the first run: nothing blessed yet
    assert gate_runs.nodes[B][pipeline_names.LABEL_VETTER_NODE].state == "CACHED"  # an unchanged rerun
    # C, the clean second drop, is vetted by A's model (on A's eval split: 6 images a class, under the
    # default minimum, so no class is compared and the model is not loaded) and goes on to train.
    vetter = gate_runs.nodes[C][pipeline_names.LABEL_VETTER_NODE]
    assert vetter.state == "COMPLETE" and gate_runs.exit_codes[C] == 0
    recorded = _recorded(gate_runs, C)
    assert recorded.compared and recorded.anomalies == [] and len(recorded.classes) == 6
    a_model = gate_runs.nodes[A][pipeline_names.TRAINER_NODE].uri(pipeline_names.MODEL_OUTPUT)
    assert recorded.baseline_model == a_model
    assert recorded.reference_examples_uri == gate_runs.nodes[A][pipeline_names.EXAMPLE_GEN_NODE].uri(
        pipeline_names.EXAMPLES_OUTPUT)
    assert store.output_property(vetter, pipeline_names.LABEL_VETTING_OUTPUT,
                                 pipeline_names.PROP_VETTING_COMPARED) == 1
