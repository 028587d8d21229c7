"""What data validation found, in words a person can act on: each anomaly with its feature, what
was expected, what was found and the counts, and every drift and skew figure measured.

Three TFX validators feed it, each writing TFDV Anomalies protos:
  ExampleValidator  each split against the curated schema        (Split-<split>/SchemaDiff.pb)
  DriftValidator    train vs the served model's train (drift)    (SplitPair-train_train/...)
  SkewValidator     eval vs train of this run (skew)             (SplitPair-eval_train/...)
and ImageExampleGen's ingest report: eval images that duplicate train images (leakage), a check
no TFDV validator makes (it sees features one at a time, never pairs of examples).
The DataGate reads them to stop or go on; the run report reads them again, also for a run the gate
stopped (a failed component publishes no artifact, so the gate's own record exists only when the
run went on). Local files are read without TensorFlow; gs:// paths through tf.io.gfile.
"""
import dataclasses
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from common import ingest_report as ingest

SCHEMA, DRIFT, SKEW, DUPLICATES = "schema", "drift", "skew", "duplicates"
TRAIN, EVAL = "train", "eval"  # ImageExampleGen's split names
STATS_FILE = "FeatureStats.pb"  # TFX's StatisticsGen: <uri>/Split-<split>/FeatureStats.pb
ANOMALIES_FILE = "SchemaDiff.pb"  # ExampleValidator and DistributionValidator
DRIFT_PAIR = (TRAIN, TRAIN)  # (this run's split, the baseline's split)
SKEW_PAIR = (EVAL, TRAIN)  # (tested split, reference split), both of this run
CHECK_WHAT = {SCHEMA: "against the schema", DRIFT: "train vs the served model's training data",
              SKEW: "eval vs train", DUPLICATES: "eval images vs train images"}
LEAKAGE = "eval images duplicate train images"  # the duplicates finding's anomaly
PAIRS_IN_LINE = 3  # pairs the finding's line names (the ingest report lists more)
METRICS = {anomalies_pb2.DriftSkewInfo.Measurement.L_INFTY: "L-infinity distance",
           anomalies_pb2.DriftSkewInfo.Measurement.JENSEN_SHANNON_DIVERGENCE: "Jensen-Shannon divergence",
           anomalies_pb2.DriftSkewInfo.Measurement.NORMALIZED_ABSOLUTE_DIFFERENCE: "normalized abs. difference"}
_T = anomalies_pb2.AnomalyInfo.Type
_PRESENCE = {_T.FEATURE_TYPE_LOW_FRACTION_PRESENT, _T.FEATURE_TYPE_LOW_NUMBER_PRESENT,
             _T.FEATURE_TYPE_NOT_PRESENT, _T.SCHEMA_MISSING_COLUMN}
_VALUE_COUNT = {_T.FEATURE_TYPE_LOW_NUMBER_VALUES, _T.FEATURE_TYPE_HIGH_NUMBER_VALUES,
                _T.FEATURE_TYPE_NO_VALUES, _T.INVALID_FEATURE_SHAPE}
_INT_RANGE = {_T.INT_TYPE_BIG_INT, _T.INT_TYPE_SMALL_INT}


class DataValidationError(Exception):
    """Data validation found anomalies and the run stopped before Transform (exit code 1)."""


@dataclasses.dataclass(frozen=True)
class Finding:
    """One anomaly: a reason TFDV gave for one feature (or the dataset) in one check."""
    check: str  # SCHEMA, DRIFT or SKEW
    split: str  # SCHEMA: the split; DRIFT, SKEW: which splits were compared
    feature: str  # "" for the dataset as a whole
    anomaly: str  # TFDV's short description
    expected: str
    found: str
    blocking: bool  # stops the run (unless overridden)

    def line(self) -> str:
        """One line: feature, check, anomaly, expected, found."""
        where = f"{self.split} split" if self.check == SCHEMA else CHECK_WHAT[self.check]
        return (f"{self.feature or 'dataset'} ({where}): {self.anomaly}: expected {self.expected}, "
                f"found {self.found}")


@dataclasses.dataclass(frozen=True)
class Measurement:
    """A drift or skew figure TFDV measured, breached or not."""
    check: str  # DRIFT or SKEW
    feature: str
    metric: str  # METRICS' words
    value: float
    threshold: float

    @property
    def breached(self) -> bool:
        return self.value > self.threshold


@dataclasses.dataclass
class Validation:
    """Everything found in one run."""
    findings: List[Finding]
    measurements: List[Measurement]
    drift_compared: bool  # False when there was no baseline (no blessed model, or its own data)

    @property
    def blocking(self) -> List[Finding]:
        return [f for f in self.findings if f.blocking]

    def to_json(self) -> str:
        return json.dumps({"findings": [dataclasses.asdict(f) for f in self.findings],
                           "measurements": [dataclasses.asdict(m) for m in self.measurements],
                           "drift_compared": self.drift_compared}, indent=1)


# ---------------------------------------------------------------- reading the artifacts

def _read_bytes(path: str) -> Optional[bytes]:
    if "://" in path:  # gs://: TensorFlow is loaded wherever such a path is read (pipeline steps)
        import tensorflow as tf
        if not tf.io.gfile.exists(path):
            return None
        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read()
    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        return f.read()


def load_statistics(uri: Optional[str], split: str) -> Optional[statistics_pb2.DatasetFeatureStatistics]:
    """One split's statistics from a StatisticsGen artifact (None when absent)."""
    data = _read_bytes(os.path.join(uri, f"Split-{split}", STATS_FILE)) if uri else None
    if data is None:
        return None
    datasets = statistics_pb2.DatasetFeatureStatisticsList.FromString(data).datasets
    return datasets[0] if datasets else None


def load_anomalies(uri: Optional[str], subdir: str) -> Optional[anomalies_pb2.Anomalies]:
    """The Anomalies a validator wrote under <uri>/<subdir> (None when absent)."""
    data = _read_bytes(os.path.join(uri, subdir, ANOMALIES_FILE)) if uri else None
    return None if data is None else anomalies_pb2.Anomalies.FromString(data)


def pair_dir(pair: Tuple[str, str]) -> str:
    """DistributionValidator's folder of a split pair."""
    return f"SplitPair-{pair[0]}_{pair[1]}"


def load_schema(uri: Optional[str]) -> Optional[schema_pb2.Schema]:
    """The schema.pbtxt of a Schema artifact (None when absent)."""
    data = _read_bytes(os.path.join(uri, "schema.pbtxt")) if uri else None
    return None if data is None else text_format.Parse(data.decode("utf-8"), schema_pb2.Schema())


# ---------------------------------------------------------------- statistics, in counts

def _feature_stats(stats, name: str) -> Optional[statistics_pb2.FeatureNameStatistics]:
    for feature in stats.features if stats else ():
        if (feature.path.step and feature.path.step[0] == name) or feature.name == name:
            return feature
    return None


def _common(feature: statistics_pb2.FeatureNameStatistics) -> statistics_pb2.CommonStatistics:
    kind = feature.WhichOneof("stats")
    return getattr(feature, kind).common_stats if kind else statistics_pb2.CommonStatistics()


def value_counts(stats, name: str) -> Dict[str, int]:
    """{value: examples} of a string feature (its rank histogram; TFDV keeps 1000 values)."""
    feature = _feature_stats(stats, name)
    if feature is None or not feature.HasField("string_stats"):
        return {}
    return {b.label: int(round(b.sample_count)) for b in feature.string_stats.rank_histogram.buckets}


def _share_text(counts: Dict[str, int], value: str) -> str:
    total = sum(counts.values())
    n = counts.get(value, 0)
    return f"{100.0 * n / total if total else 0.0:.1f}% ({n} of {total})"


def distribution_text(counts: Dict[str, int], most: int = 10) -> str:
    """'a 20.0% (24 of 120), b ...' in value order; past `most` values, the most frequent ones."""
    shown = sorted(counts) if len(counts) <= most else sorted(counts, key=lambda v: (-counts[v], v))[:most]
    more = f", ... ({len(counts) - most} more)" if len(counts) > most else ""
    return ", ".join(f"{value} {_share_text(counts, value)}" for value in shown) + more


def largest_change(current: Dict[str, int], reference: Dict[str, int]) -> Optional[str]:
    """The value whose share changed most between two distributions (on a tie, the one that had
    the larger share before)."""
    def share(counts, value):
        total = sum(counts.values())
        return counts.get(value, 0) / total if total else 0.0
    values = sorted(set(current) | set(reference))
    if not values:
        return None
    return max(values, key=lambda v: (round(abs(share(current, v) - share(reference, v)), 9),
                                      share(reference, v), v))


def _int_range(feature: statistics_pb2.FeatureNameStatistics) -> Tuple[float, float]:
    """(min, max) of an integer feature: numeric statistics, or the values of a categorical one."""
    if feature.HasField("num_stats"):
        return feature.num_stats.min, feature.num_stats.max
    values = [float(b.label) for b in feature.string_stats.rank_histogram.buckets]
    return (min(values), max(values)) if values else (float("nan"), float("nan"))


def numeric_summary(stats, name: str) -> Optional[Tuple[float, float, int]]:
    """(mean, standard deviation, examples) of a numeric feature, or of a categorical integer one
    (height, width) from its value counts; None without either."""
    feature = _feature_stats(stats, name)
    if feature is None:
        return None
    if feature.HasField("num_stats"):
        return feature.num_stats.mean, feature.num_stats.std_dev, int(_common(feature).num_non_missing)
    try:
        counts = [(float(value), n) for value, n in value_counts(stats, name).items()]
    except ValueError:  # a string feature
        return None
    total = sum(n for _, n in counts)
    if not total:
        return None
    mean = sum(v * n for v, n in counts) / total
    return mean, (sum(n * (v - mean) ** 2 for v, n in counts) / total) ** 0.5, total


def _numbers_text(stats, name: str) -> str:
    feature = _feature_stats(stats, name)
    if feature is None or not feature.HasField("num_stats"):
        return "no values"
    s = feature.num_stats
    return f"mean {s.mean:g} ({s.min:g} to {s.max:g}, {_common(feature).num_non_missing} examples)"


# ---------------------------------------------------------------- explaining one reason

def _schema_feature(schema, name: str) -> Optional[schema_pb2.Feature]:
    for feature in schema.feature if schema else ():
        if feature.name == name:
            return feature
    return None


def _schema_expected_found(reason, feature: str, schema, stats) -> Tuple[str, str]:
    """(expected, found) of a schema anomaly from the schema and the split's statistics."""
    declared = _schema_feature(schema, feature)
    observed = _feature_stats(stats, feature)
    examples = stats.num_examples if stats else 0
    if reason.type == _T.ENUM_TYPE_UNEXPECTED_STRING_VALUES and declared is not None:
        allowed = list(declared.string_domain.value)
        counts = value_counts(stats, feature)
        unexpected = {v: n for v, n in counts.items() if v not in allowed}
        found = ", ".join(f"{v} in {n} of {examples} examples" for v, n in sorted(unexpected.items()))
        return f"one of {{{', '.join(allowed)}}}", found or reason.description
    if reason.type in _INT_RANGE and declared is not None and observed is not None:
        domain = declared.int_domain
        low, high = _int_range(observed)
        return (f"an integer in [{domain.min}, {domain.max}]",
                f"values from {low:g} to {high:g} in {examples} examples ({reason.description.strip()})")
    if reason.type in _PRESENCE:
        present = _common(observed).num_non_missing if observed is not None else 0
        return "a value in every example", f"values in {present} of {examples} examples"
    if reason.type in _VALUE_COUNT and observed is not None:
        common = _common(observed)
        return "exactly one value per example", (f"{common.num_non_missing} of {examples} examples with "
                                                 f"{common.min_num_values} to {common.max_num_values} values")
    if reason.type == _T.SCHEMA_NEW_COLUMN:
        present = _common(observed).num_non_missing if observed is not None else 0
        return "no such feature (not in the schema)", f"values in {present} of {examples} examples"
    if reason.type == _T.LOW_SUPPORTED_IMAGE_FRACTION and declared is not None:
        return (f"at least {declared.image_domain.minimum_supported_image_fraction:g} of the values images "
                "TensorFlow decodes (jpeg, png, gif, bmp)", reason.description.strip())
    return "what the schema declares", reason.description.strip()


def _comparison_expected_found(reason, feature: str, check: str, measured: Dict[str, Measurement],
                               current, reference) -> Tuple[str, str]:
    """(expected, found) of a drift or skew anomaly: the figure against its threshold, and the
    distributions behind it."""
    m = measured.get(feature)
    if m is None:
        return "a comparable distribution", reason.description.strip()
    now, before = value_counts(current, feature), value_counts(reference, feature)
    if now or before:
        value = largest_change(now, before)
        detail = (f"{value} {_share_text(before, value)} -> {_share_text(now, value)}; now "
                  f"{distribution_text(now)}")
    else:
        detail = f"{_numbers_text(reference, feature)} -> {_numbers_text(current, feature)}"
    return f"{m.metric} <= {m.threshold:g}", f"{m.value:.3f}: {detail}"


def measurements(anomalies: Optional[anomalies_pb2.Anomalies], check: str) -> List[Measurement]:
    """The figures a DistributionValidator measured (drift_skew_info), one per feature and metric."""
    found = []
    for info in anomalies.drift_skew_info if anomalies else ():
        for m in list(info.drift_measurements) + list(info.skew_measurements):
            found.append(Measurement(check, ".".join(info.path.step), METRICS.get(m.type, str(m.type)),
                                     m.value, m.threshold))
    return found


def _reasons(anomalies: Optional[anomalies_pb2.Anomalies]):
    """(feature, reason) of every reason, features by name, the dataset's last."""
    for feature, info in sorted((anomalies.anomaly_info.items() if anomalies else ())):
        for reason in info.reason:
            yield feature, reason
    if anomalies is not None and anomalies.HasField("dataset_anomaly_info"):
        for reason in anomalies.dataset_anomaly_info.reason:
            yield "", reason


def schema_findings(anomalies_by_split: Dict[str, anomalies_pb2.Anomalies], schema,
                    stats_by_split: Dict[str, statistics_pb2.DatasetFeatureStatistics]) -> List[Finding]:
    """ExampleValidator's anomalies, split by split (each one stops the run)."""
    findings = []
    for split, anomalies in anomalies_by_split.items():
        for feature, reason in _reasons(anomalies):
            expected, found = _schema_expected_found(reason, feature, schema, stats_by_split.get(split))
            findings.append(Finding(SCHEMA, split, feature, reason.short_description, expected, found, True))
    return findings


def comparison_findings(anomalies: Optional[anomalies_pb2.Anomalies], check: str, current, reference,
                        blocking: bool, warn_only: Sequence[str] = ()) -> List[Finding]:
    """A DistributionValidator's anomalies (drift or skew); those of the features in `warn_only`
    never block."""
    split = {DRIFT: "train vs served model's train", SKEW: "eval vs train"}[check]
    measured = {m.feature: m for m in measurements(anomalies, check)}
    findings = []
    for feature, reason in _reasons(anomalies):
        expected, found = _comparison_expected_found(reason, feature, check, measured, current, reference)
        findings.append(Finding(check, split, feature, reason.short_description, expected, found,
                                blocking and feature not in warn_only))
    return findings


def read_ingest_report(path: Optional[str]) -> Optional[ingest.IngestReport]:
    """The ingest report at `path` (None when absent)."""
    data = _read_bytes(path) if path else None
    return None if data is None else ingest.IngestReport.from_json(data.decode("utf-8"))


def duplicate_findings(report: Optional[ingest.IngestReport], blocking: bool) -> List[Finding]:
    """One finding when eval images duplicate train images (exact or near): the counts and the
    first pairs by path (the ingest report lists up to ingest.MAX_LISTED_DUPLICATES)."""
    dup = report.duplicates if report is not None else None
    if dup is None or dup.cross_split == 0:
        return []
    pairs = ", ".join(f"{p['train']} {'=' if p['kind'] == 'exact' else '~'} {p['eval']}"
                      for p in dup.cross_split_pairs[:PAIRS_IN_LINE])
    more = f", ... ({dup.cross_split - PAIRS_IN_LINE} more)" if dup.cross_split > PAIRS_IN_LINE else ""
    found = (f"{dup.cross_split} train/eval pair{'s' if dup.cross_split != 1 else ''} ({dup.cross_split_exact} "
             f"exact, {dup.cross_split_near} near: perceptual hash within {dup.near_max_hamming} bits): "
             f"{pairs}{more}")
    return [Finding(DUPLICATES, CHECK_WHAT[DUPLICATES], "image", LEAKAGE,
                    "no eval image that is a copy of a train image", found, blocking)]


def validate(schema_uri: Optional[str], statistics_uri: str, example_anomalies_uri: Optional[str],
             skew_anomalies_uri: Optional[str], drift_anomalies_uri: Optional[str],
             baseline_statistics_uri: Optional[str], stop_on_skew: bool,
             splits: Sequence[str] = (TRAIN, EVAL), drift_warn_only: Sequence[str] = (),
             ingest_report_path: Optional[str] = None, stop_on_duplicates: bool = True) -> Validation:
    """Everything the three validators and the duplicate search found in one run, from their
    artifacts' URIs (drift of the features in drift_warn_only does not block)."""
    schema = load_schema(schema_uri)
    stats = {split: load_statistics(statistics_uri, split) for split in splits}
    anomalies = {split: load_anomalies(example_anomalies_uri, f"Split-{split}") for split in splits}
    skew = load_anomalies(skew_anomalies_uri, pair_dir(SKEW_PAIR))
    drift = load_anomalies(drift_anomalies_uri, pair_dir(DRIFT_PAIR))
    baseline = load_statistics(baseline_statistics_uri, DRIFT_PAIR[1])
    findings = schema_findings({s: a for s, a in anomalies.items() if a is not None}, schema, stats)
    findings += comparison_findings(drift, DRIFT, stats.get(DRIFT_PAIR[0]), baseline, blocking=True,
                                    warn_only=drift_warn_only)
    findings += comparison_findings(skew, SKEW, stats.get(SKEW_PAIR[0]), stats.get(SKEW_PAIR[1]),
                                    blocking=stop_on_skew)
    findings += duplicate_findings(read_ingest_report(ingest_report_path), blocking=stop_on_duplicates)
    return Validation(findings, measurements(drift, DRIFT) + measurements(skew, SKEW),
                      drift_compared=drift is not None)


def stop_message(blocking: Sequence[Finding]) -> str:
    """The one line a stopped run ends with: every blocking anomaly, and the way to go on anyway."""
    return (f"data validation stopped the run before Transform (nothing trained or pushed): "
            f"{len(blocking)} anomal{'y' if len(blocking) == 1 else 'ies'}: "
            + " | ".join(f.line() for f in blocking)
            + ". Fix the data, or rerun with --proceed-despite-anomalies to train on it anyway (for "
            "data that is right but breaks the schema: python -m run_control.schema_update)"
            + "".join(hint for check, content, hint in _KNOB_HINTS
                      if any(f.check == check and (content is None or f.feature.startswith(content))
                             for f in blocking)))


# (check, feature prefix or None, the hint the stop line ends with) for the checks a knob turns off.
_KNOB_HINTS = ((DRIFT, "content_", "; content drift that is expected: --no-content-drift-stops or a larger "
                                   "--content-drift-max-jsd"),
               (DUPLICATES, None, "; remove the eval copies (ingest_report.json lists them), or "
                                  "--no-stop-on-cross-split-duplicates"))
