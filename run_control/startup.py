"""A quiet start: what the libraries print while they load (TensorFlow's C++ lines, CUDA probes on a
machine without a GPU, deprecation warnings) is kept off the console.

An entry point calls quiet_startup() before importing TensorFlow: file descriptor 2 (stderr) then
points at a temporary file. keep_startup_output(log_path) hands what was captured to the run's log
file and restores stderr; a process that ends first (a bad flag, --help) drops it, or with --debug
in its arguments prints it, so the user's first line is the one that matters. Standard library only.
"""
import atexit
import os
import sys
import tempfile
from typing import Optional

_state = {}  # "saved": the real stderr's fd; "capture": the temporary file


def quiet_startup() -> None:
    """Points fd 2 at a temporary file until keep_startup_output (idempotent)."""
    if "saved" in _state or os.environ.get("INTEL_SCENES_LOUD_STARTUP"):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's INFO lines: not even captured
    sys.stderr.flush()
    capture = tempfile.TemporaryFile()
    _state.update(saved=os.dup(2), capture=capture)
    os.dup2(capture.fileno(), 2)
    atexit.register(_at_exit)
    previous_hook = sys.excepthook

    def show_uncaught(*exc_info):  # a traceback nobody caught must reach the console
        keep_startup_output()
        previous_hook(*exc_info)

    sys.excepthook = show_uncaught


def keep_startup_output(log_path: Optional[str] = None) -> None:
    """Restores stderr; appends what was captured to `log_path` (when given)."""
    if "saved" not in _state:
        return
    captured = _restore()
    if log_path and captured:
        with open(log_path, "ab") as log:
            log.write(b"[start-up output of the libraries]\n" + captured)


def python_stderr_to_console() -> None:
    """Points Python's sys.stderr (the command's own lines: progress, a summary, FAILED files) at the
    console while file descriptor 2 stays held: the native libraries' per-item chatter (libjpeg's
    "Corrupt JPEG data" for each bad file, TensorFlow's C++ log) keeps off the console, as at start-up.
    For a command whose work is long after its start-up (predict); a no-op outside quiet_startup."""
    if "saved" not in _state or "console" in _state:
        return
    sys.stderr.flush()
    _state["console"] = sys.stderr = open(os.dup(_state["saved"]), "w", buffering=1, encoding="utf-8",
                                          errors="backslashreplace")


def _restore() -> bytes:
    sys.stderr.flush()
    saved, capture = _state.pop("saved"), _state.pop("capture")
    console = _state.pop("console", None)
    if console is not None:  # fd 2 is the console again: Python's stderr goes back to it
        sys.stderr = sys.__stderr__
        console.close()
    os.dup2(saved, 2)
    os.close(saved)
    capture.seek(0)
    captured = capture.read()
    capture.close()
    return captured


def _at_exit() -> None:
    if "saved" in _state:
        captured = _restore()
        if "--debug" in sys.argv and captured:
            sys.stderr.write(captured.decode("utf-8", "replace"))
