"""Label vetting's decision, in plain Python: per class, how often the latest blessed model agrees
with the new labels, against how often it agreed with the labels of its own eval data, and the
findings in words ("forest: 96 % -> 3 %, 94 % of the disagreements predicted sea").

Written by hand because nothing in TFX, TFDV or TFMA compares a served model's agreement with two
labellings of data: TFDV sees only feature distributions (a swap of two folders keeps them), and
TFMA's change thresholds compare two models on one labelling (the new one, which is the suspect).

Counts in, verdicts out; TensorFlow-free, so the run report and the tests read it without loading
a model. A class is compared only when both sides have at least `min_examples` images of it.
"""
import dataclasses
import json
from typing import Dict, List, Mapping, Optional, Sequence

from components.data_gate.findings import DataValidationError

# {true label: {predicted class: images}}; a predicted class equal to the label is an agreement.
Counts = Mapping[str, Mapping[str, int]]

NO_BASELINE = "label vetting: no blessed model yet, nothing to compare"
SAME_DATA = "label vetting: the blessed model was trained on these very examples, nothing to compare"
NO_REFERENCE = "label vetting: ML Metadata records no data that trained the blessed model, nothing to compare"
COLLAPSE, CONCENTRATION = "agreement collapsed", "errors concentrate on one class"


class LabelVettingError(DataValidationError):
    """The latest blessed model disagrees with the new labels; the run stopped before training
    (exit code 1, like the data gate)."""


@dataclasses.dataclass(frozen=True)
class Knobs:
    """The thresholds (pipeline/configs.py documents them; these defaults are the knobs')."""
    max_drop: float = 0.40  # a class's agreement more than this below its reference: an anomaly
    concentration: float = 0.60  # this share of its disagreements on one other class ...
    concentration_min_drop: float = 0.20  # ... while its agreement dropped more than this: an anomaly
    min_examples: int = 20  # fewer images of a class (on either side): not compared
    warn_only: bool = False  # log and record the findings, do not stop


@dataclasses.dataclass(frozen=True)
class ClassVetting:
    """One class: the blessed model's agreement with its own eval labels (reference) and with the
    new labels, and where the new disagreements went."""
    name: str
    reference: Optional[float]  # None: not compared (too few images, or a class the model lacks)
    reference_examples: int
    agreement: Optional[float]
    examples: int
    top_other: str  # the class most of the disagreements were predicted as ("" for none)
    top_other_share: float  # its share of the disagreements
    anomaly: str = ""  # COLLAPSE, CONCENTRATION or ""
    note: str = ""  # why a class was not compared

    @property
    def drop(self) -> Optional[float]:
        if self.reference is None or self.agreement is None:
            return None
        return self.reference - self.agreement

    def line(self) -> str:
        """'forest: 96 % -> 3 %, 94 % of the disagreements predicted sea (412 images)'."""
        if self.reference is None or self.agreement is None:
            return f"{self.name}: not compared ({self.note})"
        text = f"{self.name}: {_pct(self.reference)} -> {_pct(self.agreement)}"
        if self.top_other:
            text += f", {_pct(self.top_other_share)} of the disagreements predicted {self.top_other}"
        return text + f" ({self.examples} images)"


@dataclasses.dataclass
class Vetting:
    """Every class's figures, the findings, the swapped pairs and what the gate did."""
    compared: bool
    note: str  # NO_BASELINE, NO_REFERENCE, SAME_DATA or ""
    classes: List[ClassVetting]
    knobs: Knobs
    unscored: int = 0  # images the blessed model could not classify (their error output), skipped
    baseline_model: str = ""
    reference_examples_uri: str = ""
    run_id: str = ""  # the pipeline run that vetted (a stopped run's record is found by it)

    @property
    def anomalies(self) -> List[ClassVetting]:
        return [c for c in self.classes if c.anomaly]

    def swaps(self) -> List[List[str]]:
        """Pairs of anomalous classes whose disagreements mostly went to each other."""
        by_name = {c.name: c for c in self.anomalies}
        pairs = []
        for c in self.anomalies:
            other = by_name.get(c.top_other)
            if other is not None and other.top_other == c.name and c.name < other.name:
                pairs.append([c.name, other.name])
        return pairs

    def finding_lines(self) -> List[str]:
        lines = [c.line() for c in self.anomalies]
        lines += [f"{a} and {b} look swapped" for a, b in self.swaps()]
        return lines

    @property
    def stops(self) -> bool:
        return bool(self.anomalies) and not self.knobs.warn_only

    def summary(self) -> str:
        """The one line the log (and the console) shows."""
        if not self.compared:
            return self.note
        if not self.anomalies:
            return (f"label vetting: the blessed model agrees with the new labels as it did with its own "
                    f"({len([c for c in self.classes if c.drop is not None])} classes compared)")
        return "label vetting: " + "; ".join(self.finding_lines())

    def to_json(self) -> str:
        return json.dumps({
            "compared": self.compared, "note": self.note, "unscored": self.unscored,
            "baseline_model": self.baseline_model, "reference_examples": self.reference_examples_uri,
            "run_id": self.run_id,
            "knobs": dataclasses.asdict(self.knobs), "stopped": self.stops,
            "findings": self.finding_lines(), "swaps": self.swaps(),
            "classes": [dict(dataclasses.asdict(c), drop=c.drop) for c in self.classes]}, indent=1)


def from_json(text: str) -> Vetting:
    """A Vetting as the LabelVetter recorded it (the run report reads it)."""
    data = json.loads(text)
    classes = [ClassVetting(**{k: v for k, v in c.items() if k != "drop"}) for c in data["classes"]]
    return Vetting(data["compared"], data["note"], classes, Knobs(**data["knobs"]), data["unscored"],
                   data["baseline_model"], data["reference_examples"], data.get("run_id", ""))


def _pct(value: float) -> str:
    return f"{100.0 * value:.0f} %"


def _too_few(n: int, ref_n: int, knobs: Knobs) -> str:
    return (f"{n} new and {ref_n} reference images, fewer than {knobs.min_examples}" if ref_n
            else "the blessed model's eval data has no images of it")


def comparable(reference_sizes: Mapping[str, int], current_sizes: Mapping[str, int], knobs: Knobs) -> bool:
    """Whether any class has enough images on both sides to be compared (else nothing is scored)."""
    return any(n >= knobs.min_examples and reference_sizes.get(name, 0) >= knobs.min_examples
               for name, n in current_sizes.items())


def too_few(reference_sizes: Mapping[str, int], current_sizes: Mapping[str, int], knobs: Knobs = Knobs(),
            baseline_model: str = "", reference_examples_uri: str = "") -> Vetting:
    """The record when no class can be compared: each class's image counts, nothing scored."""
    classes = [ClassVetting(name, None, reference_sizes.get(name, 0), None, n, "", 0.0,
                            note=_too_few(n, reference_sizes.get(name, 0), knobs))
               for name, n in sorted(current_sizes.items())]
    return Vetting(True, "", classes, knobs, 0, baseline_model, reference_examples_uri)


def _class(name: str, reference: Mapping[str, int], current: Mapping[str, int], knobs: Knobs) -> ClassVetting:
    ref_n, n = sum(reference.values()), sum(current.values())
    others = {p: k for p, k in current.items() if p != name and k}
    errors = sum(others.values())
    top = max(sorted(others), key=lambda p: others[p]) if others else ""
    share = others[top] / errors if errors else 0.0
    if n < knobs.min_examples or ref_n < knobs.min_examples:
        return ClassVetting(name, None, ref_n, None, n, top, share, note=_too_few(n, ref_n, knobs))
    ref, now = reference.get(name, 0) / ref_n, current.get(name, 0) / n
    drop = ref - now
    anomaly = ""
    if drop > knobs.max_drop:
        anomaly = COLLAPSE
    elif drop > knobs.concentration_min_drop and share >= knobs.concentration:
        anomaly = CONCENTRATION
    return ClassVetting(name, ref, ref_n, now, n, top, share, anomaly)


def vet(reference: Counts, current: Counts, knobs: Knobs = Knobs(), unscored: int = 0,
        baseline_model: str = "", reference_examples_uri: str = "") -> Vetting:
    """Compares, class by class (the new labels' classes, sorted), the blessed model's predictions on
    the new data (`current`) with its predictions on its own eval data (`reference`)."""
    classes = [_class(name, reference.get(name, {}), current[name], knobs) for name in sorted(current)]
    return Vetting(True, "", classes, knobs, unscored, baseline_model, reference_examples_uri)


def not_compared(note: str, knobs: Knobs = Knobs()) -> Vetting:
    """The record of a run with nothing to compare (NO_BASELINE or SAME_DATA)."""
    return Vetting(False, note, [], knobs)


def stop_message(vetting: Vetting) -> str:
    """The one line a stopped run ends with: each anomalous class and its figures, and what to do."""
    lines = vetting.finding_lines()
    return ("label vetting stopped the run before training (nothing trained or pushed): the latest blessed "
            f"model disagrees with the new labels of {len(vetting.anomalies)} "
            f"class{'' if len(vetting.anomalies) == 1 else 'es'} (its agreement on its own eval data -> "
            "on the new data): " + " | ".join(lines)
            + ". Check those class folders; if the labels are right (the classes changed meaning), rerun "
            "with --label-vetting-warn-only")


def check(vetting: Vetting) -> None:
    """Raises LabelVettingError when the vetting found anomalies and may stop the run."""
    if vetting.stops:
        raise LabelVettingError(stop_message(vetting))


def parse_counts(labels: Sequence[str], predicted: Sequence[str]) -> Dict[str, Dict[str, int]]:
    """{label: {predicted: images}} of paired labels and predictions."""
    counts: Dict[str, Dict[str, int]] = {}
    for label, guess in zip(labels, predicted):
        row = counts.setdefault(label, {})
        row[guess] = row.get(guess, 0) + 1
    return counts
