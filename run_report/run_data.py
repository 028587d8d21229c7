"""Everything one run report shows, gathered from ML Metadata and the run's artifacts.

Artifacts are found through ML Metadata, so any past run can be reported; a CACHED component
shows the outputs it reused.
"""
import dataclasses
import json
import os
from typing import Dict, List, Optional

import tensorflow as tf

from common import ingest_report, pipeline_names, store, tfma_results
from components.image_example_gen import driver as image_example_gen_driver
from components.label_vetter import vetting
from run_report import data_validation, edge_models, label_vetting
from trainer_module import names


@dataclasses.dataclass
class RunData:
    """One run: its nodes and what their artifacts hold."""
    metadata_path: str
    pipeline_name: str
    run_id: str
    nodes: Dict[str, store.NodeRun]
    root: Optional[str]  # the pipeline root
    class_names: List[str]
    ingest: Optional[ingest_report.IngestReport]
    history: Optional[dict]  # the Trainer's history.json
    lr_schedules: Dict[str, bytes]  # file name -> PNG written by the Trainer
    evaluation: Optional[tfma_results.EvalResults]
    validation: Optional[data_validation.DataValidationView] = None  # the data gate and its checks
    edge: Optional[edge_models.EdgeView] = None  # the EdgeEvaluator's comparison; None without one
    label_vetting: Optional[vetting.Vetting] = None  # the LabelVetter's record; None without one
    # The fixed reference set (--reference-eval-dir), in a run that has one: the ReferenceEvaluator's
    # results, the set's ingest report and its files' fingerprint (its version).
    reference: Optional[tfma_results.EvalResults] = None
    reference_ingest: Optional[ingest_report.IngestReport] = None
    reference_fingerprint: Optional[str] = None


def _read_json(path: Optional[str]) -> Optional[dict]:
    if not path or not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def _read_pngs(folder: Optional[str], pattern: str) -> Dict[str, bytes]:
    """{file name: bytes} of the files in folder matching pattern, sorted by name."""
    pngs = {}
    for path in sorted(tf.io.gfile.glob(os.path.join(folder, pattern)) if folder else []):
        with tf.io.gfile.GFile(path, "rb") as f:
            pngs[os.path.basename(path)] = f.read()
    return pngs


def _latest_run_id(metadata_path: str) -> str:
    ids = store.run_ids(metadata_path)
    if not ids:
        raise LookupError(f"no pipeline run recorded in {metadata_path}")
    return ids[-1]


def collect(metadata_path: str, run_id: Optional[str] = None) -> RunData:
    """Reads one run (default: the latest) from ML Metadata and its artifacts."""
    run_id = run_id or _latest_run_id(metadata_path)
    nodes = store.read_run(metadata_path, run_id)
    examples = nodes.get(pipeline_names.EXAMPLE_GEN_NODE)
    ingest_path = store.output_property(examples, pipeline_names.EXAMPLES_OUTPUT, pipeline_names.PROP_INGEST_REPORT)
    ingest = ingest_report.read(ingest_path) if ingest_path and os.path.exists(ingest_path) else None
    class_names = json.loads(
        store.output_property(examples, pipeline_names.EXAMPLES_OUTPUT, pipeline_names.PROP_CLASS_NAMES) or "[]")
    trainer = nodes.get(pipeline_names.TRAINER_NODE)
    model_run = trainer.uri(pipeline_names.MODEL_RUN_OUTPUT) if trainer else None
    results = _evaluation(metadata_path, run_id, nodes, pipeline_names.EVALUATOR_NODE, len(class_names))
    reference = _evaluation(metadata_path, run_id, nodes, pipeline_names.REFERENCE_EVALUATOR_NODE, len(class_names))
    reference_ingest = _ingest(nodes.get(pipeline_names.REFERENCE_EXAMPLE_GEN_NODE))
    reference_fingerprint = _input_fingerprint(metadata_path, nodes.get(pipeline_names.REFERENCE_EXAMPLE_GEN_NODE))
    return RunData(
        metadata_path=metadata_path, pipeline_name=store.pipeline_name(metadata_path, run_id),
        run_id=run_id, nodes=nodes, root=store.pipeline_root(nodes), class_names=class_names,
        ingest=ingest, history=_read_json(model_run and os.path.join(model_run, names.HISTORY_FILE)),
        lr_schedules=_read_pngs(model_run, names.LR_SCHEDULE_GLOB), evaluation=results,
        validation=data_validation.collect(metadata_path, run_id, nodes), edge=edge_models.collect(nodes),
        label_vetting=label_vetting.collect(nodes, run_id), reference=reference,
        reference_ingest=reference_ingest, reference_fingerprint=reference_fingerprint)


def _evaluation(metadata_path: str, run_id: str, nodes: Dict[str, store.NodeRun], node_id: str,
                num_classes: int) -> Optional[tfma_results.EvalResults]:
    """The TFMA results of an Evaluator node (None without the node or its results)."""
    node = nodes.get(node_id)
    uri = node.uri(pipeline_names.EVALUATION_OUTPUT) if node else None
    if not tfma_results.has_results(uri):
        return None
    configured = tfma_results.parse_eval_config(store.configured_eval_config_json(metadata_path, run_id, node_id))
    return tfma_results.load(uri, num_classes, configured)


def _input_fingerprint(metadata_path: str, node: Optional[store.NodeRun]) -> Optional[str]:
    """The fingerprint of the files an ImageExampleGen node's examples were made from (its driver's
    execution property), read from the execution that wrote them: a CACHED node reused them."""
    examples = node.outputs.get(pipeline_names.EXAMPLES_OUTPUT) if node else None
    if not examples:
        return None
    execution = store.producer(store.open_readonly(metadata_path), examples[0].id)
    value = execution.custom_properties.get(image_example_gen_driver.INPUT_FINGERPRINT_KEY) if execution else None
    return value.string_value if value is not None else None


def _ingest(node: Optional[store.NodeRun]) -> Optional[ingest_report.IngestReport]:
    path = store.output_property(node, pipeline_names.EXAMPLES_OUTPUT, pipeline_names.PROP_INGEST_REPORT)
    return ingest_report.read(path) if path and os.path.exists(path) else None
