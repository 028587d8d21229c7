"""The comparisons of a window of prediction logs with the served model's training data.

The class and size comparisons are the data gate's own: pipeline/data_validation.distribution_config
gives the comparators (predicted classes against training classes by L-infinity distance, image
height and width by Jensen-Shannon divergence, sizes counted as categories), and TFDV's
validate_statistics measures them, with the window's statistics as the current ones and the
training statistics (StatisticsGen's) as the previous ones, exactly as the DistributionValidator
does. The content statistics (common/image_content.py) get TFDV's Jensen-Shannon divergence the
same way, against the statistics of the training sample. What TFDV does not measure is computed
here: the share of failed and of low-confidence requests, and the drop of the mean top-1
probability from the one the Evaluator saw on the eval split.
"""
import dataclasses
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2

from common import image_content, prediction_log
from components.data_gate import findings
from monitoring.reference import Reference
from pipeline import configs, data_validation
from trainer_module import names

_DEFAULTS = configs.PipelineConfig()
CLASS = "predicted class"
FAILED = "failed requests"
LOW_CONFIDENCE = "low-confidence requests"
CONFIDENCE = "mean top-1 probability"


@dataclasses.dataclass
class Thresholds:
    """Every threshold of the monitor (its flags)."""
    # Above the data gate's 0.1: predicted classes differ from true ones by the model's errors, and
    # a window holds fewer images than a data drop.
    class_max_linf: float = 0.2
    size_max_jsd: float = _DEFAULTS.size_drift_max_jsd
    content_max_jsd: float = 0.25
    low_confidence: float = 0.5  # a request below this top-1 probability is low-confidence
    max_low_confidence_share: float = 0.3
    max_failed_share: float = 0.05
    max_confidence_drop: float = 0.15
    min_requests: int = 20


@dataclasses.dataclass
class Measurement:
    """One figure of the window, its bound and whether it breaches it."""
    name: str  # a feature (class_name, height, content_brightness) or one of the shares
    metric: str
    value: float
    threshold: float
    detail: str = ""

    @property
    def breached(self) -> bool:
        return self.value > self.threshold

    def line(self) -> str:
        return (f"BREACH {self.name}: {self.metric} {self.value:.3f} > {self.threshold:g}"
                + (f" ({self.detail})" if self.detail else ""))


def label_schema() -> schema_pb2.Schema:
    """The class and size features with the data gate's comparators (thresholds set per call)."""
    schema = schema_pb2.Schema()
    schema.feature.add(name=names.CLASS_NAME_KEY, type=schema_pb2.BYTES)
    for name in data_validation.SIZE_FEATURES:
        size = schema.feature.add(name=name, type=schema_pb2.INT)
        size.int_domain.is_categorical = True
    return schema


def _with_comparators(schema: schema_pb2.Schema, config) -> schema_pb2.Schema:
    """The schema with each comparator of a DistributionValidatorConfig as a drift comparator."""
    schema = schema_pb2.Schema.FromString(schema.SerializeToString())
    by_name = {f.name: f for f in schema.feature}
    for comparator in config.default_slice_config.feature:
        if comparator.path.step[0] in by_name:  # the content statistics are compared apart (content_schema)
            by_name[comparator.path.step[0]].drift_comparator.CopyFrom(comparator.distribution_comparator)
    return schema


def content_schema(max_jsd: float) -> schema_pb2.Schema:
    schema = schema_pb2.Schema()
    for name in image_content.STATISTICS:
        feature = schema.feature.add(name=name, type=schema_pb2.FLOAT)
        feature.drift_comparator.jensen_shannon_divergence.threshold = max_jsd
    return schema


def _tfdv_measurements(current, previous, schema) -> List[Measurement]:
    anomalies = tfdv.validate_statistics(current, schema, previous_statistics=previous)
    return [Measurement(m.feature, m.metric, m.value, m.threshold)
            for m in findings.measurements(anomalies, findings.DRIFT)]


def window_frame(records: Sequence[Dict]) -> pd.DataFrame:
    """The classified requests as columns: class_name (the predicted class), height, width, the
    content statistics and the probability."""
    rows = [{names.CLASS_NAME_KEY: r[prediction_log.PREDICTED_CLASS],
             names.HEIGHT_KEY: r.get(prediction_log.HEIGHT), names.WIDTH_KEY: r.get(prediction_log.WIDTH),
             prediction_log.PROBABILITY: r.get(prediction_log.PROBABILITY),
             **{k: r.get(k) for k in image_content.STATISTICS}}
            for r in prediction_log.classified(records)]
    return pd.DataFrame(rows, columns=[names.CLASS_NAME_KEY, names.HEIGHT_KEY, names.WIDTH_KEY,
                                       prediction_log.PROBABILITY, *image_content.STATISTICS])


def reference_confidence(reference: Reference) -> Optional[float]:
    """The mean top-1 probability on the eval split (TFMA's calibration plot), None without it."""
    count = sum(b.count for b in reference.confidence)
    return sum(b.total_prediction for b in reference.confidence) / count if count else None


def _share(counts: Dict[str, int], value: str) -> str:
    total = sum(counts.values())
    return f"{100.0 * counts.get(value, 0) / total if total else 0.0:.1f}%"


def compare(records: Sequence[Dict], reference: Reference, thresholds: Thresholds) -> List[Measurement]:
    """Every measurement of the window (see the module docstring), breached or not."""
    frame = window_frame(records)
    found: List[Measurement] = []
    total = len(records)
    failed = sum(1 for r in records if r.get(prediction_log.ERROR))
    found.append(Measurement(FAILED, "share", failed / total if total else 0.0, thresholds.max_failed_share,
                             f"{failed} of {total}"))
    if frame.empty:
        return found
    low = int((frame[prediction_log.PROBABILITY] < thresholds.low_confidence).sum())
    found.append(Measurement(LOW_CONFIDENCE, f"share below {thresholds.low_confidence:g}", low / len(frame),
                             thresholds.max_low_confidence_share, f"{low} of {len(frame)}"))
    expected = reference_confidence(reference)
    if expected is not None:
        mean = float(frame[prediction_log.PROBABILITY].mean())
        found.append(Measurement(CONFIDENCE, "drop from eval", expected - mean, thresholds.max_confidence_drop,
                                 f"{mean:.3f} in the window, {expected:.3f} on eval"))
    config = data_validation.distribution_config(thresholds.class_max_linf, thresholds.size_max_jsd,
                                                 thresholds.content_max_jsd)
    schema = _with_comparators(label_schema(), config)
    labels = frame[[names.CLASS_NAME_KEY, names.HEIGHT_KEY, names.WIDTH_KEY]].dropna()
    labels = labels.astype({names.HEIGHT_KEY: np.int64, names.WIDTH_KEY: np.int64})
    current = tfdv.generate_statistics_from_dataframe(labels, tfdv.StatsOptions(schema=schema))
    for m in _tfdv_measurements(current, reference.label_stats, schema):
        if m.name == names.CLASS_NAME_KEY:
            now = labels[names.CLASS_NAME_KEY].value_counts().to_dict()
            value = findings.largest_change(now, reference.class_counts)
            m.name, m.detail = CLASS, (f"largest change: {value} {_share(reference.class_counts, value)} in "
                                       f"training, {_share(now, value)} predicted")
        found.append(m)
    content = frame[list(image_content.STATISTICS)].dropna().astype(np.float64)
    if not content.empty and not reference.content.empty:
        schema = content_schema(thresholds.content_max_jsd)
        current = tfdv.generate_statistics_from_dataframe(content)
        previous = tfdv.generate_statistics_from_dataframe(reference.content.astype(np.float64))
        for m in _tfdv_measurements(current, previous, schema):
            m.detail = (f"mean {content[m.name].mean():.3f} in the window, "
                        f"{reference.content[m.name].mean():.3f} in training")
            found.append(m)
    return found
