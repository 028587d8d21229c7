"""Runs the whole pipeline on this machine: TFX LocalDagRunner, SQLite ML Metadata, Beam DirectRunner.

    python local_runner.py                                  # generated demo data
    python local_runner.py --data-dir ../shared/data/intel-dev --epochs 2

Every field of pipeline.configs.PipelineConfig and trainer_module.train_config.TrainConfig is a flag;
`--help` lists each with its meaning, allowed values and default.
"""
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # before TensorFlow loads: TFT and TFMA need Keras 2

if __name__ == "__main__":  # under the project's .venv whatever `python` started this (set up if missing)
    from run_control.environment import ensure_project_python

    ensure_project_python()

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from typing import List, Optional  # noqa: E402

from absl import logging as absl_logging  # noqa: E402

from data_sources import demo_data, sources  # noqa: E402
from pipeline import configs, flags, recipes  # noqa: E402
from run_control import console, exit_codes, figures  # noqa: E402
from trainer_module import names  # noqa: E402
from trainer_module.train_config import TrainConfig  # noqa: E402

log = logging.getLogger("local_runner")
progress = logging.getLogger(names.PROGRESS_LOGGER)  # a console line at the default verbosity
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclasses.dataclass(frozen=True)
class RunnerOptions:
    """How this process runs (not part of the pipeline): console verbosity, tracebacks."""
    verbosity: str = console.DEFAULT_VERBOSITY
    debug: bool = False
    recipe_line: str = ""  # which recipe, why, and its knobs (printed at the start of the run)


def parse_command_line(argv: Optional[List[str]] = None):
    """(PipelineConfig, dict of TrainConfig overrides, RunnerOptions) from the settings file, the
    environment and the command line (flags win)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_dataclass_flags(parser, configs.PipelineConfig)
    flags.add_dataclass_flags(parser, TrainConfig, skip=("class_names",))
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
    # The label space is the pipeline's (--class-names or the data's folders), set in build(); every
    # other training knob is checked now, before any data is fetched or generated.
    train_overrides = flags.dataclass_overrides(args, TrainConfig, skip=("class_names",))
    TrainConfig.from_dict({**train_overrides, "class_names": pipeline_cfg.class_names or names.INTEL_CLASS_NAMES})
    return pipeline_cfg, train_overrides, RunnerOptions(args.verbosity or console.DEFAULT_VERBOSITY, args.debug,
                                                        recipe_line)


def parse_args(argv: Optional[List[str]] = None):
    """(PipelineConfig, dict of TrainConfig overrides) from the settings and the command line."""
    return parse_command_line(argv)[:2]


def demo_dir_of(cfg: configs.PipelineConfig) -> str:
    """Where the generated demo dataset of this configuration lives."""
    return os.path.join(cfg.cache_dir, f"demo-{cfg.demo_train_per_class}-{cfg.demo_eval_per_class}")


def resolve_data(cfg: configs.PipelineConfig) -> str:
    """The local (or remote) folder to ingest: the configured source, or the demo dataset."""
    if cfg.data_dir:
        return sources.resolve_data_source(cfg.data_dir, os.path.join(cfg.cache_dir, "data"),
                                           cfg.data_checksum or None, cfg.source_limits)
    demo_dir = demo_dir_of(cfg)
    demo_data.make_demo_dataset(demo_dir, train_per_class=cfg.demo_train_per_class,
                                eval_per_class=cfg.demo_eval_per_class)
    banner = "#" * 100
    log.warning("\n%s\n# NO DATA CONFIGURED: running on the generated DEMO dataset (synthetic images) at\n#   %s\n"
                "# Use --data-dir DIR|ARCHIVE|URL for real data, e.g. --data-dir ../shared/data/intel-dev\n%s",
                banner, demo_dir, banner)
    return demo_dir


def tfx_cli_registering() -> bool:
    """True when the `tfx` CLI executes this file to register the pipeline (`tfx pipeline
    create|update|compile --engine local`): it loads the file in its own process with
    LocalDagRunner.run patched not to run. `tfx run create` starts a fresh process, which runs."""
    return "tfx.tools.cli.handler.dag_runner_patcher" in sys.modules


def planned_data(cfg: configs.PipelineConfig):
    """(data root, class names) without side effects, for registering with the tfx CLI: the demo
    dataset's path (made by the first run), a local folder's class folders, or a remote source
    with its class names from the settings."""
    if not cfg.data_dir:
        return demo_dir_of(cfg), list(cfg.class_names) or list(names.INTEL_CLASS_NAMES)
    local = os.path.abspath(os.path.expanduser(cfg.data_dir))
    if os.path.isdir(local):
        return local, check_data(cfg, local)
    if not cfg.class_names:
        raise exit_codes.UsageError(f"data_dir {cfg.data_dir} is not a local folder: set class_names in the "
                                    "settings to register the pipeline without fetching the data")
    return cfg.data_dir, list(cfg.class_names)


def register_with_tfx_cli(cfg: configs.PipelineConfig, train_overrides: dict) -> None:
    """Builds the pipeline and hands it to the CLI's patched LocalDagRunner: nothing is run,
    fetched, generated or written here (the CLI records the pipeline in its own home folder)."""
    from tfx import v1 as tfx

    data_root, class_names = planned_data(cfg)
    pipeline, _ = build(cfg, train_overrides, data_root, class_names)
    tfx.orchestration.LocalDagRunner().run(pipeline)
    print(f"Pipeline '{cfg.pipeline_name}' (data {data_root}, outputs {cfg.output_dir}) registered; run it with: "
          f"tfx run create --engine local --pipeline_name {cfg.pipeline_name}", flush=True)


def sqlite_connection_config(path: str):
    """ML Metadata in SQLite at `path`, created on first use. TFX's own helper also creates the
    folder, which registering with the tfx CLI must not do; check_output_dir makes it for a run."""
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return config


def build(cfg: configs.PipelineConfig, train_overrides: dict, data_root: str, class_names: List[str]):
    """Returns (tfx Pipeline, TrainConfig) for the resolved data and its label space."""
    from pipeline.pipeline import create_pipeline

    train_cfg = TrainConfig.from_dict({**train_overrides, "class_names": class_names})
    log.info("data %s, classes %s", data_root, class_names)
    pipeline = create_pipeline(
        pipeline_name=cfg.pipeline_name, pipeline_root=cfg.pipeline_root, data_root=data_root,
        class_names=class_names, eval_fraction=cfg.eval_fraction,
        transform_module=configs.TRANSFORM_MODULE_FILE, trainer_module=configs.TRAINER_MODULE_FILE,
        train_config=json.loads(train_cfg.to_json()),
        accuracy_lower_bound=cfg.accuracy_lower_bound, accuracy_max_drop=cfg.accuracy_max_drop,
        class_drift_max_linf=cfg.class_drift_max_linf, size_drift_max_jsd=cfg.size_drift_max_jsd,
        stop_on_skew=cfg.stop_on_skew, proceed_despite_anomalies=cfg.proceed_despite_anomalies,
        tflite_float16_max_drop=cfg.tflite_float16_max_drop, tflite_int8_max_drop=cfg.tflite_int8_max_drop,
        serving_model_dir=cfg.serving_model_dir,
        metadata_connection_config=sqlite_connection_config(cfg.metadata_path),
        beam_pipeline_args=list(cfg.beam_pipeline_args), enable_cache=cfg.enable_cache)
    return pipeline, train_cfg


def summarize(cfg: configs.PipelineConfig, run_id: str) -> str:
    """The closing log of run `run_id`: what ran, the verdict, and where the outputs are."""
    from run_report import store

    nodes = store.read_run(cfg.metadata_path, run_id)
    lines = ["", "=" * 100, f"Pipeline '{cfg.pipeline_name}' run {run_id} finished. Components:"]
    lines += [f"  {node_id:32s} {node.state}" for node_id, node in sorted(nodes.items())]
    examples = nodes[names.EXAMPLE_GEN_NODE].outputs[names.EXAMPLES_OUTPUT][0]
    lines.append(f"Ingested {store.custom_property(examples, names.PROP_INGESTED)} images, skipped "
                 f"{store.custom_property(examples, names.PROP_SKIPPED)}; skipped-files report: "
                 f"{store.custom_property(examples, names.PROP_INGEST_REPORT)}")
    trainer = nodes.get(names.TRAINER_NODE)
    if trainer:
        lines.append(f"Trained model:      {trainer.uri(names.MODEL_OUTPUT)}")
        run_dir = trainer.uri(names.MODEL_RUN_OUTPUT)
        tensorboard = os.path.join(run_dir, names.TENSORBOARD_DIR)
        lines.append(f"TensorBoard logs:   {tensorboard}  (tensorboard --logdir {tensorboard})")
        lines.append(f"LR schedule plot:   {os.path.join(run_dir, names.LR_SCHEDULE_PLOT)}")
    evaluator = nodes.get(names.EVALUATOR_NODE)
    if evaluator:
        blessing = evaluator.outputs[names.BLESSING_OUTPUT][0]
        blessed = store.custom_property(blessing, names.PROP_BLESSED) == 1
        lines.append(f"Evaluator output:   {evaluator.uri(names.EVALUATION_OUTPUT)} "
                     f"({'BLESSED' if blessed else 'NOT blessed'}: {blessing.uri})")
    pusher = nodes.get(names.PUSHER_NODE)
    if pusher:
        pushed = pusher.outputs[names.PUSHED_MODEL_OUTPUT][0]
        if pusher.state == "CACHED":
            lines.append(f"Pushed model:       nothing new (the Pusher was cached); serving dir "
                         f"{cfg.serving_model_dir} unchanged by this run")
        elif store.custom_property(pushed, names.PROP_PUSHED) == 1:
            lines.append(f"Pushed model:       {store.custom_property(pushed, names.PROP_PUSHED_DESTINATION)}")
        else:
            lines.append(f"Pushed model:       nothing pushed (model not blessed); serving dir "
                         f"{cfg.serving_model_dir} unchanged")
    lines.append("=" * 100)
    return "\n".join(lines)


class _RunIdLocalDagRunner:
    """LocalDagRunner with a run id chosen by the caller (TFX picks the start time as the id, which
    the caller could only guess): the closing summary and report then read this run, not the
    newest one in the database."""

    def __init__(self, run_id: str):
        self.run_id = run_id

    def run(self, pipeline) -> None:
        from tfx import v1 as tfx
        from tfx.dsl.compiler import constants
        from tfx.orchestration.portable import runtime_parameter_utils

        run_id = self.run_id

        class Runner(tfx.orchestration.LocalDagRunner):
            def run_with_ir(self, pipeline_ir, run_options=None):
                # Substituted first, LocalDagRunner's own substitution finds nothing left to set.
                runtime_parameter_utils.substitute_runtime_parameter(
                    pipeline_ir, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id})
                return super().run_with_ir(pipeline_ir, run_options)

        Runner().run(pipeline)


def new_run_id() -> str:
    """A run id as TFX makes them (the start time, ISO 8601)."""
    return datetime.datetime.now().isoformat()


def check_output_dir(cfg: configs.PipelineConfig) -> None:
    """The output dir is a folder this process can write (created if missing), or a UsageError."""
    if os.path.exists(cfg.output_dir) and not os.path.isdir(cfg.output_dir):
        raise exit_codes.UsageError(f"--output-dir {cfg.output_dir} is a file, not a folder; pass a folder")
    try:
        os.makedirs(os.path.dirname(cfg.log_path("x")), exist_ok=True)
        os.makedirs(os.path.dirname(cfg.metadata_path), exist_ok=True)
    except OSError as e:
        raise exit_codes.UsageError(f"--output-dir {cfg.output_dir}: cannot create {cfg.pipeline_root} "
                                    f"({e.strerror}); pass a folder you can write") from None
    if not os.access(cfg.pipeline_root, os.W_OK | os.X_OK):
        raise exit_codes.UsageError(f"--output-dir {cfg.output_dir}: {cfg.pipeline_root} is not writable; "
                                    "pass a folder you can write")


def check_data(cfg: configs.PipelineConfig, data_root: str) -> List[str]:
    """The label space, checked against the data's folders before the pipeline starts (the layout
    rules are ImageExampleGen's own, listing folders only)."""
    from components.image_example_gen import image_files

    listing = image_files.list_image_files(data_root, class_names=list(cfg.class_names) or None,
                                           eval_fraction=cfg.eval_fraction, list_files=False)
    return listing.class_names


def _log_to_file(path: str) -> logging.Handler:
    """Everything at INFO and above, TFX's absl logs included, goes to `path` as well."""
    handler = logging.FileHandler(path)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    return handler


class _OwnWarnings(logging.Filter):
    """Below `info`, the console shows this project's warnings and everyone's errors."""

    OWN = ("local_runner", "run_control", "data_sources", "components", "pipeline", "run_report")

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or record.name.split(".")[0] in self.OWN


def _console_handlers(screen: console.Console, cfg: configs.PipelineConfig, run_id: str) -> List[logging.Handler]:
    """The handlers that write to the console for this verbosity."""
    plain = logging.StreamHandler(screen.stream)
    plain.setLevel(console.console_level(screen.verbosity))
    plain.setFormatter(logging.Formatter(LOG_FORMAT))
    if screen.verbosity == "info":
        return [plain]
    plain.addFilter(_OwnWarnings())
    if screen.verbosity == "quiet":
        return [plain]
    return [plain, console.ProgressHandler(
        screen, lambda node: figures.key_figures(cfg.metadata_path, run_id, node))]


def run(cfg: configs.PipelineConfig, train_overrides: dict, run_id: str) -> None:
    """Holding the pipeline's run lock: recovers a killed run, resolves and checks the data, runs the
    pipeline as run `run_id`."""
    from run_control import recovery
    from run_control.lock import RunLock

    with RunLock(cfg.lock_path, run_id).acquire(wait=cfg.wait_for_lock):
        for line in recovery.recover_killed_runs(cfg.metadata_path, cfg.pipeline_root, run_id):
            log.warning("recovery: %s", line)
        progress.info("resolving the data %s", cfg.data_dir or "(demo dataset)")
        data_root = resolve_data(cfg)
        class_names = check_data(cfg, data_root)
        progress.info("data %s, %d classes %s; building and packaging the pipeline", data_root,
                      len(class_names), class_names)
        pipeline, _ = build(cfg, train_overrides, data_root, class_names)
        _RunIdLocalDagRunner(run_id).run(pipeline)


def closing_text(cfg: configs.PipelineConfig, run_id: str, log_path: str) -> str:
    """The summary of run `run_id`, where its report is, and where its full log is."""
    from run_report.writer import write_report

    lines = [summarize(cfg, run_id)]
    try:
        lines.append(f"Run report:         {write_report(cfg.metadata_path, run_id=run_id)}")
    except Exception:  # the run itself finished; the report is only a view of it
        log.exception("could not write the run report")
        lines.append("Run report:         not written (see the log)")
    lines.append(f"Full log:           {log_path}")
    return "\n".join(lines)


def _stopped_by_data_gate(exc: BaseException) -> bool:
    from components.data_gate.findings import DataValidationError

    return isinstance(exc, DataValidationError)


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the pipeline; returns an exit code of run_control.exit_codes. A user or data error is one
    line on stderr (`error: ...`); its traceback goes to the run's log file (and the console with
    --debug)."""
    absl_logging.set_verbosity(absl_logging.INFO)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    run_id, log_path, handlers, cfg = new_run_id(), None, [], None
    try:
        cfg, train_overrides, options = parse_command_line(argv)
        debug = options.debug
        if tfx_cli_registering():
            register_with_tfx_cli(cfg, train_overrides)
            return exit_codes.OK
        check_output_dir(cfg)
        log_path = cfg.log_path(run_id)
        handlers.append(_log_to_file(log_path))
        root.addHandler(handlers[0])
        log.info("run %s: %s; full log %s", run_id, " ".join(argv), log_path)
        with console.Console(log_path, options.verbosity) as screen:
            for handler in _console_handlers(screen, cfg, run_id):
                root.addHandler(handler)
                handlers.append(handler)
            screen.print(f"Run {run_id} of pipeline '{cfg.pipeline_name}'; full log: {log_path}")
            log.info("%s", options.recipe_line)
            screen.print(f"Training {options.recipe_line}")
            run(cfg, train_overrides, run_id)
            text = closing_text(cfg, run_id, log_path)
            logging.getLogger("local_runner.summary").info("%s", text)
            if options.verbosity != "info":  # at info, the log record above is on the console
                screen.print(text)
        return exit_codes.OK
    except Exception as e:  # noqa: BLE001 - every failure ends as one line and a documented code
        code, message = exit_codes.classify(e)
        if handlers:
            handlers[0].handle(log.makeRecord(log.name, logging.ERROR, __file__, 0, "run %s failed (exit %d)",
                                              (run_id, code), sys.exc_info()))
        if debug:
            traceback.print_exc()
        if cfg is not None and _stopped_by_data_gate(e):
            try:  # the run stopped on purpose: its summary and report say what the gate found
                print(closing_text(cfg, run_id, log_path), flush=True)
            except Exception:  # noqa: BLE001 - the error line below still says what happened
                log.exception("no summary for the stopped run")
        where = f"; full log: {log_path}" if log_path else ""
        print(f"error: {message} (exit {code}{where})", file=sys.stderr, flush=True)
        return code
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()


if __name__ == "__main__":
    sys.exit(main())
