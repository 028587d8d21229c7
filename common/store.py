"""ML Metadata: the connection to a local run's SQLite database, and what a pipeline run recorded
there: its runs, each node's state and output artifacts, their properties, the run's pipeline, the
eval config its Evaluator was given, and the lineage of an artifact.

Every ML Metadata connection and query of the project lives here: the runner (its pipeline's
connection, its closing log, the recovery of a killed run), the progress lines, the run report,
lineage, bench/ and the tests. TensorFlow-free: opening a run does not load TensorFlow.
"""
import dataclasses
import glob
import os
from typing import Dict, List, Optional

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.dsl.compiler import constants as tfx_constants

from common import output_dir, pipeline_names

_OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
_STATE_NAMES = {v: k for k, v in metadata_store_pb2.Execution.State.items()}


@dataclasses.dataclass
class NodeRun:
    """One component's execution in a run: its state and output artifacts by output key."""
    node_id: str
    state: str  # COMPLETE, CACHED, FAILED, ...
    outputs: Dict[str, List[metadata_store_pb2.Artifact]]

    def uri(self, key: str) -> Optional[str]:
        """The URI of the first artifact of output `key` (None when there is none)."""
        artifacts = self.outputs.get(key) or []
        return artifacts[0].uri if artifacts else None


_MODES = {"create": metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE,
          "write": metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE,
          "read": metadata_store_pb2.SqliteMetadataSourceConfig.READONLY}


def connection_config(metadata_path: str, mode: str = "create") -> metadata_store_pb2.ConnectionConfig:
    """The connection to a SQLite ML Metadata database: `create` (a run's pipeline: created on first
    use; TFX's own helper would also create the folder, which registering with the tfx CLI must not
    do), `write` (an existing database) or `read`."""
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = _MODES[mode]
    return config


class DamagedStoreError(RuntimeError):
    """The ML Metadata database cannot be read as one; the message names it and the fix."""

    def __init__(self, metadata_path: str, why: str):
        super().__init__(f"the ML Metadata database {metadata_path} is damaged ({why}): move it aside to start a "
                         "new run history (the artifacts stay on disk; the next run trains again), or restore "
                         "it from a backup")


_DAMAGED = ("file is not a database", "database disk image is malformed", "file is encrypted")


def open_store(metadata_path: str, mode: str = "read") -> metadata_store.MetadataStore:
    """A connection to a SQLite ML Metadata database (read-only by default), checked by one query:
    DamagedStoreError when the file is not a database."""
    try:
        mlmd = metadata_store.MetadataStore(connection_config(metadata_path, mode))
        mlmd.get_context_types()
    except Exception as e:  # noqa: BLE001 - ML Metadata raises RuntimeError and absl status errors
        why = next((d for d in _DAMAGED if d in str(e)), None)
        if why:
            raise DamagedStoreError(metadata_path, why) from e
        raise
    return mlmd


def check_database(metadata_path: str) -> None:
    """DamagedStoreError when an existing database file is damaged (before TFX opens it)."""
    if os.path.exists(metadata_path):
        open_store(metadata_path, "read")


def open_readonly(metadata_path: str) -> metadata_store.MetadataStore:
    """A read-only connection to a SQLite ML Metadata database."""
    return open_store(metadata_path, "read")


def find_metadata(path: str) -> str:
    """The ML Metadata database for an output dir, a pipeline root or the database itself."""
    if os.path.isfile(path):
        return path
    candidates = [os.path.join(path, output_dir.METADATA_FILE)]
    candidates += sorted(glob.glob(os.path.join(path, output_dir.METADATA_DIR, "*", output_dir.METADATA_FILE)))
    # <output>/pipelines/<name> (the pipeline root) -> <output>/metadata/<name>/metadata.sqlite
    parent, name = os.path.split(os.path.normpath(path))
    if os.path.basename(parent) == output_dir.PIPELINES_DIR:
        candidates.append(output_dir.metadata_path(os.path.dirname(parent), name))
    found = sorted({c for c in candidates if os.path.isfile(c)})
    if not found:
        raise FileNotFoundError(f"no ML Metadata database ({output_dir.METADATA_FILE}) for {path}")
    if len(found) > 1:
        raise ValueError(f"{path} holds several pipelines; pass one database: {found}")
    return found[0]


def _runs(mlmd: metadata_store.MetadataStore) -> List[metadata_store_pb2.Context]:
    return sorted(mlmd.get_contexts_by_type(tfx_constants.PIPELINE_RUN_CONTEXT_TYPE_NAME),
                  key=lambda c: (c.create_time_since_epoch, c.id))


def run_ids(metadata_path: str) -> List[str]:
    """Run ids (pipeline_run context names), oldest first."""
    return [c.name for c in _runs(open_readonly(metadata_path))]


def _run(mlmd: metadata_store.MetadataStore, metadata_path: str,
         run_id: Optional[str]) -> metadata_store_pb2.Context:
    """The pipeline_run context of run_id (default: the latest run)."""
    runs = _runs(mlmd)
    if not runs:
        raise LookupError(f"no pipeline run recorded in {metadata_path}")
    run = runs[-1] if run_id is None else next((c for c in runs if c.name == run_id), None)
    if run is None:
        raise LookupError(f"no run {run_id!r} in {metadata_path}; runs: {[c.name for c in runs]}")
    return run


def _node_id(node_context: metadata_store_pb2.Context) -> str:
    """TFX names a node context "<pipeline>.<node id>"."""
    return node_context.name.split(".", 1)[-1]


def read_run(metadata_path: str, run_id: Optional[str] = None) -> Dict[str, NodeRun]:
    """{node id: NodeRun} for one run (default: the latest)."""
    if not os.path.exists(metadata_path):
        raise FileNotFoundError(f"no ML Metadata database at {metadata_path}")
    mlmd = open_readonly(metadata_path)
    run = _run(mlmd, metadata_path, run_id)
    node_type = mlmd.get_context_type(tfx_constants.NODE_CONTEXT_TYPE_NAME).id
    nodes = {}
    for execution in mlmd.get_executions_by_context(run.id):
        node_ctx = [c for c in mlmd.get_contexts_by_execution(execution.id) if c.type_id == node_type]
        node_id = _node_id(node_ctx[0]) if node_ctx else str(execution.id)
        events = [e for e in mlmd.get_events_by_execution_ids([execution.id]) if e.type in _OUTPUT_EVENTS]
        artifacts = {a.id: a for a in mlmd.get_artifacts_by_id([e.artifact_id for e in events])}
        outputs: Dict[str, List[metadata_store_pb2.Artifact]] = {}
        for event in events:
            key = event.path.steps[0].key if event.path.steps else ""
            outputs.setdefault(key, []).append(artifacts[event.artifact_id])
        nodes[node_id] = NodeRun(node_id, _STATE_NAMES.get(execution.last_known_state, "UNKNOWN"), outputs)
    return nodes


def custom_property(artifact: metadata_store_pb2.Artifact, name: str):
    """An artifact's custom property as a Python value (None when absent)."""
    if name not in artifact.custom_properties:
        return None
    value = artifact.custom_properties[name]
    return getattr(value, value.WhichOneof("value"))


def output_property(node: Optional[NodeRun], key: str, name: str):
    """Custom property `name` of a node's first `key` output (None without the node or output)."""
    artifacts = node.outputs.get(key) if node else None
    return custom_property(artifacts[0], name) if artifacts else None


def pipeline_name(metadata_path: str, run_id: str) -> str:
    """The name of the pipeline a run belongs to ("" when ML Metadata does not say)."""
    mlmd = open_readonly(metadata_path)
    pipeline_type = mlmd.get_context_type(tfx_constants.PIPELINE_CONTEXT_TYPE_NAME).id
    for execution in mlmd.get_executions_by_context(_run(mlmd, metadata_path, run_id).id):
        for context in mlmd.get_contexts_by_execution(execution.id):
            if context.type_id == pipeline_type:
                return context.name
    return ""


def configured_eval_config_json(metadata_path: str, run_id: str,
                                node_id: str = pipeline_names.EVALUATOR_NODE) -> Optional[str]:
    """The eval config the run's Evaluator (or another node's, e.g. the ReferenceEvaluator) was
    given (its execution property), as JSON text.

    It still holds the change thresholds that TFX drops when there is no baseline; the eval
    config TFMA saves beside its results does not. None when the run has no such node.
    """
    mlmd = open_readonly(metadata_path)
    node_type = mlmd.get_context_type(tfx_constants.NODE_CONTEXT_TYPE_NAME).id
    for execution in mlmd.get_executions_by_context(_run(mlmd, metadata_path, run_id).id):
        if pipeline_names.EVAL_CONFIG_EXEC_PROPERTY not in execution.custom_properties:
            continue
        if any(c.type_id == node_type and _node_id(c) == node_id
               for c in mlmd.get_contexts_by_execution(execution.id)):
            return execution.custom_properties[pipeline_names.EVAL_CONFIG_EXEC_PROPERTY].string_value
    return None


def execution_property(metadata_path: str, run_id: str, node_id: str, name: str):
    """An execution property of node `node_id` in the run (how TFX records a component's
    parameters, e.g. the DataGate's proceed_despite_anomalies); None when absent."""
    mlmd = open_readonly(metadata_path)
    node_type = mlmd.get_context_type(tfx_constants.NODE_CONTEXT_TYPE_NAME).id
    for execution in mlmd.get_executions_by_context(_run(mlmd, metadata_path, run_id).id):
        if name in execution.custom_properties and any(
                c.type_id == node_type and _node_id(c) == node_id
                for c in mlmd.get_contexts_by_execution(execution.id)):
            value = execution.custom_properties[name]
            return getattr(value, value.WhichOneof("value"))
    return None


def node_inputs(metadata_path: str, run_id: str, node_id: str) -> Dict[str, List[metadata_store_pb2.Artifact]]:
    """The input artifacts, by key, of node `node_id`'s execution in the run ({} without one).

    What a resolver passed on is only visible here: TFX records a resolver's outputs as internal
    events, which read_run does not list."""
    mlmd = open_readonly(metadata_path)
    for execution in mlmd.get_executions_by_context(_run(mlmd, metadata_path, run_id).id):
        found = step(mlmd, execution)
        if found.node_id == node_id:
            return found.inputs
    return {}


def pipeline_root(nodes: Dict[str, NodeRun]) -> Optional[str]:
    """The pipeline root, from any artifact a component wrote as <root>/<node>/<key>/<id>."""
    for node_id, node in sorted(nodes.items()):
        for key, artifacts in node.outputs.items():
            for artifact in artifacts:
                parts = artifact.uri.rstrip("/").split("/")
                if len(parts) > 3 and parts[-3] == node_id and parts[-2] == key:
                    return "/".join(parts[:-3])
    return None


# ---------------------------------------------------------------- lineage (run_report.lineage)
# Lineage follows events, not run contexts: a CACHED execution records OUTPUT events to the
# artifacts an earlier execution wrote, so an artifact's producer may belong to an older run.
_PUSHED_MODEL_TYPE = "PushedModel"  # TFX's standard_artifacts.PushedModel.TYPE_NAME (no TensorFlow)
_INPUT_EVENTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)


@dataclasses.dataclass
class Step:
    """One execution in a lineage: its node, its run, and its artifacts by input or output key."""
    execution: metadata_store_pb2.Execution
    node_id: str
    run_id: str
    inputs: Dict[str, List[metadata_store_pb2.Artifact]]
    outputs: Dict[str, List[metadata_store_pb2.Artifact]]

    def input(self, key: str) -> Optional[metadata_store_pb2.Artifact]:
        """The first artifact of input `key` (None when there is none)."""
        return (self.inputs.get(key) or [None])[0]

    def output(self, key: str) -> Optional[metadata_store_pb2.Artifact]:
        """The first artifact of output `key` (None when there is none)."""
        return (self.outputs.get(key) or [None])[0]


def pushed_models(mlmd: metadata_store.MetadataStore) -> List[metadata_store_pb2.Artifact]:
    """The PushedModel artifacts of pushes that happened (custom property pushed = 1), oldest first."""
    artifacts = mlmd.get_artifacts_by_type(_PUSHED_MODEL_TYPE)
    return sorted((a for a in artifacts if custom_property(a, pipeline_names.PROP_PUSHED) == 1), key=lambda a: a.id)


def producer(mlmd: metadata_store.MetadataStore, artifact_id: int) -> Optional[metadata_store_pb2.Execution]:
    """The execution that wrote an artifact: the oldest one with an output event to it that is not
    CACHED (a CACHED execution reuses it). None for an artifact no execution wrote."""
    events = [e for e in mlmd.get_events_by_artifact_ids([artifact_id]) if e.type in _OUTPUT_EVENTS]
    executions = sorted(mlmd.get_executions_by_id({e.execution_id for e in events}), key=lambda e: e.id)
    written = [e for e in executions if e.last_known_state != metadata_store_pb2.Execution.CACHED]
    return (written or executions or [None])[0]


def _artifacts_by_key(mlmd: metadata_store.MetadataStore,
                      events) -> Dict[str, List[metadata_store_pb2.Artifact]]:
    artifacts = {a.id: a for a in mlmd.get_artifacts_by_id([e.artifact_id for e in events])}
    by_key: Dict[str, List[metadata_store_pb2.Artifact]] = {}
    for event in events:
        key = event.path.steps[0].key if event.path.steps else ""
        by_key.setdefault(key, []).append(artifacts[event.artifact_id])
    return by_key


def step(mlmd: metadata_store.MetadataStore, execution: metadata_store_pb2.Execution) -> Step:
    """An execution with its node id, its run id (pipeline_run context name) and its artifacts."""
    contexts = mlmd.get_contexts_by_execution(execution.id)
    type_names = {t.id: t.name for t in mlmd.get_context_types_by_id(list({c.type_id for c in contexts}))}
    named = {type_names[c.type_id]: c for c in contexts}
    node = named.get(tfx_constants.NODE_CONTEXT_TYPE_NAME)
    run = named.get(tfx_constants.PIPELINE_RUN_CONTEXT_TYPE_NAME)
    events = mlmd.get_events_by_execution_ids([execution.id])
    return Step(execution, _node_id(node) if node else str(execution.id), run.name if run else "",
                _artifacts_by_key(mlmd, [e for e in events if e.type in _INPUT_EVENTS]),
                _artifacts_by_key(mlmd, [e for e in events if e.type in _OUTPUT_EVENTS]))


def producing_step(mlmd: metadata_store.MetadataStore, artifact: metadata_store_pb2.Artifact) -> Step:
    """The Step of the execution that wrote an artifact; LookupError when none did."""
    execution = producer(mlmd, artifact.id)
    if execution is None:
        raise LookupError(f"ML Metadata records no execution that wrote {artifact.uri}")
    return step(mlmd, execution)
