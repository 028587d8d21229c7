"""One local run of the pipeline, as local_runner.py starts it once its flags are parsed
(run_control/command_line.py): under the output dir's run lock, recover a killed run, resolve and
check the data, build the pipeline (create_pipeline on this machine's Platform) and run it with TFX's LocalDagRunner as a run id chosen here; then the closing
summary of what it did, read back from ML Metadata.
"""
import dataclasses
import logging
import os
import sys
from typing import List, Tuple

from common import dataset, pipeline_names, store
from data_sources import demo_data, sources
from pipeline import configs
from pipeline.pipeline import Platform
from run_control import exit_codes
from trainer_module import names
from trainer_module.train_config import TrainConfig

log = logging.getLogger(__name__)
progress = logging.getLogger(names.PROGRESS_LOGGER)  # a console line at the default verbosity


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


def check_data(cfg: configs.PipelineConfig, data_root: str) -> List[str]:
    """The label space, checked against the data's class folders before the pipeline starts (the
    layout rules are ImageExampleGen's own; folders only: its driver lists the files, once)."""
    from components.image_example_gen import image_files

    listing = image_files.list_image_files(data_root, class_names=list(cfg.class_names) or None,
                                           eval_fraction=cfg.eval_fraction, list_files=False)
    return listing.class_names


def check_output_dir(cfg: configs.PipelineConfig) -> None:
    """The output dir is a folder this process can write (created if missing), outside the data;
    a UsageError otherwise."""
    if os.path.exists(cfg.output_dir) and not os.path.isdir(cfg.output_dir):
        raise exit_codes.UsageError(f"--output-dir {cfg.output_dir} is a file, not a folder; pass a folder")
    _check_outside_data(cfg)
    try:
        os.makedirs(os.path.dirname(cfg.log_path("x")), exist_ok=True)
        os.makedirs(os.path.dirname(cfg.metadata_path), exist_ok=True)
    except OSError as e:
        raise exit_codes.UsageError(f"--output-dir {cfg.output_dir}: cannot create {cfg.pipeline_root} "
                                    f"({e.strerror}); pass a folder you can write") from None
    if not os.access(cfg.pipeline_root, os.W_OK | os.X_OK):
        raise exit_codes.UsageError(f"--output-dir {cfg.output_dir}: {cfg.pipeline_root} is not writable; "
                                    "pass a folder you can write")


def _check_outside_data(cfg: configs.PipelineConfig) -> None:
    """Input data is read-only, and a run's outputs inside its data would be read as data (every
    rerun would find the data changed): an output dir inside a local data dir (or reference set)
    is refused."""
    for flag, folder in (("--data-dir", cfg.data_dir), ("--reference-eval-dir", cfg.reference_eval_dir)):
        data = os.path.expanduser(folder)
        if not folder or "://" in folder or not os.path.isdir(data):
            continue  # the demo dataset (in the cache), an archive, a URL: the run writes nothing there
        data, out = os.path.realpath(data), os.path.realpath(cfg.output_dir)
        if os.path.commonpath([data, out]) == data:
            raise exit_codes.UsageError(f"--output-dir {cfg.output_dir} is inside {flag} {folder}: the "
                                        "run would write into its input data; pass an output dir outside it")


def platform(cfg: configs.PipelineConfig, data_root: str) -> Platform:
    """This machine: the output dir's folders, SQLite ML Metadata, Beam's DirectRunner."""
    return Platform(pipeline_root=cfg.pipeline_root, data_root=data_root,
                    serving_model_dir=cfg.serving_model_dir, beam_pipeline_args=cfg.beam_pipeline_args,
                    metadata_connection_config=store.connection_config(cfg.metadata_path))


def check_reference(cfg: configs.PipelineConfig, class_names: List[str]) -> configs.PipelineConfig:
    """The config with reference_eval_dir made absolute, once it is checked to be a labelled image
    folder of exactly these classes (folders only; ImageExampleGen lists and checks the files);
    the config as it is without a reference set. DatasetLayoutError (exit 1) naming the knob."""
    if not cfg.reference_eval_dir:
        return cfg
    from components.image_example_gen import image_files

    reference = cfg.reference_eval_dir
    if reference.startswith("file://"):
        reference = reference[len("file://"):]
    if "://" not in reference:
        reference = os.path.abspath(os.path.expanduser(reference))
    try:
        image_files.list_image_files(reference, class_names=class_names, eval_fraction=cfg.eval_fraction,
                                     list_files=False)
    except image_files.DatasetLayoutError as e:
        raise image_files.DatasetLayoutError(f"reference_eval_dir {cfg.reference_eval_dir}: {e} (a reference set "
                                             f"holds a folder for each of the classes {class_names})") from None
    return dataclasses.replace(cfg, reference_eval_dir=reference)


def build(cfg: configs.PipelineConfig, train_overrides: dict, data_root: str, class_names: List[str]):
    """Returns (tfx Pipeline, TrainConfig) for the resolved data and its label space."""
    from pipeline.pipeline import create_pipeline

    cfg = check_reference(cfg, class_names)
    train = TrainConfig.from_dict({**train_overrides, "class_names": class_names})
    log.info("data %s, classes %s", data_root, class_names)
    return create_pipeline(cfg, train, platform(cfg, data_root)), train


def planned_data(cfg: configs.PipelineConfig) -> Tuple[str, List[str]]:
    """(data root, class names) without side effects, for registering with the tfx CLI: the demo
    dataset's path (made by the first run), a local folder's class folders, or a remote source
    with its class names from the settings."""
    if not cfg.data_dir:
        return demo_dir_of(cfg), list(cfg.class_names) or list(dataset.INTEL_CLASS_NAMES)
    local = os.path.abspath(os.path.expanduser(cfg.data_dir))
    if os.path.isdir(local):
        return local, check_data(cfg, local)
    if not cfg.class_names:
        raise exit_codes.UsageError(f"data_dir {cfg.data_dir} is not a local folder: set class_names in the "
                                    "settings to register the pipeline without fetching the data")
    return cfg.data_dir, list(cfg.class_names)


def tfx_cli_registering() -> bool:
    """True when the `tfx` CLI executes local_runner.py to register the pipeline (`tfx pipeline
    create|update|compile --engine local`): it loads the file in its own process with
    LocalDagRunner.run patched not to run. `tfx run create` starts a fresh process, which runs."""
    return "tfx.tools.cli.handler.dag_runner_patcher" in sys.modules


def register_with_tfx_cli(cfg: configs.PipelineConfig, train_overrides: dict) -> None:
    """Builds the pipeline and hands it to the CLI's patched LocalDagRunner: nothing is run,
    fetched, generated or written here (the CLI records the pipeline in its own home folder)."""
    from tfx import v1 as tfx

    data_root, class_names = planned_data(cfg)
    pipeline, _ = build(cfg, train_overrides, data_root, class_names)
    tfx.orchestration.LocalDagRunner().run(pipeline)
    print(f"Pipeline '{cfg.pipeline_name}' (data {data_root}, outputs {cfg.output_dir}) registered; run it with: "
          f"tfx run create --engine local --pipeline_name {cfg.pipeline_name}", flush=True)


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
        _run_as(pipeline, run_id)


def _run_as(pipeline, run_id: str) -> None:
    """LocalDagRunner with a run id chosen by the caller (TFX picks the start time as the id, which
    the caller could only guess): the closing summary and report then read this run, not the
    newest one in the database."""
    from tfx import v1 as tfx
    from tfx.dsl.compiler import constants
    from tfx.orchestration.portable import runtime_parameter_utils

    class Runner(tfx.orchestration.LocalDagRunner):
        def run_with_ir(self, pipeline_ir, run_options=None):
            # Substituted first, LocalDagRunner's own substitution finds nothing left to set.
            runtime_parameter_utils.substitute_runtime_parameter(
                pipeline_ir, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id})
            return super().run_with_ir(pipeline_ir, run_options)

    Runner().run(pipeline)


def _line(label: str, text: str) -> str:
    return f"{label + ':':20s}{text}"


def summarize(cfg: configs.PipelineConfig, run_id: str) -> str:
    """The closing log of run `run_id`: what ran, the verdict, and where the outputs are."""
    nodes = store.read_run(cfg.metadata_path, run_id)
    lines = ["", "=" * 100, f"Pipeline '{cfg.pipeline_name}' run {run_id} finished. Components:"]
    lines += [f"  {node_id:32s} {node.state}" for node_id, node in sorted(nodes.items())]
    examples = nodes[pipeline_names.EXAMPLE_GEN_NODE].outputs[pipeline_names.EXAMPLES_OUTPUT][0]
    lines.append(f"Ingested {store.custom_property(examples, pipeline_names.PROP_INGESTED)} images, skipped "
                 f"{store.custom_property(examples, pipeline_names.PROP_SKIPPED)}; skipped-files report: "
                 f"{store.custom_property(examples, pipeline_names.PROP_INGEST_REPORT)}")
    trainer = nodes.get(pipeline_names.TRAINER_NODE)
    if trainer:
        run_dir = trainer.uri(pipeline_names.MODEL_RUN_OUTPUT)
        tensorboard = os.path.join(run_dir, names.TENSORBOARD_DIR)
        lines += [_line("Trained model", trainer.uri(pipeline_names.MODEL_OUTPUT)),
                  _line("TensorBoard logs", f"{tensorboard}  (tensorboard --logdir {tensorboard})"),
                  _line("LR schedule plot", os.path.join(run_dir, names.LR_SCHEDULE_PLOT))]
    evaluator = nodes.get(pipeline_names.EVALUATOR_NODE)
    if evaluator:
        blessing = evaluator.outputs[pipeline_names.BLESSING_OUTPUT][0]
        blessed = store.custom_property(blessing, pipeline_names.PROP_BLESSED) == 1
        lines.append(_line("Evaluator output", f"{evaluator.uri(pipeline_names.EVALUATION_OUTPUT)} "
                                               f"({'BLESSED' if blessed else 'NOT blessed'}: {blessing.uri})"))
    reference = nodes.get(pipeline_names.REFERENCE_EVALUATOR_NODE)
    if reference:
        blessed = store.custom_property(reference.outputs[pipeline_names.BLESSING_OUTPUT][0],
                                        pipeline_names.PROP_BLESSED) == 1
        lines.append(_line("Reference set", f"{reference.uri(pipeline_names.EVALUATION_OUTPUT)} "
                                            f"({'BLESSED' if blessed else 'NOT blessed'} on {cfg.reference_eval_dir})"))
    pusher = nodes.get(pipeline_names.PUSHER_NODE)
    if pusher:
        pushed = pusher.outputs[pipeline_names.PUSHED_MODEL_OUTPUT][0]
        if pusher.state == "CACHED":
            text = (f"nothing new (the Pusher was cached); serving dir {cfg.serving_model_dir} unchanged "
                    "by this run")
        elif store.custom_property(pushed, pipeline_names.PROP_PUSHED) == 1:
            text = store.custom_property(pushed, pipeline_names.PROP_PUSHED_DESTINATION)
        else:
            text = f"nothing pushed (model not blessed); serving dir {cfg.serving_model_dir} unchanged"
        lines.append(_line("Pushed model", text))
        release = store.custom_property(pushed, pipeline_names.PROP_RELEASE)
        if pusher.state != "CACHED" and release:  # the version's card, and its label (python -m releases)
            lines.append(_line("Model card", os.path.join(text, names.EXTRA_ASSETS_DIR, pipeline_names.MODEL_CARD_HTML)))
            lines.append(_line("Release", f"{release} (python -m releases list {cfg.output_dir})"))
    lines.append("=" * 100)
    return "\n".join(lines)
