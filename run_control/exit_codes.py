"""The exit codes of the command-line entry points (local_runner.py, kubeflow_v2_runner.py,
serving_client.predict, the run report and lineage, the monitor and its labelling queue), and the mapping from whatever stopped them to
a code and the one line a person can act on.

    0   success (a model that is not blessed is a result, not an error)
    1   data error: the data cannot be used (missing folder, layout, no usable images, checksum,
        download or archive limits), or data validation found anomalies and stopped the run
    2   usage error: a flag or knob value, an output or model path that cannot be used
    3   busy: another run holds this pipeline's output dir
    4   environment: the machine failed the run (disk full, permission denied mid-run), a piece a
        feature needs does not load (a native library, the project's environment), or the output
        dir's ML Metadata database is damaged
    5   drift: the prediction monitor (python -m monitoring) found a threshold breached
    70  internal error: a bug; the traceback is in the log file
    130 interrupted (Ctrl-C): a pipeline run resumes when the same command runs again (finished
        steps are cached); predict keeps its finished rows; the other commands leave no half-written file
    143 terminated (SIGTERM: a shutdown, a scheduler's stop, `kill`): the same as 130
"""
import argparse
import errno
import sys
from typing import Tuple

OK = 0
DATA_ERROR = 1
USAGE_ERROR = 2
BUSY = 3
ENVIRONMENT_ERROR = 4
DRIFT = 5  # python -m monitoring: the traffic breached a threshold (one line per breach says which)
INTERNAL_ERROR = 70  # EX_SOFTWARE
INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
TERMINATED = 143  # 128 + SIGTERM, what a shell reports for `kill`


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread by the handler `stop_on_sigterm` installs. A kind of
    KeyboardInterrupt, so every `except Exception` in the libraries lets it through as they let
    Ctrl-C through, and the run stops the same way: one line, resumable."""


def stop_on_sigterm() -> None:
    """Makes SIGTERM stop a command as Ctrl-C does (one line, exit 143, its log records it)
    instead of killing it without a word. Call from the main thread of an entry point."""
    import signal

    def _raise(signum, frame):
        raise Terminated(f"signal {signum}")

    signal.signal(signal.SIGTERM, _raise)


class UsageError(Exception):
    """A flag or path the user gave cannot be used; the message says what and what to do."""


class DataError(Exception):
    """The data cannot be used; the message says where and what to do."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse for the entry points: a flag it cannot parse is one line on the console,
    `error: <what>; <prog> --help lists the flags (exit 2)`, not argparse's usage block (the local
    runner's runs to ~90 lines) and not nothing: the entry points hold back the console's stderr
    while the libraries load (run_control/startup.py), which would swallow argparse's own message."""

    def error(self, message: str):
        from run_control import startup

        startup.keep_startup_output()
        message = " ".join(message.split())
        print(f"{prefix(USAGE_ERROR)}: {message}; {self.prog} --help lists the flags (exit {USAGE_ERROR})",
              file=sys.stderr, flush=True)
        sys.exit(USAGE_ERROR)


_ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)
# How the machine's failures read when a library reports them in its own exception (TensorFlow's
# ResourceExhaustedError for a full disk, a C++ status turned into RuntimeError).
_ENVIRONMENT_WORDS = ("No space left on device", "Disk quota exceeded", "Read-only file system")
# A full disk in any of its wordings (SQLite, the ML Metadata store, says it its own way); which
# write meets it first depends on timing, so they all get the same line.
_DISK_FULL_WORDS = ("No space left on device", "Disk quota exceeded", "database or disk is full")


def _causes(exc: BaseException):
    """The exception and its causes, bounded (a cause chain can loop)."""
    seen = 0
    while exc is not None and seen < 10:
        yield exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1


def _environment_cause(exc: BaseException) -> bool:
    """A failure of the machine (disk full, read-only, denied) is the exception or its cause."""
    return any((isinstance(e, OSError) and e.errno in _ENVIRONMENT_ERRNOS)
               or any(words in str(e) for words in _ENVIRONMENT_WORDS) for e in _causes(exc))


def _disk_full(exc: BaseException) -> bool:
    return any((isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT))
               or any(words in str(e) for words in _DISK_FULL_WORDS) for e in _causes(exc))


def prefix(code: int) -> str:
    """The first word of the one line: "interrupted" or "error"."""
    return "interrupted" if code in (INTERRUPTED, TERMINATED) else "error"


class _NotLoaded(Exception):
    """Stands in for an error class whose module was never imported: nothing is an instance of it."""


def _loaded(module: str, name: str) -> type:
    """The error class `name` of `module` if that module is loaded, else _NotLoaded. An exception of a
    class can only exist once its module is loaded, so classifying needs no import: a usage error is
    classified without loading TensorFlow or TFX (which some of these modules import)."""
    return getattr(sys.modules.get(module), name, _NotLoaded)


def stopped_by_data_gate(exc: BaseException) -> bool:
    """The run stopped on purpose: data validation found anomalies (its report says which)."""
    return isinstance(exc, _loaded("components.data_gate.findings", "DataValidationError"))


# What a stopped pipeline run does next (local_runner.py's stop line); the other commands have none
# (predict says where its finished rows are).
PIPELINE_RESUME = ("run the same command again to resume: finished steps are cached and the Trainer goes on from "
                   "its last finished epoch")


def classify(exc: BaseException, resume: str = "") -> Tuple[int, str]:
    """(exit code, one-line message) for an exception that stopped a command; `resume`: what to do
    after a Ctrl-C or SIGTERM, added to their line (PIPELINE_RESUME for a pipeline run)."""
    from trainer_module.missing_piece import missing_library  # standard library only

    ImageIngestError = _loaded("common.ingest_report", "ImageIngestError")
    MissingPieceError = _loaded("trainer_module.missing_piece", "MissingPieceError")
    DamagedStoreError = _loaded("common.store", "DamagedStoreError")
    DataValidationError = _loaded("components.data_gate.findings", "DataValidationError")
    DatasetLayoutError = _loaded("components.image_example_gen.image_files", "DatasetLayoutError")
    DataSourceError = _loaded("data_sources.errors", "DataSourceError")
    RunLockBusy = _loaded("run_control.lock", "RunLockBusy")
    ConfigError = _loaded("trainer_module.train_config", "ConfigError")

    then = f"; {resume}" if resume else ""
    if isinstance(exc, Terminated):
        return TERMINATED, "stopped by SIGTERM (a shutdown, a scheduler or `kill`)" + then
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED, "stopped at your request (Ctrl-C)" + then
    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, RunLockBusy):
        return BUSY, message
    if isinstance(exc, (ConfigError, UsageError)):
        return USAGE_ERROR, message
    if isinstance(exc, (DataError, DataSourceError, DatasetLayoutError, ImageIngestError,
                        DataValidationError)):
        return DATA_ERROR, message
    damaged = next((e for e in _causes(exc) if isinstance(e, DamagedStoreError)), None)
    if damaged is not None:
        return ENVIRONMENT_ERROR, " ".join(str(damaged).split())
    if isinstance(exc, MissingPieceError):
        return ENVIRONMENT_ERROR, message
    library = missing_library(exc)
    if library:
        return ENVIRONMENT_ERROR, (f"a native library does not load: {library} ({message}); install the "
                                   "system package that provides it, or run `bash scripts/bootstrap.sh`")
    if _disk_full(exc):
        return ENVIRONMENT_ERROR, (f"the disk is full ({_first_line(message)}); free space for the output dir "
                                   "and run the same command again: finished steps are cached")
    if _environment_cause(exc):
        return ENVIRONMENT_ERROR, f"{_first_line(message)} (free space or permissions of the output dir?)"
    return INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {message}"


def fail(exc: BaseException, debug: bool = False, where: str = "", resume: str = "") -> int:
    """Prints what stopped a command as its one line on stderr (with the traceback first when
    `debug`), after any start-up output held back; returns the exit code. `where`: the log file;
    `resume`: see classify."""
    import sys
    import traceback

    from run_control import startup

    startup.keep_startup_output()
    code, message = classify(exc, resume)
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    kept = getattr(exc, "partial_rows", "")  # what a long-running command kept of its results
    print(f"{prefix(code)}: {message}" + (f"; {kept}" if kept else "") + f" (exit {code}{where})",
          file=sys.stderr, flush=True)
    return code


def _first_line(message: str, limit: int = 300) -> str:
    """A library's long error (TensorFlow's carry a graph trace) cut to something a line can hold."""
    return message if len(message) <= limit else message[:limit] + " ..."
