"""What a local run shows on the console, and what goes only to its log file.

Verbosity (local_runner --verbosity):
  quiet     warnings, errors and the closing summary
  progress  (default) one line when each component starts and when it finishes, with its duration
            and key figures; the Trainer's epochs; a line at least every HEARTBEAT_S seconds during
            a long step
  info      everything, as TFX logs it (thousands of lines)
The full INFO log always goes to the run's log file. Below `info`, the process's stdout and stderr
(file descriptors 1 and 2) point at the log file while the pipeline runs, so what TFX, Beam,
TensorFlow's C++ runtime and the user-module wheel build print lands there, not on the console.
"""
import logging
import os
import re
import sys
import threading
import time
from typing import Callable, Dict, Optional, TextIO

from trainer_module import names

VERBOSITIES = ("quiet", "progress", "info")
DEFAULT_VERBOSITY = "progress"
HEARTBEAT_S = 15.0
LINE_FORMAT = "%(asctime)s %(message)s"
_COMPONENT_RE = re.compile(r"^Component (\S+) is (running|finished)\.$")


class Console:
    """The console stream of a run: the real stdout while fds 1 and 2 go to the log file."""

    def __init__(self, log_path: Optional[str], verbosity: str):
        self.verbosity = verbosity
        self._log_path = log_path
        self._saved: Dict[int, int] = {}
        self.stream: TextIO = sys.stdout

    def __enter__(self) -> "Console":
        if self.verbosity != "info" and self._log_path:
            sys.stdout.flush()
            sys.stderr.flush()
            self.stream = os.fdopen(os.dup(1), "w", buffering=1)
            log_fd = os.open(self._log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            for fd in (1, 2):
                self._saved[fd] = os.dup(fd)
                os.dup2(log_fd, fd)
            os.close(log_fd)
        return self

    def __exit__(self, *exc) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved in self._saved.items():
            os.dup2(saved, fd)
            os.close(saved)
        self._saved.clear()
        if self.stream is not sys.stdout:
            self.stream.close()
            self.stream = sys.stdout

    def print(self, text: str) -> None:
        """A line for the person at the console (also kept in the log file by the caller)."""
        self.stream.write(text + "\n")
        self.stream.flush()


class ProgressHandler(logging.Handler):
    """Turns TFX's "Component X is running/finished." records and the progress logger's records
    into console lines; while a component runs, says it still does every HEARTBEAT_S seconds."""

    def __init__(self, console: Console, figures: Callable[[str], str], heartbeat_s: float = HEARTBEAT_S):
        super().__init__(logging.INFO)
        self.console = console
        self.figures = figures  # node id -> its key figures, read once it has finished
        self.heartbeat_s = heartbeat_s
        self._running: Optional[str] = None
        self._started = 0.0
        self._last_line = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="progress-heartbeat")
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            match = _COMPONENT_RE.match(message) if record.name == "absl" else None
            if match:
                self._component(match.group(1), match.group(2))
            elif record.name == names.PROGRESS_LOGGER:
                self._say(message)
        except Exception:  # noqa: BLE001 - the console must never stop a run
            self.handleError(record)

    def _component(self, node: str, event: str) -> None:
        if event == "running":
            with self._lock:
                self._running, self._started = node, time.monotonic()
            self._say(f"{node} ...")
            return
        with self._lock:
            elapsed, self._running = time.monotonic() - self._started, None
        figures = self.figures(node)
        self._say(f"{node} done in {elapsed:.0f} s" + (f": {figures}" if figures else ""))

    def _say(self, text: str) -> None:
        with self._lock:
            self._last_line = time.monotonic()
        self.console.print(f"{time.strftime('%H:%M:%S')} {text}")

    def _beat(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                node, started, quiet_for = self._running, self._started, time.monotonic() - self._last_line
            if node and quiet_for >= self.heartbeat_s:
                self._say(f"{node} still running ({time.monotonic() - started:.0f} s)")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        super().close()


def console_level(verbosity: str) -> int:
    """The level of the plain console handler: warnings and errors below `info`."""
    return logging.INFO if verbosity == "info" else logging.WARNING
