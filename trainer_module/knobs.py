"""Configuration fields that document themselves: a default, a help text and the allowed values.

TrainConfig (here, in the user module, as the Trainer validates its config with it) and the
pipeline's configs declare every field with `knob(...)`; the runners turn each field into a
command-line flag whose `--help` line is that text (pipeline/flags.py), so the meaning of a knob
is written once, beside its default; an advanced knob (an implementation detail a user rarely
changes) is listed under its config's advanced group. No TensorFlow here.
"""
import dataclasses
from typing import Any, Optional, Sequence

HELP = "help"
CHOICES = "choices"
ADVANCED = "advanced"


def knob(default: Any, help: str, choices: Optional[Sequence[Any]] = None, advanced: bool = False) -> Any:
    """A dataclass field with its help text and, when the values are a closed set, its choices."""
    metadata = {HELP: help, ADVANCED: advanced}
    if choices is not None:
        metadata[CHOICES] = tuple(choices)
    return dataclasses.field(default=default, metadata=metadata)


def is_advanced(field: dataclasses.Field) -> bool:
    return bool(field.metadata.get(ADVANCED))


def help_of(field: dataclasses.Field) -> str:
    return field.metadata.get(HELP, "")


def choices_of(field: dataclasses.Field) -> Optional[Sequence[Any]]:
    return field.metadata.get(CHOICES)
