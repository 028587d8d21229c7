"""Bench 1: Transform throughput at the margin and bytes per example the Trainer reads.

Side by side in one run, on the same gzipped tf.Example TFRecords (ImageExampleGen's
make_example on real image files):

  ours    trainer_module.preprocessing.preprocessing_fn, as the pipeline runs it
          (materialize=False): tft_beam.AnalyzeDataset + WriteTransformFn, graph only. The
          Trainer reads the raw examples and applies the graph on the fly.
  anchor  bench.anchor_preprocessing, the TFX cifar10 example's approach: decode with map_fn,
          resize to 224, float32, materialised (AnalyzeAndTransformDataset, the transformed
          examples written as gzipped tf.Examples like TFX's Transform executor).

Each runs through tensorflow_transform.beam on the DirectRunner (in memory, one worker: the
pipeline's LOCAL_BEAM_ARGS) on N and 2N examples; the marginal throughput is N / (t(2N) - t(N))
(start-up, tracing and graph saving cancel out). Because our Transform does no per-example work,
the decode + resize moves to the Trainer: the script also times our graph applied to the same
records in tf.data (what every training epoch pays), and the anchor Trainer's read of its
materialised float32 records, so the comparison is honest.

    .venv/bin/python -m bench.transform_throughput                      # N=256 on intel-dev/train
    .venv/bin/python -m bench.transform_throughput --n 512 --repeats 2  # bigger, best of 2
    .venv/bin/python -m bench.transform_throughput --synthetic --n 32   # generated images

The data folder is only read; everything is written under --out (default: a temporary folder,
removed at the end unless --keep).
"""
import argparse
import os
import shutil
import sys
import time

from bench import machine, raw_examples, tables, transform_runs, workdir

TARGET_MARGINAL_RATIO = 20.0  # ours / anchor
TARGET_BYTES_RATIO = 0.3  # ours / anchor


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=raw_examples.DEFAULT_DATA_DIR,
                   help="a folder of class folders (default: %(default)s)")
    p.add_argument("--synthetic", action="store_true",
                   help="generate 150x150 demo JPEGs (data_sources.demo_data) under --out instead of --data-dir")
    p.add_argument("--n", type=int, default=256, help="examples of the small set; the big one has 2N")
    p.add_argument("--repeats", type=int, default=1, help="timed runs of each (variant, size); best kept")
    p.add_argument("--shards", type=int, default=1, help="TFRecord files per set")
    p.add_argument("--resize-size", type=int, default=256, help="our preprocessing_fn's resize (TrainConfig)")
    p.add_argument("--anchor-size", type=int, default=224, help="the anchor's resize (cifar10: 224)")
    p.add_argument("--skip-anchor", action="store_true", help="ours only (no ratios)")
    p.add_argument("--no-warmup", action="store_true",
                   help="skip the untimed warm-up run (imports, Beam and TFT start-up then fall in t(N) of ours)")
    p.add_argument("--out", default="", help="output folder (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return p.parse_args(argv)


def _passes(n_records, batch=64, min_batches=8):
    """Passes over the records for at least `min_batches` timed batches (and at least 2 passes)."""
    return max(2, -(-min_batches * batch // max(n_records, 1)))


def _decode_throughput(files, tft_layer, raw_spec, passes=2, batch=64):
    """Images/s of our Transform graph in tf.data, as the Trainer applies it (no augmentation)."""
    import tensorflow as tf

    from trainer_module import input_pipeline, names

    spec = {k: raw_spec[k] for k in (names.IMAGE_KEY, names.LABEL_KEY)}

    def transform(serialized):
        out = tft_layer(tf.io.parse_example(serialized, spec))
        return out[names.TRANSFORMED_IMAGE_KEY], out[names.TRANSFORMED_ONE_HOT_KEY]

    ds = (tf.data.TFRecordDataset(files, compression_type="GZIP").repeat(passes)
          .batch(input_pipeline._DECODE_BATCH).map(transform, num_parallel_calls=tf.data.AUTOTUNE)
          .unbatch().batch(batch).prefetch(tf.data.AUTOTUNE))
    return _iterate_all(ds)


def _anchor_read_throughput(files, size, passes=2, batch=64):
    """Images/s of the anchor's Trainer reading its materialised float32 records (parse only)."""
    import tensorflow as tf

    from bench import anchor_preprocessing
    image_key, label_key = anchor_preprocessing.ANCHOR_IMAGE_KEY, anchor_preprocessing.ANCHOR_LABEL_KEY
    spec = {image_key: tf.io.FixedLenFeature([size, size, 3], tf.float32),
            label_key: tf.io.FixedLenFeature([], tf.int64)}

    def parse(serialized):
        features = tf.io.parse_example(serialized, spec)
        return features[image_key], features[label_key]

    ds = (tf.data.TFRecordDataset(files, compression_type="GZIP").repeat(passes).batch(batch)
          .map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))
    return _iterate_all(ds)


def _iterate_all(ds):
    """Images/s over the whole dataset after its first batch (tracing and file opening excluded)."""
    it = iter(ds)
    next(it)
    images, start = 0, time.perf_counter()
    for x, _ in it:
        images += int(x.shape[0])
    seconds = time.perf_counter() - start
    return images / seconds if seconds > 0 else float("nan"), images, seconds


def _record_bytes(files):
    """Mean uncompressed record size."""
    import tensorflow as tf
    n, total = 0, 0
    for r in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        n += 1
        total += len(r.numpy())
    return total / max(n, 1)


def main(argv=None) -> int:
    """Runs the bench with command-line arguments `argv` (default: sys.argv[1:]); returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    machine.print_header(__spec__.name, "Transform at the margin, bytes the Trainer reads", argv)
    if args.n < 8:
        raise SystemExit("--n must be >= 8")
    out = workdir.make_out_dir(args.out, "bench_transform_")
    if args.synthetic:
        args.data_dir = raw_examples.make_synthetic_images(os.path.join(out, "images"),
                                                           per_class=max(2, (2 * args.n + 5) // 6))
    workdir.check_not_inside(out, args.data_dir)
    print(f"data: {args.data_dir}; N={args.n} and 2N={2 * args.n} examples; out: {out}", flush=True)

    from bench import anchor_preprocessing  # TensorFlow loads here, not for --help
    from trainer_module import preprocessing, train_config

    sizes = {"N": args.n, "2N": 2 * args.n}
    raw = {}
    for label, n in sizes.items():
        os.makedirs(os.path.join(out, f"raw_{label}"), exist_ok=True)
        raw[label] = raw_examples.write_raw_examples(
            args.data_dir, n, os.path.join(out, f"raw_{label}", "data_tfrecord"), shards=args.shards)
    info = raw["2N"]
    print(f"raw examples via {info['make_example']}: {info['folder_images']} images in the folder, "
          f"{info['skipped']} undecodable skipped, {info['repeated']} repeats to reach 2N", flush=True)
    classes = raw["N"]["classes"]

    variants = {"ours": (preprocessing.preprocessing_fn,
                         train_config.transform_config(classes, args.resize_size), False)}
    if not args.skip_anchor:
        variants["anchor"] = (anchor_preprocessing.preprocessing_fn,
                              {anchor_preprocessing.ANCHOR_SIZE_KEY: args.anchor_size}, True)

    def run(variant, label, tag):
        fn, custom_config, materialize = variants[variant]
        work = os.path.join(out, f"{variant}_{label}_{tag}")
        shutil.rmtree(work, ignore_errors=True)
        pattern = os.path.join(out, f"raw_{label}", "data_tfrecord-*")
        result = transform_runs.run_transform(pattern, fn, custom_config, work, materialize)
        print(f"  {variant:6s} {label:2s} ({tag}): {result['seconds']:.1f} s", flush=True)
        return result

    if not args.no_warmup:
        print("warm-up (untimed): one Beam run of ours on N (imports, Beam and TFT start-up)", flush=True)
        run("ours", "N", "warmup")
    timings = {(v, s): [] for v in variants for s in sizes}
    results = {}
    for r in range(args.repeats):
        for variant in variants:  # interleaved, so a load change on the shared machine hits both
            for label in sizes:
                res = run(variant, label, f"rep{r}")
                timings[(variant, label)].append(res["seconds"])
                results[(variant, label)] = res

    rows, summary = [], {}
    for variant in variants:
        t_n, t_2n = min(timings[(variant, "N")]), min(timings[(variant, "2N")])
        dt = t_2n - t_n
        marginal = args.n / dt if dt > 0 else float("inf")
        fixed = t_n - (args.n / marginal if dt > 0 else 0.0)
        if variant == "ours":  # the Trainer reads the raw examples
            reads_files = raw["2N"]["files"]
            reads_bytes = raw["2N"]["file_bytes"] / raw["2N"]["n"]
            reads_record = raw["2N"]["record_bytes"] / raw["2N"]["n"]
            what = f"graph only (decode+resize {args.resize_size} in the Trainer); Trainer reads raw examples"
        else:
            reads_files = results[(variant, "2N")]["transformed_files"]
            reads_bytes = results[(variant, "2N")]["transformed_bytes"] / sizes["2N"]
            reads_record = _record_bytes(results[(variant, "N")]["transformed_files"])
            what = f"decode+resize {args.anchor_size}, float32 materialised; Trainer reads those"
        summary[variant] = dict(t_n=t_n, t_2n=t_2n, dt=dt, marginal=marginal, fixed=fixed,
                                reads_bytes=reads_bytes, reads_files=reads_files, reads_record=reads_record)
        rows.append([variant, what, t_n, t_2n,
                     f"{marginal:,.0f}" if dt > 0 else f"no measurable per-example cost (dt={dt:+.2f} s)",
                     fixed, tables.human_bytes(reads_bytes), tables.human_bytes(reads_record),
                     tables.human_bytes(results[(variant, "N")]["graph_bytes"])])

    raw_files_per_image = raw["2N"]["image_file_bytes"] / raw["2N"]["n"]
    print()
    print(f"Transform through tft_beam (DirectRunner in memory, 1 worker), N={args.n}, 2N={2 * args.n}; "
          f"best of {args.repeats}; the image files average {tables.human_bytes(raw_files_per_image)}")
    print(tables.format_table(
        ["variant", "what Transform does", "t(N) s", "t(2N) s", "marginal images/s", "fixed s",
         "Trainer reads per example (gz file)", "record, uncompressed", "transform graph"], rows))

    # Per-epoch work the Trainer does on what it reads (the cost our Transform moves to the Trainer).
    tft_layer, how, raw_spec = transform_runs.transform_layer(results[("ours", "2N")]["transform_graph"], None)
    passes = _passes(raw["2N"]["n"])
    decode_rate, decode_n, _ = _decode_throughput(raw["2N"]["files"], tft_layer, raw_spec, passes=passes)
    trows = [["ours", f"parse + Transform graph ({how}): decode + resize {args.resize_size}, per epoch",
              decode_rate, decode_n]]
    if "anchor" in summary:
        read_rate, read_n, _ = _anchor_read_throughput(summary["anchor"]["reads_files"], args.anchor_size,
                                                       passes=passes)
        trows.append(["anchor", "gunzip + parse materialised float32 pixels, per epoch", read_rate, read_n])
    print()
    print(f"Trainer-side input work in tf.data ({passes} passes over the 2N records, batch 64, AUTOTUNE, "
          "first batch untimed; no augmentation, no model)")
    print(tables.format_table(["variant", "work per example", "images/s", "images timed"], trows))

    if "anchor" in summary:
        ours, anchor = summary["ours"], summary["anchor"]
        ratio = anchor["dt"] / ours["dt"] if ours["dt"] > 0 else float("inf")
        bytes_ratio = ours["reads_bytes"] / anchor["reads_bytes"]
        print()
        print("Targets")
        print(tables.format_table(["target", "measured", "verdict"], [
            ["Transform marginal throughput >= 20x the float32 anchor",
             f"{ratio:,.1f}x" if ratio != float("inf") else "ours has no measurable per-example cost",
             tables.verdict(ratio >= TARGET_MARGINAL_RATIO)],
            ["bytes per example the Trainer reads <= 0.3x the anchor's",
             f"{bytes_ratio:.3f}x ({tables.human_bytes(ours['reads_bytes'])} vs "
             f"{tables.human_bytes(anchor['reads_bytes'])})", tables.verdict(bytes_ratio <= TARGET_BYTES_RATIO)],
            ["(context) our per-epoch decode in tf.data vs the anchor's per-epoch read",
             f"{decode_rate:,.0f} vs {trows[1][2]:,.0f} images/s", "-"],
        ]))
    sys.stdout.flush()
    workdir.remove_out_dir_unless_kept(out, keep=bool(args.out or args.keep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
