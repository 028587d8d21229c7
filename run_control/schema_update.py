"""Propose a schema from a run's statistics, show its diff against the checked-in one, write it
only when asked.

    python -m run_control.schema_update --output-dir outputs [--run-id ID]     # a past run's statistics
    python -m run_control.schema_update --data-dir DIR [--output-dir outputs]  # ingest DIR first
    ... --write                                                               # write the proposal

The proposal is TFDV's update_schema: the smallest change to the schema the run imported (the
checked-in one with the run's classes and pixel budget) under which every split of the run has no
anomaly. Use it when a run stopped on a schema anomaly and the data is right (a new image format, a
new feature); drift and skew are thresholds (--class-drift-max-linf, ...), not schema. With
--data-dir the pipeline runs as far as StatisticsGen (ImageExampleGen, CuratedSchemaGen,
StatisticsGen; nothing trained) in --output-dir, under its run lock. Exit 0, 1 when the data
cannot be used, 2 for a bad flag or a missing run.
"""

if __name__ == "__main__":  # the project's Python (set up if missing), and a quiet start
    from run_control.environment import ensure_project_python
    from run_control.startup import quiet_startup

    ensure_project_python(__spec__.name)
    quiet_startup()

import argparse  # noqa: E402
import difflib  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from typing import List, Optional, Sequence, Tuple  # noqa: E402

from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2  # noqa: E402

from common import pipeline_names  # noqa: E402
from components.data_gate import findings  # noqa: E402
from pipeline import configs  # noqa: E402
from pipeline.schema import curated  # noqa: E402

SplitStatistics = List[Tuple[str, statistics_pb2.DatasetFeatureStatistics]]  # [(split, statistics)]


def propose(schema: schema_pb2.Schema,
            statistics: Sequence[statistics_pb2.DatasetFeatureStatistics]) -> schema_pb2.Schema:
    """The schema updated by TFDV until each split's statistics have no anomaly."""
    import tensorflow_data_validation as tfdv

    proposal = schema
    for split_stats in statistics:
        stats_list = statistics_pb2.DatasetFeatureStatisticsList(datasets=[split_stats])
        proposal = tfdv.update_schema(proposal, stats_list, infer_feature_shape=True)
    return proposal


def anomaly_lines(schema: schema_pb2.Schema, statistics: SplitStatistics) -> List[str]:
    """The anomalies of each split against `schema`, one line each (what the proposal resolves)."""
    import tensorflow_data_validation as tfdv

    lines = []
    for split, split_stats in statistics:
        stats_list = statistics_pb2.DatasetFeatureStatisticsList(datasets=[split_stats])
        anomalies = tfdv.validate_statistics(stats_list, schema)
        found = findings.schema_findings({split: anomalies}, schema, {split: split_stats})
        lines += [f.line() for f in found]
    return lines


def diff(current: str, proposal: str, label: str) -> str:
    """A unified diff of two schema texts ("" when they are equal)."""
    return "".join(difflib.unified_diff(current.splitlines(keepends=True), proposal.splitlines(keepends=True),
                                        fromfile=f"{label} (checked in)", tofile=f"{label} (proposed)"))


def run_schema_and_statistics(metadata_path: str, run_id: Optional[str]
                              ) -> Tuple[str, schema_pb2.Schema, SplitStatistics]:
    """(run id, the schema it imported, [(split, statistics)]) of a run (default: the latest)."""
    from common import store

    run_id = run_id or store.run_ids(metadata_path)[-1]
    nodes = store.read_run(metadata_path, run_id)
    if pipeline_names.STATISTICS_GEN_NODE not in nodes or pipeline_names.SCHEMA_GEN_NODE not in nodes:
        raise LookupError(f"run {run_id} has no {pipeline_names.STATISTICS_GEN_NODE} and "
                          f"{pipeline_names.SCHEMA_GEN_NODE} output")
    stats_uri = nodes[pipeline_names.STATISTICS_GEN_NODE].uri(pipeline_names.STATISTICS_OUTPUT)
    schema = findings.load_schema(nodes[pipeline_names.SCHEMA_GEN_NODE].uri(pipeline_names.SCHEMA_OUTPUT))
    stats = [(split, findings.load_statistics(stats_uri, split)) for split in (findings.TRAIN, findings.EVAL)]
    return run_id, schema, [(split, s) for split, s in stats if s is not None]


def compute_statistics(argv: List[str]) -> str:
    """Runs the pipeline as local_runner.py builds it from `argv` (its flags), as far as
    StatisticsGen, under the output dir's run lock; returns the metadata database."""
    from tfx import v1 as tfx
    from tfx.orchestration import pipeline as tfx_pipeline

    from run_control import command_line, local_run
    from run_control.lock import RunLock

    cfg, train_overrides = command_line.parse_args(argv)
    local_run.check_output_dir(cfg)
    with RunLock(cfg.lock_path, command_line.new_run_id()).acquire(wait=cfg.wait_for_lock):
        data_root = local_run.resolve_data(cfg)
        class_names = local_run.check_data(cfg, data_root)
        pipeline, _ = local_run.build(cfg, train_overrides, data_root, class_names)
        tfx.orchestration.LocalDagRunner().run(
            pipeline, run_options=tfx_pipeline.RunOptions(to_nodes=[pipeline_names.STATISTICS_GEN_NODE]))
    return cfg.metadata_path


def parse_args(argv: Optional[List[str]]) -> Tuple[argparse.Namespace, List[str]]:
    """(this command's flags, the rest: local_runner's flags for --data-dir)."""
    from run_control import exit_codes

    parser = exit_codes.ArgumentParser(prog="python -m run_control.schema_update", description=__doc__,
                                       formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default=os.path.join(configs.REPO_ROOT, "outputs"),
                        help="the pipeline's output dir (or its ML Metadata database)")
    parser.add_argument("--run-id", help="the run whose statistics to use [default: the latest]")
    parser.add_argument("--data-dir", help="compute the statistics of this data first (any --data-dir "
                                           "local_runner.py takes; its other flags pass through)")
    parser.add_argument("--schema-file", default=curated.TEMPLATE_FILE, help="the checked-in schema")
    parser.add_argument("--write", action="store_true", help="write the proposal to --schema-file")
    return parser.parse_known_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Prints the anomalies and the diff; writes with --write. Returns an exit code."""
    from common import store
    from run_control import exit_codes

    args, runner_flags = parse_args(argv)
    try:
        if args.data_dir:
            metadata_path = compute_statistics(["--output-dir", args.output_dir, "--data-dir", args.data_dir,
                                                *runner_flags])
        elif runner_flags:
            raise exit_codes.UsageError(f"unrecognized arguments: {' '.join(runner_flags)}")
        else:
            metadata_path = store.find_metadata(args.output_dir)
        run_id, run_schema, statistics = run_schema_and_statistics(metadata_path, args.run_id)
    # exit_codes.fail gives the console back first: printed into the held start-up output, these
    # lines were dropped (a mistyped --output-dir exited 2 without a word).
    except (LookupError, FileNotFoundError, ValueError) as e:
        return exit_codes.fail(exit_codes.UsageError(str(e)))
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - the ingestion's errors: one line and their code
        return exit_codes.fail(e)
    print(f"Run {run_id}: {', '.join(f'{s} {int(st.num_examples)} examples' for s, st in statistics)}")
    lines = anomaly_lines(run_schema, statistics)
    print(f"Anomalies against the schema the run imported: {len(lines)}")
    print("".join(f"  {line}\n" for line in lines), end="")
    proposal = curated.to_text(propose(run_schema, [s for _, s in statistics]))
    current = curated.to_text(curated.read_schema(args.schema_file))
    changes = diff(current, proposal, os.path.relpath(args.schema_file))
    print(changes or f"No change: {os.path.relpath(args.schema_file)} already accepts this data "
                     "(the class set and the pixel budget come from the configuration at build time).")
    if args.write and changes:
        header = curated.header_of(args.schema_file)
        with open(args.schema_file + ".partial", "w") as f:  # whole or unchanged: never half a schema
            f.write(header + proposal)
        os.replace(args.schema_file + ".partial", args.schema_file)
        print(f"Wrote {args.schema_file}")
    elif changes:
        print("Not written: rerun with --write to write the proposal.")
    return exit_codes.OK


if __name__ == "__main__":
    sys.exit(main())
