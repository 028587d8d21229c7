"""Where a local run writes, under its output dir (--output-dir):

    <output>/pipelines/<pipeline name>/          the pipeline root: every component's artifacts
        .run.lock                                 one run at a time (run_control/lock.py)
        logs/<run id>.log                         the full log of each run
    <output>/metadata/<pipeline name>/metadata.sqlite    ML Metadata
    <output>/serving_model/<pipeline name>/<version>/    what the Pusher pushed
    <output>/cache/                               downloads, extractions, the demo dataset

The run readers find a run's ML Metadata database through this layout (metadata_store.find_metadata).
"""
import os
import re

PIPELINES_DIR = "pipelines"
METADATA_DIR = "metadata"
METADATA_FILE = "metadata.sqlite"
SERVING_DIR = "serving_model"
CACHE_DIR = "cache"
RUN_LOCK_FILE = ".run.lock"
LOGS_DIR = "logs"


def pipeline_root(output_dir: str, pipeline_name: str) -> str:
    return os.path.join(output_dir, PIPELINES_DIR, pipeline_name)


def metadata_path(output_dir: str, pipeline_name: str) -> str:
    return os.path.join(output_dir, METADATA_DIR, pipeline_name, METADATA_FILE)


def serving_model_dir(output_dir: str, pipeline_name: str) -> str:
    return os.path.join(output_dir, SERVING_DIR, pipeline_name)


def cache_dir(output_dir: str) -> str:
    return os.path.join(output_dir, CACHE_DIR)


def lock_path(output_dir: str, pipeline_name: str) -> str:
    return os.path.join(pipeline_root(output_dir, pipeline_name), RUN_LOCK_FILE)


def log_path(output_dir: str, pipeline_name: str, run_id: str) -> str:
    """<pipeline root>/logs/<run id, with characters unsafe in a file name replaced>.log"""
    return os.path.join(pipeline_root(output_dir, pipeline_name), LOGS_DIR,
                        re.sub(r"[^A-Za-z0-9._-]", "-", run_id) + ".log")
