"""Configuration fields that document themselves: a default, a help text and the allowed values.

TrainConfig and the pipeline's configs declare every field with `knob(...)`; the runners turn each
field into a command-line flag whose `--help` line is that text (pipeline/flags.py), so the
meaning of a knob is written once, beside its default. No TensorFlow here.
"""
import dataclasses
from typing import Any, Optional, Sequence

HELP = "help"
CHOICES = "choices"


def knob(default: Any, help: str, choices: Optional[Sequence[Any]] = None) -> Any:
    """A dataclass field with its help text and, when the values are a closed set, its choices."""
    metadata = {HELP: help}
    if choices is not None:
        metadata[CHOICES] = tuple(choices)
    return dataclasses.field(default=default, metadata=metadata)


def help_of(field: dataclasses.Field) -> str:
    return field.metadata.get(HELP, "")


def choices_of(field: dataclasses.Field) -> Optional[Sequence[Any]]:
    return field.metadata.get(CHOICES)
