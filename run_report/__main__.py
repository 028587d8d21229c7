"""A self-contained HTML report of one pipeline run, with its figures as PNG files beside it.

    python -m run_report outputs                       # the latest run
    python -m run_report outputs --list                # the run ids
    python -m run_report outputs/metadata/intel-scenes/metadata.sqlite --run-id ID --out DIR

The path is the pipeline's output dir (--output-dir), its pipeline root, or the ML Metadata
database. Sections: verdict (each threshold with its value and bound, from TFMA's validation
result), overall and per-class metrics, confusion matrix, comparison with the baseline,
calibration, edge models (TFLite: the EdgeEvaluator's comparison and the edge gate, in a run
that has one), training curves (history.json, lr_schedule.png) and data (ingest_report.json).
Artifacts are found through ML Metadata, so any past run can be reported; a CACHED component
shows the outputs it reused.
"""

if __name__ == "__main__":  # the project's Python (set up if missing), and a quiet start
    from run_control.environment import ensure_project_python
    from run_control.startup import quiet_startup

    ensure_project_python(__spec__.name)
    quiet_startup()

import argparse  # noqa: E402
import sys  # noqa: E402
from typing import List, Optional  # noqa: E402

from common import store  # noqa: E402
from run_control import exit_codes  # noqa: E402


def main(argv: Optional[List[str]] = None) -> int:
    """The command line: writes the report (or lists the runs) and prints the HTML path."""
    parser = exit_codes.ArgumentParser(prog="python -m run_report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", help="pipeline output dir, pipeline root, or metadata.sqlite")
    parser.add_argument("--run-id", help="the run to report (default: the latest)")
    parser.add_argument("--out", help="output folder (default: <pipeline root>/reports/<run id>)")
    parser.add_argument("--list", action="store_true", help="list the run ids, oldest first, and exit")
    args = parser.parse_args(argv)
    try:
        try:
            metadata_path = store.find_metadata(args.path)
        except (FileNotFoundError, ValueError) as e:
            raise exit_codes.UsageError(f"{e}; pass an output dir, a pipeline root or a metadata.sqlite") from e
        if args.list:
            print("\n".join(store.run_ids(metadata_path)))
            return exit_codes.OK
        from run_report import writer  # loads TensorFlow and TFMA: not needed for --list or --help

        try:
            print(writer.write_report(metadata_path, args.out, args.run_id))
        except LookupError as e:  # no such run
            raise exit_codes.UsageError(str(e).strip("'\"")) from e
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - every failure: one line, a documented code
        return exit_codes.fail(e)
    return exit_codes.OK


if __name__ == "__main__":
    sys.exit(main())
