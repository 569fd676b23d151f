"""Rendering ``report.md`` from logged runs.

:mod:`medsft.report.sections` computes what every section shows; the figures are drawn here;
the language's Jinja2 template (``templates/report.<lang>.md.j2``) holds the prose and the
layout. Every number in the report is computed from the files.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from medsft.core.io import atomic_dir, atomic_write_text
from medsft.core.outputs import mark
from medsft.report import sections
from medsft.report.plots import plot_histories, plot_length_histogram
from medsft.report.runs import RunFiles

TEMPLATE = "report.{lang}.md.j2"


@dataclass
class ReportInputs:
    """Everything the report shows besides the runs' own files."""

    runs: dict[str, RunFiles]  # this pipeline's runs (or runs imported with report.runs)
    lang: str = "zh"
    # The published runs of the seed experiment, shown first; the claims are about them.
    published: dict[str, RunFiles] = field(default_factory=dict)
    published_source: str | None = None
    # The model profile of the published runs and of the local runs: the claims are judged
    # on local runs only when the two match.
    published_profile: str | None = None
    local_profile: str | None = None
    base_info: Mapping[str, Any] | None = None  # the pretrain stage's base.json
    phase_steps: int = 100
    plateau_tolerance: float = 0.01
    claims_path: str | None = None
    data_stats: Mapping[str, Any] | None = None  # prepare's stats.json
    augment_stats: Mapping[str, Any] = field(default_factory=dict)  # variant -> augment's stats.json
    sweep_dir: str | None = None  # a sweep folder holding summary.csv (and heatmap.png)
    seeds_dir: str | None = None  # the seeds sweep: <seeds_dir>/<variant>/summary.csv
    tracking_logdir: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)


class Outline:
    """Numbers headings in the order a template asks for them: ``## 1. title`` at level 1,
    ``### 1.1 title`` at level 2 (unnumbered before the first section), unnumbered below; so
    a section left out leaves no gap."""

    def __init__(self) -> None:
        self.section = self.subsection = 0

    def __call__(self, level: int, title: str) -> str:
        if level == 1:
            self.section, self.subsection = self.section + 1, 0
            return f"## {self.section}. {title}"
        if level == 2 and self.section:
            self.subsection += 1
            return f"### {self.section}.{self.subsection} {title}"
        return f"{'#' * (level + 1)} {title}"


@cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("medsft.report", "templates"),
        undefined=jinja2.StrictUndefined,  # a value the template names and the code forgot fails
        autoescape=False,  # markdown, not HTML
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return environment


def languages() -> list[str]:
    """The languages the report can be written in: those with a template."""
    names = _environment().list_templates(filter_func=lambda n: n.startswith("report.") and n.endswith(".md.j2"))
    return sorted(n.removeprefix("report.").removesuffix(".md.j2") for n in names)


def render_report(inputs: ReportInputs, out_dir: str | Path) -> Path:
    """Write ``report.md`` and ``figures/*.png`` under ``out_dir``; return the report's path.

    With published runs: a first part on them (their tables, figures and the claims audit),
    then a part on the local runs. Without: the local runs alone.
    """
    if not inputs.runs and not inputs.published:
        raise ValueError("no runs to report on")
    if inputs.lang not in languages():
        raise ValueError(f"report.lang: no report template for {inputs.lang!r} (have: {', '.join(languages())})")
    out = Path(out_dir)
    # Figures and text are made in a scratch folder that replaces ``out`` at the end: a failed
    # run leaves the previous report whole, and no figure of an older run stays behind.
    with atomic_dir(out) as tmp:
        context = report_context(inputs, tmp / "figures")
        template = _environment().get_template(TEMPLATE.format(lang=inputs.lang))
        text = template.render(**context, heading=Outline(), table=lambda t: t.markdown(inputs.lang))
        atomic_write_text(tmp / "report.md", text.rstrip("\n") + "\n")  # each part ends in a blank line
        mark(tmp, "report")
    return out / "report.md"


def report_context(inputs: ReportInputs, figures_dir: Path) -> dict[str, Any]:
    """What the template shows: ``published`` and ``local`` (each ``None`` without runs) and
    ``repro``. Draws the figures under ``figures_dir`` on the way."""
    published = local = None
    if inputs.published:
        published = _group(inputs.published, inputs, figures_dir, prefix="published_", tracking_logdir=None)
        published.update(
            source=inputs.published_source,
            profile=inputs.published_profile,
            claims=_claims(inputs.published, inputs),
        )
    if inputs.runs:
        seeds = sections.seed_spread(inputs.seeds_dir, inputs.runs)
        widest = max(seeds["spreads"].values(), default=None) if seeds else None
        local = _group(inputs.runs, inputs, figures_dir, "", inputs.tracking_logdir, noise_floor=widest)
        data = sections.data_tables(inputs.data_stats)
        if data is not None:
            data["lengths_figure"] = _length_figure(inputs.data_stats, figures_dir, inputs.lang)
        na = bool(inputs.claims_path and inputs.published_profile and inputs.local_profile != inputs.published_profile)
        # The sweep's base variant is its folder's name; its seed spread is the sweep's noise floor.
        sweep_variant = Path(inputs.sweep_dir).name if inputs.sweep_dir else None
        floor = seeds["spreads"].get(sweep_variant) if seeds else None
        local.update(
            profile=inputs.local_profile or "?",
            data=data,
            augment=sections.augment_rows(inputs.augment_stats, inputs.runs, inputs.lang),
            base=sections.base_model(inputs.base_info),
            evaluation=sections.evaluation(inputs.runs, inputs.lang),
            benchmarks=sections.benchmarks(inputs.runs),
            sweep=_sweep(inputs.sweep_dir, figures_dir, floor),
            seeds=seeds,
            claims=None if na else _claims(inputs.runs, inputs),
            claims_na={"local": inputs.local_profile, "profile": inputs.published_profile} if na else None,
        )
        local["sweep_noise"] = sections.within_noise(local["sweep"], seeds, sweep_variant, inputs.lang)
    return {"published": published, "local": local, "repro": sections.reproducibility(inputs.provenance)}


def _group(
    runs: Mapping[str, RunFiles],
    inputs: ReportInputs,
    figures_dir: Path,
    prefix: str,
    tracking_logdir: str | None,
    noise_floor: float | None = None,
) -> dict[str, Any]:
    """The sections every group of runs has, from their histories, and their figures (the
    eval-loss axis at least ``noise_floor`` tall, when the runs' seed spread is known)."""
    figures = plot_histories(
        {n: r.history for n, r in runs.items()}, figures_dir, prefix=prefix, lang=inputs.lang, noise_floor=noise_floor
    )
    lr_figure = figures.pop("learning_rate", None)  # shown in the learning-rate section, not again with the curves
    return {
        "overview": sections.overview(runs, tracking_logdir),
        "phases": sections.phase_rows(runs, inputs.phase_steps),
        "phase_steps": inputs.phase_steps,
        "learning_rate": sections.learning_rate_rows(runs),
        "lr_figure": lr_figure.name if lr_figure else None,
        "gradients": sections.gradient_tables(runs),
        "comparison": sections.comparison(runs, inputs.plateau_tolerance),
        "figures": [{"name": name, "file": path.name} for name, path in figures.items()],
    }


def _claims(runs: Mapping[str, RunFiles], inputs: ReportInputs) -> dict[str, Any] | None:
    if not inputs.claims_path:
        return None
    return sections.claims(runs, inputs.claims_path, inputs.phase_steps, inputs.lang)


def _length_figure(stats: Mapping[str, Any], figures_dir: Path, lang: str) -> str | None:
    """The histogram of formatted lengths per split, when prepare recorded them."""
    splits = stats["splits"]
    lengths = {name: s.get("total_lengths", []) for name, s in splits.items()}
    if not any(lengths.values()):
        return None
    max_length = next(iter(splits.values()))["max_length"]
    return plot_length_histogram(lengths, max_length, figures_dir / "lengths.png", lang).name


def _sweep(sweep_dir: str | None, figures_dir: Path, noise_floor: float | None) -> dict[str, Any] | None:
    """The sweep's table (unranked within ``noise_floor``), with its heatmap copied beside the
    report's figures."""
    table = sections.sweep(sweep_dir, noise_floor)
    if table is None:
        return None
    table["heatmap"] = None
    heatmap = Path(sweep_dir) / "heatmap.png"
    if heatmap.exists():
        figures_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(heatmap, figures_dir / "sweep_heatmap.png")
        table["heatmap"] = "sweep_heatmap.png"
    return table
