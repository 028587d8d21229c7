r"""Training-recipe studies: the Trainer's own fit, many variants, on one decoded input.

Each variant is a set of TrainConfig overrides. The images are decoded and resized ONCE per resize
size with the Transform module's own function (preprocessing.decode_and_resize) and kept in memory;
every variant then runs what the Trainer runs on them: build_model, trainer.train (schedule, optimizer,
callbacks), input_pipeline.training_batches (random crop, flip, CutMix, MixUp), the BatchNorm
re-estimate, and scores model.inference_model (the exported model) on the eval images' centre crops,
as it is and flip-averaged (test_time_flip changes no training, so every row reports both). No TFX
pipeline per variant.

Two studies:
  ablation  the cpu recipe built up one change at a time: each row adds one change to the row
            above (same data, same seed); the table gives each change's gain.
  notebook  the notebook's comparisons at a CPU budget: SGD vs Adam, CutMix on/off, constant vs
            warmup + cosine vs step decay every 3 epochs, image size (resize before the crop
            raised by 320/256), each against the study's baseline; with the schedules plotted side by side.

    .venv/bin/python -m bench.recipe_study ablation --train ../shared/data/intel-dev/train \
        --eval ../shared/data/intel-dev/val --eval ../shared/data/intel-rest/train --eval-per-class 400
    .venv/bin/python -m bench.recipe_study notebook --train ../shared/data/intel-dev/train \
        --eval ../shared/data/intel-dev/val --out /tmp/notebook-study
    .venv/bin/python -m bench.recipe_study ablation --synthetic --epochs 1 --only 2   # smoke test
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow loads

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Dict, List, Sequence, Tuple  # noqa: E402

import numpy as np  # noqa: E402

from bench import machine, tables  # noqa: E402

# The ablation's starting point: the README's earlier CPU recipe (bench/RESULTS.md, 6db8aec).
ABLATION_BASE = dict(image_size=128, resize_size=144, epochs=24, schedule="warmup_cosine", warmup_epochs=1.0,
                     learning_rate=0.03, cutmix_probability=0.5, weights="none", optimizer="sgd")
# Each row adds its change to everything above it.
ABLATION_STEPS: Tuple[Tuple[str, Dict], ...] = (
    ("earlier CPU recipe (128 of 144 px, 24 epochs, SGD 0.03, warmup-cosine, CutMix 0.5)", {}),
    ("+ label smoothing 0.1", dict(label_smoothing=0.1)),
    ("+ weight decay 5e-4 (decoupled, x lr)", dict(weight_decay=5e-4)),
    ("+ MixUp 0.3 (alpha 0.2) after CutMix", dict(mixup_probability=0.3)),
    ("+ EMA of the weights (momentum 0.99)", dict(ema_momentum=0.99)),
)
# The notebook's comparisons, scaled to a CPU: 112 px crops of 128 (the notebook: 224 of 256).
NOTEBOOK_BASE = dict(image_size=112, resize_size=128, epochs=9, schedule="constant", learning_rate=0.01,
                     optimizer="sgd", cutmix_probability=0.5, weights="none", warmup_epochs=1.0,
                     step_every_epochs=3, step_factor=0.1)
NOTEBOOK_VARIANTS: Tuple[Tuple[str, Dict], ...] = (
    ("SGD 0.01, constant, CutMix 0.5 (baseline)", {}),
    ("Adam 0.001", dict(optimizer="adam", learning_rate=0.001)),
    ("no CutMix", dict(cutmix_probability=0.0)),
    ("warmup + cosine decay", dict(schedule="warmup_cosine")),
    ("step decay every 3 epochs (x0.1)", dict(schedule="step")),
    ("image size: resize 160 before the 112 crop (the notebook's 256 -> 320)", dict(resize_size=160)),
)
STUDIES = {"ablation": (ABLATION_BASE, ABLATION_STEPS, True), "notebook": (NOTEBOOK_BASE, NOTEBOOK_VARIANTS, False)}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def list_labelled(folder: str, class_names: Sequence[str], per_class: int) -> List[Tuple[str, int]]:
    """(path, label) for up to per_class files of each class folder (sorted: reproducible)."""
    items = []
    for label, name in enumerate(class_names):
        files = sorted(f for f in os.listdir(os.path.join(folder, name)) if f.lower().endswith(IMAGE_EXTENSIONS))
        items += [(os.path.join(folder, name, f), label) for f in (files[:per_class] if per_class else files)]
    return items


def decode_all(items: Sequence[Tuple[str, int]], resize_size: int) -> np.ndarray:
    """uint8 [n, R, R, 3]: the Transform graph's pixels (preprocessing.decode_and_resize) of each file."""
    import tensorflow as tf

    from trainer_module import preprocessing

    decode = tf.function(lambda data: tf.cast(preprocessing.decode_and_resize(data, resize_size), tf.uint8))
    out = []
    for start in range(0, len(items), 64):
        data = [open(path, "rb").read() for path, _ in items[start:start + 64]]
        out.append(decode(tf.constant(data)).numpy())
    return np.concatenate(out)


class DecodedSet:
    """The decoded images of one folder at each resize size a variant asks for (decoded once)."""

    def __init__(self, items: Sequence[Tuple[str, int]], num_classes: int):
        self.items, self.num_classes = items, num_classes
        self.labels = np.array([label for _, label in items])
        self._by_size: Dict[int, np.ndarray] = {}

    def images(self, resize_size: int) -> np.ndarray:
        if resize_size not in self._by_size:
            self._by_size[resize_size] = decode_all(self.items, resize_size)
        return self._by_size[resize_size]

    def examples(self, resize_size: int):
        """tf.data of the Trainer's decoded examples {image uint8, one-hot}."""
        import tensorflow as tf

        from trainer_module import names

        return tf.data.Dataset.from_tensor_slices({
            names.TRANSFORMED_IMAGE_KEY: self.images(resize_size),
            names.TRANSFORMED_ONE_HOT_KEY: np.eye(self.num_classes, dtype=np.float32)[self.labels]})


def train_variant(cfg, train: DecodedSet, monitor: DecodedSet, work_dir: str):
    """Trains one variant as run_fn does; returns (model, seconds of fit + BatchNorm re-estimate)."""
    import tensorflow as tf
    import tf_keras as keras

    from trainer_module import input_pipeline, model as model_lib, trainer

    keras.utils.set_random_seed(cfg.seed)
    n = len(train.items)
    steps = n // cfg.batch_size
    examples = train.examples(cfg.resize_size).shuffle(n, seed=cfg.seed, reshuffle_each_iteration=True).repeat()
    train_ds = input_pipeline.training_batches(examples, cfg, cfg.batch_size)
    monitor_ds = input_pipeline.eval_batches(monitor.examples(cfg.resize_size), cfg, 128)
    model = model_lib.build_model(cfg)
    for folder in ("model_run", "backup"):
        os.makedirs(os.path.join(work_dir, folder), exist_ok=True)
    start = time.perf_counter()
    trainer.train(model, cfg, tf.distribute.get_strategy(), train_ds, monitor_ds, steps,
                  os.path.join(work_dir, "model_run"), os.path.join(work_dir, "backup"))
    if cfg.bn_recalibration_batches:
        views = input_pipeline.eval_batches(train.examples(cfg.resize_size), cfg, cfg.batch_size)
        model_lib.recalibrate_batchnorm_if_better(model, views, cfg.bn_recalibration_batches)
    return model, time.perf_counter() - start


def accuracy(model, cfg, evaluation: DecodedSet, flip: bool) -> float:
    """Top-1 accuracy of the exported model's view (centre crop; flip-averaged if `flip`)."""
    import dataclasses

    from trainer_module import input_pipeline, model as model_lib

    scored = model_lib.inference_model(model, dataclasses.replace(cfg, test_time_flip=flip))
    batches = input_pipeline.eval_batches(evaluation.examples(cfg.resize_size), cfg, 128)
    predicted = np.concatenate([np.argmax(scored(x, training=False).numpy(), axis=1) for x, _ in batches])
    return float(np.mean(predicted == evaluation.labels))


def plot_schedules(base: Dict, variants: Sequence[Tuple[str, Dict]], class_names, steps_per_epoch: int,
                   path: str) -> str:
    """The learning-rate schedules of the variants that differ in schedule, side by side in one PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from trainer_module import schedules
    from trainer_module.train_config import TrainConfig

    shown = {}
    for _, overrides in variants:
        cfg = TrainConfig(class_names=class_names, **{**base, **overrides})
        shown.setdefault((cfg.schedule, cfg.learning_rate), cfg)
    fig = Figure(figsize=(4 * len(shown), 3), dpi=100)
    FigureCanvasAgg(fig)
    total = None
    for i, cfg in enumerate(shown.values(), start=1):
        schedule = schedules.make_schedule(cfg, steps_per_epoch)
        total = cfg.epochs * steps_per_epoch
        ax = fig.add_subplot(1, len(shown), i)
        ax.plot(range(total + 1), [schedules.learning_rate_at(schedule, s) for s in range(total + 1)])
        ax.set(title=f"{cfg.schedule}, {cfg.optimizer} {cfg.learning_rate:g}", xlabel="step", ylabel="learning rate")
    fig.tight_layout()
    fig.savefig(path)
    return path


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench.recipe_study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study", choices=sorted(STUDIES))
    p.add_argument("--train", help="labelled folder <class>/<image> to train on")
    p.add_argument("--eval", action="append", default=[],
                   help="labelled folder to score on (repeatable; the first also monitors each epoch)")
    p.add_argument("--train-per-class", type=int, default=0, help="cap per class (0: all)")
    p.add_argument("--eval-per-class", type=int, default=0, help="cap per class of each --eval after the first "
                                                                 "(0: all)")
    p.add_argument("--epochs", type=int, default=0, help="override the study's epochs (0: the study's)")
    p.add_argument("--only", type=int, default=0, help="run only the first N variants (smoke tests)")
    p.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE",
                   help="override a knob of the study's base recipe (repeatable), e.g. --set batch_size=32")
    p.add_argument("--synthetic", action="store_true", help="generated demo images instead of --train/--eval")
    p.add_argument("--out", default="", help="folder for the schedule plot (default: a temporary folder)")
    return p.parse_args(argv)


def _base_with_sets(base: Dict, sets: Sequence[str]) -> Dict:
    """The study's base recipe with --set KNOB=VALUE overrides, typed as the knob's default."""
    from trainer_module.train_config import TrainConfig

    out = dict(base)
    for item in sets:
        name, _, value = item.partition("=")
        kind = type(TrainConfig.__dataclass_fields__[name].default)
        out[name] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    return out


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    machine.print_header("bench.recipe_study", f"{args.study} study", argv)
    from trainer_module.train_config import TrainConfig

    base, variants, cumulative = STUDIES[args.study]
    base = _base_with_sets(base, args.set)
    if args.epochs:
        base = {**base, "epochs": args.epochs}
    work = tempfile.mkdtemp(prefix="recipe-study-")
    out = args.out or work
    os.makedirs(out, exist_ok=True)
    if args.synthetic:
        from data_sources import demo_data

        demo_dir = os.path.join(work, "demo")
        demo_data.make_demo_dataset(demo_dir, train_per_class=16, eval_per_class=4)
        args.train = os.path.join(demo_dir, "train")
        args.eval = [os.path.join(demo_dir, "val")]
    if not args.train or not args.eval:
        print("error: --train and at least one --eval are needed (or --synthetic)", file=sys.stderr)
        return 2
    class_names = tuple(sorted(d for d in os.listdir(args.train) if os.path.isdir(os.path.join(args.train, d))))
    train = DecodedSet(list_labelled(args.train, class_names, args.train_per_class), len(class_names))
    evals = [DecodedSet(list_labelled(folder, class_names, args.eval_per_class if i else 0), len(class_names))
             for i, folder in enumerate(args.eval)]
    print(f"train: {len(train.items)} images from {args.train}; eval: "
          + ", ".join(f"{len(e.items)} from {f}" for e, f in zip(evals, args.eval)), flush=True)
    plot = plot_schedules(base, variants, class_names, len(train.items) // base.get("batch_size", 64),
                          os.path.join(out, f"{args.study}_lr_schedules.png"))
    print(f"schedules plotted side by side: {plot}", flush=True)

    rows, applied = [], {}
    eval_names = [f"acc. {os.path.basename(os.path.dirname(os.path.normpath(f)))}/"
                  f"{os.path.basename(os.path.normpath(f))} ({len(e.items)})" for e, f in zip(evals, args.eval)]
    previous = None
    for i, (name, overrides) in enumerate(variants[:args.only or None]):
        applied = {**applied, **overrides} if cumulative else dict(overrides)
        cfg = TrainConfig(class_names=class_names, **{**base, **applied})
        model, seconds = train_variant(cfg, train, evals[0], os.path.join(work, f"variant{i}"))
        scores = [accuracy(model, cfg, e, False) for e in evals]
        weights = [len(e.items) for e in evals]
        pooled = float(np.average(scores, weights=weights))
        # Test-time flip averaging changes no training: every variant is scored with it too.
        flipped = float(np.average([accuracy(model, cfg, e, True) for e in evals], weights=weights))
        change = "" if previous is None else f"{100 * (pooled - previous):+.1f}"
        previous = pooled if cumulative or previous is None else previous
        rows.append([name, *[f"{100 * s:.1f} %" for s in scores], f"{100 * pooled:.1f} %", change,
                     f"{100 * flipped:.1f} % ({100 * (flipped - pooled):+.1f})", f"{seconds / 60:.1f}"])
        print(f"[{i + 1}/{len(variants)}] {name}: " + ", ".join(f"{100 * s:.1f} %" for s in scores)
              + f" in {seconds:.0f} s", flush=True)
    print()
    print(tables.format_table(["variant", *eval_names, "pooled", "vs " + ("previous row" if cumulative else
                                                                          "baseline") + " (points)",
                               "pooled, flip-averaged (gain)", "train min"], rows))
    print(f"\nbase recipe: {base}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
