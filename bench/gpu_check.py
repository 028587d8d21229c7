"""Bench 4: a GPU check in under 5 minutes: Trainer throughput with and without mixed precision
against the in-memory limit, and the input pipeline alone, as one table, with self-checks.

For each precision (default float32 and mixed_float16) the same model (build_model, compile_model)
trains a fixed number of steps after warm-up from in-memory tensors (the model-bound limit) and
from trainer_module.input_pipeline.make_dataset (raw examples -> Transform graph -> crop/flip -> CutMix),
under the Trainer's strategy (MirroredStrategy over the visible GPUs; per-replica batch). The
input pipeline alone (no model) is timed once. Self-checks (exit 1 when one fails): a GPU is
visible (unless --allow-cpu), the policy is in force (layer compute dtype), the softmax output
is float32, losses are finite, the run stays inside --budget-s.

Needs only tensorflow (with CUDA), tf_keras, numpy and pillow: the examples are written by
ImageExampleGen's make_example (components/image_example_gen/records.py, TensorFlow only), and
without TF Transform it applies preprocessing_fn directly (the same ops as the Transform graph);
the table says which. Without the intel-dev
folder it generates 150x150 demo JPEGs (data_sources.demo_data).

    python -m bench.gpu_check                                  # on the GPU machine (~2-4 min)
    python -m bench.gpu_check --allow-cpu --tiny               # CPU self-check of the script (~2 min)
    python -m bench.gpu_check --precisions float32,mixed_float16,mixed_bfloat16
"""
import argparse
import math
import os
import sys
import time

from bench import machine, raw_examples, tables, timers, trainer_input, workdir

TINY = dict(n=48, batch_size=8, image_size=64, resize_size=72, steps=3, warmup_steps=2, input_batches=4)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    trainer_input.add_common_args(p, n=1024, batch=128, steps=30, warmup=10, rounds=1)
    p.add_argument("--precisions", default="float32,mixed_float16",
                   help="comma-separated Keras policies (default: %(default)s)")
    p.add_argument("--allow-cpu", action="store_true", help="run without a GPU (checks the script itself)")
    p.add_argument("--tiny", action="store_true", help=f"tiny sizes for a CPU check: {TINY}")
    p.add_argument("--budget-s", type=float, default=300.0, help="self-check: the whole run takes less")
    args = p.parse_args(argv)
    if args.tiny:
        for key, value in TINY.items():
            setattr(args, key, value)
    return args


def _model_dtypes(model):
    """(compute dtype of the backbone's first conv, dtype of the output tensor)."""
    import tf_keras as keras
    convs = [l for l in model.submodules if isinstance(l, keras.layers.Conv2D)]
    return (convs[0].compute_dtype if convs else "?"), model.outputs[0].dtype.name


def main(argv=None) -> int:
    """Runs the check with command-line arguments `argv` (default: sys.argv[1:]); returns the exit code."""
    start = time.perf_counter()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    machine.print_header(__spec__.name, "Trainer throughput on GPU, float32 vs mixed precision", argv)
    import tensorflow as tf
    import tf_keras as keras

    gpus = tf.config.list_physical_devices("GPU")
    checks = []
    checks.append(["a GPU is visible to TensorFlow", f"{len(gpus)} GPU(s)",
                   bool(gpus) or args.allow_cpu, "" if gpus else "(--allow-cpu: CPU run)"])
    if not gpus and not args.allow_cpu:
        print("no GPU visible to TensorFlow (tf.config.list_physical_devices('GPU') is empty); "
              "install a CUDA build of TensorFlow, or pass --allow-cpu to check the script on CPU")
        return 2
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass
    if args.data_dir == raw_examples.DEFAULT_DATA_DIR and not os.path.isdir(args.data_dir) and not args.synthetic:
        print(f"{args.data_dir} not found: generating images instead (--synthetic)")
        args.synthetic = True

    out = workdir.make_out_dir(args.out, "bench_gpu_check_")
    files, classes, layer = trainer_input.prepare_inputs(args, out)
    from trainer_module import input_pipeline as data_lib, model as model_lib

    strategy = tf.distribute.MirroredStrategy() if gpus else tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    cfg = trainer_input.train_config(args, classes)
    global_batch = cfg.batch_size * replicas
    spec = layer[2]
    keras.utils.set_random_seed(cfg.seed)
    n_records = data_lib.count_examples(files)
    cached = n_records if data_lib.cache_fits(n_records, cfg) else None  # as the Trainer decides
    datasets = {"real": data_lib.make_dataset(files, layer[0], spec, cfg, True, global_batch, cached_examples=cached),
                "no-cache": data_lib.make_dataset(files, layer[0], spec, cfg, True, global_batch)}
    mem_ds = timers.in_memory_dataset(datasets["real"], batches=1)
    print(f"config: MobileNetV3 {cfg.model_variant}, {replicas} replica(s), batch {cfg.batch_size}/replica "
          f"(global {global_batch}), crop {cfg.image_size} of {cfg.resize_size}, CutMix p={cfg.cutmix_probability}; "
          f"{args.warmup_steps} warm-up + {args.steps} timed steps; transform: {layer[1]}", flush=True)

    input_batches = args.input_batches or args.steps
    rows = []
    for mode, ds in datasets.items():
        alone = timers.time_iterate(ds, warmup_batches=min(3, args.warmup_steps), batches=input_batches)
        rows.append(["-", f"input pipeline alone ({mode}, no model)", alone["images_per_s"], "-",
                     alone["cpu_ms_per_image"], "-", "-"])
        print(f"  input alone ({mode}): {alone['images_per_s']:,.0f} images/s", flush=True)

    results = {}
    for precision in [p.strip() for p in args.precisions.split(",") if p.strip()]:
        keras.backend.clear_session()
        keras.mixed_precision.set_global_policy(precision)
        with strategy.scope():
            model = model_lib.build_model(cfg)
            model_lib.compile_model(model, cfg, cfg.learning_rate)
        compute, output = _model_dtypes(model)
        want = {"float32": "float32", "mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}.get(precision)
        checks.append([f"{precision}: policy in force (conv compute dtype)", compute, compute == want, ""])
        checks.append([f"{precision}: softmax output is float32", output, output == "float32", ""])
        for mode, ds in [("in-memory", mem_ds), *datasets.items()]:
            res = timers.time_fit(model, ds, args.warmup_steps, args.steps, global_batch)
            results[(precision, mode)] = res
            checks.append([f"{precision} {mode}: loss finite", f"{res['last_loss']:.3f}",
                           math.isfinite(res["last_loss"]), ""])
            print(f"  {precision:15s} {mode:9s}: {res['images_per_s']:8.1f} images/s "
                  f"({res['step_ms']:.1f} ms/step)", flush=True)
    keras.mixed_precision.set_global_policy("float32")

    labels = {"in-memory": "in-memory tensors (model-bound limit)",
              "real": "make_dataset as the Trainer runs it (decoded images cached)",
              "no-cache": "make_dataset, decoded_cache_gb=0 (decode every epoch)"}
    base32 = {m: r["images_per_s"] for (p, m), r in results.items() if p == "float32"}
    for (precision, mode), res in results.items():
        mem = results[(precision, "in-memory")]["images_per_s"]
        rows.append([precision, labels[mode], res["images_per_s"], res["step_ms"], res["cpu_ms_per_image"],
                     res["images_per_s"] / mem,
                     res["images_per_s"] / base32[mode] if mode in base32 else float("nan")])
    elapsed = time.perf_counter() - start
    checks.append([f"the run took less than {args.budget_s:.0f} s", f"{elapsed:.0f} s", elapsed < args.budget_s, ""])

    print()
    print(f"GPU check: MobileNetV3 {cfg.model_variant}, global batch {global_batch} on {replicas} replica(s), "
          f"{cfg.image_size} px, {args.steps} timed steps after {args.warmup_steps} warm-up; device: "
          f"{[g.name for g in gpus] or 'CPU (--allow-cpu)'}; transform: {layer[1]}")
    print(tables.format_table(["precision", "input", "images/s", "ms/step", "host CPU ms/image",
                               "x in-memory", "x float32"], rows))
    print()
    print("Self-checks")
    print(tables.format_table(["check", "value", "result"],
                              [[c[0], c[1], ("PASS" if c[2] else "FAIL") + (f" {c[3]}" if c[3] else "")]
                               for c in checks]))
    workdir.remove_out_dir_unless_kept(out, keep=bool(args.out or args.keep))
    failed = [c[0] for c in checks if not c[2]]
    print(f"\n{'ALL CHECKS PASSED' if not failed else 'FAILED: ' + '; '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
