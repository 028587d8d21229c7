"""Faults with real processes: a runner killed (SIGKILL) during the Trainer, then rerun; runners
started while another holds the pipeline's output dir. One chain of real local_runner processes on
the demo data with tiny images, shared by the tests below.

  r1  trains 3 epochs; killed once its first epoch is saved
  r2  started while r1 runs: exits 3 at once, naming r1
  r3  the same command as r1: recovers r1's leftovers, resumes at the next epoch, pushes once
  r4  started with --wait-for-lock while r3 runs: waits, then runs (all cached), pushes nothing
"""
import dataclasses
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time
from typing import List

import pytest
from ml_metadata.proto import metadata_store_pb2

from common import pipeline_names, store
from pipeline import configs
from run_control import exit_codes, recovery
from trainer_module import names

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("fault_runs")]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 3
# The Trainer skips its after-training steps and the TFLite export: the faults are in the epochs.
FLAGS = ["--epochs", str(EPOCHS), "--image-size", "64", "--resize-size", "72", "--batch-size", "16",
         "--demo-train-per-class", "24", "--demo-eval-per-class", "6", "--accuracy-lower-bound", "0.0",
         "--class-recall-lower-bound", "0.0", "--no-temperature-scaling", "--bn-recalibration-batches", "0",
         "--no-test-time-flip", "--no-tflite-export"]
DEADLINE_S = 900  # every wait below is bounded


@dataclasses.dataclass
class Chain:
    cfg: configs.PipelineConfig
    outputs: List[str]  # console output of r1..r4
    codes: List[int]
    pids: List[int]
    epochs_done_at_kill: int


def _start(out_dir: str, log_path: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, os.path.join(REPO, "local_runner.py"), "--output-dir", out_dir,
                             *FLAGS, *extra], stdout=open(log_path, "w"), stderr=subprocess.STDOUT, cwd=REPO)


def _wait_for(condition, what: str, process: subprocess.Popen = None):
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert process is None or process.poll() is None, f"the runner ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _lock_holder_pid(cfg: configs.PipelineConfig):
    try:
        with open(cfg.lock_path) as f:
            return json.load(f).get("pid")
    except (OSError, ValueError):
        return None


def _epochs_saved(cfg: configs.PipelineConfig) -> int:
    """Epochs whose state BackupAndRestore has saved (its checkpoint index files appear last)."""
    from trainer_module import trainer

    backups = glob.glob(os.path.join(cfg.pipeline_root, pipeline_names.TRAINER_NODE, pipeline_names.MODEL_RUN_OUTPUT,
                                     names.TRAINING_BACKUP_DIR, "*"))
    if not backups or not glob.glob(os.path.join(backups[0], "*", "*", "ckpt-*.index")):
        return 0
    try:
        return trainer.saved_epochs(backups[0])
    except Exception:  # noqa: BLE001 - caught mid-write: the next poll reads it whole
        return 0


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> Chain:
    out = str(tmp_path_factory.mktemp("faults") / "out")
    cfg = configs.PipelineConfig(output_dir=out)
    logs = [str(tmp_path_factory.getbasetemp() / f"r{i}.txt") for i in range(1, 5)]
    r1 = _start(out, logs[0])
    _wait_for(lambda: _lock_holder_pid(cfg) == r1.pid, "r1 to hold the lock", r1)
    r2 = _start(out, logs[1])
    code2 = r2.wait(timeout=DEADLINE_S)
    _wait_for(lambda: _epochs_saved(cfg) >= 1, "r1's first saved epoch", r1)
    r1.send_signal(signal.SIGKILL)
    r1.wait(timeout=60)
    done = _epochs_saved(cfg)
    r3 = _start(out, logs[2])
    _wait_for(lambda: _lock_holder_pid(cfg) == r3.pid, "r3 to hold the lock", r3)
    r4 = _start(out, logs[3], "--wait-for-lock")
    code3, code4 = r3.wait(timeout=DEADLINE_S), r4.wait(timeout=DEADLINE_S)
    outputs = [open(path).read() for path in logs]
    return Chain(cfg, outputs, [r1.returncode, code2, code3, code4], [r1.pid, r2.pid, r3.pid, r4.pid], done)


def _executions(cfg: configs.PipelineConfig):
    return store.open_readonly(cfg.metadata_path).get_executions()


def test_a_second_runner_exits_3_naming_the_running_one(chain):
    assert chain.codes[1] == exit_codes.BUSY
    errors = [line for line in chain.outputs[1].splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    assert f"pid {chain.pids[0]} on " in errors[0] and "--wait-for-lock" in errors[0]
    assert "Component " not in chain.outputs[1]  # it ran nothing


def test_the_killed_trainer_resumes_at_the_next_epoch(chain):
    assert chain.codes[0] == -signal.SIGKILL and chain.codes[2] == exit_codes.OK
    assert 1 <= chain.epochs_done_at_kill < EPOCHS
    rerun = chain.outputs[2]
    assert f"{chain.epochs_done_at_kill} of {EPOCHS} epochs finished by an earlier, interrupted run" in rerun
    # The console's progress lines: one per epoch the rerun trained.
    ran = [int(n) for n in re.findall(rf"Trainer: epoch (\d+)/{EPOCHS} in ", rerun)]
    assert ran == list(range(chain.epochs_done_at_kill + 1, EPOCHS + 1))
    trainer = store.read_run(chain.cfg.metadata_path,
                             store.run_ids(chain.cfg.metadata_path)[-2])[pipeline_names.TRAINER_NODE]
    with open(os.path.join(trainer.uri(pipeline_names.MODEL_RUN_OUTPUT), names.HISTORY_FILE)) as f:
        series = json.load(f)[names.HISTORY_SERIES]
    assert {key: len(values) for key, values in series.items()} == {key: EPOCHS for key in series}
    backups = os.path.join(os.path.dirname(trainer.uri(pipeline_names.MODEL_RUN_OUTPUT)), names.TRAINING_BACKUP_DIR)
    assert os.listdir(backups) == []  # a finished Trainer leaves no backup


def test_the_killed_run_is_marked_and_its_folders_removed(chain):
    unfinished = (metadata_store_pb2.Execution.NEW, metadata_store_pb2.Execution.RUNNING)
    executions = _executions(chain.cfg)
    assert not [e.id for e in executions if e.last_known_state in unfinished]
    canceled = [e for e in executions if e.last_known_state == metadata_store_pb2.Execution.CANCELED]
    assert len(canceled) == 1 and recovery.RECOVERED_BY in canceled[0].custom_properties
    assert "stopped during Trainer before it finished" in chain.outputs[2]
    leftovers = glob.glob(os.path.join(chain.cfg.pipeline_root, "*", "*", str(canceled[0].id)))
    assert leftovers == []


def test_the_console_shows_progress_and_the_log_file_everything(chain):
    console = chain.outputs[2].splitlines()
    assert len(console) <= 90  # about 70 for the demo; the recovery and resume lines, the recipe, the edge models
    assert any(re.search(r"Trainer done in \d+ s: 3 epochs", line) for line in console)
    assert not any("INFO absl" in line for line in console)
    log_path = re.search(r"Full log: +(\S+)", chain.outputs[2]).group(1)
    with open(log_path) as f:
        full = f.read()
    assert "Component Trainer is running." in full and full.count("\n") > 10 * len(console)


def test_one_complete_push_and_the_waiting_runner_pushes_nothing(chain):
    assert chain.codes[3] == exit_codes.OK
    assert "waiting for the run lock" in chain.outputs[3]
    versions = [v for v in os.listdir(chain.cfg.serving_model_dir) if v.isdigit()]
    assert len(versions) == 1
    assert os.path.isfile(os.path.join(chain.cfg.serving_model_dir, versions[0], pipeline_names.SAVED_MODEL_FILE))
    assert "nothing new (the Pusher was cached)" in chain.outputs[3]
    # Each runner's summary is of its own run, by run id.
    r3_id, r4_id = store.run_ids(chain.cfg.metadata_path)[-2:]
    assert f"run {r3_id} finished" in chain.outputs[2] and f"run {r4_id} finished" in chain.outputs[3]
