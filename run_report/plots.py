"""The run report's figures, each rendered to PNG bytes.

matplotlib's object API (Figure + Agg canvas), not pyplot: no global figure state and no display
backend, so it is safe inside the pipeline process and on headless machines.
"""
import io
from typing import Dict, List, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from common.tfma_results import CalibrationBucket


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], title: str) -> bytes:
    """Heat map coloured by row share (recall per true class), annotated with counts."""
    n = len(class_names)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)
    fig = Figure(figsize=(1.1 * n + 2.5, 0.9 * n + 1.8))
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{matrix[i, j]:.0f}", ha="center", va="center",
                    color="white" if share[i, j] > 0.5 else "black")
    return _png(fig)


def reliability(curves: Mapping[str, Sequence[CalibrationBucket]]) -> bytes:
    """Top-1 accuracy against mean top-1 probability per probability bucket, one line per model."""
    fig = Figure(figsize=(5, 4.5))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfectly calibrated")
    for label, buckets in curves.items():
        buckets = [b for b in buckets if b.count > 0]
        x = [b.total_prediction / b.count for b in buckets]
        y = [b.total_label / b.count for b in buckets]
        sizes = [20 + 180 * b.count / max(c.count for c in buckets) for b in buckets]
        ax.plot(x, y, linewidth=1, alpha=0.8, label=label)
        ax.scatter(x, y, s=sizes, alpha=0.6)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean top-1 probability in the bucket")
    ax.set_ylabel("top-1 accuracy in the bucket")
    ax.set_title("Reliability (marker size: examples)")
    ax.legend(loc="upper left")
    return _png(fig)


def training_curves(history: Mapping[str, Sequence[float]]) -> bytes:
    """One panel per metric family (loss, accuracy, any other logged series), train vs val."""
    families: Dict[str, List[str]] = {}
    for key in history:
        families.setdefault(key[4:] if key.startswith("val_") else key, []).append(key)
    fig = Figure(figsize=(5 * len(families), 3.8))
    for i, (family, keys) in enumerate(sorted(families.items(), key=lambda kv: kv[0] != "loss")):
        ax = fig.add_subplot(1, len(families), i + 1)
        for key in sorted(keys):
            values = history[key]
            ax.plot(range(1, len(values) + 1), values, marker="o",
                    label="validation" if key.startswith("val_") else "train")
        ax.set_title(family)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
        ax.grid(alpha=0.3)
    return _png(fig)


def examples_per_class(counts: Mapping[str, Mapping[str, int]]) -> bytes:
    """Grouped bars: examples per class, one bar per split."""
    splits = list(counts)
    classes = list(next(iter(counts.values())).keys()) if counts else []
    fig = Figure(figsize=(max(5, 0.9 * len(classes) + 2), 3.5))
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(splits))
    for i, split in enumerate(splits):
        ax.bar(np.arange(len(classes)) + i * width, [counts[split].get(c, 0) for c in classes],
               width, label=split)
    ax.set_xticks(np.arange(len(classes)) + width * (len(splits) - 1) / 2, classes, rotation=30, ha="right")
    ax.set_ylabel("examples")
    ax.set_title("Ingested examples per class and split")
    ax.legend()
    return _png(fig)


def class_shares(distributions: Mapping[str, Mapping[str, int]], title: str) -> bytes:
    """Grouped bars: each class's share of its dataset (%), one bar per dataset (counts differ)."""
    labels = list(distributions)
    classes = sorted({c for counts in distributions.values() for c in counts})
    fig = Figure(figsize=(max(5, 0.9 * len(classes) + 2), 3.5))
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(labels))
    for i, label in enumerate(labels):
        counts = distributions[label]
        total = sum(counts.values()) or 1
        ax.bar(np.arange(len(classes)) + i * width, [100.0 * counts.get(c, 0) / total for c in classes],
               width, label=f"{label} ({sum(counts.values())} examples)")
    ax.set_xticks(np.arange(len(classes)) + width * (len(labels) - 1) / 2, classes, rotation=30, ha="right")
    ax.set_ylabel("share of the examples (%)")
    ax.set_title(title)
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=len(labels))  # below
    return _png(fig)
