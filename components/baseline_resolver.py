"""The resolver that picks the baseline model the Evaluator compares the candidate with."""
from tfx import v1 as tfx


def latest_blessed_model_resolver(candidate) -> tfx.dsl.Resolver:
    """The latest blessed model (none on the first run)."""
    del candidate  # not used yet by the plain TFX strategy
    return tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
