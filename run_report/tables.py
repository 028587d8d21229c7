"""The numbers in the run report's tables, derived from TFMA's results and the ingest report.

Plain rows of values (None where a number is absent); html_page.py formats and lays them out.
"""
import dataclasses
from typing import List, Optional, Sequence, Tuple

from common import ingest_report, tfma_results
# The per-class rows are defined with the TFMA results in common/ (the model card shows them too).
from common.tfma_results import TOP1, ClassRow, EvalResults, argmax_class, as_count, class_rows, macro_f1
from pipeline import evaluation

__all__ = ["TOP1", "ClassGateRow", "ClassRow", "Row", "accuracy_by_slice_rows", "argmax_class", "class_gate_rows",
           "class_rows", "ingest_rows", "macro_f1", "overall_rows"]

@dataclasses.dataclass
class ClassGateRow:
    """One class's recall (the accuracy on its eval images) against the per-class thresholds:
    the values and each threshold's verdict ("passed", "FAILED", "not applied", "" for none)."""
    name: str
    recall: Optional[float]
    baseline_recall: Optional[float]
    change: Optional[float]
    floor: str
    max_drop: str
    details: str


def class_gate_rows(results: EvalResults, class_names: Sequence[str]) -> List[ClassGateRow]:
    """Per class: candidate and baseline recall, TFMA's change, and the verdict of its floor and of
    its largest drop (TFMA's per-class-slice thresholds, pipeline/evaluation.py)."""
    rows = []
    for name in class_names:
        slice_key = tfma_results.class_slice(name)
        checks = [c for c in results.thresholds if c.metric == evaluation.ACCURACY and c.slice_key == slice_key]
        verdict = {kind: next((c.status for c in checks if c.kind == kind), "")
                   for kind in ("lower bound", "change vs baseline")}
        rows.append(ClassGateRow(
            name, results.metric(evaluation.ACCURACY, slice_key=slice_key),
            results.metric(evaluation.ACCURACY, results.baseline, slice_key=slice_key)
            if results.baseline is not None else None,
            results.metric(evaluation.ACCURACY, slice_key=slice_key, diff=True),
            verdict["lower bound"], verdict["change vs baseline"],
            "; ".join(c.message for c in checks if c.status == "FAILED" and c.message)))
    return rows


Row = Tuple[str, Optional[float], Optional[float], Optional[float]]  # label, candidate, baseline, change


def overall_rows(results: EvalResults, class_names: Sequence[str]) -> List[Row]:
    """[(label, candidate, baseline, change)] of the headline metrics; baseline and change are
    None without a baseline, and change is None where a difference means nothing (counts)."""
    models = [results.candidate] + ([results.baseline] if results.baseline is not None else [])
    ece = {m: tfma_results.expected_calibration_error(results.calibration.get(m, [])) for m in models}
    f1 = {m: macro_f1(class_rows(results, class_names, m)) for m in models}
    # (label, value of a model, TFMA's candidate-minus-baseline diff, whether a change is meaningful)
    specs = [
        ("Accuracy (gated)", lambda m: results.metric(evaluation.ACCURACY, m),
         results.metric(evaluation.ACCURACY, diff=True), True),
        ("Examples", lambda m: as_count(results.metric(evaluation.EXAMPLE_COUNT, m)), None, False),
        ("Macro-averaged F1", lambda m: f1[m], None, True),
        ("Calibration (mean top-1 probability / accuracy; 1 is ideal)",
         lambda m: results.metric(evaluation.CALIBRATION, m, sub_key=TOP1),
         results.metric(evaluation.CALIBRATION, sub_key=TOP1, diff=True), True),
        ("Expected calibration error (top-1, from TFMA's calibration plot)", lambda m: ece[m], None, True),
    ]
    rows = []
    for label, value, change, has_change in specs:
        candidate = value(results.candidate)
        baseline = value(results.baseline) if results.baseline is not None else None
        if change is None and has_change and candidate is not None and baseline is not None:
            change = candidate - baseline
        rows.append((label, candidate, baseline, change))
    return rows


def accuracy_by_slice_rows(results: EvalResults) -> List[Row]:
    """[(slice, candidate, baseline, TFMA's change)] of accuracy, overall then per true class."""
    rows = []
    for slice_key in [tfma_results.OVERALL] + results.class_slices():
        label = "overall" if not slice_key else ", ".join(f"{k}={v}" for k, v in slice_key)
        rows.append((label, results.metric(evaluation.ACCURACY, slice_key=slice_key),
                     results.metric(evaluation.ACCURACY, results.baseline, slice_key=slice_key),
                     results.metric(evaluation.ACCURACY, slice_key=slice_key, diff=True)))
    return rows


def ingest_rows(report: ingest_report.IngestReport) -> Tuple[List[str], List[Tuple]]:
    """(splits, [(class, count per split..., total)] plus a "total" row) from the ingest report."""
    counts = report.ingested_by_split_and_class
    splits = list(counts)
    rows = [(c, *[counts[s].get(c, 0) for s in splits], sum(counts[s].get(c, 0) for s in splits))
            for c in report.class_names]
    rows.append(("total", *[sum(counts[s].values()) for s in splits], report.ingested))
    return splits, rows
