"""Command-line flags generated from config dataclasses: one flag per field, its help from the field.

Both runners build their parsers here, so a knob's flag, type, allowed values and help text come
from its declaration (`trainer_module.knobs.knob`) and cannot drift between runners.

Settings a user keeps (one mechanism for both runners, for the `tfx` CLI, which passes no flags):
  - a JSON file of knob values, `{"epochs": 2, "data_dir": "../data", "class_names": ["a", "b"]}`,
    named by `--config FILE` or the environment variable INTEL_SCENES_CONFIG;
  - one environment variable per knob, INTEL_SCENES_<KNOB> (INTEL_SCENES_EPOCHS=2,
    INTEL_SCENES_CLASS_NAMES=a,b, INTEL_SCENES_ENABLE_CACHE=false), as its flag would take it.
A flag wins over the environment, which wins over the file, which wins over the declared default.
"""
import argparse
import dataclasses
import json
import os
from typing import Any, Collection, Dict, List, Mapping, Optional, Sequence

from trainer_module.knobs import choices_of, help_of, is_advanced
from trainer_module.train_config import ConfigError

CONFIG_FILE_ENV = "INTEL_SCENES_CONFIG"
ENV_PREFIX = "INTEL_SCENES_"
CONFIG_FLAG = "--config"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


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


@dataclasses.dataclass(frozen=True)
class KnobGroup:
    """One config dataclass as a group of flags.

    defaults: shown instead of a field's declared default (a runner that derives it otherwise).
    helps: shown instead of a field's help text (a runner where the knob means less or more).
    """
    cls: type
    title: str
    skip: Sequence[str] = ()
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    helps: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def fields(self, advanced: bool) -> List[dataclasses.Field]:
        return [f for f in dataclasses.fields(self.cls) if f.name not in self.skip and is_advanced(f) == advanced]


def add_knob_flags(parser: argparse.ArgumentParser, groups: Sequence[KnobGroup]) -> None:
    """Adds `--field-name` for each field of each group's config; an unset flag parses as None (=
    the default). The knobs a user changes come first, one group per config; the advanced ones
    (knobs.knob(advanced=True): implementation details) after them, in a group per config."""
    for group in groups:
        doc = (group.cls.__doc__ or "").strip().splitlines()[0]
        arguments = parser.add_argument_group(group.title, doc)
        for field in group.fields(advanced=False):
            _add_flag(arguments, field, group)
    for group in groups:
        fields = group.fields(advanced=True)
        if fields:
            arguments = parser.add_argument_group(f"{group.title}: advanced", "implementation details, rarely changed")
            for field in fields:
                _add_flag(arguments, field, group)


def _add_flag(arguments, field: dataclasses.Field, group: KnobGroup) -> None:
    """One knob's flag: its type, choices and help from the field's declaration."""
    default = group.defaults.get(field.name, field.default)
    text = group.helps.get(field.name, help_of(field))
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
    arguments.add_argument(flag_name(field.name), **kwargs)


def dataclass_overrides(args: argparse.Namespace, cls, skip: Sequence[str] = ()) -> Dict[str, Any]:
    """The fields of `cls` (but `skip`) that were set on the command line."""
    values = vars(args)
    return {f.name: values[f.name] for f in dataclasses.fields(cls)
            if f.name not in skip and values.get(f.name) is not None}


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    """--config FILE: a JSON file of knob values (see the module docstring)."""
    parser.add_argument(CONFIG_FLAG, metavar="FILE", default=None,
                        help=f"JSON file of knob values {{knob: value}}; flags and {ENV_PREFIX}<KNOB> "
                             f"environment variables win over it [default: ${CONFIG_FILE_ENV}]")


def _knob_actions(parser: argparse.ArgumentParser) -> Dict[str, argparse.Action]:
    """{knob name: its flag's action} for the generated knob flags."""
    return {a.dest: a for a in parser._actions  # argparse has no public list of its actions
            if a.option_strings and a.default is None and a.dest != CONFIG_FLAG.lstrip("-")}


def _convert(action: argparse.Action, value: Any, where: str) -> Any:
    """A setting's value as the flag would have parsed it; ConfigError naming `where` otherwise."""
    try:
        if isinstance(action, argparse.BooleanOptionalAction):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE + _FALSE:
                return text in _TRUE
            raise ValueError(f"expected one of {_TRUE + _FALSE}")
        if isinstance(value, list) and action.type is comma_tuple:
            return tuple(str(v) for v in value)
        if isinstance(value, (dict, list)):
            raise ValueError("expected a single value")
        converted = action.type(str(value)) if action.type else value
        if action.choices is not None and converted not in action.choices:
            raise ValueError(f"must be one of {tuple(action.choices)}")
        return converted
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}={value!r}: {e}") from None


def read_config_file(path: str) -> Dict[str, Any]:
    """The JSON object of a settings file; ConfigError naming the file when it cannot be used."""
    try:
        with open(path) as f:
            values = json.load(f)
    except OSError as e:
        raise ConfigError(f"settings file {path}: {e.strerror}; fix {CONFIG_FLAG} or ${CONFIG_FILE_ENV}") from None
    except ValueError as e:
        raise ConfigError(f"settings file {path} is not valid JSON: {e}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"settings file {path} must hold a JSON object {{knob: value}}")
    return values


def apply_settings(parser: argparse.ArgumentParser, argv: Sequence[str], all_knobs: Collection[str],
                   environ: Mapping[str, str] = os.environ) -> List[str]:
    """Sets the parser's defaults from the settings file and the environment, so flags still win.

    all_knobs: the knobs of every runner. One file serves both runners, so a knob of the other
    runner only is ignored (and listed); a name that is no knob at all is an error (a typo must
    not pass silently). Returns one line per source used, for the log.
    """
    actions = _knob_actions(parser)
    settings: Dict[str, Any] = {}
    sources, ignored = [], []
    config_path = _config_path(argv, environ)
    if config_path:
        from_file = {key.lstrip("-").replace("-", "_"): (value, f"{key} in {config_path}")
                     for key, value in read_config_file(config_path).items()}
        settings.update(from_file)
        sources.append(f"settings file {config_path}: {sorted(from_file)}")
    from_env = {name[len(ENV_PREFIX):].lower(): (value, name) for name, value in environ.items()
                if name.startswith(ENV_PREFIX) and name != CONFIG_FILE_ENV}
    if from_env:
        settings.update(from_env)
        sources.append(f"environment: {sorted(where for _, where in from_env.values())}")
    defaults = {}
    for knob, (value, where) in settings.items():
        if knob in actions:
            defaults[knob] = _convert(actions[knob], value, where)
        elif knob in all_knobs:
            ignored.append(where)
        else:
            raise ConfigError(f"{where}: no knob is called {knob!r}; see --help for the knobs")
    if ignored:
        sources.append(f"not knobs of this runner, ignored: {sorted(ignored)}")
    parser.set_defaults(**defaults)
    return sources


def _config_path(argv: Sequence[str], environ: Mapping[str, str]) -> Optional[str]:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument(CONFIG_FLAG, default=None)
    known, _ = pre.parse_known_args(list(argv))
    return known.config or environ.get(CONFIG_FILE_ENV) or None
