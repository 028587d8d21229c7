"""run_control: the run lock with real processes, exit codes and one-line errors of local_runner."""
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import image_factory
import local_runner
from pipeline import configs
from run_control import exit_codes
from run_control.lock import RunLock, RunLockBusy, describe_holder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _hold_lock_in_child(path: str, run_id: str) -> subprocess.Popen:
    """A child process that takes the lock, says so on stdout, and sleeps until killed."""
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {REPO!r})
        from run_control.lock import RunLock
        RunLock({path!r}, {run_id!r}).acquire()
        print("locked", flush=True)
        time.sleep(600)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "locked"
    return child


def test_a_second_run_is_refused_naming_the_holder_and_a_killed_holder_frees_the_lock(tmp_path):
    path = str(tmp_path / "root" / ".run.lock")
    child = _hold_lock_in_child(path, "run-one")
    try:
        with pytest.raises(RunLockBusy, match=rf"run run-one \(pid {child.pid} on .*--wait-for-lock"):
            RunLock(path, "run-two").acquire()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    # The kernel released the dead process's lock: nothing to clean up by hand.
    with RunLock(path, "run-two").acquire() as lock:
        assert json.load(open(path))["run_id"] == "run-two" and lock.run_id == "run-two"
    assert describe_holder(path) == "a run that has not yet said who it is"  # released: no stale holder


def test_waiting_for_the_lock_takes_it_when_the_holder_ends(tmp_path):
    path = str(tmp_path / ".run.lock")
    child = _hold_lock_in_child(path, "run-one")
    started = time.monotonic()
    subprocess.Popen(["sh", "-c", f"sleep 2; kill -9 {child.pid}"])
    with RunLock(path, "run-two").acquire(wait=True, poll_s=0.1):
        waited = time.monotonic() - started
        assert json.load(open(path))["run_id"] == "run-two"
    child.wait(timeout=30)
    assert waited >= 1.5  # it did wait for the holder, and took the lock once it was gone


def _main(argv, capsys):
    code = local_runner.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def test_missing_data_dir_is_one_line_and_exit_1(tmp_path, capsys):
    code, err = _main(["--output-dir", str(tmp_path / "out"), "--data-dir", str(tmp_path / "nowhere")], capsys)
    assert code == exit_codes.DATA_ERROR == 1
    assert len(err) == 1 and err[0].startswith(f"error: Data source '{tmp_path / 'nowhere'}' not found")
    log_path = err[0].rsplit("full log: ", 1)[1].rstrip(")")
    with open(log_path) as f:
        assert "Traceback (most recent call last)" in f.read()  # the trace is kept, in the log only


def test_output_dir_that_is_a_file_is_a_usage_error(tmp_path, capsys):
    out = image_factory.write_file(tmp_path / "out", b"not a folder")
    code, err = _main(["--output-dir", out], capsys)
    assert code == exit_codes.USAGE_ERROR == 2
    assert err == [f"error: --output-dir {out} is a file, not a folder; pass a folder (exit 2)"]


def test_class_names_that_do_not_match_the_folders_stop_before_the_pipeline(tmp_path, capsys):
    data = tmp_path / "data"
    image_factory.make_image_tree(data, {"train": {"cat": 2, "dog": 2}, "val": {"cat": 1, "dog": 1}})
    out = tmp_path / "out"
    code, err = _main(["--output-dir", str(out), "--data-dir", str(data), "--class-names", "cat,bird"], capsys)
    assert code == exit_codes.DATA_ERROR
    assert len(err) == 1 and "class folder(s) ['dog']" in err[0] and "are not among" in err[0]
    cfg = configs.PipelineConfig(output_dir=str(out))
    assert not os.path.exists(cfg.metadata_path)  # stopped before any component ran


def test_a_busy_pipeline_exits_3_naming_the_running_one(tmp_path, capsys):
    out = tmp_path / "out"
    cfg = configs.PipelineConfig(output_dir=str(out))
    child = _hold_lock_in_child(cfg.lock_path, "the-running-one")
    try:
        code, err = _main(["--output-dir", str(out)], capsys)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert code == exit_codes.BUSY == 3
    assert len(err) == 1 and f"run the-running-one (pid {child.pid}" in err[0]
    assert not os.path.exists(os.path.join(cfg.cache_dir))  # no demo data made while waiting on nobody


def test_debug_prints_the_traceback(tmp_path, capsys):
    code, err = _main(["--output-dir", str(tmp_path / "o"), "--data-dir", str(tmp_path / "x"), "--debug"], capsys)
    assert code == 1 and err[0] == "Traceback (most recent call last):" and err[-1].startswith("error: ")


def _raised_from(exc: Exception, cause: Exception) -> Exception:
    try:
        raise exc from cause
    except Exception as e:  # noqa: BLE001
        return e


@pytest.mark.parametrize("exc,code", [
    (OSError(28, "No space left on device"), exit_codes.ENVIRONMENT_ERROR),
    (_raised_from(RuntimeError("push failed"), OSError(28, "No space left on device")),
     exit_codes.ENVIRONMENT_ERROR),
    (KeyError("blessing"), exit_codes.INTERNAL_ERROR),
    (OSError(2, "No such file"), exit_codes.INTERNAL_ERROR),
])
def test_classify_other_failures(exc, code):
    assert exit_codes.classify(exc)[0] == code


@pytest.mark.parametrize("exc", [
    OSError(28, "No space left on device"),
    _raised_from(RuntimeError("push failed"), OSError(28, "No space left on device")),
    RuntimeError("Error when executing query: database or disk is full query: COMMIT;"),  # ML Metadata's SQLite
    RuntimeError("ResourceExhaustedError: ckpt.data; No space left on device"),  # TensorFlow's wording
])
def test_a_full_disk_reads_the_same_whichever_write_met_it(exc):
    code, line = exit_codes.classify(exc)
    assert code == exit_codes.ENVIRONMENT_ERROR and line.startswith("the disk is full (")
    assert line.endswith("free space for the output dir and run the same command again: finished steps are cached")


def test_the_console_leaves_out_tfxs_execution_failed_record_and_keeps_other_errors():
    """A stopped component: TFX logs "Execution N failed." before re-raising, then the run prints
    its own line saying what failed; only the log file keeps TFX's record."""
    console_filter = local_runner._OwnWarnings()

    def record(name, level, msg, *args):
        return logging.LogRecord(name, level, __file__, 1, msg, args, None)

    assert not console_filter.filter(record("absl", logging.ERROR, "Execution %d failed.", 9))
    assert console_filter.filter(record("absl", logging.ERROR, "DataGate: %s", "duplicates anomaly"))
    assert console_filter.filter(record("components.data_gate", logging.WARNING, "skew: %s", "height"))
    assert not console_filter.filter(record("apache_beam", logging.WARNING, "slow"))


# ---------------------------------------------------------------- what a real process prints

def _run_process(args, env=None, timeout=300):
    """(exit code, stdout lines, stderr lines) of `python local_runner.py ARGS` in a fresh process."""
    done = subprocess.run([sys.executable, os.path.join(REPO, "local_runner.py"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    return done.returncode, done.stdout.strip().splitlines(), done.stderr.strip().splitlines()


@pytest.mark.parametrize("case", ["bad flag value", "bad settings file", "bad environment variable"])
def test_a_usage_error_is_the_only_line_on_stderr(tmp_path, case):
    """Nothing is printed before the error line: the libraries' start-up output (TensorFlow's C++
    lines, CUDA probes, deprecation warnings) is held back (run_control/startup.py)."""
    settings = image_factory.write_file(tmp_path / "settings.json", b"{not json")
    args, env = {"bad flag value": (["--epochs", "0"], {}),
                 "bad settings file": (["--config", settings], {}),
                 "bad environment variable": ([], {"INTEL_SCENES_EPOCHS": "abc"})}[case]
    code, out, err = _run_process(["--output-dir", str(tmp_path / "out"), *args], env)
    assert code == exit_codes.USAGE_ERROR
    assert out == [] and len(err) == 1 and err[0].startswith("error: ") and err[0].endswith("(exit 2)"), err
    expected = {"bad flag value": "epochs=0: must be >= 1", "bad settings file": "is not valid JSON",
                "bad environment variable": "INTEL_SCENES_EPOCHS='abc'"}[case]
    assert expected in err[0]


@pytest.mark.parametrize("command,flag_error", [
    (["local_runner.py", "--optimizer", "rmsprop"], "argument --optimizer: invalid choice: 'rmsprop'"),
    (["local_runner.py", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["-m", "run_report", "--no-such-flag"], "the following arguments are required: path"),
    (["-m", "releases", "rollback"], "the following arguments are required: target"),
    (["-m", "monitoring.labelling_queue", "logs.jsonl"], "the following arguments are required: --out"),
])
def test_a_flag_argparse_rejects_is_one_line_not_silence(command, flag_error):
    """argparse's own message went to the held-back start-up output and was dropped: the process
    exited 2 without a word. Now it is the one line every usage error gets, naming --help."""
    done = subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True, text=True, timeout=120)
    err = done.stderr.strip().splitlines()
    assert (done.returncode, done.stdout) == (exit_codes.USAGE_ERROR, ""), done.stderr
    assert len(err) == 1 and err[0].startswith(f"error: {flag_error}"), err
    assert err[0].endswith("--help lists the flags (exit 2)"), err


def test_help_is_clean_and_lists_the_knobs_a_user_changes_first(tmp_path):
    code, out, err = _run_process(["--help"])
    assert (code, err) == (0, [])
    groups = [line for line in out if line and not line.startswith(" ") and line.endswith(":")]
    assert groups[:3] == ["options:", "pipeline (data, gates, outputs):", "training:"], groups
    sections, current = {}, None
    for line in out:  # each group's lines, up to the next group's title
        if line in groups:
            current = line
        elif current:
            sections[current] = sections.get(current, "") + line + "\n"
    assert "--data-dir" in sections["pipeline (data, gates, outputs):"] and "--recipe" in sections["training:"]
    assert "--shuffle-buffer" in sections["training: advanced:"] and "--shuffle-buffer" not in sections["training:"]
    assert "--beam-pipeline-args" in sections["pipeline (data, gates, outputs): advanced:"]


def test_a_damaged_metadata_database_is_one_line_naming_it_and_the_fix(tmp_path):
    out = tmp_path / "out"
    cfg = configs.PipelineConfig(output_dir=str(out))
    os.makedirs(os.path.dirname(cfg.metadata_path))
    with open(cfg.metadata_path, "wb") as f:
        f.write(os.urandom(64 << 10))
    code, _, err = _run_process(["--output-dir", str(out)])
    assert code == exit_codes.ENVIRONMENT_ERROR
    assert len(err) == 1 and err[0].startswith(
        f"error: the ML Metadata database {cfg.metadata_path} is damaged (file is not a database): move it "
        "aside to start a new run history"), err
    assert not os.path.exists(cfg.cache_dir)  # stopped before any data was made


def test_an_output_dir_inside_the_data_is_refused(tmp_path, capsys):
    data = tmp_path / "data"
    image_factory.make_image_tree(data, {"train": {"cat": 2, "dog": 2}, "val": {"cat": 1, "dog": 1}})
    code, err = _main(["--output-dir", str(data / "outputs"), "--data-dir", str(data)], capsys)
    assert code == exit_codes.USAGE_ERROR
    assert err == [f"error: --output-dir {data / 'outputs'} is inside --data-dir {data}: the run would write "
                   "into its input data; pass an output dir outside it (exit 2)"]
    assert not os.path.exists(data / "outputs")


def test_sigterm_stops_like_ctrl_c_with_its_own_code(tmp_path):
    """SIGTERM (a shutdown, a scheduler's stop) raises Terminated in the main thread once an entry
    point called stop_on_sigterm: the same one line as Ctrl-C, exit 143, not a silent death. Only a
    pipeline run's line says how to resume (test_stops.py); this command has nothing to resume."""
    script = ("import os, signal, sys, time\n"
              "from run_control import exit_codes\n"
              "exit_codes.stop_on_sigterm()\n"
              "try:\n"
              "    os.kill(os.getpid(), signal.SIGTERM)\n"
              "    time.sleep(30)\n"
              "except Exception:\n"
              "    sys.exit('an except Exception caught it')\n"
              "except KeyboardInterrupt as e:\n"
              "    sys.exit(exit_codes.fail(e))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == exit_codes.TERMINATED == 143
    assert done.stderr.strip().splitlines()[-1:] == [  # (the bare import's library noise comes before it)
        "interrupted: stopped by SIGTERM (a shutdown, a scheduler or `kill`) (exit 143)"]
