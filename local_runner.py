"""Runs the whole pipeline on this machine: TFX LocalDagRunner, SQLite ML Metadata, Beam DirectRunner.

    python local_runner.py                                  # generated demo data
    python local_runner.py --data-dir ../shared/data/intel-dev --recipe cpu

Every knob of pipeline.configs.PipelineConfig and trainer_module.train_config.TrainConfig is a flag
(the ones a user changes first, implementation details under "advanced"); `--help` lists each with
its meaning, allowed values and default. Exit codes: run_control/exit_codes.py (0 done, 1 data,
2 usage, 3 busy, 4 environment, 70 internal, 130 interrupted).
"""
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # before TensorFlow loads: TFT and TFMA need Keras 2

if __name__ == "__main__":  # the project's Python (set up if missing), and a quiet start
    from run_control.environment import ensure_project_python
    from run_control.startup import quiet_startup

    ensure_project_python()
    quiet_startup()

import logging  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from typing import List, Optional  # noqa: E402

from absl import logging as absl_logging  # noqa: E402

from pipeline import configs  # noqa: E402
from run_control import command_line, console, exit_codes, startup  # noqa: E402

log = logging.getLogger("local_runner")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def parse_command_line(argv: Optional[List[str]] = None):
    """(PipelineConfig, dict of TrainConfig overrides, RunnerOptions) from the settings file, the
    environment and the command line (flags win): run_control/command_line.py's flags."""
    return command_line.parse_command_line(argv, description=__doc__)


def parse_args(argv: Optional[List[str]] = None):
    """(PipelineConfig, dict of TrainConfig overrides) from the settings and the command line."""
    return parse_command_line(argv)[:2]


def closing_text(cfg: configs.PipelineConfig, run_id: str, log_path: str) -> str:
    """The summary of run `run_id`, where its report is, and where its full log is."""
    from run_control import local_run
    from run_report.writer import write_report

    lines = [local_run.summarize(cfg, run_id)]
    try:
        lines.append(f"Run report:         {write_report(cfg.metadata_path, run_id=run_id)}")
    except Exception:  # the run itself finished; the report is only a view of it
        log.exception("could not write the run report")
        lines.append("Run report:         not written (see the log)")
    lines.append(f"Full log:           {log_path}")
    return "\n".join(lines)


def _log_to_file(path: str) -> logging.Handler:
    """Everything at INFO and above, TFX's absl logs included, goes to `path` as well."""
    handler = logging.FileHandler(path)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    return handler


class _OwnWarnings(logging.Filter):
    """Below `info`, the console shows this project's warnings and everyone's errors."""

    OWN = ("local_runner", "run_control", "data_sources", "components", "pipeline", "run_report", "common")
    # TFX's launcher logs this before it re-raises what stopped a component: the run's one error
    # line says what failed and why, so on the console the record only adds noise (the log keeps it).
    REDUNDANT = "Execution %d failed."

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == self.REDUNDANT:
            return False
        return record.levelno >= logging.ERROR or record.name.split(".")[0] in self.OWN


def _console_handlers(screen: console.Console, cfg: configs.PipelineConfig, run_id: str) -> List[logging.Handler]:
    """The handlers that write to the console for this verbosity."""
    from run_control import figures

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


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the pipeline; returns an exit code of run_control.exit_codes. A user or data error is one
    line on stderr (`error: ...`); its traceback goes to the run's log file (and the console with
    --debug)."""
    root = logging.getLogger()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    run_id, log_path, handlers, cfg = command_line.new_run_id(), None, [], None
    exit_codes.stop_on_sigterm()
    try:
        cfg, train_overrides, options = parse_command_line(argv)
        debug = options.debug
        # TFX and TensorFlow load only now: --help and a usage error are answered without them.
        from run_control import local_run

        absl_logging.set_verbosity(absl_logging.INFO)
        root.setLevel(logging.INFO)
        # absl's handler and the stderr handler a library's logging.basicConfig() left would print every
        # INFO record on stderr; this run's handlers (the log file, the console at its verbosity) take them.
        for handler in list(root.handlers):
            root.removeHandler(handler)
        if local_run.tfx_cli_registering():
            local_run.register_with_tfx_cli(cfg, train_overrides)
            return exit_codes.OK
        local_run.check_output_dir(cfg)
        log_path = cfg.log_path(run_id)
        handlers.append(_log_to_file(log_path))
        root.addHandler(handlers[0])
        startup.keep_startup_output(log_path)
        log.info("run %s: %s; full log %s", run_id, " ".join(argv), log_path)
        with console.Console(log_path, options.verbosity) as screen:
            for handler in _console_handlers(screen, cfg, run_id):
                root.addHandler(handler)
                handlers.append(handler)
            screen.print(f"Run {run_id} of pipeline '{cfg.pipeline_name}'; full log: {log_path}")
            log.info("%s", options.recipe_line)
            screen.print(f"Training {options.recipe_line}")
            local_run.run(cfg, train_overrides, run_id)
            text = closing_text(cfg, run_id, log_path)
            logging.getLogger("local_runner.summary").info("%s", text)
            if options.verbosity != "info":  # at info, the log record above is on the console
                screen.print(text)
        return exit_codes.OK
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - every failure: one line, a documented code
        code, message = exit_codes.classify(e, resume=exit_codes.PIPELINE_RESUME)
        startup.keep_startup_output(log_path)
        if handlers:
            handlers[0].handle(log.makeRecord(log.name, logging.ERROR, __file__, 0, "run %s stopped (exit %d): %s",
                                              (run_id, code, message), sys.exc_info()))
        if debug:
            traceback.print_exc()
        if cfg is not None and log_path and exit_codes.stopped_by_data_gate(e):
            try:  # the run stopped on purpose: its summary and report say what the gate found
                print(closing_text(cfg, run_id, log_path), flush=True)
            except Exception:  # noqa: BLE001 - the error line below still says what happened
                log.exception("no summary for the stopped run")
        where = f"; full log: {log_path}" if log_path else ""
        print(f"{exit_codes.prefix(code)}: {message} (exit {code}{where})", file=sys.stderr, flush=True)
        return code
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()


if __name__ == "__main__":
    sys.exit(main())
