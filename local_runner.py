"""Runs the whole pipeline on this machine: TFX LocalDagRunner, SQLite ML Metadata, Beam DirectRunner.

    python local_runner.py                                  # generated demo data
    python local_runner.py --data-dir ../shared/data/intel-dev --epochs 2

Every field of pipeline.configs.PipelineConfig and trainer_module.train_config.TrainConfig is a flag;
`--help` lists each with its meaning, allowed values and default.
"""
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # before TensorFlow loads: TFT and TFMA need Keras 2

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from typing import List, Optional  # noqa: E402

from absl import logging as absl_logging  # noqa: E402

from data_sources import demo_data, sources  # noqa: E402
from pipeline import configs, flags  # noqa: E402
from trainer_module import names  # noqa: E402
from trainer_module.train_config import ConfigError, TrainConfig  # noqa: E402

log = logging.getLogger("local_runner")


def parse_args(argv: Optional[List[str]] = None):
    """(PipelineConfig, dict of TrainConfig overrides) from the command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_dataclass_flags(parser, configs.PipelineConfig)
    flags.add_dataclass_flags(parser, TrainConfig, skip=("class_names",))
    args = parser.parse_args(argv)
    pipeline_cfg = configs.PipelineConfig(**flags.dataclass_overrides(args, configs.PipelineConfig))
    # The label space is the pipeline's (--class-names or the data's folders), set in build(); every
    # other training knob is checked now, before any data is fetched or generated.
    train_overrides = flags.dataclass_overrides(args, TrainConfig, skip=("class_names",))
    TrainConfig.from_dict({**train_overrides, "class_names": pipeline_cfg.class_names or names.INTEL_CLASS_NAMES})
    return pipeline_cfg, train_overrides


def resolve_data(cfg: configs.PipelineConfig) -> str:
    """The local (or remote) folder to ingest: the configured source, or the demo dataset."""
    if cfg.data_dir:
        return sources.resolve_data_source(cfg.data_dir, os.path.join(cfg.cache_dir, "data"),
                                           cfg.data_checksum or None)
    demo_dir = os.path.join(cfg.cache_dir, f"demo-{cfg.demo_train_per_class}-{cfg.demo_eval_per_class}")
    demo_data.make_demo_dataset(demo_dir, train_per_class=cfg.demo_train_per_class,
                                eval_per_class=cfg.demo_eval_per_class)
    banner = "#" * 100
    log.warning("\n%s\n# NO DATA CONFIGURED: running on the generated DEMO dataset (synthetic images) at\n#   %s\n"
                "# Use --data-dir DIR|ARCHIVE|URL for real data, e.g. --data-dir ../shared/data/intel-dev\n%s",
                banner, demo_dir, banner)
    return demo_dir


def build(cfg: configs.PipelineConfig, train_overrides: dict):
    """Resolves the data and returns (tfx Pipeline, TrainConfig)."""
    from components.image_example_gen import image_files
    from pipeline.pipeline import create_pipeline
    from tfx import v1 as tfx

    data_root = resolve_data(cfg)
    class_names = list(cfg.class_names) or image_files.discover_class_names(data_root)
    train_cfg = TrainConfig.from_dict({**train_overrides, "class_names": class_names})
    log.info("data %s, classes %s", data_root, class_names)
    pipeline = create_pipeline(
        pipeline_name=cfg.pipeline_name, pipeline_root=cfg.pipeline_root, data_root=data_root,
        class_names=class_names, eval_fraction=cfg.eval_fraction,
        transform_module=configs.TRANSFORM_MODULE_FILE, trainer_module=configs.TRAINER_MODULE_FILE,
        train_config=json.loads(train_cfg.to_json()),
        accuracy_lower_bound=cfg.accuracy_lower_bound, accuracy_max_drop=cfg.accuracy_max_drop,
        serving_model_dir=cfg.serving_model_dir,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            cfg.metadata_path),
        beam_pipeline_args=list(cfg.beam_pipeline_args), enable_cache=cfg.enable_cache)
    return pipeline, train_cfg


def summarize(cfg: configs.PipelineConfig) -> str:
    """The closing log: what ran, the verdict, and where the outputs are."""
    from run_report import store

    nodes = store.read_run(cfg.metadata_path)
    lines = ["", "=" * 100, f"Pipeline '{cfg.pipeline_name}' finished. Components:"]
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
        if store.custom_property(pushed, names.PROP_PUSHED) == 1:
            lines.append(f"Pushed model:       {store.custom_property(pushed, names.PROP_PUSHED_DESTINATION)}")
        else:
            lines.append(f"Pushed model:       nothing pushed (model not blessed); serving dir "
                         f"{cfg.serving_model_dir} unchanged")
    lines.append("=" * 100)
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the pipeline; 2 with a one-line error for a knob value it cannot use (as the Kubeflow runner)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    absl_logging.set_verbosity(absl_logging.INFO)
    try:
        cfg, train_overrides = parse_args(argv)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    pipeline, _ = build(cfg, train_overrides)
    from tfx import v1 as tfx
    tfx.orchestration.LocalDagRunner().run(pipeline)
    print(summarize(cfg), flush=True)
    from run_report.writer import write_report
    try:
        print(f"Run report:         {write_report(cfg.metadata_path)}", flush=True)
    except Exception:  # the run itself finished; the report is only a view of it
        log.exception("could not write the run report")
    return 0


if __name__ == "__main__":
    sys.exit(main())
