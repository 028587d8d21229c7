"""Bench 2: the Trainer's real input pipeline against the model-bound limit, in one run.

The same model (trainer_module.model.build_model, compiled by compile_model), batch and
resolution are trained for a fixed number of steps after warm-up steps from
  real       trainer_module.input_pipeline.make_dataset(training=True) on gzipped raw tf.Example TFRecords
             (ImageExampleGen's make_example on real images) through a Transform graph written by
             tft_beam (our preprocessing_fn): shuffle, decode + resize, random crop + flip, CutMix,
             with the decoded images kept in memory after the first pass as the Trainer does when
             they fit TrainConfig.decoded_cache_gb (timed after that pass: later epochs' speed);
  no-cache   the same with decoded_cache_gb=0: decode + resize every epoch;
  in-memory  batches taken from that pipeline once and held as tensors (the model-bound limit),
in rotating order over --rounds (one model.fit per measurement, so no pipeline runs in the
background of another's steps); the ratio of the medians is the figure of merit (target >= 0.95
on CPU). The input pipeline alone (no model) is timed first.

Two ratios are printed. Wall: images/s over images/s in-memory. CPU cost: CPU ms per image
in-memory over CPU ms per image of the row (process CPU time over the timed steps): on a machine
shared with other jobs the wall ratio is distorted (the input threads win scheduler share from
the other jobs), while the CPU cost is what the ratio becomes when the model alone keeps every
core busy, as MobileNetV3 training does on 2 cores.

    .venv/bin/python -m bench.trainer_input                          # 512 intel-dev images, batch 64, 224 px
    .venv/bin/python -m bench.trainer_input --rounds 3               # steadier
    .venv/bin/python -m bench.trainer_input --synthetic --n 64 --batch-size 8 --image-size 64 \\
        --resize-size 72 --steps 3 --warmup-steps 2 --rounds 1       # a minute or two, for a smoke test
"""
import argparse
import os
import statistics
import sys
import time

from bench import machine, raw_examples, tables, timers, transform_runs, workdir

TARGET_RATIO = 0.95


def add_common_args(p, n=512, batch=64, steps=20, warmup=5, rounds=2):
    p.add_argument("--data-dir", default=raw_examples.DEFAULT_DATA_DIR,
                   help="a folder of class folders (default: %(default)s)")
    p.add_argument("--synthetic", action="store_true",
                   help="generate 150x150 demo JPEGs (data_sources.demo_data) under --out instead of --data-dir")
    p.add_argument("--n", type=int, default=n, help="raw examples written (default %(default)s)")
    p.add_argument("--shards", type=int, default=1, help="TFRecord files")
    p.add_argument("--batch-size", type=int, default=batch)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--resize-size", type=int, default=256)
    p.add_argument("--model-variant", default="small", choices=("small", "large"))
    p.add_argument("--cutmix-probability", type=float, default=0.5)
    p.add_argument("--warmup-steps", type=int, default=warmup)
    p.add_argument("--steps", type=int, default=steps, help="timed steps per measurement")
    p.add_argument("--rounds", type=int, default=rounds, help="alternating (in-memory, real) rounds")
    p.add_argument("--input-batches", type=int, default=0,
                   help="batches timed for the input pipeline alone (default: --steps)")
    p.add_argument("--no-tft", action="store_true",
                   help="apply preprocessing_fn directly instead of a tft_beam-written graph")
    p.add_argument("--out", default="", help="output folder (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    return p.parse_args(argv)


def prepare_inputs(args, out):
    """Raw examples + the Transform graph; returns (files, classes, (tft_layer, how it was made, raw spec))."""
    if args.synthetic:
        args.data_dir = raw_examples.make_synthetic_images(os.path.join(out, "images"),
                                                           per_class=max(2, (args.n + 5) // 6))
    workdir.check_not_inside(out, args.data_dir)
    start = time.perf_counter()
    os.makedirs(os.path.join(out, "raw"), exist_ok=True)
    raw = raw_examples.write_raw_examples(args.data_dir, args.n, os.path.join(out, "raw", "data_tfrecord"),
                                          shards=args.shards)
    from trainer_module import preprocessing, train_config
    custom_config = train_config.transform_config(raw["classes"], args.resize_size)
    use_tft = not args.no_tft
    if use_tft:
        try:
            import tensorflow_transform  # noqa: F401
        except ImportError:
            print("tensorflow_transform is not installed: applying preprocessing_fn directly")
            use_tft = False
    graph_dir = None
    if use_tft:
        graph_dir = transform_runs.run_transform(os.path.join(out, "raw", "data_tfrecord-*"),
                                           preprocessing.preprocessing_fn, custom_config,
                                           os.path.join(out, "transform"), materialize=False)["transform_graph"]
    layer = transform_runs.transform_layer(graph_dir, custom_config)
    print(f"inputs: {raw['n']} raw examples ({tables.human_bytes(raw['file_bytes'] / raw['n'])}/example gz) "
          f"from {args.data_dir} via {raw['make_example']} ({raw['repeated']} repeats); "
          f"transform: {layer[1]}; prepared in {time.perf_counter() - start:.1f} s", flush=True)
    return raw["files"], raw["classes"], layer


MODE_LABELS = {
    "in-memory": "in-memory tensors (model-bound limit)",
    "real": "make_dataset as the Trainer runs it: decoded images kept in memory, crop/flip + CutMix",
    "no-cache": "make_dataset, decoded_cache_gb=0: records + Transform graph every epoch, crop/flip + CutMix",
}


def contention_note(mem_runs) -> str:
    """Whether in-memory training had every core (else wall-clock ratios are distorted by other jobs)."""
    cores = machine.usable_cores()
    used = statistics.median([r["cores_used"] for r in mem_runs])
    if used < 0.85 * cores:
        return (f"NOTE: in-memory training used {used:.2f} of {cores} cores: the machine was shared during "
                "the run, so wall-clock ratios are distorted (the input pipeline's threads also win CPU "
                "share from other processes). The CPU-cost ratio is the load-independent estimate.")
    return f"in-memory training used {used:.2f} of {cores} cores (machine not contended)."


def train_config(args, classes):
    """The TrainConfig of the bench's flags (the Trainer's defaults for everything else)."""
    from trainer_module.train_config import TrainConfig
    return TrainConfig(class_names=tuple(classes), batch_size=args.batch_size, image_size=args.image_size,
                       resize_size=args.resize_size, model_variant=args.model_variant,
                       cutmix_probability=args.cutmix_probability)


def main(argv=None) -> int:
    """Runs the bench with command-line arguments `argv` (default: sys.argv[1:]); returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    machine.print_header(__spec__.name, "Trainer input pipeline vs the model-bound limit", argv)
    out = workdir.make_out_dir(args.out, "bench_trainer_input_")
    files, classes, layer = prepare_inputs(args, out)

    import tf_keras as keras

    from trainer_module import input_pipeline as data_lib, model as model_lib

    cfg = train_config(args, classes)
    keras.mixed_precision.set_global_policy("float32")  # what the Trainer uses on CPU ("auto")
    keras.utils.set_random_seed(cfg.seed)
    spec = layer[2]
    n_records = data_lib.count_examples(files)
    cached = n_records if data_lib.cache_fits(n_records, cfg) else None
    datasets = {"real": data_lib.make_dataset(files, layer[0], spec, cfg, training=True, cached_examples=cached),
                "no-cache": data_lib.make_dataset(files, layer[0], spec, cfg, training=True)}
    datasets["in-memory"] = timers.in_memory_dataset(datasets["real"], batches=1)
    cache_note = (f"cached ({tables.human_bytes(data_lib.decoded_cache_bytes(n_records, cfg))})" if cached
                  else "NOT cached (over budget)")
    print(f"config: MobileNetV3 {cfg.model_variant}, batch {cfg.batch_size}, crop {cfg.image_size} of "
          f"{cfg.resize_size}, flip {cfg.random_flip}, CutMix p={cfg.cutmix_probability}, decoded images "
          f"{cache_note}, no-cache shuffle buffer {cfg.shuffle_buffer} records, {cfg.optimizer} lr "
          f"{cfg.learning_rate}, weights {cfg.weights}; {args.warmup_steps} warm-up + {args.steps} timed steps, "
          f"{args.rounds} round(s)", flush=True)

    input_batches = args.input_batches or args.steps
    alone = {}
    for mode in [m for m in datasets if m != "in-memory"]:
        alone[mode] = timers.time_iterate(datasets[mode], warmup_batches=args.warmup_steps,
                                          batches=input_batches)
        print(f"  input pipeline alone, {mode}: {alone[mode]['images_per_s']:,.0f} images/s, "
              f"{alone[mode]['cpu_ms_per_image']:.2f} CPU ms/image", flush=True)

    model = model_lib.build_model(cfg)
    model_lib.compile_model(model, cfg, cfg.learning_rate)
    modes = ["in-memory", "real", "no-cache"]  # trained from: the limit, the pipeline, without its cache
    runs = {m: [] for m in modes}
    for r in range(args.rounds):
        order = modes[r % len(modes):] + modes[:r % len(modes)]  # rotate: drift hits every mode
        for mode in order:
            res = timers.time_fit(model, datasets[mode], args.warmup_steps, args.steps, cfg.batch_size)
            runs[mode].append(res)
            print(f"  round {r} {mode:9s}: {res['images_per_s']:6.1f} images/s ({res['step_ms']:.0f} ms/step, "
                  f"{res['cpu_ms_per_image']:.1f} CPU ms/image, {res['cores_used']:.2f} cores, "
                  f"loss {res['last_loss']:.3f})", flush=True)

    def med(mode, key):
        return statistics.median([x[key] for x in runs[mode]])

    mem, mem_cpu = med("in-memory", "images_per_s"), med("in-memory", "cpu_ms_per_image")
    rows = []
    for mode in modes:
        rows.append([MODE_LABELS[mode], med(mode, "images_per_s"),
                     " / ".join(f"{x['images_per_s']:.1f}" for x in runs[mode]), med(mode, "step_ms"),
                     med(mode, "cpu_ms_per_image"), med(mode, "cores_used"), med(mode, "images_per_s") / mem,
                     mem_cpu / med(mode, "cpu_ms_per_image")])
    for mode, res in alone.items():
        rows.append([f"input pipeline alone ({mode}, no model)", res["images_per_s"], "-", "-",
                     res["cpu_ms_per_image"], res["cores_used"], res["images_per_s"] / mem,
                     mem_cpu / res["cpu_ms_per_image"]])
    print()
    print(f"Training throughput, MobileNetV3 {cfg.model_variant}, batch {cfg.batch_size}, {cfg.image_size} px, "
          f"{args.steps} timed steps after {args.warmup_steps} warm-up, median of {args.rounds} round(s); "
          f"transform: {layer[1]}; peak RSS {machine.peak_rss_mib():,.0f} MiB")
    print(tables.format_table(["input", "images/s (median)", "per round", "ms/step", "CPU ms/image",
                               "cores used", "x in-memory (wall)", "x in-memory (CPU cost)"], rows))
    print(contention_note(runs["in-memory"]))
    print("CPU-cost ratio = CPU ms/image in-memory / CPU ms/image of the row: the throughput ratio when "
          "the model alone keeps every core busy (a lower bound when it does not).")
    print()
    print("Targets")
    trows = []
    for mode in [m for m in modes if m != "in-memory"]:
        wall = med(mode, "images_per_s") / mem
        cost = mem_cpu / med(mode, "cpu_ms_per_image")
        trows.append([f"{mode}: Trainer throughput >= {TARGET_RATIO}x the in-memory limit (CPU)",
                      f"{wall:.3f}x wall, {cost:.3f}x CPU cost",
                      f"wall {tables.verdict(wall >= TARGET_RATIO)}, CPU cost {tables.verdict(cost >= TARGET_RATIO)}"])
    print(tables.format_table(["target", "measured", "verdict"], trows))
    sys.stdout.flush()
    workdir.remove_out_dir_unless_kept(out, keep=bool(args.out or args.keep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
