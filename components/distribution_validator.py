"""TFX's DistributionValidator (same executor, config and outputs) with two fixes.

1. The baseline statistics may be absent. Before any model is blessed, and on an unchanged
   rerun, the drift comparison has no baseline (components/statistics_resolver.py). TFX's spec
   requires one, so its input resolution would fail and record a FAILED execution, with an error
   in the log, on every such run. Optional, the run reaches TFX's executor, which rubber-stamps
   a missing baseline (NO_BASELINE_STATS) and compares nothing; an unchanged rerun is then CACHED.
2. Its config arrives as JSON text in a Kubeflow Pipelines v2 container (TFX's local launcher
   parses proto parameters, the KFP v2 entrypoint does not), and TFX's executor reads it as a
   proto: parsed here first.
"""
from typing import Any, Dict, List, Optional, Tuple

from google.protobuf import json_format
from tfx import types
from tfx.components.distribution_validator import component as tfx_component, executor as tfx_executor
from tfx.dsl.components.base import executor_spec
from tfx.proto import distribution_validator_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter
from tfx.utils import json_utils

_CONFIG_KEY = standard_component_specs.DISTRIBUTION_VALIDATOR_CONFIG_KEY


class Executor(tfx_executor.Executor):
    """TFX's executor, given its config as a proto also where it came as JSON text."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]):
        config = exec_properties.get(_CONFIG_KEY)
        if isinstance(config, str):
            parsed = json_format.Parse(config, distribution_validator_pb2.DistributionValidatorConfig())
            exec_properties = {**exec_properties, _CONFIG_KEY: parsed}
        return super().Do(input_dict, output_dict, exec_properties)


class DistributionValidatorSpec(standard_component_specs.DistributionValidatorSpec):
    """TFX's spec with an optional baseline."""
    INPUTS = {
        **standard_component_specs.DistributionValidatorSpec.INPUTS,
        standard_component_specs.BASELINE_STATISTICS_KEY: ChannelParameter(
            type=standard_artifacts.ExampleStatistics, optional=True),
    }


class DistributionValidator(tfx_component.DistributionValidator):
    """Compares `statistics` with `baseline_statistics` (possibly none) split pair by split pair."""

    SPEC_CLASS = DistributionValidatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, statistics: types.BaseChannel, baseline_statistics: Optional[types.BaseChannel],
                 config: distribution_validator_pb2.DistributionValidatorConfig,
                 include_split_pairs: Optional[List[Tuple[str, str]]] = None):
        # TFX's __init__ builds TFX's spec class: build this one instead.
        super(tfx_component.DistributionValidator, self).__init__(spec=DistributionValidatorSpec(
            statistics=statistics, baseline_statistics=baseline_statistics,
            distribution_validator_config=config,
            include_split_pairs=json_utils.dumps(include_split_pairs),
            anomalies=types.Channel(type=standard_artifacts.ExampleAnomalies)))
