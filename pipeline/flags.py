"""Command-line flags generated from config dataclasses (one flag per field, typed by its default)."""
import argparse
import dataclasses
from typing import Any, Dict, Optional, Sequence


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _comma_tuple(text: str):
    return tuple(x for x in text.split(",") if x)


def add_dataclass_flags(parser: argparse.ArgumentParser, cls, skip: Sequence[str] = (),
                        title: Optional[str] = None) -> None:
    """Adds `--field-name` for each field of `cls`; an unset flag parses as None (= the default)."""
    group = parser.add_argument_group(title or cls.__name__)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        default = field.default
        if isinstance(default, bool):
            group.add_argument(flag_name(field.name), action=argparse.BooleanOptionalAction, default=None,
                               help=f"default: {default}")
        elif isinstance(default, tuple):
            group.add_argument(flag_name(field.name), type=_comma_tuple, default=None,
                               help=f"comma-separated; default: {','.join(default) or '(none)'}")
        else:
            group.add_argument(flag_name(field.name), type=type(default), default=None,
                               help=f"default: {default!r}")


def dataclass_overrides(args: argparse.Namespace, cls) -> Dict[str, Any]:
    """The fields of `cls` that were set on the command line."""
    values = vars(args)
    return {f.name: values[f.name] for f in dataclasses.fields(cls)
            if values.get(f.name) is not None}
