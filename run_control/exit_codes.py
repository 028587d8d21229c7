"""The exit codes of the command-line entry points (local_runner.py, serving_client.predict), and
the mapping from an exception to a code and the one line a person can act on.

    0   success (a model that is not blessed is a result, not an error)
    1   data error: the data cannot be used (missing folder, layout, no usable images, checksum,
        download or archive limits), or data validation found anomalies and stopped the run
    2   usage error: a flag or knob value, an output or model path that cannot be used
    3   busy: another run holds this pipeline's output dir
    4   environment: the machine failed the run (disk full, permission denied mid-run)
    70  internal error: a bug; the traceback is in the log file
"""
import errno
from typing import Tuple

OK = 0
DATA_ERROR = 1
USAGE_ERROR = 2
BUSY = 3
ENVIRONMENT_ERROR = 4
INTERNAL_ERROR = 70  # EX_SOFTWARE


class UsageError(Exception):
    """A flag or path the user gave cannot be used; the message says what and what to do."""


class DataError(Exception):
    """The data cannot be used; the message says where and what to do."""


_ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def _environment_cause(exc: BaseException) -> bool:
    """An OSError of the machine (disk full, read-only, denied) is the exception or its cause."""
    seen = 0
    while exc is not None and seen < 10:  # bounded: a cause chain can loop
        if isinstance(exc, OSError) and exc.errno in _ENVIRONMENT_ERRNOS:
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def classify(exc: BaseException) -> Tuple[int, str]:
    """(exit code, one-line message) for an exception that stopped a run."""
    # Imported here: each package is only needed when its error can occur.
    from components.data_gate.findings import DataValidationError
    from components.image_example_gen.image_files import DatasetLayoutError
    from components.image_example_gen.ingest_report import ImageIngestError
    from data_sources.errors import DataSourceError
    from run_control.lock import RunLockBusy
    from trainer_module.train_config import ConfigError

    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, RunLockBusy):
        return BUSY, message
    if isinstance(exc, (ConfigError, UsageError)):
        return USAGE_ERROR, message
    if isinstance(exc, (DataError, DataSourceError, DatasetLayoutError, ImageIngestError,
                        DataValidationError)):
        return DATA_ERROR, message
    if _environment_cause(exc):
        return ENVIRONMENT_ERROR, f"{message} (free space or permissions of the output dir?)"
    return INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {message}"
