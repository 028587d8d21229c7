"""What a pipeline run produced, read back from ML Metadata (for the runner's closing log and tests)."""
import dataclasses
import os
from typing import Dict, List, Optional

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

_OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
_STATE_NAMES = {v: k for k, v in metadata_store_pb2.Execution.State.items()}


@dataclasses.dataclass
class NodeRun:
    """One component's execution in a run: its state and output artifacts by output key."""
    node_id: str
    state: str  # COMPLETE, CACHED, FAILED, ...
    outputs: Dict[str, List[metadata_store_pb2.Artifact]]

    def uri(self, key: str) -> Optional[str]:
        artifacts = self.outputs.get(key) or []
        return artifacts[0].uri if artifacts else None


def _store(metadata_path: str) -> metadata_store.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def run_ids(metadata_path: str) -> List[str]:
    """Run ids (pipeline_run context names), oldest first."""
    store = _store(metadata_path)
    runs = sorted(store.get_contexts_by_type("pipeline_run"), key=lambda c: (c.create_time_since_epoch, c.id))
    return [c.name for c in runs]


def read_run(metadata_path: str, run_id: Optional[str] = None) -> Dict[str, NodeRun]:
    """{node id: NodeRun} for one run (default: the latest)."""
    if not os.path.exists(metadata_path):
        raise FileNotFoundError(f"no ML Metadata database at {metadata_path}")
    store = _store(metadata_path)
    runs = sorted(store.get_contexts_by_type("pipeline_run"), key=lambda c: (c.create_time_since_epoch, c.id))
    if not runs:
        raise LookupError(f"no pipeline run recorded in {metadata_path}")
    run = runs[-1] if run_id is None else next((c for c in runs if c.name == run_id), None)
    if run is None:
        raise LookupError(f"no run {run_id!r} in {metadata_path}; runs: {[c.name for c in runs]}")
    node_type = store.get_context_type("node").id
    nodes = {}
    for execution in store.get_executions_by_context(run.id):
        node_ctx = [c for c in store.get_contexts_by_execution(execution.id) if c.type_id == node_type]
        node_id = node_ctx[0].name.split(".", 1)[-1] if node_ctx else str(execution.id)
        events = [e for e in store.get_events_by_execution_ids([execution.id]) if e.type in _OUTPUT_EVENTS]
        artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
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
