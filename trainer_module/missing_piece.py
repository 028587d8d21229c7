"""A feature whose optional native piece cannot load stops with one line naming the feature, the
missing piece and the fix, never as an internal error, and never takes down what does not need it.

Each feature imports what only it needs where it runs, through import_for (the TFLite runtime in the
EdgeEvaluator and in predict, matplotlib for the plots); exit_codes maps MissingPieceError, and any
other import that fails on a missing shared library, to the environment exit code.
"""
import importlib
import re
from types import ModuleType
from typing import Optional

BOOTSTRAP_FIX = "run `bash scripts/bootstrap.sh` to repair the project's environment"
_SHARED_LIBRARY = re.compile(r"([\w.+-]+\.so(?:\.[\d.]+)?|[\w.+-]+\.dylib|[\w.+-]+\.dll)"
                             r"[^\n]*?(?:cannot open shared object file|image not found|not found|"
                             r"cannot load|DLL load failed)")


class MissingPieceError(ImportError):
    """`feature` cannot run: `piece` does not load; the message says the fix."""

    def __init__(self, feature: str, piece: str, fix: str, detail: str = ""):
        self.feature, self.piece, self.fix = feature, piece, fix
        super().__init__(f"{feature} cannot run: {piece} does not load"
                         + (f" ({detail})" if detail else "") + f"; {fix}")


def missing_library(exc: BaseException) -> Optional[str]:
    """The shared library whose absence made `exc` (or its cause) fail, e.g. "libusb-1.0.so.0"."""
    seen = 0
    while exc is not None and seen < 10:  # bounded: a cause chain can loop
        if isinstance(exc, (ImportError, OSError)):
            match = _SHARED_LIBRARY.search(str(exc))
            if match:
                return match.group(1)
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def import_for(feature: str, module: str, fix: str = BOOTSTRAP_FIX) -> ModuleType:
    """importlib.import_module(module), or MissingPieceError naming `feature` when it cannot load."""
    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as e:
        library = missing_library(e)
        piece = f"{module} (its native library {library} is missing)" if library else module
        if library:
            fix = f"install the system package that provides {library}, or {fix}"
        raise MissingPieceError(feature, piece, fix, " ".join(str(e).split())) from e
