"""The evaluation gate: TFMA config semantics, the baseline resolver, and the gate in real runs.

The slow tests read the session's pipeline runs A (blessed, pushed), B (unchanged: CACHED) and C
(weak candidate: not blessed); see tests/pipeline_runs.py.
"""
import os

import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.slicer import slicer_lib
from tfx.dsl.compiler import compiler
from tfx.types import standard_artifacts

import pipeline.pipeline as pipeline_module
from common import pipeline_names, store, tfma_results
from components import baseline_resolver
from pipeline import configs, evaluation
from pipeline_runs import pushed_dir
from run_report import tables
from trainer_module.train_config import TrainConfig


def _blessing(nodes):
    return nodes[pipeline_names.EVALUATOR_NODE].outputs[pipeline_names.BLESSING_OUTPUT][0]


# ---------------------------------------------------------------- resolver strategy (fast)

def _model(model_id: int):
    model = standard_artifacts.Model()
    model.id = model_id
    return model


def _blessing_for(model_id: int, blessed: bool):
    blessing = standard_artifacts.ModelBlessing()
    blessing.id = 1000 + model_id
    blessing.set_int_custom_property(pipeline_names.PROP_CURRENT_MODEL_ID, model_id)
    blessing.set_int_custom_property(pipeline_names.PROP_BLESSED, int(blessed))
    return blessing


def _resolve(models, blessings, candidates):
    result = baseline_resolver.LatestBlessedOtherModelStrategy().resolve_artifacts(None, {
        "model": [_model(i) for i in models], "model_blessing": blessings,
        "candidate": [_model(i) for i in candidates]})
    return [m.id for m in result["model"]], [b.id for b in result["model_blessing"]], result["candidate"]


def test_baseline_is_latest_blessed_model_other_than_candidate():
    blessings = [_blessing_for(1, True), _blessing_for(2, False), _blessing_for(3, True)]
    # Unchanged rerun: the candidate (3) is itself the latest blessed model; the baseline is 1.
    assert _resolve([1, 2, 3], blessings, [3]) == ([1], [1001], [])
    # A new candidate (4) is compared with the latest blessed model (3); unblessed 2 never is.
    assert _resolve([1, 2, 3, 4], blessings, [4]) == ([3], [1003], [])


def test_no_baseline_when_only_the_candidate_is_blessed():
    assert _resolve([1], [_blessing_for(1, True)], [1]) == ([], [], [])
    assert _resolve([1], [], [1]) == ([], [], [])


def _compiled_resolver(exclude_candidate: bool):
    """The resolver node of the compiled (IR) pipeline."""
    platform = pipeline_module.Platform(pipeline_root="/tmp/p", data_root="/tmp/data",
                                        serving_model_dir="/tmp/serving", custom_resolvers=exclude_candidate)
    ir = compiler.Compiler().compile(pipeline_module.create_pipeline(
        configs.PipelineConfig(pipeline_name="p"), TrainConfig(class_names=("a", "b")), platform))
    return next(n.pipeline_node for n in ir.nodes
                if n.pipeline_node.node_info.id == pipeline_names.RESOLVER_NODE)


def test_compiled_resolver_reads_this_runs_candidate():
    node = _compiled_resolver(exclude_candidate=True)
    assert "LatestBlessedOtherModelStrategy" in str(node.inputs.input_graphs)
    candidate = [spec for spec in node.inputs.inputs.values()
                 if any(c.producer_node_query.id == pipeline_names.TRAINER_NODE for c in spec.channels)]
    assert len(candidate) == 1
    # Scoped to the current pipeline run: the candidate is this run's Trainer output only.
    assert "pipeline_run" in {q.type.name for q in candidate[0].channels[0].context_queries}
    assert pipeline_names.TRAINER_NODE in node.upstream_nodes


def test_stock_strategy_when_candidate_not_excluded():
    """exclude_candidate=False: what the KFP v2 compiler needs (it knows only TFX's strategies)."""
    node = _compiled_resolver(exclude_candidate=False)
    assert "LatestBlessedModelStrategy" in str(node.inputs.input_graphs)
    assert "LatestBlessedOtherModelStrategy" not in str(node.inputs.input_graphs)
    assert not any(c.producer_node_query.id == pipeline_names.TRAINER_NODE
                   for spec in node.inputs.inputs.values() for c in spec.channels)


# ---------------------------------------------------------------- TFMA config on known predictions

CLASSES = ["a", "b", "c"]
LABELS = [0, 0, 0, 1, 1, 2]
# Argmax: 0, 1, 0, 1, 0, 1 -> class c is never predicted; accuracy 3/6.
PROBABILITIES = [[.7, .2, .1], [.2, .7, .1], [.5, .4, .1], [.1, .8, .1], [.6, .3, .1], [.2, .5, .3]]


def _offline_tfma(root, cfg: configs.PipelineConfig, class_names=CLASSES) -> str:
    """Runs TFMA with make_eval_config(cfg, class_names) on the stored predictions; returns its
    output folder."""
    data = str(root / "data.tfrecord")
    with tf.io.TFRecordWriter(data) as writer:
        for label, probabilities in zip(LABELS, PROBABILITIES):
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                "class_name": tf.train.Feature(bytes_list=tf.train.BytesList(value=[CLASSES[label].encode()])),
                "probabilities": tf.train.Feature(float_list=tf.train.FloatList(  # 0 for classes beyond a, b, c
                    value=list(probabilities) + [0.0] * (len(class_names) - len(probabilities)))),
            })).SerializeToString())
    config = evaluation.make_eval_config(cfg, class_names)
    config.model_specs[0].ClearField("signature_name")  # predictions come from the examples
    # As TFX's Evaluator does on a first run: change thresholds need a baseline.
    config = tfma.utils.update_eval_config_with_defaults(config, has_baseline=False, rubber_stamp=True)
    out = str(root / "out")
    tfma.run_model_analysis(eval_config=config, data_location=data, output_path=out)
    return out


@pytest.fixture(scope="module")
def offline_eval(tmp_path_factory):
    """TFMA run of make_eval_config's metrics on stored predictions (no model), per-class floor off."""
    # 0.45: the overall accuracy (0.5) passes; the slices b (0.5) and c (0.0) would not all pass.
    out = _offline_tfma(tmp_path_factory.mktemp("tfma"), configs.PipelineConfig(
        accuracy_lower_bound=0.45, accuracy_max_drop=0.02, class_recall_lower_bound=0.0))
    metrics = {}
    for per_slice in tfma.load_metrics(out):
        if not per_slice.slice_key.single_slice_keys:
            for kv in per_slice.metric_keys_and_values:
                sub = kv.key.sub_key
                metrics[(kv.key.name, sub.class_id.value if sub.HasField("class_id") else None)] = \
                    kv.value.double_value.value
    return metrics, tfma.load_validation_result(out)


def test_per_class_metrics_use_argmax_predictions(offline_eval):
    metrics, _ = offline_eval
    # Class a: predicted for examples 0, 2, 4 (labels a, a, b); 3 a's in all.
    assert metrics[("precision", 0)] == pytest.approx(2 / 3)
    assert metrics[("recall", 0)] == pytest.approx(2 / 3)
    assert metrics[("precision", 1)] == pytest.approx(1 / 3)
    assert metrics[("recall", 1)] == pytest.approx(1 / 2)
    assert metrics[("f1_score", 1)] == pytest.approx(0.4)
    # Never predicted: recall 0 (TFMA's plain top_k would say 1.0), precision 0/0.
    assert metrics[("recall", 2)] == 0.0
    assert metrics[("f1_score", 2)] == 0.0
    assert metrics[("precision", 2)] != metrics[("precision", 2)]  # NaN


def test_accuracy_count_and_top1_calibration(offline_eval):
    metrics, _ = offline_eval
    assert metrics[(evaluation.ACCURACY, None)] == pytest.approx(0.5)
    assert metrics[(evaluation.EXAMPLE_COUNT, None)] == 6
    mean_top1 = sum(max(p) for p in PROBABILITIES) / 6
    assert metrics[(evaluation.CALIBRATION, None)] == pytest.approx(mean_top1 / 0.5, rel=1e-5)


def test_overall_accuracy_is_gated_on_the_overall_slice_only(offline_eval):
    _, validation = offline_eval
    assert validation.validation_ok, validation
    assert [d.num_matching_slices for d in validation.validation_details.slicing_details] == [1]


def test_the_class_thresholds_follow_their_knobs():
    def class_thresholds(**knobs):
        config = evaluation.make_eval_config(configs.PipelineConfig(**knobs), CLASSES)
        [accuracy] = [m for spec in config.metrics_specs for m in spec.metrics
                      if m.class_name == "SparseCategoricalAccuracy"]
        return [t for t in accuracy.per_slice_thresholds if t.slicing_specs[0].feature_values]

    [both] = class_thresholds()  # defaults: a floor of 0.5 and a largest drop of 0.1, on every class
    assert [dict(spec.feature_values) for spec in both.slicing_specs] == [{"class_name": c} for c in CLASSES]
    assert both.threshold.value_threshold.lower_bound.value == 0.5
    assert both.threshold.change_threshold.absolute.value == -0.1
    assert both.threshold.change_threshold.direction == tfma.MetricDirection.HIGHER_IS_BETTER
    [drop_only] = class_thresholds(class_recall_lower_bound=0.0)
    assert not drop_only.threshold.HasField("value_threshold")
    [floor_only] = class_thresholds(class_recall_max_drop=1.0)
    assert not floor_only.threshold.HasField("change_threshold")
    assert class_thresholds(class_recall_lower_bound=0.0, class_recall_max_drop=1.0) == []


@pytest.fixture(scope="module")
def class_floor_eval(tmp_path_factory):
    """TFMA run with a per-class recall floor of 0.4, a fourth class "d" without eval examples."""
    return _offline_tfma(tmp_path_factory.mktemp("tfma_floor"), configs.PipelineConfig(
        accuracy_lower_bound=0.45, class_recall_lower_bound=0.4), CLASSES + ["d"])


def test_a_class_below_its_recall_floor_fails_while_the_overall_accuracy_passes(class_floor_eval):
    """Recall a 2/3, b 1/2, c 0 (never predicted), d no examples; overall accuracy 0.5 >= 0.45."""
    validation = tfma.load_validation_result(class_floor_eval)
    assert not validation.validation_ok
    assert {f.metric_key.name for s in validation.metric_validations_per_slice for f in s.failures} == {
        evaluation.ACCURACY}
    failed_slices = [slicer_lib.deserialize_slice_key(s.slice_key) for s in validation.metric_validations_per_slice]
    assert failed_slices == [(("class_name", "c"),)]  # not the overall slice, not a or b
    assert [dict(spec.feature_values) for spec in validation.missing_slices] == [{"class_name": "d"}]
    assert evaluation.failure_lines(class_floor_eval) == [
        "class c: recall 0.000 is below the lower bound 0.4",
        "class d: no examples of it in the evaluation data, so its recall cannot be checked"]
    # The report: one row per threshold and slice, the value on that slice.
    results = tfma_results.load(class_floor_eval, 4)
    rows = {(t.slice_desc, t.kind): (t.value, t.status) for t in results.thresholds}
    assert rows[("overall", "lower bound")] == (pytest.approx(0.5), "passed")
    assert rows[("class_name=a", "lower bound")] == (pytest.approx(2 / 3), "passed")
    assert rows[("class_name=b", "lower bound")] == (pytest.approx(0.5), "passed")
    assert rows[("class_name=c", "lower bound")] == (0.0, "FAILED")
    assert rows[("class_name=d", "lower bound")] == (None, "FAILED")
    gate = {r.name: (r.recall, r.floor, r.max_drop) for r in tables.class_gate_rows(results, CLASSES + ["d"])}
    assert gate == {"a": (pytest.approx(2 / 3), "passed", ""), "b": (pytest.approx(0.5), "passed", ""),
                    "c": (0.0, "FAILED", ""), "d": (None, "FAILED", "")}


# ---------------------------------------------------------------- the gate in pipeline runs

@pytest.fixture(scope="module")
def runs(gate_runs):
    return gate_runs


@pytest.mark.slow
def test_first_model_is_blessed_without_baseline_and_pushed(runs):
    nodes = runs.nodes[0]
    blessing = _blessing(nodes)
    assert store.custom_property(blessing, pipeline_names.PROP_BLESSED) == 1
    assert store.custom_property(blessing, pipeline_names.PROP_BASELINE_MODEL_ID) is None
    assert nodes[pipeline_names.RESOLVER_NODE].outputs.get("model", []) == []
    assert os.path.isfile(os.path.join(pushed_dir(runs), pipeline_names.SAVED_MODEL_FILE))
    # the releases record (releases.json, models.config, its lock) lives beside the versions
    versions = {p.split(os.sep)[0] for p in runs.serving[0] if p.split(os.sep)[0].isdigit()}
    assert versions == {os.path.basename(pushed_dir(runs))}


@pytest.mark.slow
def test_unchanged_rerun_evaluates_and_pushes_nothing(runs):
    nodes = runs.nodes[1]
    for node in (pipeline_names.TRAINER_NODE, pipeline_names.EVALUATOR_NODE, pipeline_names.PUSHER_NODE):
        assert nodes[node].state == "CACHED", (node, nodes[node].state)
    # The resolver excluded the (blessed) candidate: no baseline, as in run A.
    assert nodes[pipeline_names.RESOLVER_NODE].outputs.get("model", []) == []
    assert runs.evaluator_executions[1] == runs.evaluator_executions[0] == 1
    assert runs.serving[1] == runs.serving[0]


@pytest.mark.slow
def test_weak_candidate_is_not_blessed_and_serving_dir_is_untouched(runs):
    nodes = runs.nodes[2]
    assert nodes[pipeline_names.TRAINER_NODE].state == "COMPLETE"  # a new candidate
    blessing = _blessing(nodes)
    good_model = runs.nodes[0][pipeline_names.TRAINER_NODE].outputs[pipeline_names.MODEL_OUTPUT][0]
    assert store.custom_property(blessing, pipeline_names.PROP_BLESSED) == 0
    assert store.custom_property(blessing, pipeline_names.PROP_BASELINE_MODEL_ID) == good_model.id
    validation = tfma.load_validation_result(nodes[pipeline_names.EVALUATOR_NODE].uri(pipeline_names.EVALUATION_OUTPUT))
    assert not validation.validation_ok
    failed = {f.metric_key.name for s in validation.metric_validations_per_slice for f in s.failures}
    assert evaluation.ACCURACY in failed
    pushed = nodes[pipeline_names.PUSHER_NODE].outputs[pipeline_names.PUSHED_MODEL_OUTPUT][0]
    assert store.custom_property(pushed, pipeline_names.PROP_PUSHED) == 0
    assert runs.serving[2] == runs.serving[1] and runs.serving[2]  # byte-identical, not empty
