"""Bench 3: the whole pipeline at two sizes: wall time per component, peak RSS, disk per artifact.

Runs `local_runner.main` (LocalDagRunner, Beam DirectRunner in memory, SQLite ML Metadata) in a
child process on
  x1   the given data folder (read in place), and
  xK   a K-times bigger copy under --out (every file copied K times, as r<k>_<name>: copies,
       not links, since ImageExampleGen reads a file reached twice through links only once),
each into its own output folder (fresh ML Metadata, no cache). Per component it reports the
wall time between LocalDagRunner's "Component X is running." and "... is finished." log records
(ML Metadata execution times as a fallback), the peak RSS of the run (the child's ru_maxrss from
wait4, and the process tree's RSS sampled every 0.5 s), and the bytes of each output artifact.
Growth per component is (cost at xK / cost at x1) / K: <= 1 means no faster than linear.

    # small check (one size, one epoch; several minutes on 2 cores):
    .venv/bin/python -m bench.pipeline_scale --repeat 1 --epochs 1
    # the scale run of the issue (3,600 -> 18,000 intel-dev images; ~11 min on a quiet 2-core machine):
    .venv/bin/python -m bench.pipeline_scale --repeat 5 --epochs 1 --out /tmp/bench_scale
    # any local_runner flag after `--`:
    .venv/bin/python -m bench.pipeline_scale --repeat 1 --epochs 1 -- --batch-size 32

The data folder is only read. Outputs go under --out (default: a temporary folder, kept: the
artifacts are the evidence).
"""
import argparse
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time

from bench import machine, raw_examples, tables, workdir
from pipeline.configs import REPO_ROOT

DEFAULT_DATA_ROOT = os.path.dirname(raw_examples.DEFAULT_DATA_DIR)  # ../shared/data/intel-dev
TARGET_PEAK_RSS_GB = 12.0
LINEAR_TOLERANCE = 1.10  # growth/K above this is reported as faster than linear ...
LINEAR_SLACK_S = 5.0  # ... when it also costs this many seconds more than K times the x1 time
_MARKER = re.compile(r"Component (\S+) is (running|finished)\.")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=DEFAULT_DATA_ROOT, help="the data folder (default: %(default)s)")
    p.add_argument("--repeat", type=int, default=5, help="K: the bigger set repeats every file K times; "
                                                          "1 runs the given folder only")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--out", default="", help="output folder (default: a new temporary folder)")
    p.add_argument("--timeout-s", type=float, default=4 * 3600, help="per pipeline run")
    p.add_argument("--report", default="", help="only print the tables of a saved bench_results.json")
    p.add_argument("--child", default="", help=argparse.SUPPRESS)
    p.add_argument("runner_args", nargs="*", help="extra local_runner flags, after `--`")
    return p.parse_args(argv)


def _dump_json(obj, path: str) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, default=str)


# ---------------------------------------------------------------------------------------------
# Child: run the pipeline, record the component start/finish log records with their times.
# ---------------------------------------------------------------------------------------------

class _MarkerHandler(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.INFO)
        self.events = []

    def emit(self, record):
        try:
            match = _MARKER.search(record.getMessage())
        except Exception:  # noqa: BLE001  (never break the pipeline's logging)
            return
        if match:
            self.events.append((match.group(1), match.group(2), record.created))


def child_main(events_path: str, runner_argv) -> int:
    """Runs local_runner.main in this process and records the component log markers to events_path."""
    os.chdir(REPO_ROOT)
    import local_runner
    handler = _MarkerHandler()
    logging.getLogger("absl").addHandler(handler)  # LocalDagRunner logs through absl
    start = time.time()
    try:
        return local_runner.main(runner_argv)
    finally:
        _dump_json({"start": start, "end": time.time(), "events": handler.events}, events_path)


# ---------------------------------------------------------------------------------------------
# Parent.
# ---------------------------------------------------------------------------------------------

def make_repeated(src: str, dst: str, k: int) -> int:
    """Every file of `src` k times under `dst` (same folders, names r<i>_<name>); returns the count."""
    import shutil
    n = 0
    for d, _, files in os.walk(src, followlinks=True):
        rel = os.path.relpath(d, src)
        os.makedirs(os.path.join(dst, rel), exist_ok=True)
        for f in sorted(files):
            for i in range(k):
                target = os.path.join(dst, rel, f"r{i}_{f}")
                if os.path.lexists(target):
                    os.remove(target)
                shutil.copyfile(os.path.join(d, f), target)
                n += 1
    return n


def _tree_rss(pid: int) -> int:
    import psutil
    try:
        proc = psutil.Process(pid)
        procs = [proc] + proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def runner_argv(data_dir: str, out_dir: str, args):
    """local_runner flags of one run: fresh output folder, no cache, a gate that always passes
    (so the Pusher does the same work at every size), then the user's extra flags."""
    return ["--data-dir", data_dir, "--output-dir", out_dir, "--epochs", str(args.epochs),
            "--no-enable-cache", "--accuracy-lower-bound", "0.0", "--class-recall-lower-bound", "0.0",
            *args.runner_args]


def runner_config(data_dir: str, out_dir: str, args):
    import local_runner
    cfg, _ = local_runner.parse_args(runner_argv(data_dir, out_dir, args))
    return cfg


def run_pipeline(data_dir: str, out_dir: str, args):
    """Runs the pipeline in a child; returns (rc, wall s, ru_maxrss bytes, sampled tree peak, events)."""
    os.makedirs(out_dir, exist_ok=True)
    events_path = os.path.join(out_dir, "bench_events.json")
    log_path = os.path.join(out_dir, "pipeline.log")
    timeout_s = args.timeout_s
    cmd = [sys.executable, "-m", __spec__.name, "--child", events_path, "--", *runner_argv(data_dir, out_dir, args)]
    print(f"  running: {' '.join(cmd[3:])}\n  log: {log_path}", flush=True)
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", PYTHONUNBUFFERED="1")
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env)
        samples = []  # (epoch seconds, tree RSS bytes)
        done = threading.Event()

        def sample():
            while not done.is_set():
                samples.append((time.time(), _tree_rss(proc.pid)))
                done.wait(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        timer = threading.Timer(timeout_s, proc.kill)
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        timer.cancel()
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    events = {}
    if os.path.exists(events_path):
        with open(events_path) as f:
            events = json.load(f)
    events["rss_samples"] = samples
    return proc.returncode, wall, usage.ru_maxrss * 1024, max((r for _, r in samples), default=0), events


def component_peak_rss(events):
    """{component: peak sampled RSS bytes while it ran} (0.5 s samples between its log markers)."""
    samples, started, peaks = events.get("rss_samples", []), {}, {}
    for node, what, t in events.get("events", []):
        if what == "running":
            started[node] = t
        elif node in started:
            t0 = started.pop(node)
            inside = [r for ts, r in samples if t0 <= ts <= t]
            peaks[node] = max(inside) if inside else float("nan")
    return peaks


def component_times(events, metadata_path: str):
    """{component: seconds} from the log markers; ML Metadata execution times fill the gaps."""
    times, started = {}, {}
    for node, what, t in events.get("events", []):
        if what == "running":
            started[node] = t
        elif node in started:
            times[node] = t - started.pop(node)
    try:
        from common import store as run_store
        mlmd = run_store.open_readonly(metadata_path)
        node_type = mlmd.get_context_type("node").id
        for execution in mlmd.get_executions():
            ctx = [c for c in mlmd.get_contexts_by_execution(execution.id) if c.type_id == node_type]
            node = ctx[0].name.split(".", 1)[-1] if ctx else str(execution.id)
            if node not in times:
                times[node] = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000
    except Exception as e:  # noqa: BLE001
        print(f"  (ML Metadata not read: {e})")
    return times


def artifact_sizes(metadata_path: str):
    """{'Component.output': bytes} of every output artifact of the run."""
    from common import store as run_store
    sizes = {}
    for node_id, node in run_store.read_run(metadata_path).items():
        for key, artifacts in node.outputs.items():
            for a in artifacts:
                if a.uri and os.path.exists(a.uri):
                    sizes[f"{node_id}.{key}"] = sizes.get(f"{node_id}.{key}", 0) + workdir.dir_bytes(a.uri)
    return sizes


def count_images(root: str) -> int:
    """Files in class folders under `root`, by ImageExampleGen's layout rules (what it will read)."""
    from components.image_example_gen import image_files
    return len(image_files.list_image_files(root).files)


def main(argv=None) -> int:
    """Runs the bench with command-line arguments `argv` (default: sys.argv[1:]); returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.child:
        return child_main(args.child, args.runner_args)
    if args.report:
        with open(args.report) as f:
            saved = json.load(f)
        return report({int(k): v for k, v in saved["results"].items()}, saved["epochs"], saved["runner_args"],
                      args.report)
    machine.print_header(__spec__.name, "the whole pipeline at two sizes", argv)
    data_dir = os.path.abspath(args.data_dir)
    if not os.path.isdir(data_dir):
        raise SystemExit(f"data folder not found: {data_dir}")
    out = workdir.make_out_dir(args.out, "bench_scale_")
    workdir.check_not_inside(out, data_dir)
    print(f"data: {data_dir}; sizes x1{'' if args.repeat == 1 else f' and x{args.repeat}'}; "
          f"epochs {args.epochs}; out: {out}", flush=True)

    sizes = [1] + ([args.repeat] if args.repeat > 1 else [])
    results = {}
    for k in sizes:
        if k == 1:
            src = data_dir
        else:
            src = os.path.join(out, f"data_x{k}")
            n = make_repeated(data_dir, src, k)
            print(f"x{k}: {n} copies under {src}", flush=True)
        run_out = os.path.join(out, f"run_x{k}")
        print(f"x{k}: {count_images(src):,} labelled images", flush=True)
        rc, wall, maxrss, tree_peak, events = run_pipeline(src, run_out, args)
        metadata = runner_config(src, run_out, args).metadata_path
        times = component_times(events, metadata) if os.path.exists(metadata) else {}
        sizes_b = artifact_sizes(metadata) if os.path.exists(metadata) else {}
        results[k] = dict(rc=rc, wall=wall, maxrss=maxrss, tree_peak=tree_peak, times=times, bytes=sizes_b,
                          rss=component_peak_rss(events), images=count_images(src),
                          log=os.path.join(run_out, "pipeline.log"))
        print(f"x{k}: rc {rc}, {wall:.0f} s, peak RSS {maxrss / 1e9:.2f} GB (ru_maxrss), "
              f"{tree_peak / 1e9:.2f} GB (sampled tree)", flush=True)
        if rc != 0:
            print(f"x{k}: the pipeline FAILED (rc {rc}); see {results[k]['log']}")
    _dump_json({"epochs": args.epochs, "runner_args": args.runner_args, "results": results},
                       os.path.join(out, "bench_results.json"))
    return report(results, args.epochs, args.runner_args, os.path.join(out, "bench_results.json"))


def report(results, epochs, runner_args, results_path) -> int:
    """The tables and targets of one bench run ({size K: result})."""
    sizes = sorted(results)
    big = sizes[-1]
    print()
    print(f"Runs (epochs {epochs}; Beam DirectRunner in memory, 1 worker; extra flags: "
          f"{' '.join(runner_args) or '(none)'})")
    print(tables.format_table(
        ["size", "labelled images", "rc", "wall s", "peak RSS GB (ru_maxrss)", "peak RSS GB (sampled tree)"],
        [[f"x{k}", r["images"], r["rc"], r["wall"], r["maxrss"] / 1e9, r["tree_peak"] / 1e9]
         for k, r in results.items()]))

    nodes = list(dict.fromkeys(node for r in results.values() for node in r["times"]))  # in the order they ran
    rows, superlinear = [], []
    for node in nodes:
        row = [node] + [results[k]["times"].get(node, float("nan")) for k in sizes]
        row += [results[k]["rss"].get(node, float("nan")) / 1e9 for k in sizes]
        if big > 1:
            t1, tk = results[1]["times"].get(node), results[big]["times"].get(node)
            growth = (tk / t1) / big if t1 and tk else float("nan")
            row += [tk / t1 if t1 and tk else float("nan"), growth]
            # faster than linear, by more than noise on a component of a few seconds
            if growth == growth and growth > LINEAR_TOLERANCE and tk - big * t1 > LINEAR_SLACK_S:
                superlinear.append(node)
        rows.append(row)
    headers = (["component"] + [f"x{k} s" for k in sizes] + [f"x{k} peak RSS GB" for k in sizes]
               + ([f"x{big}/x1 time", f"growth (x{big}/x1)/{big}"] if big > 1 else []))
    print()
    print("Wall time per component (LocalDagRunner 'is running' -> 'is finished' log records) and the "
          "peak RSS sampled while it ran")
    print(tables.format_table(headers, rows))

    keys = sorted(set().union(*(r["bytes"] for r in results.values())))
    drows = []
    for key in keys:
        row = [key] + [tables.human_bytes(results[k]["bytes"].get(key, 0)) for k in sizes]
        if big > 1:
            b1, bk = results[1]["bytes"].get(key, 0), results[big]["bytes"].get(key, 0)
            row += [bk / b1 if b1 else float("nan")]
        drows.append(row)
    print()
    print("Disk per output artifact")
    print(tables.format_table(["artifact"] + [f"x{k}" for k in sizes] + ([f"x{big}/x1"] if big > 1 else []),
                              drows))

    peak = max(max(r["maxrss"], r["tree_peak"]) for r in results.values()) / 1e9
    print()
    print("Targets")
    trows = [[f"peak RSS of the x{big} run <= {TARGET_PEAK_RSS_GB:.0f} GB",
              f"{max(results[big]['maxrss'], results[big]['tree_peak']) / 1e9:.2f} GB "
              f"({results[big]['images']:,} images)",
              tables.verdict(max(results[big]["maxrss"], results[big]["tree_peak"]) / 1e9 <= TARGET_PEAK_RSS_GB)
              + ("" if results[big]["images"] >= 17000 else " (at this size; the target is for ~17,000 images)")]]
    if big > 1:
        trows.append([f"every component grows no faster than linearly (growth <= {LINEAR_TOLERANCE} "
                      f"or < {LINEAR_SLACK_S:.0f} s over linear)",
                      "faster than linear: " + (", ".join(superlinear) or "none"), tables.verdict(not superlinear)])
    trows.append(["every run finished", ", ".join(f"x{k}: rc {r['rc']}" for k, r in results.items()),
                  tables.verdict(all(r["rc"] == 0 for r in results.values()))])
    print(tables.format_table(["target", "measured", "verdict"], trows))
    print(f"\nresults: {results_path}; peak over all runs {peak:.2f} GB")
    return 0 if all(r["rc"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
