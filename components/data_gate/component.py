"""DataGate: the component, its spec, and the artifact it leaves when the run goes on."""
import json
from typing import Sequence

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from common import pipeline_names
from components.data_gate import executor


class DataValidationResult(types.Artifact):
    """What the DataGate let through: data_validation.json (every finding and figure) and the
    custom properties findings, blocking and proceeded_despite_anomalies."""
    # The KFP v2 compiler requires "<module>.<Class>", and its containers import the class by it
    # (components/__init__.py resolves it).
    TYPE_NAME = "components.DataValidationResult"


class DataGateSpec(ComponentSpec):
    """The three validators' anomalies and what explains them in; the gate's record out."""
    PARAMETERS = {
        executor.PROCEED_KEY: ExecutionParameter(type=int),
        executor.STOP_ON_SKEW_KEY: ExecutionParameter(type=int),
        # Optional: a spec compiled before these existed still runs (every drift stops, duplicates stop).
        executor.DRIFT_WARN_ONLY_KEY: ExecutionParameter(type=str, optional=True),  # JSON list of features
        executor.STOP_ON_DUPLICATES_KEY: ExecutionParameter(type=int, optional=True),
    }
    INPUTS = {
        pipeline_names.STATISTICS_OUTPUT: ChannelParameter(type=standard_artifacts.ExampleStatistics),
        pipeline_names.SCHEMA_OUTPUT: ChannelParameter(type=standard_artifacts.Schema),
        pipeline_names.ANOMALIES_OUTPUT: ChannelParameter(type=standard_artifacts.ExampleAnomalies),
        executor.SKEW_KEY: ChannelParameter(type=standard_artifacts.ExampleAnomalies),
        # Absent before any model is blessed, for an unchanged rerun, and on Vertex AI.
        executor.DRIFT_KEY: ChannelParameter(type=standard_artifacts.ExampleAnomalies, optional=True),
        executor.BASELINE_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics, optional=True),
        # The ingest report beside the examples: cross-split duplicates.
        pipeline_names.EXAMPLES_OUTPUT: ChannelParameter(type=standard_artifacts.Examples, optional=True),
    }
    OUTPUTS = {pipeline_names.DATA_GATE_OUTPUT: ChannelParameter(type=DataValidationResult)}


class DataGate(base_component.BaseComponent):
    """Stops the run (DataValidationError, exit code 1) on any schema or drift anomaly (drift of the
    features in drift_warn_only only warns), on eval images that duplicate train images
    (ImageExampleGen's ingest report; with stop_on_cross_split_duplicates), and on skew with
    stop_on_skew; proceed_despite_anomalies lets the run go on and records that it did.

    Transform must run after it (create_pipeline: transform.add_upstream_node): the gate's data
    dependency is on the validators, and Transform's inputs stay those TFX caches on.
    """

    SPEC_CLASS = DataGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, statistics, schema, anomalies, skew_anomalies, drift_anomalies=None,
                 baseline_statistics=None, proceed_despite_anomalies: bool = False,
                 stop_on_skew: bool = False, examples=None, drift_warn_only: Sequence[str] = (),
                 stop_on_cross_split_duplicates: bool = True):
        super().__init__(spec=DataGateSpec(
            statistics=statistics, schema=schema, anomalies=anomalies, skew_anomalies=skew_anomalies,
            drift_anomalies=drift_anomalies, baseline_statistics=baseline_statistics, examples=examples,
            proceed_despite_anomalies=int(proceed_despite_anomalies), stop_on_skew=int(stop_on_skew),
            drift_warn_only=json.dumps(sorted(drift_warn_only)),
            stop_on_cross_split_duplicates=int(stop_on_cross_split_duplicates),
            result=types.Channel(type=DataValidationResult)))
