"""The suite's real pipeline runs, made once per pytest session (tests/conftest.py: `gate_runs`).

Three local_runner runs in one output dir, on the generated demo data with tiny images:
  A  the recipe under test (CutMix + warmup-cosine), gate bound 0.0: trains, blessed, pushed;
  B  the unchanged pipeline again: every component CACHED, nothing evaluated or pushed;
  C  a weak candidate (learning rate 1e-6, default bound 0.5) against A as baseline: trains, not blessed.
The end-to-end, gate, report and predict tests all read these runs; the Kubeflow runner's test
executes its compiled spec once more. No other test runs a pipeline that trains.
"""
import dataclasses
from typing import Dict, List

from ml_metadata.proto import metadata_store_pb2

import image_factory
import local_runner
from pipeline import configs
from run_report import store
from trainer_module import names

# Small images and model input keep a training run to about a minute on 2 CPU cores.
BASE_FLAGS = ["--epochs", "2", "--image-size", "64", "--resize-size", "72", "--batch-size", "16",
              "--demo-train-per-class", "24", "--demo-eval-per-class", "6"]
GOOD_FLAGS = [*BASE_FLAGS, "--accuracy-lower-bound", "0.0", "--cutmix-probability", "0.5",
              "--schedule", "warmup_cosine", "--warmup-epochs", "0.5"]
# An essentially untrained model: about chance (1/6) accuracy, far below the default bound 0.5.
WEAK_FLAGS = [*BASE_FLAGS, "--learning-rate", "1e-6"]


@dataclasses.dataclass
class GateRuns:
    cfg: configs.PipelineConfig
    run_ids: List[str] = dataclasses.field(default_factory=list)  # A, B, C
    nodes: List[Dict[str, store.NodeRun]] = dataclasses.field(default_factory=list)
    summaries: List[str] = dataclasses.field(default_factory=list)  # the closing log of each run
    serving: List[Dict[str, str]] = dataclasses.field(default_factory=list)  # serving dir digest after each
    evaluator_executions: List[int] = dataclasses.field(default_factory=list)  # after each run


def evaluator_executions(cfg: configs.PipelineConfig) -> int:
    """COMPLETE Evaluator executions recorded in ML Metadata."""
    mlmd = store.open_readonly(cfg.metadata_path)
    node = mlmd.get_context_by_type_and_name("node", f"{cfg.pipeline_name}.{names.EVALUATOR_NODE}")
    return sum(1 for e in mlmd.get_executions_by_context(node.id)
               if e.last_known_state == metadata_store_pb2.Execution.COMPLETE)


def run_gate_pipelines(out_dir: str) -> GateRuns:
    """Runs A, B and C (see the module docstring) in out_dir."""
    runs = GateRuns(local_runner.parse_args(["--output-dir", out_dir, *GOOD_FLAGS])[0])
    for flags in (GOOD_FLAGS, GOOD_FLAGS, WEAK_FLAGS):
        assert local_runner.main(["--output-dir", out_dir, *flags]) == 0
        runs.run_ids.append(store.run_ids(runs.cfg.metadata_path)[-1])
        runs.nodes.append(store.read_run(runs.cfg.metadata_path))
        runs.summaries.append(local_runner.summarize(runs.cfg, runs.run_ids[-1]))
        runs.serving.append(image_factory.tree_digest(runs.cfg.serving_model_dir))
        runs.evaluator_executions.append(evaluator_executions(runs.cfg))
    return runs


def pushed_dir(runs: GateRuns) -> str:
    """The version dir run A pushed."""
    pushed = runs.nodes[0][names.PUSHER_NODE].outputs[names.PUSHED_MODEL_OUTPUT][0]
    return store.custom_property(pushed, names.PROP_PUSHED_DESTINATION)
