"""The errors of data acquisition: each says which source or file failed and why."""


class DataSourceError(Exception):
    """A data source could not be resolved, downloaded or extracted."""


class ChecksumMismatchError(DataSourceError):
    """A file's digest differs from the expected checksum."""

    def __init__(self, expected: str, actual: str, path: str):
        # args kept as the constructor's arguments so the exception pickles (Beam, multiprocessing).
        super().__init__(expected, actual, path)
        self.expected = expected
        self.actual = actual
        self.path = path

    def __str__(self) -> str:
        return f"Checksum mismatch for {self.path}: expected {self.expected}, got {self.actual}"


class UnsafeArchiveError(DataSourceError):
    """An archive member would be written outside the destination, or is a special file."""


class SourceLimitError(DataSourceError):
    """A download or extraction would exceed a SourceLimits bound or the free disk space."""


class UnsafeRedirectError(DataSourceError):
    """A download redirects to a URL that is not http(s) (ftp://, file://, data:, ...)."""
