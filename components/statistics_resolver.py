"""The resolver of the drift baseline: the statistics of the examples that trained the latest
blessed model (the data behind the model being served), found through ML Metadata's lineage.

latest blessed model (TFX's LatestBlessedModelStrategy) -> the Trainer execution that wrote it ->
its input examples -> the StatisticsGen execution that read them -> its statistics. A run whose
statistics are those very statistics (an unchanged rerun, StatisticsGen CACHED) gets none: data is
not compared with itself, and the DriftValidator's inputs stay those of the first run, so TFX's
cache answers CACHED for it as for the rest of the pipeline.
"""
from typing import Dict, Iterable, List, Optional, Set

from ml_metadata.proto import metadata_store_pb2
from tfx import types, v1 as tfx

from common import pipeline_names

MODEL_KEY = "model"
BLESSING_KEY = "model_blessing"
STATISTICS_KEY = pipeline_names.STATISTICS_OUTPUT
CANDIDATE_KEY = "candidate"  # this run's statistics
_OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
_INPUT_EVENTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)


def _key(event: metadata_store_pb2.Event) -> str:
    return event.path.steps[0].key if event.path.steps else ""


def _executions_with(store, artifact_ids: Iterable[int], event_types) -> Set[int]:
    """Executions with an event of one of event_types on any of the artifacts."""
    return {e.execution_id for e in store.get_events_by_artifact_ids(list(artifact_ids))
            if e.type in event_types}


def _artifacts_of(store, execution_ids: Iterable[int], event_types, key: str) -> Set[int]:
    """Artifacts under `key` with an event of one of event_types in any of the executions."""
    return {e.artifact_id for e in store.get_events_by_execution_ids(list(execution_ids))
            if e.type in event_types and _key(e) == key}


def training_examples_ids(store, model_id: int) -> Set[int]:
    """Ids of the examples that the Trainer producing `model_id` read (the label vetter's reference)."""
    trainers = _executions_with(store, [model_id], _OUTPUT_EVENTS)
    return _artifacts_of(store, trainers, _INPUT_EVENTS, pipeline_names.EXAMPLES_OUTPUT)


def training_statistics_ids(store, model_id: int) -> Set[int]:
    """Ids of the statistics of the examples that the Trainer producing `model_id` read."""
    examples = training_examples_ids(store, model_id)
    readers = _executions_with(store, examples, _INPUT_EVENTS)
    return _artifacts_of(store, readers, _OUTPUT_EVENTS, STATISTICS_KEY)


class BlessedModelStatisticsStrategy(tfx.dsl.experimental.ResolverStrategy):
    """The statistics (of all ExampleStatistics) that describe the latest blessed model's training
    examples, unless they are the candidate's own; empty before any model is blessed."""

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        blessed = tfx.dsl.experimental.LatestBlessedModelStrategy().resolve_artifacts(
            store, {MODEL_KEY: list(input_dict[MODEL_KEY]), BLESSING_KEY: list(input_dict[BLESSING_KEY])})
        found: List[types.Artifact] = []
        if blessed[MODEL_KEY]:
            ids = training_statistics_ids(store, blessed[MODEL_KEY][0].id)
            found = sorted((s for s in input_dict[STATISTICS_KEY] if s.id in ids), key=lambda s: s.id)[-1:]
        candidates = {s.id for s in input_dict.get(CANDIDATE_KEY, [])}
        return {STATISTICS_KEY: [s for s in found if s.id not in candidates],
                MODEL_KEY: [], BLESSING_KEY: [], CANDIDATE_KEY: []}


def blessed_model_statistics_resolver(candidate_statistics) -> tfx.dsl.Resolver:
    """The drift baseline of `candidate_statistics` (this run's StatisticsGen output channel).

    Local runs only: the KFP v2 (Vertex) compiler compiles TFX's own resolver strategies, no
    custom ones (create_pipeline's compare_with_served_data).
    """
    return tfx.dsl.Resolver(
        strategy_class=BlessedModelStatisticsStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
        statistics=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ExampleStatistics),
        # In a synchronous run this channel holds this run's statistics only.
        candidate=candidate_statistics,
    ).with_id(pipeline_names.STATISTICS_RESOLVER_NODE)
