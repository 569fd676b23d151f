"""Formatting numbers and markdown tables for the report and the sweep summary."""

from __future__ import annotations

import math
from typing import Any


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers rounded to ``digits`` decimals (tiny ones in scientific notation); ``—`` if missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"`{value}`"
    if isinstance(value, int):
        return f"{value:,}"
    # Small values in significant digits, where the fixed decimals would keep one or none (a
    # time of 0.9 s at 1 decimal is not small).
    if value != 0 and abs(value) < 10 ** (-digits + (1 if digits >= 2 else 0)):
        return f"{value:.4g}"
    return f"{value:.{digits}f}"


def lr_fmt(value: float | None) -> str:
    """Learning rates in scientific notation, 4 decimals (1.2166e-04)."""
    return "—" if value is None else f"{value:.4e}"


def pct(frac: float | None) -> str:
    """A fraction as a percentage to one decimal, with an arrow for the direction (as the seed)."""
    if frac is None or (isinstance(frac, float) and math.isnan(frac)):
        return "—"
    arrow = "↓" if frac < 0 else "↑" if frac > 0 else ""
    return f"{arrow}{abs(frac) * 100:.1f}%"


def md_cell(value: Any) -> str:
    """A table cell's text: pipes escaped, line breaks folded into spaces."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table; pipes and line breaks inside cells are escaped. A row whose length
    differs from the header's is an error (a template's header out of step with its rows)."""
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(f"table row {i} has {len(row)} cells, its header {len(header)}: {header}")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
