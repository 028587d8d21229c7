"""The local run's command line: its flags, generated from the configs (pipeline.configs.PipelineConfig,
trainer_module.train_config.TrainConfig), the settings file and the environment, and the recipe.

Kept apart from local_run.py so that parsing, `--help` and a usage error need neither TFX nor
TensorFlow: a mistyped flag is answered in a second, not after the libraries' start-up.
"""
import argparse
import dataclasses
import datetime
import logging
import sys
from typing import List, Optional

from common import dataset
from pipeline import configs, flags, recipes
from run_control import console, exit_codes
from trainer_module.train_config import TrainConfig

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RunnerOptions:
    """How this process runs (not part of the pipeline): console verbosity, tracebacks."""
    verbosity: str = console.DEFAULT_VERBOSITY
    debug: bool = False
    recipe_line: str = ""  # which recipe, why, and its knobs (printed at the start of the run)


def parse_command_line(argv: Optional[List[str]] = None, description: str = ""):
    """(PipelineConfig, dict of TrainConfig overrides, RunnerOptions) from the settings file, the
    environment and the command line (flags win)."""
    parser = exit_codes.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_knob_flags(parser, [flags.KnobGroup(configs.PipelineConfig, "pipeline (data, gates, outputs)"),
                                  flags.KnobGroup(TrainConfig, "training", skip=("class_names",))])
    flags.add_config_flag(parser)
    runner = parser.add_argument_group("this process")
    runner.add_argument("--verbosity", choices=console.VERBOSITIES, default=None,
                        help="console: quiet (warnings, errors, summary), progress (a line per component "
                             "and epoch) or info (all of TFX's log); the log file always has everything "
                             f"[default: {console.DEFAULT_VERBOSITY}]")
    runner.add_argument("--debug", action="store_true",
                        help="print the traceback of an error on the console too (it is always in the log file)")
    argv = list(sys.argv[1:] if argv is None else argv)
    for source in flags.apply_settings(parser, argv, configs.all_knob_names()):
        log.info("settings from %s", source)
    args = parser.parse_args(argv)
    recipe, why = recipes.resolve(args.recipe or recipes.AUTO, demo_data=not args.data_dir,
                                  gpu_visible=recipes.gpu_visible)
    args.recipe = recipe
    recipe_line = recipes.describe(recipe, why, recipes.fill_unset(args, recipe))
    log.info("%s", recipe_line)
    pipeline_cfg = configs.PipelineConfig(**flags.dataclass_overrides(args, configs.PipelineConfig))
    # The label space is the data's (--class-names or its folders), set once the data is resolved;
    # every other training knob is checked now, before any data is fetched or generated.
    train_overrides = flags.dataclass_overrides(args, TrainConfig, skip=("class_names",))
    TrainConfig.from_dict({**train_overrides, "class_names": pipeline_cfg.class_names or dataset.INTEL_CLASS_NAMES})
    return pipeline_cfg, train_overrides, RunnerOptions(args.verbosity or console.DEFAULT_VERBOSITY, args.debug,
                                                        recipe_line)


def parse_args(argv: Optional[List[str]] = None):
    """(PipelineConfig, dict of TrainConfig overrides) from the settings and the command line."""
    return parse_command_line(argv)[:2]


def new_run_id() -> str:
    """A run id as TFX makes them (the start time, ISO 8601)."""
    return datetime.datetime.now().isoformat()
