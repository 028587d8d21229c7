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

import local_runner
import pipeline_runs
from pipeline import configs
from run_control import exit_codes
from run_report import lineage, run_data, store
from trainer_module import names
from trainer_module.train_config import TrainConfig


# ---------------------------------------------------------------- errors and helpers (fast)

def _output_dir_with_empty_metadata(tmp_path, versions=()):
    """<tmp>/metadata/p/metadata.sqlite (no run recorded) and serving_model/p/<version> folders."""
    db = tmp_path / configs.METADATA_DIR / "p" / configs.METADATA_FILE
    db.parent.mkdir(parents=True)
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(db)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    metadata_store.MetadataStore(config)
    serving = tmp_path / configs.SERVING_DIR / "p"
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
    serving = out / configs.SERVING_DIR / "p"
    assert _error_line(capsys) == (f"error: no version folder in the serving dir {serving}: "
                                   "nothing is served (exit 1)")


def test_history_summary_takes_the_last_epoch_and_the_recalibration():
    history = {names.HISTORY_SERIES: {"loss": [2.0, 1.5], "accuracy": [0.2, 0.4], "val_accuracy": [0.1, 0.3],
                                      names.HISTORY_LEARNING_RATE: [0.1, 0.05]},
               names.HISTORY_BN_RECALIBRATION: {}}
    assert lineage.history_summary(history) == {
        "epochs": 2, "final": {"loss": 1.5, "accuracy": 0.4, "val_accuracy": 0.3}, "bn_recalibration": None}
    history[names.HISTORY_BN_RECALIBRATION] = {"kept": True, "batches": 5}
    assert lineage.history_summary(history)["bn_recalibration"] == {"kept": True, "batches": 5}
    assert lineage.history_summary(None) is None


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
        "uri": _uri(runs, 0, names.PUSHER_NODE, names.PUSHED_MODEL_OUTPUT),
        "push_source": served["push"]["push_source"]}
    source = served["push"]["push_source"]
    if source is not None:  # written by the AtomicPusher
        assert source["model_uri"] == served["model"]["uri"] and source["matches_model"] is True


@pytest.mark.slow
def test_model_transform_schema_and_examples_are_run_a_outputs(runs, served):
    a = runs.run_ids[0]
    assert served["model"] == {"uri": _uri(runs, 0, names.TRAINER_NODE, names.MODEL_OUTPUT), "run_id": a}
    assert served["transform_graph"] == {"uri": _uri(runs, 0, "Transform", "transform_graph"), "run_id": a}
    assert served["schema"] == {"uri": _uri(runs, 0, names.SCHEMA_GEN_NODE, names.SCHEMA_OUTPUT), "run_id": a}
    examples = served["examples"]
    examples_uri = _uri(runs, 0, names.EXAMPLE_GEN_NODE, names.EXAMPLES_OUTPUT)
    assert (examples["uri"], examples["run_id"]) == (examples_uri, a)
    # B's executions are CACHED on the same artifacts: the links name the run that wrote them.
    assert runs.nodes[1][names.TRAINER_NODE].uri(names.MODEL_OUTPUT) == served["model"]["uri"]
    assert runs.run_ids[1] not in json.dumps(served)


@pytest.mark.slow
def test_examples_name_the_demo_data_the_run_used(runs, served):
    from components.image_example_gen import image_files

    examples, cfg = served["examples"], runs.cfg
    assert examples["data_root"] == local_runner.resolve_data(cfg)
    assert examples["fingerprint"] == image_files.fingerprint_tree(examples["data_root"])
    n_classes = len(names.INTEL_CLASS_NAMES)
    total = n_classes * (cfg.demo_train_per_class + cfg.demo_eval_per_class)
    assert (examples["files_seen"], examples["ingested"], examples["skipped"]) == (total, total, 0)
    assert examples["ingested_by_split_and_class"] == {
        "train": {c: cfg.demo_train_per_class for c in names.INTEL_CLASS_NAMES},
        "eval": {c: cfg.demo_eval_per_class for c in names.INTEL_CLASS_NAMES}}
    assert examples["skipped_by_reason"] == {}


@pytest.mark.slow
def test_training_config_and_history_are_what_run_a_trained_with(runs, served):
    training = served["training"]
    cfg, overrides = local_runner.parse_args(["--output-dir", runs.cfg.output_dir, *pipeline_runs.GOOD_FLAGS])
    expected = TrainConfig.from_dict({**overrides, "class_names": list(names.INTEL_CLASS_NAMES)})
    assert training["config"] == json.loads(expected.to_json())
    config = training["config"]
    assert (config["epochs"], config["image_size"], config["schedule"]) == (2, 64, "warmup_cosine")
    model_run = _uri(runs, 0, names.TRAINER_NODE, names.MODEL_RUN_OUTPUT)
    assert (training["run_id"], training["model_run_uri"]) == (runs.run_ids[0], model_run)
    with open(os.path.join(model_run, names.HISTORY_FILE)) as f:
        history = json.load(f)
    assert training["history"]["epochs"] == 2
    assert training["history"]["final"] == {k: history[names.HISTORY_SERIES][k][-1]
                                            for k in ("loss", "accuracy", "val_loss", "val_accuracy")}
    assert training["history"]["bn_recalibration"] == (history[names.HISTORY_BN_RECALIBRATION] or None)


@pytest.mark.slow
def test_evaluation_is_run_a_blessing_without_a_baseline(runs, served):
    from pipeline.evaluation import ACCURACY

    evaluation = served["evaluation"]
    assert evaluation["uri"] == _uri(runs, 0, names.EVALUATOR_NODE, names.EVALUATION_OUTPUT)
    assert evaluation["run_id"] == runs.run_ids[0]
    assert evaluation["baseline"] is None
    assert evaluation["blessing"] == {"uri": _uri(runs, 0, names.EVALUATOR_NODE, names.BLESSING_OUTPUT),
                                      "blessed": 1}
    report = run_data.collect(runs.cfg.metadata_path, runs.run_ids[0])
    assert evaluation["accuracy"] == report.evaluation.metric(ACCURACY)
    assert 0.0 <= evaluation["accuracy"] <= 1.0


@pytest.mark.slow
def test_run_c_evaluation_links_its_baseline_to_the_run_that_trained_it(runs):
    # C's Evaluator read A's model as its baseline: the link names A, the run that wrote it.
    mlmd = store.open_readonly(runs.cfg.metadata_path)
    blessing = runs.nodes[2][names.EVALUATOR_NODE].outputs[names.BLESSING_OUTPUT][0]
    evaluation = lineage.evaluation_lineage(mlmd, blessing, len(names.INTEL_CLASS_NAMES))
    assert evaluation["run_id"] == runs.run_ids[2]
    assert evaluation["baseline"] == {"uri": _uri(runs, 0, names.TRAINER_NODE, names.MODEL_OUTPUT),
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
    assert examples["train"] == ", ".join(f"{c} {per_class}" for c in names.INTEL_CLASS_NAMES)
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
