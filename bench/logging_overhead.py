"""The cost of the prediction log per request: predict's classify_batches on the same images with and
without a RequestLogger (every request logged: content statistics of the decoded image, one JSON line
appended), one request per call as a serving client sends them, in alternating rounds so both
sides see the same machine load.

    python -m bench.logging_overhead --model SERVING_DIR [--images FOLDER] [--requests 100] [--rounds 3]

--images: a folder of images (only read); default: demo images (150 px) generated in a temporary
folder. Prints the command, the machine, and per-request wall ms (median over rounds) with and
without logging, and their ratio.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from bench import machine  # noqa: E402
from common import prediction_log  # noqa: E402
from data_sources import demo_data  # noqa: E402
from serving_client import predict  # noqa: E402

MODULE = "bench.logging_overhead"


def parse_args(argv):
    p = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="serving dir, version dir or Trainer model artifact")
    p.add_argument("--images", help="image folder (default: generated demo images)")
    p.add_argument("--requests", type=int, default=100, help="requests per round and side (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default: %(default)s)")
    return p.parse_args(argv)


def _per_request_ms(signature, paths, log) -> float:
    start = time.perf_counter()
    for _ in predict.classify_batches(signature, paths, batch_size=1, log=log):
        pass
    return 1000 * (time.perf_counter() - start) / len(paths)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    machine.print_header(MODULE, "prediction log overhead per request", argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.images or demo_data.make_demo_dataset(os.path.join(tmp, "demo"), 10, 5, seed=0)
        paths = predict.list_images([folder]).files
        paths = (paths * (args.requests // max(1, len(paths)) + 1))[:args.requests]
        _loaded, signature = predict.load_signature(args.model)
        logger = prediction_log.RequestLogger(prediction_log.LogSettings(os.path.join(tmp, "logs")),
                                              prediction_log.SOURCE_PREDICT, "bench")
        _per_request_ms(signature, paths[:5], None)  # warm-up: tracing, first decode
        _per_request_ms(signature, paths[:5], logger)
        plain, logged = [], []
        for _ in range(args.rounds):
            plain.append(_per_request_ms(signature, paths, None))
            logged.append(_per_request_ms(signature, paths, logger))
        logger.close()
        size = sum(os.path.getsize(p) for p in prediction_log.log_files([os.path.join(tmp, "logs")]))
        records = logger.writer.written
    p, lg = statistics.median(plain), statistics.median(logged)
    print(f"\n{len(paths)} requests x {args.rounds} rounds per side, batch 1; model {args.model}\n")
    print("| side | ms per request (median of rounds) | rounds |")
    print("|---|---|---|")
    print(f"| predict | {p:.2f} | {', '.join(f'{v:.2f}' for v in plain)} |")
    print(f"| predict + log | {lg:.2f} | {', '.join(f'{v:.2f}' for v in logged)} |")
    print(f"\nratio (with / without logging): {lg / p:.3f}; overhead {lg - p:.2f} ms per request; "
          f"{size / max(1, records):.0f} bytes per record")
    return 0


if __name__ == "__main__":
    sys.exit(main())
