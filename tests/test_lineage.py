"""run_report.lineage: what produced the served (or any pushed) model, read back from ML Metadata.

Fast tests check the command's errors on a database and serving dir made here; the slow ones
check every link against what the session's pipeline runs used (tests/pipeline_runs.py; A: pushed,
B: all CACHED, C: weak, not pushed).
"""
import json
import os

import pytest
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.dsl.compiler import constants as tfx_constants

import local_runner
import pipeline_runs
from common import dataset, output_dir, pipeline_names, store
from run_control import exit_codes, local_run
from run_report import lineage, run_data
from trainer_module import names
from trainer_module.train_config import TrainConfig

# ---------------------------------------------------------------- errors and helpers (fast)

def _output_dir_with_empty_metadata(tmp_path, versions=()):
    """<tmp>/metadata/p/metadata.sqlite (no run recorded) and serving_model/p/<version> folders."""
    db = tmp_path / output_dir.METADATA_DIR / "p" / output_dir.METADATA_FILE
    db.parent.mkdir(parents=True)
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(db)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    metadata_store.MetadataStore(config)
    serving = tmp_path / output_dir.SERVING_DIR / "p"
    serving.mkdir(parents=True)
    for version in versions:
        (serving / version).mkdir()
    return tmp_path


def _error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def test_missing_database_is_a_usage_error(tmp_path, capsys):
    assert lineage.main([str(tmp_path / "nowhere")]) == exit_codes.USAGE_ERROR == 2
    line = _error_line(capsys)
    assert line.startswith("error: no ML Metadata database") and str(tmp_path / "nowhere") in line


def test_a_version_pushed_by_hand_is_a_data_error(tmp_path, capsys):
    # 10 is served (the newest numeric folder; "9x" is not a version), and ML Metadata has no push.
    out = _output_dir_with_empty_metadata(tmp_path, versions=("9", "10", "9x"))
    assert lineage.main([str(out)]) == exit_codes.DATA_ERROR == 1
    assert _error_line(capsys) == ("error: version 10 is not recorded in ML Metadata (pushed by hand?); "
                                   "recorded pushes: none (exit 1)")


def test_nothing_served_is_a_data_error(tmp_path, capsys):
    out = _output_dir_with_empty_metadata(tmp_path)
    assert lineage.main([str(out), "--json"]) == exit_codes.DATA_ERROR
    serving = out / output_dir.SERVING_DIR / "p"
    assert _error_line(capsys) == (f"error: no version folder in the serving dir {serving}: "
                                   "nothing is served (exit 1)")


def test_history_summary_takes_the_last_epoch_and_the_recalibration():
    history = {names.HISTORY_SERIES: {"loss": [2.0, 1.5], "accuracy": [0.2, 0.4], "val_accuracy": [0.1, 0.3],
                                      names.HISTORY_LEARNING_RATE: [0.1, 0.05]},
               names.HISTORY_BN_RECALIBRATION: {}}
    assert lineage.history_summary(history) == {
        "epochs": 2, "final": {"loss": 1.5, "accuracy": 0.4, "val_accuracy": 0.3}, "bn_recalibration": None,
        "calibration": None}
    history[names.HISTORY_BN_RECALIBRATION] = {"kept": True, "batches": 5}
    assert lineage.history_summary(history)["bn_recalibration"] == {"kept": True, "batches": 5}
    history[names.HISTORY_CALIBRATION] = {names.CALIBRATION_TEMPERATURE: 0.65, names.CALIBRATION_ECE_BEFORE: 0.13}
    assert lineage.history_summary(history)["calibration"] == history[names.HISTORY_CALIBRATION]
    assert lineage.history_summary(None) is None


# ---------------------------------------------------------------- edge models of a push (fast)

VERSION = "1700000000"
INT8_REASON = ("int8 accuracy 0.897 is 1.7 points below the SavedModel's 0.913 on the same 300 eval images "
               "(margin 1.0 point): not pushed")


class _Lineage:
    """Executions, their artifacts and input/output events registered as TFX records a run."""

    def __init__(self, metadata_path: str):
        config = metadata_store_pb2.ConnectionConfig()
        config.sqlite.filename_uri = metadata_path
        self.mlmd = metadata_store.MetadataStore(config)

    def _context(self, type_name: str, name: str) -> metadata_store_pb2.Context:
        type_id = self.mlmd.put_context_type(metadata_store_pb2.ContextType(name=type_name))
        return (self.mlmd.get_context_by_type_and_name(type_name, name)
                or metadata_store_pb2.Context(type_id=type_id, name=name))

    @staticmethod
    def _event(kind, key: str) -> metadata_store_pb2.Event:
        event = metadata_store_pb2.Event(type=kind)
        event.path.steps.add().key = key
        event.path.steps.add().index = 0
        return event

    def put(self, run_id: str, node_id: str, inputs=None, outputs=None):
        """One COMPLETE execution of node_id in run_id of pipeline "p". inputs: {key: artifact};
        outputs: {key: (artifact type, uri, custom properties)}. Returns {key: output artifact}."""
        execution = metadata_store_pb2.Execution(
            type_id=self.mlmd.put_execution_type(metadata_store_pb2.ExecutionType(name=node_id)),
            last_known_state=metadata_store_pb2.Execution.COMPLETE)
        pairs = [(a, self._event(metadata_store_pb2.Event.INPUT, k)) for k, a in (inputs or {}).items()]
        keys = list(outputs or {})
        for key in keys:
            type_name, uri, properties = outputs[key]
            artifact = metadata_store_pb2.Artifact(
                type_id=self.mlmd.put_artifact_type(metadata_store_pb2.ArtifactType(name=type_name)), uri=uri)
            for name, value in properties.items():
                if isinstance(value, int):
                    artifact.custom_properties[name].int_value = value
                else:
                    artifact.custom_properties[name].string_value = value
            pairs.append((artifact, self._event(metadata_store_pb2.Event.OUTPUT, key)))
        contexts = [self._context(tfx_constants.PIPELINE_CONTEXT_TYPE_NAME, "p"),
                    self._context(tfx_constants.PIPELINE_RUN_CONTEXT_TYPE_NAME, run_id),
                    self._context(tfx_constants.NODE_CONTEXT_TYPE_NAME, f"p.{node_id}")]
        _, artifact_ids, _ = self.mlmd.put_execution(execution, pairs, contexts, reuse_context_if_already_exist=True)
        written = self.mlmd.get_artifacts_by_id(artifact_ids[len(inputs or {}):])
        return dict(zip(keys, written))


def _pushed_run(tmp_path, edge: bool = True) -> str:
    """<tmp>/metadata/p/metadata.sqlite recording one run "r1" that trained a model and pushed it as
    VERSION; with edge, an EdgeEvaluator (run "r0": the Pusher read an earlier run's verdict) whose
    gate passed float16 and held int8 back, and the Pusher's edge properties."""
    out = _output_dir_with_empty_metadata(tmp_path, versions=(VERSION,))
    root = tmp_path / "pipelines" / "p"
    record = _Lineage(str(out / output_dir.METADATA_DIR / "p" / output_dir.METADATA_FILE))

    def uri(node, key):
        return str(root / node / key / "1")

    examples = record.put("r1", pipeline_names.EXAMPLE_GEN_NODE, outputs={pipeline_names.EXAMPLES_OUTPUT: (
        "Examples", uri(pipeline_names.EXAMPLE_GEN_NODE, pipeline_names.EXAMPLES_OUTPUT),
        {pipeline_names.PROP_CLASS_NAMES: json.dumps(["a", "b"])})})[pipeline_names.EXAMPLES_OUTPUT]
    model = record.put("r1", pipeline_names.TRAINER_NODE, inputs={"examples": examples}, outputs={
        pipeline_names.MODEL_OUTPUT: ("Model", uri(pipeline_names.TRAINER_NODE, pipeline_names.MODEL_OUTPUT),
                                      {})})[pipeline_names.MODEL_OUTPUT]
    blessing = record.put("r1", pipeline_names.EVALUATOR_NODE, inputs={"model": model}, outputs={
        pipeline_names.BLESSING_OUTPUT: ("ModelBlessing",
                                         uri(pipeline_names.EVALUATOR_NODE, pipeline_names.BLESSING_OUTPUT),
                                {pipeline_names.PROP_BLESSED: 1})})[pipeline_names.BLESSING_OUTPUT]
    inputs, properties = {"model": model, "model_blessing": blessing}, {}
    if edge:
        edge_uri = tmp_path / "edge"
        edge_uri.mkdir()
        (edge_uri / pipeline_names.EDGE_EVALUATION_FILE).write_text(json.dumps({pipeline_names.EDGE_MODELS: {
            pipeline_names.EDGE_SAVED_MODEL: {pipeline_names.EDGE_ACCURACY: 0.9133}, "float16": {pipeline_names.EDGE_ACCURACY: 0.9127},
            "int8": {pipeline_names.EDGE_ACCURACY: 0.8967}}}))
        edge_outputs = {pipeline_names.EDGE_EVALUATION_OUTPUT: ("EdgeEvaluation", str(edge_uri), {})}
        inputs[pipeline_names.EDGE_EVALUATION_OUTPUT] = record.put(
            "r0", pipeline_names.EDGE_EVALUATOR_NODE, inputs={"model": model}, outputs=edge_outputs)[pipeline_names.EDGE_EVALUATION_OUTPUT]
        properties = {pipeline_names.PROP_PUSHED_EDGE_MODELS: "float16",
                      pipeline_names.PROP_EDGE_HELD_BACK: json.dumps({"int8": INT8_REASON})}
    destination = str(out / output_dir.SERVING_DIR / "p" / VERSION)
    record.put("r1", pipeline_names.PUSHER_NODE, inputs=inputs, outputs={pipeline_names.PUSHED_MODEL_OUTPUT: (
        "PushedModel", uri(pipeline_names.PUSHER_NODE, pipeline_names.PUSHED_MODEL_OUTPUT),
        {pipeline_names.PROP_PUSHED: 1, pipeline_names.PROP_PUSHED_VERSION: VERSION,
         pipeline_names.PROP_PUSHED_DESTINATION: destination,
         **properties})})
    return str(out)


def test_a_push_lists_its_edge_models_and_the_evaluation_that_decided(tmp_path, capsys):
    out = _pushed_run(tmp_path)
    result = lineage.lineage(store.find_metadata(out))
    assert (result["version"], result["push"]["run_id"]) == (VERSION, "r1")
    edge_dir = os.path.join(out, output_dir.SERVING_DIR, "p", VERSION, pipeline_names.PUSHED_EDGE_SUBDIR)
    assert result["edge_models"] == {
        "pushed": [{"flavour": "float16", "path": os.path.join(edge_dir, "model_float16.tflite")}],
        "labels": os.path.join(edge_dir, names.TFLITE_LABELS_FILE),
        "held_back": {"int8": INT8_REASON},
        "evaluation": {"uri": str(tmp_path / "edge"), "run_id": "r0",
                       "accuracy": {pipeline_names.EDGE_SAVED_MODEL: 0.9133, "float16": 0.9127, "int8": 0.8967}}}
    assert lineage.main([out, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["edge_models"] == result["edge_models"]
    assert lineage.main([out]) == 0
    edge = _text_blocks(capsys.readouterr().out)["edge"]
    assert edge == {"": "TFLite models pushed: float16",
                    "float16": os.path.join(edge_dir, "model_float16.tflite"),
                    "labels": os.path.join(edge_dir, names.TFLITE_LABELS_FILE),
                    "int8": f"held back: {INT8_REASON}",
                    "decided by": f"{tmp_path / 'edge'} (run r0)",
                    "accuracy": "saved_model 0.9133, float16 0.9127, int8 0.8967"}


def test_a_push_without_edge_models_says_so(tmp_path, capsys):
    out = _pushed_run(tmp_path, edge=False)
    assert lineage.lineage(store.find_metadata(out))["edge_models"] is None
    assert lineage.main([out]) == 0
    assert _text_blocks(capsys.readouterr().out)["edge"] == {"": "none recorded with this push"}


# ---------------------------------------------------------------- the pipeline runs (slow)

@pytest.fixture(scope="module")
def runs(gate_runs):
    return gate_runs


@pytest.fixture(scope="module")
def served(runs):
    """The --json lineage of the served version, from the output dir."""
    return lineage.lineage(store.find_metadata(runs.cfg.output_dir))


def _uri(runs, run: int, node: str, key: str) -> str:
    return runs.nodes[run][node].uri(key)


@pytest.mark.slow
def test_the_served_version_is_the_one_run_a_pushed(runs, served):
    pushed = pipeline_runs.pushed_dir(runs)
    assert served["version"] == os.path.basename(pushed) and served["served"] is True
    assert served["serving_dir"] == runs.cfg.serving_model_dir == os.path.dirname(pushed)
    assert served["pipeline"] == runs.cfg.pipeline_name
    # B reran the Pusher CACHED and C pushed nothing: the push is A's.
    assert served["push"] == {
        "version": os.path.basename(pushed), "destination": pushed, "run_id": runs.run_ids[0],
        "uri": _uri(runs, 0, pipeline_names.PUSHER_NODE, pipeline_names.PUSHED_MODEL_OUTPUT),
        "push_source": served["push"]["push_source"]}
    source = served["push"]["push_source"]
    if source is not None:  # written by the AtomicPusher
        assert source["model_uri"] == served["model"]["uri"] and source["matches_model"] is True


@pytest.mark.slow
def test_model_transform_schema_and_examples_are_run_a_outputs(runs, served):
    a = runs.run_ids[0]
    assert served["model"] == {"uri": _uri(runs, 0, pipeline_names.TRAINER_NODE, pipeline_names.MODEL_OUTPUT),
                               "run_id": a}
    assert served["transform_graph"] == {"uri": _uri(runs, 0, "Transform", "transform_graph"), "run_id": a}
    assert served["schema"] == {"uri": _uri(runs, 0, pipeline_names.SCHEMA_GEN_NODE, pipeline_names.SCHEMA_OUTPUT),
                                "run_id": a}
    examples = served["examples"]
    examples_uri = _uri(runs, 0, pipeline_names.EXAMPLE_GEN_NODE, pipeline_names.EXAMPLES_OUTPUT)
    assert (examples["uri"], examples["run_id"]) == (examples_uri, a)
    # B's executions are CACHED on the same artifacts: the links name the run that wrote them.
    assert runs.nodes[1][pipeline_names.TRAINER_NODE].uri(pipeline_names.MODEL_OUTPUT) == served["model"]["uri"]
    assert runs.run_ids[1] not in json.dumps(served)


@pytest.mark.slow
def test_examples_name_the_demo_data_the_run_used(runs, served):
    from components.image_example_gen import image_files

    examples, cfg = served["examples"], runs.cfg
    assert examples["data_root"] == local_run.resolve_data(cfg)
    assert examples["fingerprint"] == image_files.list_image_files(examples["data_root"]).fingerprint()
    n_classes = len(dataset.INTEL_CLASS_NAMES)
    total = n_classes * (cfg.demo_train_per_class + cfg.demo_eval_per_class)
    assert (examples["files_seen"], examples["ingested"], examples["skipped"]) == (total, total, 0)
    assert examples["ingested_by_split_and_class"] == {
        "train": {c: cfg.demo_train_per_class for c in dataset.INTEL_CLASS_NAMES},
        "eval": {c: cfg.demo_eval_per_class for c in dataset.INTEL_CLASS_NAMES}}
    assert examples["skipped_by_reason"] == {}


@pytest.mark.slow
def test_training_config_and_history_are_what_run_a_trained_with(runs, served):
    training = served["training"]
    cfg, overrides = local_runner.parse_args(["--output-dir", runs.cfg.output_dir, *pipeline_runs.GOOD_FLAGS])
    expected = TrainConfig.from_dict({**overrides, "class_names": list(dataset.INTEL_CLASS_NAMES)})
    assert training["config"] == json.loads(expected.to_json())
    config = training["config"]
    assert (config["epochs"], config["image_size"], config["schedule"]) == (2, 64, "warmup_cosine")
    model_run = _uri(runs, 0, pipeline_names.TRAINER_NODE, pipeline_names.MODEL_RUN_OUTPUT)
    assert (training["run_id"], training["model_run_uri"]) == (runs.run_ids[0], model_run)
    with open(os.path.join(model_run, names.HISTORY_FILE)) as f:
        history = json.load(f)
    assert training["history"]["epochs"] == 2
    assert training["history"]["final"] == {k: history[names.HISTORY_SERIES][k][-1]
                                            for k in ("loss", "accuracy", "val_loss", "val_accuracy")}
    assert training["history"]["bn_recalibration"] == (history[names.HISTORY_BN_RECALIBRATION] or None)


@pytest.mark.slow
def test_edge_models_are_the_ones_run_a_pushed(runs, served):
    if pipeline_names.EDGE_EVALUATOR_NODE not in runs.nodes[0]:
        pytest.skip("the pipeline runs have no EdgeEvaluator")
    edge = served["edge_models"]
    assert (edge["evaluation"]["uri"], edge["evaluation"]["run_id"]) == (
        _uri(runs, 0, pipeline_names.EDGE_EVALUATOR_NODE, pipeline_names.EDGE_EVALUATION_OUTPUT), runs.run_ids[0])
    pushed = [p["flavour"] for p in edge["pushed"]]
    assert set(pushed) | set(edge["held_back"]) == set(edge["evaluation"]["accuracy"]) - {pipeline_names.EDGE_SAVED_MODEL}
    version_dir = pipeline_runs.pushed_dir(runs)
    for item in edge["pushed"]:  # in the served version, beside the SavedModel
        assert item["path"] == os.path.join(version_dir, pipeline_names.PUSHED_EDGE_SUBDIR,
                                            names.TFLITE_FILE.format(flavour=item["flavour"]))
        assert os.path.isfile(item["path"])
    assert edge["labels"] is None if not pushed else os.path.isfile(edge["labels"])


@pytest.mark.slow
def test_evaluation_is_run_a_blessing_without_a_baseline(runs, served):
    from pipeline.evaluation import ACCURACY

    evaluation = served["evaluation"]
    assert evaluation["uri"] == _uri(runs, 0, pipeline_names.EVALUATOR_NODE, pipeline_names.EVALUATION_OUTPUT)
    assert evaluation["run_id"] == runs.run_ids[0]
    assert evaluation["baseline"] is None
    assert evaluation["blessing"] == {"uri": _uri(runs, 0, pipeline_names.EVALUATOR_NODE,
                                                  pipeline_names.BLESSING_OUTPUT),
                                      "blessed": 1}
    report = run_data.collect(runs.cfg.metadata_path, runs.run_ids[0])
    assert evaluation["accuracy"] == report.evaluation.metric(ACCURACY)
    assert 0.0 <= evaluation["accuracy"] <= 1.0


@pytest.mark.slow
def test_run_c_evaluation_links_its_baseline_to_the_run_that_trained_it(runs):
    # C's Evaluator read A's model as its baseline: the link names A, the run that wrote it.
    mlmd = store.open_readonly(runs.cfg.metadata_path)
    blessing = runs.nodes[2][pipeline_names.EVALUATOR_NODE].outputs[pipeline_names.BLESSING_OUTPUT][0]
    evaluation = lineage.evaluation_lineage(mlmd, blessing, len(dataset.INTEL_CLASS_NAMES))
    assert evaluation["run_id"] == runs.run_ids[2]
    assert evaluation["baseline"] == {"uri": _uri(runs, 0, pipeline_names.TRAINER_NODE, pipeline_names.MODEL_OUTPUT),
                                      "run_id": runs.run_ids[0]}
    assert evaluation["blessing"] == {"uri": blessing.uri, "blessed": 0}


def _text_blocks(text: str) -> dict:
    """{item: {"": head value, row label: row value}} of the text output (format_text's columns)."""
    blocks = {}
    for line in text.splitlines()[1:]:
        if not line.startswith("  "):
            block = blocks.setdefault(line[:12].strip(), {"": line[12:]})
        elif line[2:14].strip():
            label = line[2:14].strip()
            block[label] = line[14:]
        else:  # a wrapped row continues the row above
            block[label] += " " + line[14:]
    return blocks


@pytest.mark.slow
def test_json_and_text_show_the_same_lineage(runs, served, capsys):
    assert lineage.main([runs.cfg.output_dir, "--json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert as_json == served
    version = served["version"]
    assert lineage.main([runs.cfg.metadata_path, "--version", version, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == served
    assert lineage.main([runs.cfg.output_dir]) == 0
    text = capsys.readouterr().out
    title = f"Lineage of {runs.cfg.pipeline_name} version {version} ({served['metadata_path']})"
    assert text.splitlines()[0] == title
    blocks = _text_blocks(text)
    push, examples, evaluation = blocks["push"], blocks["examples"], blocks["evaluation"]
    assert push[""] == f"version {version} (served by TF Serving) at {served['push']['destination']}"
    assert (push["run"], push["artifact"]) == (served["push"]["run_id"], served["push"]["uri"])
    for item, key in (("model", "model"), ("transform", "transform_graph"), ("examples", "examples"),
                      ("schema", "schema"), ("evaluation", "evaluation")):
        assert (blocks[item][""], blocks[item]["run"]) == (served[key]["uri"], served[key]["run_id"]), item
    assert (examples["data root"], examples["fingerprint"]) == (served["examples"]["data_root"],
                                                                served["examples"]["fingerprint"])
    per_class = runs.cfg.demo_train_per_class
    assert examples["train"] == ", ".join(f"{c} {per_class}" for c in dataset.INTEL_CLASS_NAMES)
    assert evaluation["accuracy"] == f"{served['evaluation']['accuracy']:.4f}"
    assert (evaluation["baseline"], evaluation["blessing"]) == (
        "none", f"{served['evaluation']['blessing']['uri']} blessed=1")
    assert " epochs=2," in blocks["training"]["config"] and "epochs 2;" in blocks["training"]["history"]


@pytest.mark.slow
def test_an_unknown_version_is_one_line_and_exit_1(runs, capsys):
    assert lineage.main([runs.cfg.output_dir, "--version", "123"]) == exit_codes.DATA_ERROR
    line = _error_line(capsys)
    assert line == (f"error: version 123 is not recorded in ML Metadata (pushed by hand?); recorded pushes: "
                    f"{os.path.basename(pipeline_runs.pushed_dir(runs))} (exit 1)")
