"""The suite's real pipeline runs, made once per pytest session (tests/conftest.py: `gate_runs`).

Six local_runner runs in one output dir, on generated demo data with tiny images:
  A  the recipe under test (CutMix + warmup-cosine), gate bound 0.0: trains, blessed, pushed;
  B  the unchanged pipeline again: every component CACHED, nothing evaluated or pushed;
  C  a weak candidate (learning rate 1e-6, default bound 0.5) against A as baseline, trained on a
     clean second data drop (the demo data drawn afresh: same classes, counts and image sizes), so
     the data gate compares it with A's data and lets it through: trains (a lean Trainer), not blessed;
  D  a drop without the class REMOVED_CLASS: the data gate stops it before Transform (exit 1);
  E  a drop whose images are all 4x larger: stopped likewise (exit 1);
  F  D's drop again with --proceed-despite-anomalies, weak: trains (a bare Trainer), not blessed, the
     override recorded.
The end-to-end, gate, report, predict and data validation tests all read these runs; the Kubeflow
runner's test executes its compiled spec once more. No other test runs a pipeline that trains.
"""
import contextlib
import dataclasses
import io
import os
import shutil
from typing import Dict, List, Sequence

from ml_metadata.proto import metadata_store_pb2

import image_factory
import local_runner
from common import pipeline_names, store
from data_sources import demo_data
from pipeline import configs
from run_control import local_run

# Small images and model input keep a training run to about a minute on 2 CPU cores.
BASE_FLAGS = ["--epochs", "2", "--image-size", "64", "--resize-size", "72", "--batch-size", "16",
              "--demo-train-per-class", "24", "--demo-eval-per-class", "6"]
GOOD_FLAGS = [*BASE_FLAGS, "--accuracy-lower-bound", "0.0", "--class-recall-lower-bound", "0.0",
              "--cutmix-probability", "0.5",
              "--schedule", "warmup_cosine", "--warmup-epochs", "0.5"]
# An essentially untrained model: about chance (1/6) accuracy, far below the default bound 0.5.
WEAK_FLAGS = [*BASE_FLAGS, "--learning-rate", "1e-6"]
# Run C is read for its verdict, lineage and report (calibration included): its Trainer skips the
# BatchNorm re-estimate, flip averaging, the weight average and the TFLite export (and with it the
# EdgeEvaluator), which run A covers. Run F is read for its data gate and verdict only: one epoch,
# no temperature either.
LEAN_TRAINER_FLAGS = ["--bn-recalibration-batches", "0", "--no-test-time-flip", "--no-tflite-export",
                      "--ema-momentum", "0"]
BARE_TRAINER_FLAGS = ["--epochs", "1", "--no-temperature-scaling", *LEAN_TRAINER_FLAGS]
# The data drops of runs C to F, generated under <output dir>/drops (the demo data is 150 px).
REMOVED_CLASS = "glacier"
DEMO_SIZE = 150
LARGE_SIZE = 4 * DEMO_SIZE
DROPS = {"clean": dict(train_per_class=24, eval_per_class=6, seed=1),
         "minus_class": dict(train_per_class=24, eval_per_class=6, seed=2),
         "large": dict(train_per_class=8, eval_per_class=2, size=LARGE_SIZE, seed=3)}
OVERRIDE_FLAG = "--proceed-despite-anomalies"


@dataclasses.dataclass
class GateRuns:
    cfg: configs.PipelineConfig
    drops: Dict[str, str] = dataclasses.field(default_factory=dict)  # DROPS' name -> folder
    run_ids: List[str] = dataclasses.field(default_factory=list)  # A to F
    exit_codes: List[int] = dataclasses.field(default_factory=list)
    errors: List[str] = dataclasses.field(default_factory=list)  # what each run printed on stderr
    nodes: List[Dict[str, store.NodeRun]] = dataclasses.field(default_factory=list)
    summaries: List[str] = dataclasses.field(default_factory=list)  # the closing log of each run
    serving: List[Dict[str, str]] = dataclasses.field(default_factory=list)  # serving dir digest after each
    evaluator_executions: List[int] = dataclasses.field(default_factory=list)  # after each run


def evaluator_executions(cfg: configs.PipelineConfig) -> int:
    """COMPLETE Evaluator executions recorded in ML Metadata."""
    mlmd = store.open_readonly(cfg.metadata_path)
    node = mlmd.get_context_by_type_and_name("node", f"{cfg.pipeline_name}.{pipeline_names.EVALUATOR_NODE}")
    return sum(1 for e in mlmd.get_executions_by_context(node.id)
               if e.last_known_state == metadata_store_pb2.Execution.COMPLETE)


def make_drops(folder: str) -> Dict[str, str]:
    """The data drops of DROPS under folder; minus_class without REMOVED_CLASS in either split."""
    drops = {name: demo_data.make_demo_dataset(os.path.join(folder, name), **kwargs)
             for name, kwargs in DROPS.items()}
    for split in demo_data.SPLITS:
        shutil.rmtree(os.path.join(drops["minus_class"], split, REMOVED_CLASS), ignore_errors=True)
    return drops


def _main(argv: Sequence[str]):
    """(exit code, stderr) of one local_runner run."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = local_runner.main(list(argv))
    return code, err.getvalue()


def run_gate_pipelines(out_dir: str) -> GateRuns:
    """Runs A to F (see the module docstring) in out_dir."""
    runs = GateRuns(local_runner.parse_args(["--output-dir", out_dir, *GOOD_FLAGS])[0])
    runs.drops = make_drops(os.path.join(out_dir, "drops"))
    plan = ((GOOD_FLAGS, 0), (GOOD_FLAGS, 0),
            ([*WEAK_FLAGS, *LEAN_TRAINER_FLAGS, "--data-dir", runs.drops["clean"]], 0),
            ([*BASE_FLAGS, "--data-dir", runs.drops["minus_class"]], 1),
            ([*BASE_FLAGS, "--data-dir", runs.drops["large"]], 1),
            ([*WEAK_FLAGS, *BARE_TRAINER_FLAGS, "--data-dir", runs.drops["minus_class"], OVERRIDE_FLAG], 0))
    for flags, expected_code in plan:
        code, err = _main(["--output-dir", out_dir, *flags])
        assert code == expected_code, (flags, code, err[-2000:])
        runs.exit_codes.append(code)
        runs.errors.append(err)
        runs.run_ids.append(store.run_ids(runs.cfg.metadata_path)[-1])
        runs.nodes.append(store.read_run(runs.cfg.metadata_path))
        runs.summaries.append(local_run.summarize(runs.cfg, runs.run_ids[-1]))
        runs.serving.append(image_factory.tree_digest(runs.cfg.serving_model_dir))
        runs.evaluator_executions.append(evaluator_executions(runs.cfg))
    return runs


def pushed_dir(runs: GateRuns) -> str:
    """The version dir run A pushed."""
    pushed = runs.nodes[0][pipeline_names.PUSHER_NODE].outputs[pipeline_names.PUSHED_MODEL_OUTPUT][0]
    return store.custom_property(pushed, pipeline_names.PROP_PUSHED_DESTINATION)
