"""DataGate's executor: reads what the validators found, then stops the run or records that it
went on (and whether it went on despite anomalies)."""
import json
import os
from typing import Any, Dict, List, Optional

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from common import pipeline_names
from components.data_gate import findings

PROCEED_KEY = "proceed_despite_anomalies"
STOP_ON_SKEW_KEY = "stop_on_skew"
SKEW_KEY = "skew_anomalies"
DRIFT_KEY = "drift_anomalies"
BASELINE_KEY = "baseline_statistics"
DRIFT_WARN_ONLY_KEY = "drift_warn_only"
STOP_ON_DUPLICATES_KEY = "stop_on_cross_split_duplicates"


def drift_warn_only(exec_properties: Dict[str, Any]) -> List[str]:
    """The features whose drift only warns (none in a spec compiled before the parameter)."""
    return json.loads(exec_properties.get(DRIFT_WARN_ONLY_KEY) or "[]")


def ingest_report_path(input_dict: Dict[str, List[types.Artifact]]) -> Optional[str]:
    uri = _uri(input_dict, pipeline_names.EXAMPLES_OUTPUT)
    return os.path.join(uri, pipeline_names.INGEST_REPORT_FILE) if uri else None


def _uri(input_dict: Dict[str, List[types.Artifact]], key: str) -> Optional[str]:
    artifacts = input_dict.get(key) or []
    return artifacts[0].uri if artifacts else None


def _log(validation: findings.Validation) -> None:
    """Every figure at INFO, every finding at WARNING (ERROR when it stops the run)."""
    if not validation.drift_compared:
        logging.info("DataGate: no drift baseline (no blessed model yet, or its data is this data)")
    for m in validation.measurements:
        logging.info("DataGate: %s %s %s = %.4f (threshold %g)%s", m.check, m.feature, m.metric, m.value,
                     m.threshold, " BREACHED" if m.breached else "")
    for finding in validation.findings:
        level = logging.ERROR if finding.blocking else logging.WARNING
        logging.log(level, "DataGate: %s anomaly: %s", finding.check, finding.line())


class Executor(base_executor.BaseExecutor):
    """Raises DataValidationError on blocking findings unless told to proceed."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        validation = findings.validate(
            schema_uri=_uri(input_dict, pipeline_names.SCHEMA_OUTPUT),
            statistics_uri=_uri(input_dict, pipeline_names.STATISTICS_OUTPUT),
            example_anomalies_uri=_uri(input_dict, pipeline_names.ANOMALIES_OUTPUT),
            skew_anomalies_uri=_uri(input_dict, SKEW_KEY), drift_anomalies_uri=_uri(input_dict, DRIFT_KEY),
            baseline_statistics_uri=_uri(input_dict, BASELINE_KEY),
            stop_on_skew=bool(exec_properties[STOP_ON_SKEW_KEY]),
            drift_warn_only=drift_warn_only(exec_properties),
            ingest_report_path=ingest_report_path(input_dict),
            stop_on_duplicates=exec_properties.get(STOP_ON_DUPLICATES_KEY) in (None, 1, True))
        _log(validation)
        blocking = validation.blocking
        proceed = bool(exec_properties[PROCEED_KEY])
        if blocking and not proceed:
            raise findings.DataValidationError(findings.stop_message(blocking))
        if blocking:
            logging.warning("DataGate: going on despite %d anomalies (--proceed-despite-anomalies)",
                            len(blocking))
        result = artifact_utils.get_single_instance(output_dict[pipeline_names.DATA_GATE_OUTPUT])
        tf.io.gfile.makedirs(result.uri)  # a Kubeflow container gets the URI, not the folder
        with tf.io.gfile.GFile(os.path.join(result.uri, pipeline_names.DATA_VALIDATION_FILE), "w") as f:
            f.write(validation.to_json())
        result.set_int_custom_property(pipeline_names.PROP_FINDINGS, len(validation.findings))
        result.set_int_custom_property(pipeline_names.PROP_BLOCKING, len(blocking))
        result.set_int_custom_property(pipeline_names.PROP_OVERRIDDEN, int(bool(blocking) and proceed))
