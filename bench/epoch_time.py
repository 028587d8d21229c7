r"""Training time of a recipe against another at the full data size, measured side by side.

What a recipe's training costs per epoch depends on the side its batches are fed at (progressive
resizing changes it from epoch to epoch), on the model, and on the per-epoch evaluation (at the
served side). This bench builds each recipe's model and compiled optimizer as the Trainer does
(weight decay, EMA), feeds it input_pipeline.training_batches from decoded images held in memory
(the Trainer's decoded-image cache: every epoch after the first), and times steps at each side the
recipe trains at, plus one evaluation pass of --eval-n images at the served side, in rotating order
over --rounds (so a shared machine's load falls on every recipe alike). It then projects, for a
train set of --train-n images: the seconds of an epoch at each side, the whole training (the sum
over the recipe's epochs), and the ratio to the first recipe. Multiply a measured run of the first
recipe by that ratio to budget the second.

    .venv/bin/python -m bench.epoch_time                                   # issue 15's cpu recipe vs today's
    .venv/bin/python -m bench.epoch_time --rounds 5 --steps 30             # steadier
    .venv/bin/python -m bench.epoch_time --variant minimalistic=true,epochs=60 --variant alpha=0.75
    .venv/bin/python -m bench.epoch_time --synthetic --n 64 --steps 2 --warmup-steps 1 --rounds 1 --eval-n 16
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow loads

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from bench import machine, tables, timers  # noqa: E402
from bench.recipe_study import ABLATION_BASE, DecodedSet, list_labelled  # noqa: E402

DEFAULT_TRAIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data",
                             "intel-dev", "train")
FULL_TRAIN_N = 13_439  # the full Intel training folder (intel-dev/train + intel-rest/train)


def recipes(variants):
    """{name: knobs}: issue 15's cpu recipe, today's (pipeline/recipes.py), and today's with each
    --variant's knobs changed."""
    from bench.recipe_study import _base_with_sets
    from pipeline import recipes as pipeline_recipes

    out = {"cpu (issue 15)": dict(ABLATION_BASE), "cpu (today)": dict(pipeline_recipes.CPU)}
    for variant in variants:
        out[f"cpu (today), {variant}"] = _base_with_sets(pipeline_recipes.CPU, variant.split(","))
    return out


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m bench.epoch_time", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", default=os.path.normpath(DEFAULT_TRAIN), help="class folders whose images are "
                                                                            "decoded and fed (default %(default)s)")
    p.add_argument("--synthetic", action="store_true", help="generated demo images instead of --train")
    p.add_argument("--n", type=int, default=1024, help="images decoded and fed (default %(default)s)")
    p.add_argument("--train-n", type=int, default=FULL_TRAIN_N, help="train set size the epochs are projected "
                                                                     "for (default %(default)s: the full data)")
    p.add_argument("--eval-n", type=int, default=600, help="images of the per-epoch evaluation (default "
                                                           "%(default)s: intel-dev/val)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    p.add_argument("--warmup-steps", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--variant", action="append", default=[], metavar="KNOB=VALUE[,KNOB=VALUE]",
                   help="also time today's cpu recipe with these knobs changed (repeatable: one recipe each)")
    args = p.parse_args(argv)
    machine.print_header("bench.epoch_time", "training time of recipes at the full data size", argv)
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    from trainer_module import input_pipeline, model as model_lib
    from trainer_module.train_config import TrainConfig

    folder = args.train
    if args.synthetic:
        from data_sources import demo_data

        folder = os.path.join(tempfile.mkdtemp(prefix="epoch-time-"), "demo")
        demo_data.make_demo_dataset(folder, train_per_class=max(2, args.n // 6), eval_per_class=1)
        folder = os.path.join(folder, "train")
    class_names = tuple(sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d))))
    items = list_labelled(folder, class_names, 0)
    items = [items[i] for i in np.random.default_rng(0).permutation(len(items))[:args.n]]
    images = DecodedSet(items, len(class_names))
    print(f"images: {len(items)} from {folder}; epochs projected for {args.train_n} train images and "
          f"{args.eval_n} eval images", flush=True)

    contenders = []  # (name, cfg, model, {side: dataset}, eval dataset)
    for name, knobs in recipes(args.variant).items():
        cfg = TrainConfig(class_names=class_names, **knobs)
        keras.utils.set_random_seed(cfg.seed)
        model = model_lib.build_model(cfg)
        model_lib.compile_model(model, cfg, cfg.learning_rate)
        examples = images.examples(cfg.resize_size).repeat()
        sides = sorted({cfg.training_side(e) for e in range(cfg.epochs)})
        # One dataset per side; with progressive resizing the batches are scaled to a side read at
        # run time (shapes unknown when traced), as in training.
        by_side = {s: input_pipeline.training_batches(examples, cfg, cfg.batch_size,
                                                      tf.Variable(s) if cfg.progressive_start_size else None)
                   for s in sides}
        evaluation = input_pipeline.eval_batches(images.examples(cfg.resize_size).repeat().take(args.eval_n),
                                                 cfg, 128)
        contenders.append((name, cfg, model, by_side, evaluation))

    step_ms = {(name, s): [] for name, _, _, by_side, _ in contenders for s in by_side}
    eval_s = {name: [] for name, *_ in contenders}
    for r in range(args.rounds):
        for name, cfg, model, by_side, evaluation in contenders:
            for s, dataset in by_side.items():
                timed = timers.time_fit(model, dataset, args.warmup_steps, args.steps, cfg.batch_size)
                step_ms[(name, s)].append(timed["step_ms"])
            model.evaluate(evaluation, verbose=0)  # traced and warm before the timed pass
            start = time.perf_counter()
            model.evaluate(evaluation, verbose=0)
            eval_s[name].append(time.perf_counter() - start)
        print(f"round {r + 1}/{args.rounds} done", flush=True)

    rows, totals = [], {}
    for name, cfg, _, by_side, _ in contenders:
        steps_per_epoch = args.train_n // cfg.batch_size
        evaluation = statistics.median(eval_s[name])
        epoch_s = {s: steps_per_epoch * statistics.median(step_ms[(name, s)]) / 1000 + evaluation for s in by_side}
        epochs_at = [cfg.training_side(e) for e in range(cfg.epochs)]
        totals[name] = sum(epoch_s[s] for s in epochs_at)
        for s in by_side:
            rows.append([name, f"{s} px ({epochs_at.count(s)} epochs)", f"{statistics.median(step_ms[(name, s)]):.0f}",
                         f"{evaluation:.1f} ({cfg.served_image_size} px)", f"{epoch_s[s]:.1f}"])
    print()
    print(tables.format_table(["recipe", "training side", "ms per step (median)", "eval pass s",
                               f"epoch s ({args.train_n} images)"], rows))
    first = next(iter(totals.values()))
    print()
    print(tables.format_table(["recipe", "epochs", "training min (projected)", "x first recipe"],
                              [[name, cfg.epochs, f"{totals[name] / 60:.1f}", f"{totals[name] / first:.3f}"]
                               for name, cfg, *_ in contenders]))
    print("\nThe projection counts the steps and the per-epoch evaluation only (no first-epoch decode, "
          "checkpoints or export): use the ratio against a measured run of the first recipe.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
