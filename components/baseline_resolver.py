"""The resolver that picks the baseline model the Evaluator compares the candidate with.

Why not TFX's plain LatestBlessedModelStrategy: once a model is blessed it is the latest blessed
model, so on an unchanged rerun (Trainer CACHED, same model) the resolver returned the candidate
itself as its own baseline. The Evaluator's inputs then differed from the first run's, so it ran
again (comparing the model with itself) and the Pusher pushed a second, identical version.
Excluding the candidate keeps the Evaluator's inputs exactly those of the first run, and TFX's
cache answers CACHED for the Evaluator and the Pusher.
"""
from typing import Dict, List, Optional

from tfx import types, v1 as tfx

from common import pipeline_names

MODEL_KEY = "model"
BLESSING_KEY = "model_blessing"
CANDIDATE_KEY = "candidate"


class LatestBlessedOtherModelStrategy(tfx.dsl.experimental.ResolverStrategy):
    """The latest blessed Model (and its ModelBlessing) other than the candidate model(s).

    Inputs: `model` (all models), `model_blessing` (all blessings) and `candidate` (the
    Trainer's output in this run). Outputs `model` and `model_blessing`, empty when no other
    model is blessed (the first run), and `candidate` always empty (it is not a baseline).
    """

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        excluded = {a.id for a in input_dict.get(CANDIDATE_KEY, [])}
        others = {MODEL_KEY: [m for m in input_dict[MODEL_KEY] if m.id not in excluded],
                  BLESSING_KEY: list(input_dict[BLESSING_KEY])}
        # The blessing/model pairing and "latest" (highest model id) are TFX's own logic.
        result = tfx.dsl.experimental.LatestBlessedModelStrategy().resolve_artifacts(store, others)
        return {**result, CANDIDATE_KEY: []}


def latest_blessed_model_resolver(candidate, exclude_candidate: bool = True) -> tfx.dsl.Resolver:
    """The latest blessed model other than `candidate` (the Trainer's model channel).

    exclude_candidate=False falls back to TFX's LatestBlessedModelStrategy: the KFP v2 (Vertex)
    compiler only compiles that strategy and LatestArtifactStrategy, no custom ones.
    """
    if not exclude_candidate:
        return tfx.dsl.Resolver(
            strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
            model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
            model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
        ).with_id(pipeline_names.RESOLVER_NODE)
    return tfx.dsl.Resolver(
        strategy_class=LatestBlessedOtherModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
        # In a synchronous run this channel holds the Trainer's model of the current run only.
        candidate=candidate,
    ).with_id(pipeline_names.RESOLVER_NODE)
