r"""python -m monitoring.labelling_queue: the labelling queue, exported from a window of prediction logs.

    python -m monitoring.labelling_queue LOGS... --out QUEUE [--hours 24 | --since T [--until T]]
        [--low-confidence 0.5] [--per-class 5] [--seed 0]

Exports every classified request whose top-1 probability is below --low-confidence (or that was
answered "uncertain"), and a random sample of --per-class of the other classified requests of each
predicted class (stratified by the model's guess, so confident answers are checked in every class),
into the pipeline's own data layout:

    QUEUE/unlabeled/<content hash>.<format>     each image once (the same image asked twice is one file)
    QUEUE/unlabeled/queue.csv                   file, predicted_class, probability, reason, time,
                                                model_version, source (the logged path)

A person moves each file into QUEUE/<class>/ (the CSV's guess helps); QUEUE is then a data drop
(`--data-dir QUEUE`) that the data and label gates vet like any other; unlabeled/ is never read as
a class (common/dataset.UNLABELLED_DIR_NAMES).

Where the image comes from: the bytes kept in the record (predict and the serving container keep
them with --log-image-bytes uncertain|all; Vertex's request-response logging always has them), else
the local file the record names (predict). A request whose image is neither is counted and reported,
not queued.

Exit status (run_control.exit_codes): 0 queued (also when nothing qualified); 1 data: no log record
in the window; 2 usage: a bad flag, or --out exists and is not empty; 130/143 stopped (Ctrl-C,
SIGTERM): --out is left as it was (the queue is built beside it and renamed into place when whole).
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow loads

if __name__ == "__main__":  # the project's Python (set up if missing), and a quiet start
    from run_control.environment import ensure_project_python
    from run_control.startup import quiet_startup

    ensure_project_python(__spec__.name)
    quiet_startup()

import argparse  # noqa: E402
import csv  # noqa: E402
import dataclasses  # noqa: E402
import errno  # noqa: E402
import hashlib  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from typing import Dict, List, Optional, Sequence  # noqa: E402

from common import dataset, durable, prediction_log  # noqa: E402
from monitoring import window  # noqa: E402
from run_control import exit_codes, startup  # noqa: E402
from run_control.exit_codes import DataError, UsageError  # noqa: E402

QUEUE_DIR = dataset.UNLABELLED_DIR_NAMES[0]
QUEUE_CSV = "queue.csv"
CSV_FIELDS = ("file", "predicted_class", "probability", "reason", "time", "model_version", "source")
LOW_CONFIDENCE, SAMPLE = "low_confidence", "sample"
_EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "gif": ".gif", "bmp": ".bmp"}


@dataclasses.dataclass
class QueueResult:
    """What the export wrote and what it could not."""
    folder: str
    queued: List[Dict]  # the CSV rows
    without_image: int  # selected requests whose image was not kept nor found
    duplicates: int  # selected requests whose image was already queued


def select(records: Sequence[Dict], low_confidence: float, per_class: int, seed: int = 0) -> List[tuple]:
    """(reason, record) of the classified requests to queue: every low-confidence one, then
    `per_class` drawn at random among the others of each predicted class."""
    answered = prediction_log.classified(records)
    low = [r for r in answered if r.get(prediction_log.UNCERTAIN) or r[prediction_log.PROBABILITY] < low_confidence]
    low_ids = {id(r) for r in low}
    by_class: Dict[str, List[Dict]] = {}
    for r in answered:
        if id(r) not in low_ids:
            by_class.setdefault(r[prediction_log.PREDICTED_CLASS], []).append(r)
    rng = random.Random(seed)
    sampled = [r for name in sorted(by_class) for r in rng.sample(by_class[name], min(per_class, len(by_class[name])))]
    return [(LOW_CONFIDENCE, r) for r in low] + [(SAMPLE, r) for r in sampled]


def export(records: Sequence[Dict], out: str, low_confidence: float = 0.5, per_class: int = 5,
           seed: int = 0) -> QueueResult:
    """Writes the queue (see the module docstring) under `out`, a new or empty folder."""
    folder = os.path.join(out, QUEUE_DIR)
    os.makedirs(folder, exist_ok=True)
    result = QueueResult(out, [], 0, 0)
    written = set()
    for reason, rec in select(records, low_confidence, per_class, seed):
        data = prediction_log.image_of(rec)
        if data is None:
            result.without_image += 1
            continue
        digest = hashlib.sha256(data).hexdigest()[:20]
        if digest in written:
            result.duplicates += 1
            continue
        written.add(digest)
        name = digest + _EXTENSIONS.get(rec.get(prediction_log.FORMAT, ""), ".img")
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
        result.queued.append({"file": name, "predicted_class": rec[prediction_log.PREDICTED_CLASS],
                              "probability": f"{rec[prediction_log.PROBABILITY]:.6f}", "reason": reason,
                              "time": rec[prediction_log.TIME], "model_version": rec.get(prediction_log.MODEL_VERSION, ""),
                              "source": rec.get(prediction_log.PATH, "")})
    with open(os.path.join(folder, QUEUE_CSV), "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, CSV_FIELDS)
        writer.writeheader()
        writer.writerows(result.queued)
    return result


def _export_whole(records: Sequence[Dict], args: argparse.Namespace) -> QueueResult:
    """export() into a hidden folder beside --out, renamed to --out once complete: a stopped export
    (Ctrl-C, SIGTERM, a full disk) leaves --out as it was, so the same command can run again."""
    out = os.path.abspath(args.out)
    parent = os.path.dirname(out)
    if not os.path.isdir(parent):
        raise UsageError(f"--out {args.out}: no folder {parent} to create the queue in; create it or pass another")
    partial = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.partial-", dir=parent)
    try:
        result = export(records, partial, args.low_confidence, args.per_class, args.seed)
        os.chmod(partial, 0o755)  # mkdtemp's folder is private; a queue is shared with whoever labels it
        try:
            os.replace(partial, out)  # over an empty --out too (rename(2) replaces an empty folder)
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            raise UsageError(f"--out {args.out} was filled while the queue was built (another export?): "
                             "pass a new folder") from e
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    durable.fsync_path(parent)
    return dataclasses.replace(result, folder=args.out)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = exit_codes.ArgumentParser(prog="python -m monitoring.labelling_queue", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logs", nargs="+", help="prediction log folders or files")
    parser.add_argument("--out", required=True, help="the queue folder to create (new or empty)")
    window.add_flags(parser)
    parser.add_argument("--low-confidence", type=float, default=0.5,
                        help="queue every request whose top-1 probability is below this (default: %(default)s)")
    parser.add_argument("--per-class", type=int, default=5,
                        help="and this many others drawn at random per predicted class (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="of the random draw (default: %(default)s)")
    parser.add_argument("--debug", action="store_true", help="raise an error with its traceback")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    if os.path.isdir(args.out) and os.listdir(args.out):
        raise UsageError(f"--out {args.out} is not empty: pass a new folder (a queue is one data drop)")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out {args.out} is a file; pass a folder to create")
    if args.per_class < 0 or not 0 <= args.low_confidence <= 1:
        raise UsageError("--per-class must be >= 0 and --low-confidence between 0 and 1")
    for path in args.logs:
        if not os.path.exists(path):
            raise UsageError(f"no such log file or folder: {path}")
    since, until, words = window.window(args)
    read = prediction_log.read_records(args.logs, since, until)
    if not read.records:
        raise DataError(f"no prediction log record from {words} in {', '.join(args.logs)}: widen the window "
                        "(--hours, --since) or check the log folder")
    result = _export_whole(read.records, args)
    low = sum(1 for r in result.queued if r["reason"] == LOW_CONFIDENCE)
    print(f"[queue] {len(result.queued)} image(s) in {os.path.join(args.out, QUEUE_DIR)} ({low} low-confidence, "
          f"{len(result.queued) - low} sampled) from {len(read.records)} requests from {words}; guesses in "
          f"{os.path.join(args.out, QUEUE_DIR, QUEUE_CSV)}", file=sys.stderr)
    if result.without_image:
        print(f"[queue] {result.without_image} selected request(s) without their image (not kept in the log, "
              "file gone): not queued; log with --log-image-bytes uncertain to keep them", file=sys.stderr)
    if result.duplicates:
        print(f"[queue] {result.duplicates} selected request(s) repeated an image already queued", file=sys.stderr)
    print(f"[queue] sort each file into {args.out}/<class>/, then run the pipeline with --data-dir {args.out}",
          file=sys.stderr)
    return exit_codes.OK


def main(argv: Optional[List[str]] = None) -> int:
    """The command line (see the module docstring); returns the exit status."""
    args = parse_args(argv)
    startup.keep_startup_output()
    exit_codes.stop_on_sigterm()  # a scheduler's stop is one line and exit 143, and leaves --out as it was
    try:
        return run(args)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - one line, a documented code
        return exit_codes.fail(e, args.debug)


if __name__ == "__main__":
    sys.exit(main())
