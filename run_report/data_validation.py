"""The data validation part of the report's Data section: the gate's verdict, the schema version,
examples per split and class (this run's and the served model's training data), the image sizes
and content statistics beside them, every anomaly (feature, expected, found; cross-split
duplicates included), every drift and skew figure, and the class distribution plot.

Read back from the validators' artifacts (components/data_gate/findings.py), so a run the gate
stopped, which has no gate record, is reported the same way.
"""
import dataclasses
import html
import json
import os
from typing import Dict, Optional, Tuple

from common import image_content, pipeline_names, store
from components.data_gate import executor as gate_executor, findings
from run_report import plots
from trainer_module import names

CLASS_DISTRIBUTION_PNG = "class_distribution.png"
BASELINE_LABEL = "served model's train"
# What the table beside the class counts shows, mean and spread per split: the image size (as
# numbers, whatever the schema says) and every content statistic.
NUMBER_FEATURES = (names.HEIGHT_KEY, names.WIDTH_KEY, *image_content.STATISTICS)


@dataclasses.dataclass
class DataValidationView:
    """What the report shows of one run's data validation."""
    gate_state: Optional[str]  # the DataGate's state: COMPLETE, CACHED, FAILED; None: it did not run
    overridden: bool  # the run went on despite anomalies (--proceed-despite-anomalies)
    schema_version: Optional[str]
    validation: findings.Validation
    counts: Dict[str, Dict[str, int]]  # split -> class name -> examples
    baseline_counts: Optional[Dict[str, int]]  # the served model's train split; None: no baseline
    baseline_uri: Optional[str]
    # column (split, or the served model's train) -> size or content feature -> (mean, std, examples)
    numbers: Dict[str, Dict[str, Optional[Tuple[float, float, int]]]] = dataclasses.field(default_factory=dict)

    @property
    def stopped(self) -> bool:
        return self.gate_state == "FAILED"


def _uri(nodes: Dict[str, store.NodeRun], node_id: str, key: str) -> Optional[str]:
    node = nodes.get(node_id)
    return node.uri(key) if node else None


def collect(metadata_path: str, run_id: str, nodes: Dict[str, store.NodeRun]) -> Optional[DataValidationView]:
    """The run's data validation; None for a run without ExampleValidator (nothing validated)."""
    if pipeline_names.EXAMPLE_VALIDATOR_NODE not in nodes:
        return None
    statistics_uri = _uri(nodes, pipeline_names.STATISTICS_GEN_NODE, pipeline_names.STATISTICS_OUTPUT)
    baseline = store.node_inputs(metadata_path, run_id,
                                 pipeline_names.DRIFT_VALIDATOR_NODE).get(gate_executor.BASELINE_KEY)
    baseline_uri = baseline[0].uri if baseline else None
    stop_on_skew = store.execution_property(metadata_path, run_id, pipeline_names.DATA_GATE_NODE,
                                            gate_executor.STOP_ON_SKEW_KEY)
    warn_only = store.execution_property(metadata_path, run_id, pipeline_names.DATA_GATE_NODE,
                                         gate_executor.DRIFT_WARN_ONLY_KEY)
    stop_on_duplicates = store.execution_property(metadata_path, run_id, pipeline_names.DATA_GATE_NODE,
                                                  gate_executor.STOP_ON_DUPLICATES_KEY)
    examples_uri = _uri(nodes, pipeline_names.EXAMPLE_GEN_NODE, pipeline_names.EXAMPLES_OUTPUT)
    validation = findings.validate(
        schema_uri=_uri(nodes, pipeline_names.SCHEMA_GEN_NODE,
                        pipeline_names.SCHEMA_OUTPUT), statistics_uri=statistics_uri,
        example_anomalies_uri=_uri(nodes, pipeline_names.EXAMPLE_VALIDATOR_NODE, pipeline_names.ANOMALIES_OUTPUT),
        skew_anomalies_uri=_uri(nodes, pipeline_names.SKEW_VALIDATOR_NODE, pipeline_names.ANOMALIES_OUTPUT),
        drift_anomalies_uri=_uri(nodes, pipeline_names.DRIFT_VALIDATOR_NODE, pipeline_names.ANOMALIES_OUTPUT),
        baseline_statistics_uri=baseline_uri, stop_on_skew=bool(stop_on_skew),
        drift_warn_only=json.loads(warn_only) if warn_only else (),
        ingest_report_path=os.path.join(examples_uri, pipeline_names.INGEST_REPORT_FILE) if examples_uri else None,
        stop_on_duplicates=True if stop_on_duplicates is None else bool(stop_on_duplicates))
    gate = nodes.get(pipeline_names.DATA_GATE_NODE)
    counts = {split: findings.value_counts(findings.load_statistics(statistics_uri, split), names.CLASS_NAME_KEY)
              for split in (findings.TRAIN, findings.EVAL)}
    baseline_stats = findings.load_statistics(baseline_uri, findings.TRAIN)
    columns = {split: findings.load_statistics(statistics_uri, split) for split in (findings.TRAIN, findings.EVAL)}
    if baseline_stats is not None:
        columns[BASELINE_LABEL] = baseline_stats
    numbers = {column: {name: findings.numeric_summary(stats, name) for name in NUMBER_FEATURES}
               for column, stats in columns.items() if stats is not None}
    return DataValidationView(
        gate_state=gate.state if gate else None,
        overridden=store.output_property(gate, pipeline_names.DATA_GATE_OUTPUT, pipeline_names.PROP_OVERRIDDEN) == 1,
        schema_version=store.output_property(nodes.get(pipeline_names.SCHEMA_GEN_NODE), pipeline_names.SCHEMA_OUTPUT,
                                             pipeline_names.PROP_SCHEMA_VERSION),
        validation=validation, counts=counts,
        baseline_counts=findings.value_counts(baseline_stats, names.CLASS_NAME_KEY) if baseline_stats else None,
        baseline_uri=baseline_uri, numbers=numbers)


# ---------------------------------------------------------------- rendering

def _e(value) -> str:
    return html.escape(str(value))


def verdict_html(view: DataValidationView) -> str:
    """The gate's verdict as a banner."""
    n, blocking = len(view.validation.findings), len(view.validation.blocking)
    if view.stopped:
        return (f'<p class="verdict bad">STOPPED by the data gate before Transform: {blocking} '
                f"anomal{'y' if blocking == 1 else 'ies'} (below); nothing was trained or pushed and the "
                "served model is unchanged.</p>")
    if view.overridden:
        return (f'<p class="verdict bad">PROCEEDED despite {blocking} anomal{"y" if blocking == 1 else "ies"}: '
                "the run was told to (--proceed-despite-anomalies).</p>")
    if view.gate_state is None:
        return '<p class="verdict neutral">No data gate in this run.</p>'
    warned = f" ({n} warning{'s' if n != 1 else ''}, below)" if n else ""
    return f'<p class="verdict ok">PASSED: no anomaly stops this data{_e(warned)}.</p>'


def _counts_table(view: DataValidationView, table) -> str:
    columns = {split: counts for split, counts in view.counts.items() if counts}
    if view.baseline_counts is not None:
        columns[BASELINE_LABEL] = view.baseline_counts
    classes = sorted({c for counts in columns.values() for c in counts})
    rows = [(c, *(counts.get(c, 0) for counts in columns.values())) for c in classes]
    rows.append(("total", *(sum(counts.values()) for counts in columns.values())))
    return table(["class", *columns], rows, numeric_columns=range(1, len(columns) + 1))


def _numbers_table(view: DataValidationView, table) -> str:
    """Mean (standard deviation) of the image size and content statistics per split, beside the
    served model's training data: what the size and content comparators compare."""
    columns = {column: values for column, values in view.numbers.items() if any(values.values())}
    if not columns:
        return ""

    def cell(summary) -> str:
        return "" if summary is None else f"{summary[0]:.3f} ({summary[1]:.3f})"
    rows = [(name, *(cell(values.get(name)) for values in columns.values())) for name in NUMBER_FEATURES]
    return ("<h4>Image size and content (mean, standard deviation)</h4>"
            + table(["feature", *columns], rows, numeric_columns=range(1, len(columns) + 1)))


def _findings_table(view: DataValidationView, table) -> str:
    if not view.validation.findings:
        return "<p>No anomaly.</p>"
    rows = [(f.check, f.split, f.feature or "(dataset)", f.anomaly, f.expected, f.found,
             "yes" if f.blocking else "no (warning)") for f in view.validation.findings]
    return table(["check", "split", "feature", "anomaly", "expected", "found", "stops the run"], rows)


def _measurements_table(view: DataValidationView, table) -> str:
    rows = [(findings.CHECK_WHAT[m.check], m.feature, m.metric, m.value, m.threshold,
             "BREACHED" if m.breached else "ok") for m in view.validation.measurements]
    body = table(["comparison", "feature", "measure", "value", "threshold", "result"], rows,
                 numeric_columns={3, 4}) if rows else ""
    if view.baseline_uri:
        body += (f'<p class="muted">Drift baseline: the statistics of the examples that trained the latest '
                 f"blessed model, <code>{_e(view.baseline_uri)}</code>.</p>")
    elif not view.validation.drift_compared:
        body += ('<p class="muted">No drift comparison: no model was blessed before this run, or the '
                 "served model was trained on this very data.</p>")
    return body


def section_html(view: Optional[DataValidationView], figures: Dict[str, bytes], table, img) -> str:
    """The data validation part of the Data section (table and img: html_page's helpers)."""
    if view is None:
        return "<h3>Data validation</h3><p>No data validation in this run.</p>"
    body = "<h3>Data validation</h3>" + verdict_html(view)
    if view.schema_version:
        body += (f"<p>Schema version <code>{_e(view.schema_version)}</code>: pipeline/schema/schema.pbtxt "
                 "with this run's class names and pixel budget.</p>")
    body += "<h4>Examples per split and class</h4>" + _counts_table(view, table)
    body += _numbers_table(view, table)
    body += "<h4>Anomalies</h4>" + _findings_table(view, table)
    body += "<h4>Drift and skew</h4>" + _measurements_table(view, table)
    distributions = {f"this run's {findings.TRAIN}": view.counts.get(findings.TRAIN, {})}
    if view.baseline_counts is not None:
        distributions[BASELINE_LABEL] = view.baseline_counts
    if any(distributions.values()):
        png = plots.class_shares(distributions, "Class distribution: this run vs the served model's data")
        figures[CLASS_DISTRIBUTION_PNG] = png
        body += img(png, "class distribution of this run against the served model's training data")
    return body
