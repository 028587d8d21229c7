"""Clean up after a run that was killed: under the run lock no other run is alive, so an execution
still NEW or RUNNING in ML Metadata belongs to a dead process. It is marked CANCELED (with who
marked it and why), and the folders TFX made for it (its outputs, its executor scratch space) are
removed; a killed Trainer's training backup is not among them and stays for the resume.
"""
import glob
import logging
import os
import shutil
from typing import List

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.dsl.compiler import constants as tfx_constants

from common import store

log = logging.getLogger(__name__)

_UNFINISHED = (metadata_store_pb2.Execution.NEW, metadata_store_pb2.Execution.RUNNING)
RECOVERED_BY = "recovered_by"  # custom property of a CANCELED execution: the run that marked it
SYSTEM_DIR = ".system"
EXECUTOR_DIR = "executor_execution"
STATEFUL_DIR = "stateful_working_dir"


def _node_id(mlmd: metadata_store.MetadataStore, execution_id: int) -> str:
    node_type = mlmd.get_context_type(tfx_constants.NODE_CONTEXT_TYPE_NAME).id
    contexts = [c for c in mlmd.get_contexts_by_execution(execution_id) if c.type_id == node_type]
    return contexts[0].name.split(".", 1)[-1] if contexts else ""


def _run_id(mlmd: metadata_store.MetadataStore, execution_id: int) -> str:
    run_type = mlmd.get_context_type(tfx_constants.PIPELINE_RUN_CONTEXT_TYPE_NAME).id
    contexts = [c for c in mlmd.get_contexts_by_execution(execution_id) if c.type_id == run_type]
    return contexts[0].name if contexts else "?"


def _execution_folders(pipeline_root: str, node_id: str, execution_id: int) -> List[str]:
    """TFX's folders of one execution: <node>/<output key>/<id> and <node>/.system/executor_execution/<id>."""
    node_dir = os.path.join(pipeline_root, node_id)
    folders = glob.glob(os.path.join(glob.escape(node_dir), "*", str(execution_id)))
    folders.append(os.path.join(node_dir, SYSTEM_DIR, EXECUTOR_DIR, str(execution_id)))
    return sorted(f for f in folders if os.path.isdir(f))


def recover_killed_runs(metadata_path: str, pipeline_root: str, current_run_id: str) -> List[str]:
    """Marks the unfinished executions of dead runs CANCELED and removes their folders; returns one
    line per execution for the log. Call it only while holding the run lock."""
    if not os.path.exists(metadata_path):
        return []
    mlmd = store.open_store(metadata_path, "write")
    try:
        types = mlmd.get_context_types()
    except Exception:  # a database TFX has not initialised yet
        return []
    if tfx_constants.NODE_CONTEXT_TYPE_NAME not in {t.name for t in types}:
        return []
    lines = []
    for execution in mlmd.get_executions():
        if execution.last_known_state not in _UNFINISHED:
            continue
        node_id, run_id = _node_id(mlmd, execution.id), _run_id(mlmd, execution.id)
        state = metadata_store_pb2.Execution.State.Name(execution.last_known_state)
        removed = _execution_folders(pipeline_root, node_id, execution.id) if node_id else []
        for folder in removed:
            shutil.rmtree(folder, ignore_errors=True)
        execution.last_known_state = metadata_store_pb2.Execution.CANCELED
        execution.custom_properties[RECOVERED_BY].string_value = (
            f"run {current_run_id}: its process died while it was {state}")
        mlmd.put_executions([execution])
        # Killed, Ctrl-C or SIGTERM, or a crash: ML Metadata cannot tell which, only that it never finished.
        lines.append(f"run {run_id} stopped during {node_id or 'an unknown node'} before it finished (execution "
                     f"{execution.id}): marked CANCELED, removed {len(removed)} folder(s) {removed}")
    lines += _remove_stale_scratch(pipeline_root)
    return lines


def _remove_stale_scratch(pipeline_root: str) -> List[str]:
    """TFX removes a node's stateful working dir when its execution succeeds; one left over is a
    killed or failed execution's, and no run is alive under the lock to use it."""
    lines = []
    for folder in sorted(glob.glob(os.path.join(glob.escape(pipeline_root), "*", SYSTEM_DIR, STATEFUL_DIR, "*"))):
        shutil.rmtree(folder, ignore_errors=True)
        lines.append(f"removed the scratch folder {folder} left by an earlier run (killed, or a failed step)")
    return lines
