"""Which examples, Transform graph, Trainer config and evaluation produced a pushed model, and
which TFLite edge models were pushed with it (or held back, and why).

    python -m run_report.lineage OUTPUT_DIR_OR_DB [--version V] [--json]

The path is the pipeline's output dir, its pipeline root, or the ML Metadata database. The
version defaults to the one TF Serving serves: the newest numeric version folder in the
pipeline's serving dir (<output>/serving_model/<pipeline name>). The push is found in ML Metadata
by the PushedModel artifact's `pushed_version`; from there every link follows ML Metadata's
events to the execution that wrote each artifact. A CACHED rerun reuses artifacts, so an item's
run id (the pipeline_run context of its producing execution) may be older than the push's.

--json prints one object:
    pipeline, metadata_path, serving_dir, version
    served          whether the version is the newest in the serving dir (what TF Serving serves)
    push            version, destination, run_id, uri (the PushedModel artifact),
                    push_source: the version's assets.extra/push_source.json (null without one),
                    with model_uri, fingerprint and matches_model (its model_uri is model.uri)
    model           uri, run_id (the Trainer execution that wrote the Model artifact)
    training        run_id, model_run_uri, config (the Trainer's custom_config train_config),
                    history: epochs, final (last epoch's loss, accuracy, val_loss, val_accuracy),
                    bn_recalibration (history.json's after_bn_recalibration; null when absent),
                    calibration (the served temperature and the calibration error before and
                    after it, history.json's calibration; null when absent)
    transform_graph uri, run_id
    examples        uri, run_id, data_root, fingerprint (ImageExampleGen's input_base and
                    input_fingerprint), files_seen, ingested, skipped, ingest_report (its path),
                    ingested_by_split_and_class, skipped_by_reason (from the ingest report)
    schema          uri, run_id
    evaluation      uri, run_id, accuracy (overall, TFMA; null without results),
                    baseline (uri, run_id; null when the Evaluator had none),
                    blessing (uri, blessed 0/1)
    edge_models     the TFLite models pushed with the version (null for a push that recorded none):
                    pushed: [{flavour, path}] (under <version>/tflite/), labels (its labels file;
                    null when none was pushed), held_back: {flavour: reason} (the Pusher's
                    properties), evaluation: the EdgeEvaluation that decided it (uri, run_id,
                    accuracy: {saved_model | flavour: accuracy}; null without one)

Exit codes (run_control.exit_codes): 0 printed; 1 data: no version in the serving dir, or the
version is not recorded in ML Metadata (pushed by hand); 2 usage: no database at the path.
"""

if __name__ == "__main__":  # the project's Python (set up if missing), and a quiet start
    from run_control.environment import ensure_project_python
    from run_control.startup import quiet_startup

    ensure_project_python(__spec__.name)
    quiet_startup()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
from typing import Any, Dict, List, Optional  # noqa: E402

from ml_metadata import metadata_store  # noqa: E402
from ml_metadata.proto import metadata_store_pb2  # noqa: E402

from common import output_dir, pipeline_names, store  # noqa: E402
from run_control import exit_codes  # noqa: E402
from run_report import edge_models  # noqa: E402
from trainer_module import names  # noqa: E402

# Input keys of TFX's Trainer, Evaluator and Pusher (standard_component_specs; importing it loads
# TensorFlow).
_EXAMPLES_INPUT = "examples"
_TRANSFORM_GRAPH_INPUT = "transform_graph"
_SCHEMA_INPUT = "schema"
_MODEL_INPUT = "model"
_BASELINE_MODEL_INPUT = "baseline_model"
_BLESSING_INPUT = "model_blessing"
# The AtomicPusher's input of the EdgeEvaluator's verdict.
_EDGE_EVALUATION_INPUT = pipeline_names.EDGE_EVALUATION_OUTPUT
_CUSTOM_CONFIG = "custom_config"  # the Trainer execution's property, JSON
_FINAL_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


def serving_dir(metadata_path: str, pushes: List[metadata_store_pb2.Artifact]) -> Optional[str]:
    """The pipeline's serving dir: <output>/serving_model/<name> for a database at
    <output>/metadata/<name>/metadata.sqlite; elsewhere, the folder of the newest recorded push."""
    db_dir = os.path.dirname(os.path.abspath(metadata_path))
    if os.path.basename(os.path.dirname(db_dir)) == output_dir.METADATA_DIR:
        return output_dir.serving_model_dir(os.path.dirname(os.path.dirname(db_dir)), os.path.basename(db_dir))
    destination = store.custom_property(pushes[-1], pipeline_names.PROP_PUSHED_DESTINATION) if pushes else None
    return os.path.dirname(destination) if destination else None


def served_version(serving: Optional[str]) -> Optional[str]:
    """The newest numeric version folder, the one TF Serving serves (None when there is none)."""
    if not serving or not os.path.isdir(serving):
        return None
    versions = [n for n in os.listdir(serving) if n.isdigit() and os.path.isdir(os.path.join(serving, n))]
    return max(versions, key=int) if versions else None


def find_push(pushes: List[metadata_store_pb2.Artifact], version: str) -> metadata_store_pb2.Artifact:
    """The newest PushedModel recorded with this version; DataError when there is none."""
    matching = [a for a in pushes if store.custom_property(a, pipeline_names.PROP_PUSHED_VERSION) == version]
    if not matching:
        recorded = [store.custom_property(a, pipeline_names.PROP_PUSHED_VERSION) for a in pushes]
        raise exit_codes.DataError(f"version {version} is not recorded in ML Metadata (pushed by hand?); "
                                   f"recorded pushes: {', '.join(recorded) or 'none'}")
    return matching[-1]


def _read_json(path: Optional[str]) -> Optional[Any]:
    """A JSON file's content; None when it is missing. Local paths with open(), others with gfile."""
    if not path:
        return None
    if "://" in path:
        import tensorflow as tf  # a remote artifact (gs://): only then load TensorFlow

        return json.loads(tf.io.gfile.GFile(path).read()) if tf.io.gfile.exists(path) else None
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _item(mlmd: metadata_store.MetadataStore, artifact: Optional[metadata_store_pb2.Artifact]
          ) -> Optional[Dict[str, Any]]:
    """{uri, run_id} of an artifact and the run of the execution that wrote it."""
    if artifact is None:
        return None
    return {"uri": artifact.uri, "run_id": store.producing_step(mlmd, artifact).run_id}


def _push_source(version_dir: str, model_uri: str) -> Optional[Dict[str, Any]]:
    """The AtomicPusher's marker in the version, checked against the model ML Metadata names."""
    marker = _read_json(os.path.join(version_dir, names.EXTRA_ASSETS_DIR, pipeline_names.PUSH_SOURCE_FILE))
    if marker is None:
        return None
    return {"model_uri": marker.get(pipeline_names.PUSH_SOURCE_MODEL_URI),
            "fingerprint": marker.get(pipeline_names.PUSH_SOURCE_FINGERPRINT),
            "matches_model": marker.get(pipeline_names.PUSH_SOURCE_MODEL_URI) == model_uri}


def history_summary(history: Optional[dict]) -> Optional[Dict[str, Any]]:
    """Epochs, the last epoch's metrics, the BatchNorm recalibration and the temperature of a history.json."""
    if history is None:
        return None
    series = history.get(names.HISTORY_SERIES, {})
    return {"epochs": len(series.get("loss", [])),
            "final": {k: series[k][-1] for k in _FINAL_METRICS if series.get(k)},
            "bn_recalibration": history.get(names.HISTORY_BN_RECALIBRATION) or None,
            "calibration": history.get(names.HISTORY_CALIBRATION) or None}


def _training(trainer: store.Step) -> Dict[str, Any]:
    custom_config = json.loads(store.custom_property(trainer.execution, _CUSTOM_CONFIG) or "{}")
    model_run = trainer.output(pipeline_names.MODEL_RUN_OUTPUT)
    model_run_uri = model_run.uri if model_run else None
    history = _read_json(model_run_uri and os.path.join(model_run_uri, names.HISTORY_FILE))
    return {"run_id": trainer.run_id, "model_run_uri": model_run_uri,
            "config": custom_config.get(names.TRAIN_CONFIG_KEY), "history": history_summary(history)}


def _examples(mlmd: metadata_store.MetadataStore, examples: metadata_store_pb2.Artifact) -> Dict[str, Any]:
    # Imported here: the driver module loads TensorFlow (through TFX), which the errors do not need.
    from components.image_example_gen.driver import INPUT_BASE_KEY, INPUT_FINGERPRINT_KEY

    gen = store.producing_step(mlmd, examples)
    counts = {key: store.custom_property(examples, prop) for key, prop in (
        ("files_seen", pipeline_names.PROP_FILES_SEEN), ("ingested", pipeline_names.PROP_INGESTED),
        ("skipped", pipeline_names.PROP_SKIPPED), ("ingest_report", pipeline_names.PROP_INGEST_REPORT))}
    report = _read_json(counts["ingest_report"]) or {}  # as stored: lineage --json passes it on
    return {"uri": examples.uri, "run_id": gen.run_id,
            "data_root": store.custom_property(gen.execution, INPUT_BASE_KEY),
            "fingerprint": store.custom_property(gen.execution, INPUT_FINGERPRINT_KEY), **counts,
            "ingested_by_split_and_class": report.get("ingested_by_split_and_class"),
            "skipped_by_reason": report.get("skipped_by_reason")}


def overall_accuracy(evaluation_uri: str, num_classes: int) -> Optional[float]:
    """The candidate's overall accuracy as TFMA wrote it (None without results)."""
    from pipeline.evaluation import ACCURACY  # TFMA and TensorFlow: only for this number
    from common import tfma_results

    if not tfma_results.has_results(evaluation_uri):
        return None
    return tfma_results.nan_to_none(tfma_results.load(evaluation_uri, num_classes).metric(ACCURACY))


def evaluation_lineage(mlmd: metadata_store.MetadataStore, blessing: metadata_store_pb2.Artifact,
                       num_classes: int) -> Dict[str, Any]:
    """The --json "evaluation" item of the Evaluator execution that wrote a ModelBlessing."""
    evaluator = store.producing_step(mlmd, blessing)
    evaluation = evaluator.output(pipeline_names.EVALUATION_OUTPUT)
    return {"uri": evaluation.uri if evaluation else None, "run_id": evaluator.run_id,
            "accuracy": overall_accuracy(evaluation.uri, num_classes) if evaluation else None,
            "baseline": _item(mlmd, evaluator.input(_BASELINE_MODEL_INPUT)),
            "blessing": {"uri": blessing.uri, "blessed": store.custom_property(blessing, pipeline_names.PROP_BLESSED)}}


def _edge_evaluation(mlmd: metadata_store.MetadataStore, artifact: Optional[metadata_store_pb2.Artifact]
                     ) -> Optional[Dict[str, Any]]:
    """{uri, run_id, accuracy per model} of the EdgeEvaluation a push read (None without one)."""
    item = _item(mlmd, artifact)
    if item is None:
        return None
    evaluation = _read_json(os.path.join(artifact.uri, pipeline_names.EDGE_EVALUATION_FILE)) or {}
    models = evaluation.get(pipeline_names.EDGE_MODELS) or {}
    return {**item, "accuracy": {m: e.get(pipeline_names.EDGE_ACCURACY) for m, e in models.items()} or None}


def edge_lineage(mlmd: metadata_store.MetadataStore, pusher: store.Step, pushed: metadata_store_pb2.Artifact,
                 version_dir: str) -> Optional[Dict[str, Any]]:
    """The --json "edge_models" item: the TFLite models pushed into <version>/tflite/, those held
    back and why (the Pusher's properties), and the EdgeEvaluation that decided it; None for a push
    with neither (a pipeline without an EdgeEvaluator)."""
    evaluation = pusher.input(_EDGE_EVALUATION_INPUT)
    recorded = store.custom_property(pushed, pipeline_names.PROP_PUSHED_EDGE_MODELS)
    if evaluation is None and recorded is None:
        return None
    folder = os.path.join(version_dir, pipeline_names.PUSHED_EDGE_SUBDIR)
    flavours = edge_models.pushed_flavours(recorded)
    return {"pushed": [{"flavour": f, "path": os.path.join(folder, names.TFLITE_FILE.format(flavour=f))}
                       for f in flavours],
            "labels": os.path.join(folder, names.TFLITE_LABELS_FILE) if flavours else None,
            "held_back": edge_models.held_back(store.custom_property(pushed, pipeline_names.PROP_EDGE_HELD_BACK)),
            "evaluation": _edge_evaluation(mlmd, evaluation)}


def lineage(metadata_path: str, version: Optional[str] = None) -> Dict[str, Any]:
    """The lineage of a pushed version (default: the served one), as the --json object."""
    mlmd = store.open_readonly(metadata_path)
    pushes = store.pushed_models(mlmd)
    serving = serving_dir(metadata_path, pushes)
    served = served_version(serving)
    version = version or served
    if version is None:
        raise exit_codes.DataError(f"no version folder in the serving dir {serving}: nothing is served")
    pushed = find_push(pushes, version)
    pusher = store.producing_step(mlmd, pushed)
    model, blessing = pusher.input(_MODEL_INPUT), pusher.input(_BLESSING_INPUT)
    trainer = store.producing_step(mlmd, model)
    examples = trainer.input(_EXAMPLES_INPUT)
    class_names = json.loads(store.custom_property(examples, pipeline_names.PROP_CLASS_NAMES) or "[]")
    destination = store.custom_property(pushed, pipeline_names.PROP_PUSHED_DESTINATION)
    version_dir = os.path.join(serving, version) if serving else destination
    return {
        "pipeline": store.pipeline_name(metadata_path, pusher.run_id),
        "metadata_path": metadata_path, "serving_dir": serving, "version": version,
        "served": version == served,
        "push": {"version": version, "destination": destination, "run_id": pusher.run_id,
                 "uri": pushed.uri, "push_source": _push_source(version_dir, model.uri)},
        "model": {"uri": model.uri, "run_id": trainer.run_id},
        "training": _training(trainer),
        "transform_graph": _item(mlmd, trainer.input(_TRANSFORM_GRAPH_INPUT)),
        "examples": _examples(mlmd, examples),
        "schema": _item(mlmd, trainer.input(_SCHEMA_INPUT)),
        "evaluation": evaluation_lineage(mlmd, blessing, len(class_names)),
        "edge_models": edge_lineage(mlmd, pusher, pushed, version_dir),
    }


def _number(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.4f}"


def _head(label: str, value: Any) -> str:
    return f"{label:<12}{value}"


def _row(label: str, value: Any) -> str:
    return f"  {label:<12}{value}"


def _artifact_lines(label: str, item: Optional[Dict[str, Any]]) -> List[str]:
    if item is None:
        return [_head(label, "none")]
    return [_head(label, item["uri"]), _row("run", item["run_id"])]


def _training_lines(training: Dict[str, Any]) -> List[str]:
    config = training["config"] or {}
    wrapped = textwrap.wrap(", ".join(f"{k}={json.dumps(config[k])}" for k in sorted(config)), 86)
    lines = [_row("config" if i == 0 else "", line) for i, line in enumerate(wrapped)]
    history = training["history"]
    if history is None:
        return lines + [_row("history", f"none ({names.HISTORY_FILE} missing)")]
    final = ", ".join(f"{k} {_number(v)}" for k, v in history["final"].items())
    lines.append(_row("history", f"epochs {history['epochs']}; last epoch: {final}"))
    bn = history["bn_recalibration"]
    if bn:
        lines.append(_row("BatchNorm", f"recalibrated on {bn.get('batches')} batches, train loss "
                                       f"{_number(bn.get('train_loss_before'))} -> "
                                       f"{_number(bn.get('train_loss_after'))}, "
                                       f"{'kept' if bn.get('kept') else 'not kept'}; eval accuracy "
                                       f"{_number((bn.get('eval') or {}).get('accuracy'))}"))
    calibrated = history.get("calibration")
    if calibrated:
        lines.append(_row("temperature", f"{_number(calibrated.get(names.CALIBRATION_TEMPERATURE))} (served "
                                         f"probabilities softmax(logits / T)); expected calibration error on "
                                         f"{calibrated.get(names.CALIBRATION_EXAMPLES)} eval images "
                                         f"{_number(calibrated.get(names.CALIBRATION_ECE_BEFORE))} -> "
                                         f"{_number(calibrated.get(names.CALIBRATION_ECE_AFTER))}"))
    return lines


def _examples_lines(examples: Dict[str, Any]) -> List[str]:
    reasons = ", ".join(f"{r} {n}" for r, n in (examples["skipped_by_reason"] or {}).items())
    lines = [_row("data root", examples["data_root"]), _row("fingerprint", examples["fingerprint"]),
             _row("files", f"{examples['files_seen']} seen, {examples['ingested']} ingested, "
                           f"{examples['skipped']} skipped" + (f" ({reasons})" if reasons else ""))]
    for split, counts in (examples["ingested_by_split_and_class"] or {}).items():
        lines.append(_row(split, ", ".join(f"{c} {n}" for c, n in counts.items())))
    return lines


def _push_lines(result: Dict[str, Any]) -> List[str]:
    push, source = result["push"], result["push"]["push_source"]
    served = "served by TF Serving" if result["served"] else "not the served version"
    marker = ("none" if source is None else
              f"model_uri {'matches' if source['matches_model'] else 'DOES NOT MATCH'} the model, "
              f"fingerprint {source['fingerprint']}")
    return [_head("push", f"version {push['version']} ({served}) at {push['destination']}"),
            _row("run", push["run_id"]), _row("artifact", push["uri"]),
            _row("marker", f"{pipeline_names.PUSH_SOURCE_FILE}: {marker}")]


def _evaluation_lines(evaluation: Dict[str, Any]) -> List[str]:
    baseline, blessing = evaluation["baseline"], evaluation["blessing"]
    return [_head("evaluation", evaluation["uri"]), _row("run", evaluation["run_id"]),
            _row("accuracy", _number(evaluation["accuracy"])),
            _row("baseline", f"{baseline['uri']} (run {baseline['run_id']})" if baseline else "none"),
            _row("blessing", f"{blessing['uri']} blessed={blessing['blessed']}")]


def _edge_lines(edge: Optional[Dict[str, Any]]) -> List[str]:
    if edge is None:
        return [_head("edge", "none recorded with this push")]
    pushed = ", ".join(p["flavour"] for p in edge["pushed"]) or "none"
    lines = [_head("edge", f"TFLite models pushed: {pushed}")]
    lines += [_row(p["flavour"], p["path"]) for p in edge["pushed"]]
    if edge["labels"]:
        lines.append(_row("labels", edge["labels"]))
    lines += [_row(flavour, f"held back: {reason}") for flavour, reason in sorted(edge["held_back"].items())]
    evaluation = edge["evaluation"]
    if evaluation is None:
        return lines + [_row("decided by", "no EdgeEvaluation input recorded")]
    accuracy = ", ".join(f"{model} {_number(value)}" for model, value in (evaluation["accuracy"] or {}).items())
    return lines + [_row("decided by", f"{evaluation['uri']} (run {evaluation['run_id']})"),
                    _row("accuracy", accuracy or f"- ({pipeline_names.EDGE_EVALUATION_FILE} missing)")]


def format_text(result: Dict[str, Any]) -> str:
    """The lineage as text: one block per item, each with its artifact URI and run id."""
    return "\n".join([
        f"Lineage of {result['pipeline']} version {result['version']} ({result['metadata_path']})",
        *_push_lines(result),
        *_edge_lines(result["edge_models"]),
        *_artifact_lines("model", result["model"]),
        _head("training", f"{result['training']['model_run_uri']} (the Trainer's model_run)"),
        *_training_lines(result["training"]),
        *_artifact_lines("transform", result["transform_graph"]),
        *_artifact_lines("examples", result["examples"]),
        *_examples_lines(result["examples"]),
        *_artifact_lines("schema", result["schema"]),
        *_evaluation_lines(result["evaluation"]),
    ])


def main(argv: Optional[List[str]] = None) -> int:
    """The command line: prints the lineage; one line on stderr and exit 1 or 2 on an error."""
    parser = exit_codes.ArgumentParser(prog="python -m run_report.lineage", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", help="pipeline output dir, pipeline root, or metadata.sqlite")
    parser.add_argument("--version", help="a pushed version (default: the served one, the newest)")
    parser.add_argument("--json", action="store_true", help="print one JSON object (keys above)")
    args = parser.parse_args(argv)
    try:
        try:
            metadata_path = store.find_metadata(args.path)
        except (FileNotFoundError, ValueError) as exc:
            raise exit_codes.UsageError(str(exc)) from exc
        try:
            result = lineage(metadata_path, args.version)
        except LookupError as exc:
            raise exit_codes.DataError(str(exc).strip("'\"")) from exc
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - every failure: one line, a documented code
        return exit_codes.fail(exc)
    print(json.dumps(result, indent=1) if args.json else format_text(result))
    return exit_codes.OK


if __name__ == "__main__":
    sys.exit(main())
