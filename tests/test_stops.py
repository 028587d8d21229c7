"""A run stopped by the user or the machine, with real local_runner processes: Ctrl-C during the
Trainer, and a disk that fills up. Each ends with one line on stderr and its documented exit code
(run_control/exit_codes.py), the full story in the run's log file.

The kill -9 / recovery / resume chain is tests/test_fault_runs.py's.
"""
import os
import signal
import subprocess
import sys
import time

import pytest

import image_factory
import signals
from run_control import exit_codes

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ["--epochs", "30", "--image-size", "64", "--resize-size", "72", "--batch-size", "16",
         "--demo-train-per-class", "24", "--demo-eval-per-class", "6", "--accuracy-lower-bound", "0.0"]
DEADLINE_S = 900


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, os.path.join(REPO, "local_runner.py"), *FLAGS, *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=signals.default_sigint)


def _log_path(line: str) -> str:
    return line.rsplit("full log: ", 1)[1].rstrip(")")


def test_ctrl_c_during_training_is_one_line_saying_a_rerun_resumes(tmp_path):
    runner = _start("--output-dir", str(tmp_path / "out"))
    deadline = time.monotonic() + DEADLINE_S
    for line in runner.stdout:  # the console's progress lines
        if line.rstrip().endswith(" Trainer ..."):  # the Trainer has started (its first step traces)
            break
        assert time.monotonic() < deadline, "the Trainer did not start"
    runner.send_signal(signal.SIGINT)
    out, err = runner.communicate(timeout=300)
    err = err.strip().splitlines()
    assert runner.returncode == exit_codes.INTERRUPTED == 130
    assert len(err) == 1, err
    assert err[0].startswith("interrupted: stopped at your request (Ctrl-C); run the same command again to "
                             "resume: finished steps are cached and the Trainer goes on from its last finished epoch")
    with open(_log_path(err[0])) as f:
        log = f.read()
    assert "stopped (exit 130)" in log and "KeyboardInterrupt" in log  # the log records it, with the trace


def test_a_full_disk_is_one_line_with_the_environment_exit_code(tmp_path, small_tmpfs):
    data = tmp_path / "data"
    image_factory.make_image_tree(data, {"train": {"a": 24, "b": 24}, "val": {"a": 6, "b": 6}}, size=(96, 96))
    out = small_tmpfs(1 << 20)  # fills during the data steps (the examples, their statistics)
    runner = _start("--output-dir", str(out), "--data-dir", str(data))
    _, err = runner.communicate(timeout=DEADLINE_S)
    err = err.strip().splitlines()
    assert runner.returncode == exit_codes.ENVIRONMENT_ERROR == 4, err
    # Which write meets the full disk first (the examples, the statistics, the ML Metadata store)
    # depends on timing: the line is the same either way.
    assert len(err) == 1 and err[0].startswith("error: the disk is full ("), err
    assert "free space for the output dir and run the same command again: finished steps are cached" in err[0]
    assert "(exit 4" in err[0]
