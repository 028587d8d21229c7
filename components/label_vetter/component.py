"""LabelVetter: the component, its spec and artifact, and the resolver that feeds it the latest
blessed model with the examples that model was trained on."""
from typing import Dict, List, Optional

from tfx import types, v1 as tfx
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from common import pipeline_names
from components.statistics_resolver import BLESSING_KEY, MODEL_KEY, training_examples_ids
from components.label_vetter import executor

_MODEL, _BLESSING = MODEL_KEY, BLESSING_KEY
_CANDIDATE = "candidate"  # this run's examples


class LabelVettingResult(types.Artifact):
    """label_vetting.json (every class's figures and the findings) and the custom properties
    compared, anomalous_classes, unscored and findings."""
    # The KFP v2 compiler requires "<module>.<Class>" (components/__init__.py resolves it).
    TYPE_NAME = "components.LabelVettingResult"


class LabelVetterSpec(ComponentSpec):
    """This run's examples, the latest blessed model and its training examples in; the record out."""
    PARAMETERS = {
        executor.TRAIN_SAMPLE_KEY: ExecutionParameter(type=int),
        executor.MAX_DROP_KEY: ExecutionParameter(type=float),
        executor.CONCENTRATION_KEY: ExecutionParameter(type=float),
        executor.CONCENTRATION_MIN_DROP_KEY: ExecutionParameter(type=float),
        executor.MIN_EXAMPLES_KEY: ExecutionParameter(type=int),
        executor.WARN_ONLY_KEY: ExecutionParameter(type=int),
    }
    INPUTS = {
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        # Both absent before any model is blessed, and when it was trained on these very examples.
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model, optional=True),
        executor.BASELINE_EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples, optional=True),
    }
    OUTPUTS = {pipeline_names.LABEL_VETTING_OUTPUT: ChannelParameter(type=LabelVettingResult)}


class LabelVetter(base_component.BaseComponent):
    """Stops the run (LabelVettingError, exit code 1) when the latest blessed model disagrees with the
    new labels of a class far more than with its own (vetting.py); warn_only records and goes on.

    The Trainer must run after it (create_pipeline: trainer.add_upstream_node): an order, not data,
    so the Trainer's cache keys stay its inputs.
    """

    SPEC_CLASS = LabelVetterSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, examples, model=None, baseline_examples=None, train_sample: int = 2000,
                 max_drop: float = 0.40, concentration: float = 0.60, concentration_min_drop: float = 0.20,
                 min_examples: int = 20, warn_only: bool = False):
        super().__init__(spec=LabelVetterSpec(**{
            executor.EXAMPLES_KEY: examples, executor.MODEL_KEY: model,
            executor.BASELINE_EXAMPLES_KEY: baseline_examples,
            executor.TRAIN_SAMPLE_KEY: train_sample, executor.MAX_DROP_KEY: max_drop,
            executor.CONCENTRATION_KEY: concentration, executor.CONCENTRATION_MIN_DROP_KEY: concentration_min_drop,
            executor.MIN_EXAMPLES_KEY: min_examples, executor.WARN_ONLY_KEY: int(warn_only),
            pipeline_names.LABEL_VETTING_OUTPUT: types.Channel(type=LabelVettingResult)}))


class BlessedModelTrainingDataStrategy(tfx.dsl.experimental.ResolverStrategy):
    """The latest blessed model (TFX's LatestBlessedModelStrategy) and the examples its Trainer read
    (ML Metadata's lineage); both empty before any model is blessed, and when those examples are this
    run's own (an unchanged rerun: the LabelVetter's inputs stay the first run's, so it is CACHED)."""

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        blessed = tfx.dsl.experimental.LatestBlessedModelStrategy().resolve_artifacts(
            store, {_MODEL: list(input_dict[_MODEL]), _BLESSING: list(input_dict[_BLESSING])})
        models: List[types.Artifact] = list(blessed[_MODEL])[:1]
        found: List[types.Artifact] = []
        if models:
            ids = training_examples_ids(store, models[0].id)
            found = sorted((e for e in input_dict[executor.EXAMPLES_KEY] if e.id in ids), key=lambda e: e.id)[-1:]
        if {e.id for e in found} & {e.id for e in input_dict.get(_CANDIDATE, [])}:
            models, found = [], []
        # A resolver's outputs are its input keys: the training examples leave under `examples`.
        return {_MODEL: models, executor.EXAMPLES_KEY: found, _BLESSING: [], _CANDIDATE: []}


def blessed_model_training_data_resolver(candidate_examples) -> tfx.dsl.Resolver:
    """The LabelVetter's model and reference examples, given this run's examples channel.

    Local runs only: the KFP v2 (Vertex) compiler compiles TFX's own resolver strategies, no custom
    ones (like the drift baseline's resolver).
    """
    return tfx.dsl.Resolver(
        strategy_class=BlessedModelTrainingDataStrategy,
        model=tfx.dsl.Channel(type=standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=standard_artifacts.ModelBlessing),
        examples=tfx.dsl.Channel(type=standard_artifacts.Examples),
        # In a synchronous run this channel holds this run's examples only.
        candidate=candidate_examples,
    ).with_id(pipeline_names.LABEL_VETTING_RESOLVER_NODE)
