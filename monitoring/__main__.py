r"""python -m monitoring: compares a window of prediction logs with the served model's training data.

    python -m monitoring LOGS... (--metadata OUTPUT_DIR | --reference-data FOLDER)
        [--hours 24 | --since T [--until T]] [--out monitor.html] [thresholds...]

LOGS: prediction log folders or files (common/prediction_log.py: predict's and the serving
container's JSON lines, Vertex AI request-response logging exported as JSON lines, TF Serving
PredictionLog TFRecords). --metadata: the pipeline's output dir (or its ML Metadata database):
the reference is the training data of the pushed version the logs name (monitoring/reference.py).
--reference-data: a labelled image folder instead.

Prints one line per breached threshold (`BREACH <what>: <metric> <value> > <threshold> (...)`),
then a summary line, and writes the HTML page (--out). docs/monitoring.md lists every threshold.

Exit status (run_control.exit_codes):
  0  every measurement within its threshold
  1  data: no log record in the window, fewer than --min-requests classified, no reference found
  2  usage: a bad flag or path
  5  drift: at least one threshold breached (the BREACH lines say which)
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow loads

if __name__ == "__main__":  # the project's Python (set up if missing), and a quiet start
    from run_control.environment import ensure_project_python
    from run_control.startup import quiet_startup

    ensure_project_python(__spec__.name)
    quiet_startup()

import argparse  # noqa: E402
import sys  # noqa: E402
from typing import List, Optional  # noqa: E402

from common import durable, prediction_log  # noqa: E402
from monitoring import compare, page, reference, window  # noqa: E402
from run_control import exit_codes, startup  # noqa: E402
from run_control.exit_codes import DataError, UsageError  # noqa: E402

_T = compare.Thresholds()
THRESHOLD_FLAGS = (
    ("class_max_linf", "largest L-infinity distance between the predicted-class shares and the training "
                       "class shares (the data gate's comparator; higher than its 0.1 by default: the "
                       "model's own errors move predicted shares)"),
    ("size_max_jsd", "largest Jensen-Shannon divergence of image height and width (the data gate's)"),
    ("content_max_jsd", "largest Jensen-Shannon divergence of each content statistic (brightness, "
                        "contrast, saturation, colourfulness, sharpness, aspect ratio)"),
    ("low_confidence", "a request whose top-1 probability is below this is low-confidence"),
    ("max_low_confidence_share", "largest share of low-confidence requests among the classified ones"),
    ("max_failed_share", "largest share of failed requests (undecodable, too large, ...)"),
    ("max_confidence_drop", "largest drop of the mean top-1 probability from the Evaluator's on eval"),
    ("min_requests", "fewest classified requests the window needs to be compared (exit 1 below)"),
)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = exit_codes.ArgumentParser(prog="python -m monitoring", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logs", nargs="+", help="prediction log folders or files")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--metadata", help="the pipeline's output dir, or its ML Metadata database")
    where.add_argument("--reference-data", help="a labelled image folder as the reference instead")
    window.add_flags(parser)
    parser.add_argument("--out", default="monitor.html", help="the HTML page (default: %(default)s)")
    parser.add_argument("--sample", type=int, default=reference.DEFAULT_SAMPLE,
                        help="training images whose content statistics are computed (default: %(default)s)")
    thresholds = parser.add_argument_group("thresholds")
    for name, text in THRESHOLD_FLAGS:
        default = getattr(_T, name)
        thresholds.add_argument("--" + name.replace("_", "-"), type=type(default), default=default,
                                help=f"{text} (default: %(default)s)")
    parser.add_argument("--debug", action="store_true", help="raise an error with its traceback")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    out_folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_folder):
        raise UsageError(f"--out {args.out}: no folder {out_folder} to write the page in; create it or pass another")
    for path in args.logs:
        if not os.path.exists(path):
            raise UsageError(f"no such log file or folder: {path}")
    thresholds = compare.Thresholds(**{name: getattr(args, name) for name, _ in THRESHOLD_FLAGS})
    if not 0 < thresholds.low_confidence <= 1:
        raise UsageError(f"--low-confidence={thresholds.low_confidence}: must be in (0, 1]")
    since, until, words = window.window(args)
    read = prediction_log.read_records(args.logs, since, until)
    if not read.records:
        raise DataError(f"no prediction log record from {words} in {', '.join(args.logs)}: widen the window "
                        "(--hours, --since) or check the log folder")
    classified = prediction_log.classified(read.records)
    if len(classified) < thresholds.min_requests:
        raise DataError(f"{len(classified)} classified request(s) from {words}: fewer than --min-requests="
                        f"{thresholds.min_requests}; widen the window or lower --min-requests")
    try:
        ref = (reference.from_metadata(args.metadata, reference.window_versions(read.records), args.sample)
               if args.metadata else reference.from_folder(args.reference_data, compare.label_schema(), args.sample))
    except (LookupError, FileNotFoundError) as e:
        raise DataError(f"no training reference: {e}") from e
    measurements = compare.compare(read.records, ref, thresholds)
    frame = compare.window_frame(read.records)
    # In one rename: a monitor stopped here (a cron job's timeout, Ctrl-C) leaves the last page whole.
    durable.write_atomically(args.out, page.render(read.records, len(read.skipped), words, ref, measurements,
                                                   thresholds, frame))
    breached = [m for m in measurements if m.breached]
    # What the libraries printed while they worked (TFDV, TFMA's readers) stays off the console.
    startup.keep_startup_output()
    for where, why in read.skipped[:10]:
        print(f"[monitor] skipped {where}: {why}", file=sys.stderr)
    if len(read.skipped) > 10:
        print(f"[monitor] ... {len(read.skipped) - 10} more unreadable log lines", file=sys.stderr)
    for m in breached:
        print(m.line(), flush=True)
    print(f"[monitor] {len(read.records)} requests ({len(read.records) - len(classified)} failed) from {words} "
          f"against the {ref.description}: {len(breached)} of {len(measurements)} measurements breach their "
          f"thresholds; page {args.out}", file=sys.stderr)
    return exit_codes.DRIFT if breached else exit_codes.OK


def main(argv: Optional[List[str]] = None) -> int:
    """The command line (see the module docstring); returns the exit status."""
    args = parse_args(argv)
    exit_codes.stop_on_sigterm()  # a scheduler's stop is one line and exit 143, as Ctrl-C is 130
    try:
        return run(args)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - one line, a documented code
        return exit_codes.fail(e, args.debug)


if __name__ == "__main__":
    sys.exit(main())
