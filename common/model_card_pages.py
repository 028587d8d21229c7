"""The model card's pages: one layout of the card JSON (common/model_card.py), written as Markdown and as
a self-contained HTML page (inline CSS, no script, no image files: it opens from the serving dir).

Every figure is printed from the card's values with the precision of its kind: shares and
metrics with 3 decimals, sizes in MB and latencies in ms with 2, counts whole.
"""
import html as html_lib
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from common import pipeline_names

# A block of the page: ("h1" | "h2" | "p", text), ("ul", [text]), ("table", Table).
Block = Tuple[str, Any]


class Table:
    """A table with a header row; heat: per-row shares in [0, 1] that shade the cells (HTML only)."""

    def __init__(self, header: Sequence[str], rows: Sequence[Sequence[Any]], heat: Optional[List[List[float]]] = None,
                 caption: str = ""):
        self.header, self.rows, self.heat, self.caption = list(header), [list(r) for r in rows], heat, caption


def rate(value: Optional[float]) -> str:
    """A share or metric in [0, 1] (3 decimals); "–" when absent."""
    return "–" if value is None else f"{value:.3f}"


def signed(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:+.3f}"


def two(value: Optional[float]) -> str:
    """A size (MB) or latency (ms), 2 decimals."""
    return "–" if value is None else f"{value:.2f}"


def count(value: Optional[Union[int, float]]) -> str:
    return "–" if value is None else str(int(value))


def _config_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "[]"
    return str(value)


def _title(card: Dict[str, Any]) -> str:
    version = (card.get("push") or {}).get("version")
    return f"Model card: {card['lineage']['pipeline'] or 'model'} " + (
        f"version {version}" if version else "(version assigned by the model registry at upload)")


def _verdict_blocks(card: Dict[str, Any]) -> List[Block]:
    verdict = card["verdict"]
    blocks: List[Block] = [("h2", "Verdict")]
    blessed = "BLESSED" if verdict["blessed"] else "NOT BLESSED"
    items = [f"Evaluator (TFMA) gate: {blessed}" + ("" if verdict["thresholds"] else " (no thresholds recorded)")]
    evaluation = card["evaluation"]
    if evaluation and evaluation["baseline"] is None:
        items.append("No baseline: no other model had been blessed, so the change threshold was not applied.")
    data_gate = verdict["data_gate"]
    if data_gate is not None:
        if data_gate["proceeded_despite_anomalies"]:
            items.append(f"Data gate: PROCEEDED despite {count(data_gate['blocking'])} blocking finding(s) "
                         f"({count(data_gate['findings'])} in all), by --proceed-despite-anomalies.")
        else:
            items.append(f"Data gate: passed ({count(data_gate['findings'])} finding(s), "
                         f"{count(data_gate['blocking'])} blocking).")
    for flavour, gate in sorted((verdict["edge_gate"] or {}).items()):
        state = "pushed" if gate["pushed"] else "held back"
        items.append(f"Edge gate, {flavour}: {'passed' if gate['passed'] else 'failed'}, accuracy drop "
                     f"{rate(gate['drop'])} (allowed {rate(gate['max_drop'])}); {state}"
                     + (f": {gate['reason']}" if gate["reason"] and not gate["pushed"] else ""))
    blocks.append(("ul", items))
    if verdict["thresholds"]:
        blocks.append(("table", Table(["metric", "threshold", "slice", "value", "bound", "status"],
                                      [[t["metric"], t["kind"], t["slice"], rate(t["value"]), t["bound"],
                                        t["status"] + (f" ({t['message']})" if t["message"] else "")]
                                       for t in verdict["thresholds"]])))
    return blocks


def _data_blocks(data: Optional[Dict[str, Any]], class_names: Sequence[str]) -> List[Block]:
    blocks: List[Block] = [("h2", "Data")]
    if data is None:
        return blocks + [("p", "Not recorded: the Pusher got no Examples artifact with an ingest report.")]
    reasons = ", ".join(f"{r} {n}" for r, n in sorted(data["skipped_by_reason"].items()))
    blocks.append(("ul", [
        f"Source: {data['data_root']} ({'split folders' if data['split_mode'] == 'folders' else 'split by a hash of the path'})",
        f"Fingerprint of the input files: {data['fingerprint'] or 'not computed (no ImageExampleGen driver ran)'}",
        f"Files: {count(data['files_seen'])} seen, {count(data['ingested'])} ingested, {count(data['skipped'])} skipped"
        + (f" ({reasons})" if reasons else ""),
        f"Ingest report: {data['ingest_report']}",
    ]))
    splits = list(data["examples"])
    listed = [c for counts in data["examples"].values() for c in counts]
    classes = [c for c in class_names if c in listed] + sorted(set(listed) - set(class_names))
    rows = [[c, *[count(data["examples"][s].get(c, 0)) for s in splits],
             count(sum(data["examples"][s].get(c, 0) for s in splits))] for c in classes]
    rows.append(["total", *[count(sum(data["examples"][s].values())) for s in splits],
                 count(sum(sum(data["examples"][s].values()) for s in splits))])
    blocks.append(("table", Table(["class", *splits, "total"], rows, caption="Examples per class")))
    if data["skipped_files"]:
        more = data["skipped"] - len(data["skipped_files"])
        blocks.append(("table", Table(["skipped file", "split", "class", "reason", "detail"],
                                      [[s["path"], s["split"], s["class_name"], s["reason"], s["detail"]]
                                       for s in data["skipped_files"]],
                                      caption="Skipped files" + (f" (first {len(data['skipped_files'])}; "
                                                                 f"{more} more in the ingest report)" if more > 0 else ""))))
    return blocks


def _training_blocks(training: Optional[Dict[str, Any]]) -> List[Block]:
    blocks: List[Block] = [("h2", "Training recipe")]
    if training is None:
        return blocks + [("p", "Not recorded: the Pusher got no ModelRun artifact with history.json.")]
    final = training["final_epoch"]
    items = [f"{count(training['epochs'])} epochs on {count(training['train_examples'])} train images "
             f"({count(training['steps_per_epoch'])} steps per epoch), precision {training['precision']}",
             "Last epoch: " + ", ".join(f"{k} {rate(v)}" for k, v in final.items())]
    bn = training["bn_recalibration"]
    if bn:
        eval_accuracy = (bn.get("eval") or {}).get("accuracy")
        items.append(f"BatchNorm statistics re-estimated on {count(bn.get('batches'))} batches: train loss "
                     f"{rate(bn.get('train_loss_before'))} -> {rate(bn.get('train_loss_after'))}, "
                     f"{'kept' if bn.get('kept') else 'not kept'}"
                     + (f"; eval accuracy of the exported model {rate(eval_accuracy)}" if eval_accuracy is not None else ""))
    blocks.append(("ul", items))
    config = training["config"] or {}
    blocks.append(("table", Table(["knob", "value"], [[k, _config_value(config[k])] for k in sorted(config)],
                                  caption="The Trainer's configuration (TrainConfig, from history.json)")))
    return blocks


def _quality_blocks(evaluation: Optional[Dict[str, Any]]) -> List[Block]:
    blocks: List[Block] = [("h2", "Quality on the eval split (TFMA)")]
    if evaluation is None:
        return blocks + [("p", "Not recorded: the Pusher got no evaluation with TFMA results.")]
    interval = evaluation["accuracy_interval_95"]
    rows = [["accuracy", rate(evaluation["accuracy"])],
            ["accuracy, 95 % interval (Wilson)", f"{rate(interval[0])} to {rate(interval[1])}" if interval else "–"],
            ["eval examples", count(evaluation["examples"])],
            ["macro-averaged F1", rate(evaluation["macro_f1"])],
            ["calibration: mean top-1 probability / accuracy (1 is ideal)", rate(evaluation["calibration"])],
            ["expected calibration error (top-1)", rate(evaluation["ece"])]]
    if evaluation["baseline"] is not None:
        rows += [["baseline accuracy", rate(evaluation["baseline"]["accuracy"])],
                 ["change vs baseline", signed(evaluation["baseline"]["change"])]]
    blocks.append(("table", Table(["overall", "value"], rows)))
    blocks.append(("table", Table(["class", "eval images", "precision", "recall", "F1"],
                                  [[r["class"], count(r["support"]), rate(r["precision"]), rate(r["recall"]), rate(r["f1"])]
                                   for r in evaluation["per_class"]],
                                  caption="Per class (a class counts as predicted when it is the top-1 class)")))
    matrix, class_names = evaluation["confusion_matrix"], evaluation["class_names"]
    if matrix:
        heat = [[v / sum(row) if sum(row) else 0.0 for v in row] for row in matrix]
        blocks.append(("table", Table(["true \\ predicted", *class_names],
                                      [[c, *[count(v) for v in row]] for c, row in zip(class_names, matrix)],
                                      heat=heat, caption="Confusion matrix (eval images)")))
    if evaluation["confusions"]:
        blocks.append(("p", "Known confusions: " + "; ".join(
            f"{c['true']} taken for {c['predicted']} {count(c['count'])} times ({rate(c['share'])} of {c['true']})"
            for c in evaluation["confusions"]) + "."))
    if evaluation["calibration_buckets"]:
        blocks.append(("table", Table(["top-1 probability", "eval images", "mean probability", "accuracy"],
                                      [[f"{rate(b['lower'])} to {rate(b['upper'])}", count(b["count"]),
                                        rate(b["mean_probability"]), rate(b["accuracy"])]
                                       for b in evaluation["calibration_buckets"]],
                                      caption="Calibration: the top-1 probability against how often the top-1 "
                                              "class was right (TFMA's calibration plot)")))
    return blocks


def _edge_blocks(rows: List[Dict[str, Any]]) -> List[Block]:
    blocks: List[Block] = [("h2", "Edge models (TFLite)")]
    if not rows:
        return blocks + [("p", "None: the Pusher got no edge evaluation.")]
    table = [[r["model"], rate(r["accuracy"]), two(r["size_mb"]), two(r["latency_ms"]), two(r["batch_latency_ms"]),
              "reference" if r["pushed"] is None else ("pushed" if r["pushed"] else "held back")] for r in rows]
    blocks.append(("table", Table(["model", "accuracy", "size (MB)", "latency (ms, 1 image)",
                                   "latency (ms per image, batches of 32)", "in this version"], table,
                                  caption="Scored on the same eval images by the EdgeEvaluator; the pushed "
                                          f"ones are in the version's {pipeline_names.PUSHED_EDGE_SUBDIR}/ folder")))
    return blocks


def _lineage_blocks(card: Dict[str, Any]) -> List[Block]:
    lineage, push = card["lineage"], card.get("push") or {}
    items = [f"Pipeline {lineage['pipeline']}, run {lineage['run_id'] or '–'}"]
    if push:
        items += [f"Pushed {push['pushed_at']} to {push['destination']}",
                  f"Fingerprint of the pushed files: {push['fingerprint']}"]
    rows = [[role, count(ref["id"]) if ref["id"] is not None else "–", ref["uri"]]
            for role, ref in lineage["artifacts"].items()]
    return [("h2", "Lineage"), ("ul", items),
            ("table", Table(["artifact", "ML Metadata id", "uri"], rows,
                            caption="python -m run_report.lineage OUTPUT_DIR --version V follows the same links"))]


def layout(card: Dict[str, Any]) -> List[Block]:
    """The card's blocks, top to bottom."""
    use = card["intended_use"]
    blocks: List[Block] = [
        ("h1", _title(card)),
        ("h2", "Intended use"),
        ("ul", [use["task"], "Classes: " + ", ".join(use["classes"]), f"Input: {use['input']}",
                f"Output: {use['output']}"]),
        ("h2", "Limits"),
        ("ul", use["limits"]),
    ]
    blocks += _verdict_blocks(card)
    blocks += _quality_blocks(card["evaluation"])
    blocks += _edge_blocks(card["edge_models"])
    blocks += _data_blocks(card["data"], use["classes"])
    blocks += _training_blocks(card["training"])
    blocks += _lineage_blocks(card)
    return blocks


# ---------------------------------------------------------------- Markdown

def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown(card: Dict[str, Any]) -> str:
    """The card as Markdown (GitHub tables)."""
    lines: List[str] = []
    for kind, content in layout(card):
        if kind == "h1":
            lines += [f"# {content}", ""]
        elif kind == "h2":
            lines += [f"## {content}", ""]
        elif kind == "p":
            lines += [content, ""]
        elif kind == "ul":
            lines += [f"- {item}" for item in content] + [""]
        elif kind == "table":
            if content.caption:
                lines += [f"**{content.caption}**", ""]
            lines.append("| " + " | ".join(_md_cell(h) for h in content.header) + " |")
            lines.append("|" + "|".join("---" for _ in content.header) + "|")
            lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in content.rows]
            lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- HTML

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
       max-width: 1100px; padding: 0 1rem; color: #1d232a; line-height: 1.45; }
h1 { font-size: 1.6rem; border-bottom: 2px solid #2c5d8f; padding-bottom: .3rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; color: #2c5d8f; }
table { border-collapse: collapse; margin: .6rem 0 1.2rem; font-size: .9rem; }
caption { text-align: left; font-weight: 600; padding: .2rem 0; }
th, td { border: 1px solid #c9d1d9; padding: .25rem .55rem; text-align: left; vertical-align: top; }
th { background: #eef2f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.uri { font-family: ui-monospace, monospace; font-size: .8rem; word-break: break-all; }
ul { padding-left: 1.3rem; }
"""


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _html_table(table: Table) -> str:
    esc = html_lib.escape
    parts = ["<table>"]
    if table.caption:
        parts.append(f"<caption>{esc(table.caption)}</caption>")
    parts.append("<tr>" + "".join(f"<th>{esc(str(h))}</th>" for h in table.header) + "</tr>")
    for i, row in enumerate(table.rows):
        cells = []
        for j, value in enumerate(row):
            text = str(value)
            classes = "num" if _is_number(text) else ("uri" if "/" in text and " " not in text else "")
            style = ""
            if table.heat is not None and j >= 1:
                share = table.heat[i][j - 1]
                # Blue for the diagonal (right), red elsewhere (a confusion); deeper with the share of the row.
                hue = "44, 93, 143" if i == j - 1 else "196, 62, 48"
                style = f' style="background: rgba({hue}, {0.08 + 0.72 * share:.2f}); color: {"#fff" if share > 0.55 else "inherit"}"'
            cells.append(f'<td class="{classes}"{style}>{esc(text)}</td>' if classes or style else f"<td>{esc(text)}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table>")
    return "\n".join(parts)


def html(card: Dict[str, Any]) -> str:
    """The card as one self-contained HTML page."""
    esc = html_lib.escape
    body = []
    for kind, content in layout(card):
        if kind in ("h1", "h2", "p"):
            body.append(f"<{kind}>{esc(content)}</{kind}>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in content) + "</ul>")
        elif kind == "table":
            body.append(_html_table(content))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(_title(card))}</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
