"""What AutoGraph's conversion of tf_keras costs the Trainer's first steps, with against without.

trainer_module.keras_tracing adds AutoGraph's DoNotConvert rule for tf_keras (TensorFlow 2.16's rules
name `keras`, not `tf_keras`). Each side runs in its own process (the rule and AutoGraph's cache of
converted functions live for a process), the sides alternating over --rounds: build the recipe's
model as the Trainer does (trainer_module.model), compile it with the recipe's optimizer, then time
the first train_on_batch (trace, graph optimisation, first step), a second one (the step alone),
and the first test_on_batch (the evaluation's trace). `unconverted` is the project as it runs;
`converted` takes the rule out again before anything is traced.

    .venv/bin/python -m bench.keras_tracing                 # the cpu recipe's model, 3 rounds
    .venv/bin/python -m bench.keras_tracing --rounds 1 --image-size 64
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

from bench import machine, tables

SIDES = ("unconverted", "converted")
# One side's timings, in a fresh process (argv: side, image size, batch size).
_CHILD = r"""
import json, os, sys, time
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np
from tensorflow.python.autograph.core import config as autograph_config
from pipeline import recipes
from trainer_module import keras_tracing, model as model_lib
from trainer_module.train_config import TrainConfig

side, size, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if side == "converted":
    autograph_config.CONVERSION_RULES = tuple(
        r for r in autograph_config.CONVERSION_RULES if not r.matches(keras_tracing.KERAS_PACKAGE))
cfg = TrainConfig(class_names=tuple("abcdef"), **{**recipes.CPU, "image_size": size, "resize_size": size,
                                                     "batch_size": batch})
x = np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype("float32")
y = np.eye(6, dtype="float32")[np.arange(batch) % 6]
out, start = {}, time.perf_counter()
model = model_lib.build_model(cfg)
model_lib.compile_model(model, cfg, cfg.learning_rate)
for name, call in (("build", None), ("first train step", model.train_on_batch),
                   ("second train step", model.train_on_batch), ("first test step", model.test_on_batch)):
    if call:
        call(x, y)
    now = time.perf_counter()
    out[name], start = now - start, now
print(json.dumps(out))
"""


def run_side(side: str, image_size: int, batch_size: int) -> dict:
    """One side's seconds per phase, from a fresh process."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", _CHILD, side, str(image_size), str(batch_size)], cwd=repo,
                          env=dict(os.environ, PYTHONPATH=repo), capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.keras_tracing", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="processes per side, alternating (default %(default)s)")
    p.add_argument("--image-size", type=int, default=128, help="training crop side (default: the cpu recipe's)")
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args(argv)
    machine.print_header("bench.keras_tracing", "the Trainer's first steps, tf_keras converted by AutoGraph or not",
                         sys.argv[1:] if argv is None else argv)
    times = {side: [] for side in SIDES}
    for _ in range(args.rounds):
        for side in SIDES:
            times[side].append(run_side(side, args.image_size, args.batch_size))
    phases = list(times[SIDES[0]][0])
    median = {side: {ph: statistics.median(t[ph] for t in times[side]) for ph in phases} for side in SIDES}
    rows = [[side, *[f"{median[side][ph]:.2f}" for ph in phases]] for side in SIDES]
    rows.append(["ratio converted / unconverted",
                 *[f"{median['converted'][ph] / median['unconverted'][ph]:.2f}" for ph in phases]])
    print(tables.format_table(["side (median s over rounds)", *phases], rows))
    saved = sum(median["converted"][ph] - median["unconverted"][ph] for ph in phases)
    print(f"unconverted: {saved:.1f} s less per process that trains (the cpu recipe's model at {args.image_size} px, "
          f"batch {args.batch_size}; {args.rounds} rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
