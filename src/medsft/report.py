"""Rendering ``report.md`` from logged files: configs, histories, metrics, generations."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from medsft.compare import config_differences, final_losses, relative_change
from medsft.plots import plot_histories
from medsft.report_text import TEXT


@dataclass
class RunFiles:
    """What the report reads for one run; any of it may be absent for an imported run."""

    name: str
    history: pd.DataFrame
    history_path: str
    config: dict[str, Any] = field(default_factory=dict)
    train_metrics: dict[str, Any] = field(default_factory=dict)
    eval_metrics: dict[str, Any] = field(default_factory=dict)
    generations: list[dict[str, Any]] = field(default_factory=list)


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers rounded to ``digits`` decimals; missing values as an em dash."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"`{value}`" if not isinstance(value, str) or value else "—"
    if isinstance(value, int):
        return f"{value:,}"
    if value != 0 and abs(value) < 10 ** (-digits):
        return f"{value:.3g}"
    return f"{value:.{digits}f}"


def pct(frac: float | None) -> str:
    """A fraction as a percentage to one decimal, with an arrow for the direction (as the seed)."""
    if frac is None:
        return "—"
    arrow = "↓" if frac < 0 else "↑" if frac > 0 else ""
    return f"{arrow}{abs(frac) * 100:.1f}%"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_report(
    runs: Mapping[str, RunFiles],
    out_dir: str | Path,
    lang: str = "zh",
    profile_training: Mapping[str, Any] | None = None,
    data_stats: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``report.md`` and its figures under ``out_dir``; return the report's path."""
    t = TEXT[lang]
    out = Path(out_dir)
    figures = plot_histories({n: r.history for n, r in runs.items()}, out / "figures")
    parts = [f"# {t['title']}", t["generated"]]

    parts.append(f"## {t['overview']}")
    rows = []
    for r in runs.values():
        m = r.train_metrics
        rows.append(
            [
                r.name,
                f"`{r.history_path}`",
                fmt(m.get("steps", _max_step(r.history))),
                fmt(m.get("wall_seconds"), 1),
                fmt(m.get("tokens_per_second"), 1),
                fmt(m.get("hardware")),
            ]
        )
    parts.append(md_table([t["runs"], t["source"], t["steps"], t["wall"], t["tps"], t["hardware"]], rows))
    if data_stats:
        counts = ", ".join(f"{k}: {v}" for k, v in data_stats.items())
        parts.append(f"{t['data']}: {counts}")

    configs = {n: r.config for n, r in runs.items() if r.config}
    if len(configs) >= 2:
        parts.append(f"## {t['differences']}")
        diff = config_differences(configs)
        profile = ", ".join(f"`{k}={v}`" for k, v in (profile_training or {}).items()) or "—"
        parts.append(f"{t['diff_def']} {profile}")
        if diff.empty:
            parts.append(t["no_diff"])
        else:
            parts.append(
                md_table(
                    ["key", *configs],
                    [[f"`{row['key']}`", *(fmt(row[n]) for n in configs)] for _, row in diff.iterrows()],
                )
            )

    parts.append(f"## {t['losses']}")
    losses = final_losses({n: r.history for n, r in runs.items()})
    base = losses.iloc[0]
    rows = []
    for _, row in losses.iterrows():
        rows.append(
            [
                row["run"],
                fmt(row["final_train_loss"]),
                "—"
                if row["run"] == base["run"]
                else pct(relative_change(base["final_train_loss"], row["final_train_loss"])),
                fmt(row["final_eval_loss"]),
                "—"
                if row["run"] == base["run"]
                else pct(relative_change(base["final_eval_loss"], row["final_eval_loss"])),
                fmt(row["train_step"]),
                fmt(row["eval_step"]),
            ]
        )
    parts.append(
        md_table(
            [
                t["runs"],
                "final train loss",
                f"{t['relative']} vs {base['run']}",
                "final eval loss",
                f"{t['relative']} vs {base['run']}",
                "train step",
                "eval step",
            ],
            rows,
        )
    )
    parts.append(t["losses_def"])

    evaluated = {n: r for n, r in runs.items() if r.eval_metrics}
    if evaluated:
        parts.append(f"## {t['eval']}")
        rows = [
            [
                n,
                fmt(r.eval_metrics.get("eval_loss")),
                fmt(r.eval_metrics.get("perplexity"), 2),
                fmt(r.eval_metrics.get("eval_target_tokens")),
            ]
            for n, r in evaluated.items()
        ]
        parts.append(md_table([t["runs"], "eval loss", "perplexity", "target tokens"], rows))
        parts.append(t["eval_def"])

    with_gen = {n: r for n, r in runs.items() if r.generations}
    if with_gen:
        parts.append(f"## {t['generations']}")
        parts.append(t["gen_def"])
        first = next(iter(with_gen.values())).generations
        for i, item in enumerate(first[:3]):
            parts.append(f"**{t['question']} {i + 1}**: {item['question']}")
            rows = [
                [n, _clip(r.generations[i]["output"]) if i < len(r.generations) else "—"] for n, r in with_gen.items()
            ]
            rows.append([t["reference"], _clip(item["reference"], show_breaks=False)])
            parts.append(md_table([t["runs"], t["output"]], rows))

    parts.append(f"## {t['figures']}")
    parts.append(t["fig_def"])
    for name, path in figures.items():
        parts.append(f"![{name}](figures/{path.name})")

    report = out / "report.md"
    from medsft.io import atomic_write_text

    atomic_write_text(report, "\n\n".join(parts) + "\n")
    return report


def _max_step(history: pd.DataFrame) -> int | None:
    return int(history["step"].max()) if not history.empty else None


def _clip(text: str, limit: int = 160, show_breaks: bool = True) -> str:
    """One table cell, clipped: line breaks shown as \\n (so a degenerate output stays visible)
    or folded into spaces."""
    text = text.replace("\n", "\\n") if show_breaks else " ".join(text.split())
    if not text.strip():
        return "(empty)"
    return text if len(text) <= limit else text[:limit] + "…"


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON object from ``path``, or ``{}`` when the file is absent."""
    path = Path(path)
    if not path.exists():
        return {}
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
