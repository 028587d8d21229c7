"""The bounds every download and extraction is held to (each one a PipelineConfig knob).

A hostile or broken source must not fill the disk or hold the run forever: a zip bomb, a server
announcing a terabyte, a server that drips one byte a minute, a redirect to another scheme.
"""
import dataclasses

GB = 10 ** 9


@dataclasses.dataclass(frozen=True)
class SourceLimits:
    """Limits of data acquisition; a breach is a DataSourceError and leaves nothing behind."""

    max_download_bytes: int = 20 * GB  # largest body a download may have (announced or streamed)
    deadline_s: float = 2 * 3600.0  # wall-clock limit of one whole download, on top of per-read timeouts
    max_extract_bytes: int = 50 * GB  # largest total of the members' uncompressed sizes
    max_extract_ratio: float = 100.0  # largest uncompressed / compressed size, whole archive and per member
