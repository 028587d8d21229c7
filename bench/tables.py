"""Results as GitHub-markdown tables (they paste into bench/RESULTS.md as printed) and number formats."""
from typing import Sequence


def format_number(value) -> str:
    """Floats to 2 decimals under 10, 1 under 100, thousands separators above; nan as n/a."""
    if isinstance(value, float):
        if value != value:
            return "n/a"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A markdown table with aligned columns; cells formatted by format_number."""
    cells = [[str(h) for h in headers]] + [[format_number(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"

    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [line(r) for r in cells[1:]])


def human_bytes(n: float) -> str:
    """Decimal units: 14.2 KB, 51.6 MB."""
    for unit in ("B", "KB", "MB"):
        if abs(n) < 1000:
            return f"{n:,.0f} B" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000.0
    return f"{n:,.1f} GB"


def verdict(ok: bool) -> str:
    """A target's verdict as the tables print it."""
    return "MET" if ok else "MISSED"
