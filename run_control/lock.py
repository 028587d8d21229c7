"""One run per pipeline output dir at a time: an OS file lock (flock), which the kernel releases when
its process dies, so a crashed or killed run never leaves it stuck (a marker file would).

The lock file also holds who holds it (pid, host, run id, start, command), so a second run can name
the running one. flock is advisory and per host: on a network filesystem shared by several machines
it does not exclude a run on another machine.
"""
import fcntl
import json
import logging
import os
import socket
import sys
import time
from typing import Optional

log = logging.getLogger(__name__)

WAIT_LOG_EVERY_S = 30.0


class RunLockBusy(RuntimeError):
    """Another process holds the run lock."""


class RunLock:
    """An exclusive flock on `path`, held from acquire() until release() or the process ends."""

    def __init__(self, path: str, run_id: str):
        self.path = path
        self.run_id = run_id
        self._fd: Optional[int] = None

    def acquire(self, wait: bool = False, poll_s: float = 1.0) -> "RunLock":
        """Takes the lock; raises RunLockBusy naming the holder, or with wait=True waits for it."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        waited_since = last_log = time.monotonic()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = describe_holder(self.path)
                if not wait:
                    os.close(fd)
                    raise RunLockBusy(f"another run is using this pipeline's output dir: {holder}; wait for it "
                                      f"to finish or pass --wait-for-lock (lock file {self.path})") from None
                if time.monotonic() - last_log >= WAIT_LOG_EVERY_S or last_log == waited_since:
                    log.warning("waiting for the run lock %s held by %s (%.0f s so far)", self.path, holder,
                                time.monotonic() - waited_since)
                    last_log = time.monotonic()
                time.sleep(poll_s)
        self._fd = fd
        self._write_holder()
        return self

    def _write_holder(self) -> None:
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "run_id": self.run_id,
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv)}
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps(holder).encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # no stale holder for the next reader
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def describe_holder(path: str) -> str:
    """'run <id> (pid N on host, started T: command)' from the lock file, as far as it says."""
    try:
        with open(path) as f:
            holder = json.load(f)
    except (OSError, ValueError):
        return "a run that has not yet said who it is"
    return (f"run {holder.get('run_id')} (pid {holder.get('pid')} on {holder.get('host')}, started "
            f"{holder.get('started')}: {holder.get('command')})")
