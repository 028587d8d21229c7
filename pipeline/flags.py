"""Command-line flags generated from config dataclasses: one flag per field, its help from the field.

Both runners build their parsers here, so a knob's flag, type, allowed values and help text come
from its declaration (`trainer_module.knobs.knob`) and cannot drift between runners.
"""
import argparse
import dataclasses
from typing import Any, Dict, Optional, Sequence

from trainer_module.knobs import choices_of, help_of


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def comma_tuple(text: str):
    """'a,b,,c' -> ('a', 'b', 'c')."""
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _default_text(default: Any) -> str:
    if isinstance(default, tuple):
        return ",".join(map(str, default)) or "(none)"
    if default == "":
        return "(empty)"
    return str(default)


def add_dataclass_flags(parser: argparse.ArgumentParser, cls, skip: Sequence[str] = (),
                        title: Optional[str] = None, defaults: Optional[Dict[str, Any]] = None,
                        helps: Optional[Dict[str, str]] = None) -> None:
    """Adds `--field-name` for each field of `cls`; an unset flag parses as None (= the default).

    defaults: shown instead of a field's declared default (a runner that derives it otherwise).
    helps: shown instead of a field's help text (a runner where the knob means less or more).
    """
    group = parser.add_argument_group(title or cls.__name__, (cls.__doc__ or "").strip().splitlines()[0])
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        default = (defaults or {}).get(field.name, field.default)
        text = (helps or {}).get(field.name, help_of(field))
        choices = choices_of(field)
        kwargs: Dict[str, Any] = {"default": None}
        if isinstance(field.default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(field.default, tuple):
            kwargs["type"], kwargs["metavar"] = comma_tuple, "A,B,..."
            text += " (comma-separated)"
        else:
            kwargs["type"] = type(field.default)
            if choices is not None:
                kwargs["choices"] = choices
            else:
                kwargs["metavar"] = type(field.default).__name__.upper()
        kwargs["help"] = f"{text} [default: {_default_text(default)}]".replace("%", "%%")
        group.add_argument(flag_name(field.name), **kwargs)


def dataclass_overrides(args: argparse.Namespace, cls, skip: Sequence[str] = ()) -> Dict[str, Any]:
    """The fields of `cls` (but `skip`) that were set on the command line."""
    values = vars(args)
    return {f.name: values[f.name] for f in dataclasses.fields(cls)
            if f.name not in skip and values.get(f.name) is not None}
