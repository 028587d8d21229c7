"""The bounds every download and extraction is held to (each one a PipelineConfig knob).

A hostile or broken source must not fill the disk or hold the run forever: a zip bomb, a server
announcing a terabyte, a server that drips one byte a minute, a redirect to another scheme.
"""
import dataclasses
import os
import shutil

from data_sources.errors import SourceLimitError

GB = 10 ** 9

# Head-room kept free beyond a download's or an extraction's own size (logs, metadata, temp files).
FREE_SPACE_MARGIN_BYTES = 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class SourceLimits:
    """Limits of data acquisition; a breach is a DataSourceError and leaves nothing behind."""

    max_download_bytes: int = 20 * GB  # largest body a download may have (announced or streamed)
    deadline_s: float = 2 * 3600.0  # wall-clock limit of one whole download, on top of per-read timeouts
    max_extract_bytes: int = 50 * GB  # largest total of the members' uncompressed sizes
    max_extract_ratio: float = 100.0  # largest uncompressed / compressed size, whole archive and per member


def format_bytes(n: int) -> str:
    """'1,500,000,000 bytes (1.50 GB)': exact for the record, in GB for the knobs."""
    return f"{n:,} bytes ({n / GB:.2f} GB)"


def limit_error(message: str, knob: str) -> SourceLimitError:
    """A SourceLimitError ending with the PipelineConfig knob (and its flag) that sets the limit."""
    return SourceLimitError(f"{message}; to allow it, raise {knob} (--{knob.replace('_', '-')})")


def _existing_ancestor(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def require_free_space(folder: str, needed: int, what: str) -> None:
    """Raise SourceLimitError unless ``folder``'s filesystem has ``needed`` bytes free plus margin.

    ``folder`` need not exist yet: its nearest existing ancestor is measured.
    """
    free = shutil.disk_usage(_existing_ancestor(folder)).free
    if free < needed + FREE_SPACE_MARGIN_BYTES:
        raise SourceLimitError(
            f"{what} needs {format_bytes(needed)} plus {format_bytes(FREE_SPACE_MARGIN_BYTES)} "
            f"head-room, but only {format_bytes(free)} is free in {folder}; free some space or "
            f"point output_dir (--output-dir) at a larger disk")
