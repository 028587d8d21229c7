"""The monitor's HTML page: the verdict, every measurement with its threshold, and the plots
(predicted classes against the training classes, each content statistic's distribution in the
window and in training, the top-1 probabilities against the Evaluator's on eval, the sizes).

Self-contained (figures embedded as PNG). Its few HTML helpers are its own: run_report/ sits on the
same level (5) and the layout forbids importing across a level, so the page does not borrow the
run report's; the figures use matplotlib's object API as run_report/plots.py does (no pyplot state,
no display).
"""
import base64
import collections
import html
import io
from typing import Dict, List, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from common import image_content, prediction_log
from monitoring.compare import Measurement, Thresholds
from monitoring.reference import Reference
from trainer_module import names

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1100px;
 padding:0 1em;color:#1d2327} h2{border-bottom:2px solid #e3e6e8;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0} th,td{border:1px solid #d5d9dc;padding:.3em .6em;text-align:left}
th{background:#f3f5f6} td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{padding:1em 1.2em;border-radius:6px;font-size:1.2em;font-weight:600}
.ok{background:#e3f5e6;border:1px solid #4caf50} .bad{background:#fdecea;border:1px solid #e53935}
.BREACH{color:#c62828;font-weight:600} .ok-cell{color:#2e7d32} img{max-width:100%;border:1px solid #eee}
.muted{color:#69737a}
"""


def _png(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _class_plot(window: Dict[str, int], training: Dict[str, int]) -> str:
    classes = sorted(set(window) | set(training))
    fig = Figure(figsize=(max(5, 0.9 * len(classes) + 2), 3.3))
    ax = fig.add_subplot()
    for i, (label, counts) in enumerate((("training", training), ("window (predicted)", window))):
        total = sum(counts.values()) or 1
        ax.bar(np.arange(len(classes)) + i * 0.4, [100 * counts.get(c, 0) / total for c in classes], 0.4,
               label=f"{label}, {sum(counts.values())}")
    ax.set_xticks(np.arange(len(classes)) + 0.2, classes, rotation=30, ha="right")
    ax.set_ylabel("share (%)")
    ax.set_title("Classes")
    ax.legend(fontsize="small")
    return _png(fig)


def _content_plot(window: pd.DataFrame, training: pd.DataFrame, breached: Sequence[str]) -> str:
    fig = Figure(figsize=(12, 6))
    for i, name in enumerate(image_content.STATISTICS):
        ax = fig.add_subplot(2, 3, i + 1)
        both = pd.concat([window[name], training[name]]).dropna()
        low, high = (both.min(), both.max()) if len(both) else (0.0, 1.0)
        bins = np.linspace(low, high, 21) if high > low else np.linspace(low - 0.5, high + 0.5, 21)
        ax.hist(training[name].dropna(), bins=bins, density=True, alpha=0.5, label="training sample")
        ax.hist(window[name].dropna(), bins=bins, density=True, alpha=0.5, label="window")
        ax.set_title(name + ("  (BREACH)" if name in breached else ""), color="#c62828" if name in breached else "k")
        if i == 0:
            ax.legend(fontsize="small")
    fig.tight_layout()
    return _png(fig)


def _confidence_plot(window: pd.Series, reference: Reference, thresholds: Thresholds) -> str:
    fig = Figure(figsize=(5.5, 3.3))
    ax = fig.add_subplot()
    bins = np.linspace(0, 1, 21)
    ax.hist(window.dropna(), bins=bins, density=True, alpha=0.6, label="window")
    buckets = [b for b in reference.confidence if b.count > 0 and 0 <= b.lower < 1]
    if buckets:
        total = sum(b.count for b in buckets)
        ax.bar([b.lower for b in buckets], [b.count / total / max(b.upper - b.lower, 1e-9) for b in buckets],
               [b.upper - b.lower for b in buckets], align="edge", alpha=0.4, label="eval (Evaluator)")
    ax.axvline(thresholds.low_confidence, color="#c62828", linestyle=":", label="low-confidence bound")
    ax.set_xlabel("top-1 probability")
    ax.set_title("Confidence")
    ax.legend(fontsize="small")
    return _png(fig)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(c if c.startswith("<td") else f"<td>{html.escape(c)}</td>" for c in row)
                   + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render(records: List[Dict], skipped: int, window: str, reference: Reference,
           measurements: List[Measurement], thresholds: Thresholds, frame: pd.DataFrame) -> str:
    """The page, as HTML text."""
    breached = [m for m in measurements if m.breached]
    verdict = (f'<div class="verdict bad">{len(breached)} threshold(s) breached</div>' if breached
               else '<div class="verdict ok">Within every threshold</div>')
    rows = [[m.name, m.metric, f'<td class="num">{m.value:.3f}</td>', f'<td class="num">{m.threshold:g}</td>',
             f'<td class="{"BREACH" if m.breached else "ok-cell"}">{"BREACH" if m.breached else "ok"}</td>',
             m.detail] for m in measurements]
    classes = frame[names.CLASS_NAME_KEY].value_counts().to_dict() if not frame.empty else {}
    failed = [r for r in records if r.get(prediction_log.ERROR)]
    errors = collections.Counter(r[prediction_log.ERROR].split(":")[0] for r in failed)
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Prediction monitor</title>"
        f"<style>{_CSS}</style></head><body>",
        "<h1>Prediction monitor</h1>",
        f"<p class='muted'>Window: {html.escape(window)}; {len(records)} logged requests "
        f"({len(failed)} failed, {skipped} unreadable log lines); reference: {html.escape(reference.description)}"
        f"; content sample: {len(reference.content)} training images.</p>",
        verdict,
        "<h2 id='measurements'>Measurements</h2>",
        _table(["what", "metric", "value", "threshold", "verdict", "detail"], rows),
        "<h2 id='classes'>Predicted classes</h2>", _class_plot(classes, reference.class_counts),
        "<h2 id='content'>Image content</h2>",
        _content_plot(frame, reference.content, [m.name for m in breached]),
        "<h2 id='confidence'>Confidence</h2>",
        _confidence_plot(frame[prediction_log.PROBABILITY] if not frame.empty else pd.Series(dtype=float),
                         reference, thresholds),
        "<h2 id='failures'>Failed requests</h2>",
        _table(["error", "requests"], [[k, str(v)] for k, v in errors.items()]) if errors else "<p>None.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)
