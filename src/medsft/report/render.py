"""Rendering ``report.md`` from logged runs: every number computed here from the files."""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from medsft.analysis import measures as analysis
from medsft.analysis.tables import fmt, lr_fmt, md_table, pct
from medsft.core.io import atomic_write_text
from medsft.report.claims import audit, load_claims, note_text
from medsft.report.compare import config_differences
from medsft.report.plots import plot_histories, plot_length_histogram
from medsft.report.runs import RunFiles
from medsft.report.text import TEXT


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
    tracking_logdir: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)


def _clip(text: str, limit: int = 160, show_breaks: bool = True) -> str:
    """One table cell, clipped: line breaks shown as \\n (a run of them counted, so a
    degenerate output stays visible without filling the table) or folded into spaces; an
    output of whitespace only shows as (blank)."""
    if not text:
        return "(empty)"
    if not text.strip():
        return "(blank)"
    if show_breaks:
        text = re.sub(r"\n{2,}", lambda m: f"\\n×{len(m.group())}", text).replace("\n", "\\n")
    else:
        text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def render_report(inputs: ReportInputs, out_dir: str | Path) -> Path:
    """Write ``report.md`` and ``figures/*.png`` under ``out_dir``; return the report's path.

    With published runs: a first part on them (their tables, figures and the claims audit),
    then a part on the local runs. Without: the local runs alone.
    """
    t = TEXT[inputs.lang]
    out = Path(out_dir)
    if not inputs.runs and not inputs.published:
        raise ValueError("no runs to report on")
    parts = [f"# {t['title']}", t["generated"], t["rounding"]]
    if inputs.published:
        group = replace(inputs, runs=inputs.published, tracking_logdir=None)
        parts.append(f"## {t['published_part']}")
        parts.append(t["published_def"].format(source=inputs.published_source, profile=inputs.published_profile))
        parts += _demote(_run_sections(group, t, out / "figures", prefix="published_"))
        parts += _demote(_claims(group, t))
    if inputs.runs:
        if inputs.published:
            parts.append(f"## {t['local_part']}")
            parts.append(t["local_def"].format(profile=inputs.local_profile or "?"))
        local = _overview(inputs, t) + _data(inputs, t, out / "figures") + _base(inputs, t)
        local += _run_sections(inputs, t, out / "figures", prefix="")
        local += _evaluation(inputs, t) + _sweep(inputs, t, out / "figures") + _local_claims(inputs, t)
        parts += _demote(local) if inputs.published else local
    parts += _reproducibility(inputs, t)
    report = out / "report.md"
    atomic_write_text(report, "\n\n".join(_number_sections(parts)) + "\n")
    return report


def _run_sections(inputs: ReportInputs, t: dict[str, str], figures_dir: Path, prefix: str) -> list[str]:
    """The tables and figures of one group of runs, from their histories."""
    figures = plot_histories({n: r.history for n, r in inputs.runs.items()}, figures_dir, prefix=prefix)
    parts = _overview(inputs, t) if prefix else []
    parts += _phases(inputs, t) + _learning_rate(inputs, t, figures) + _gradients(inputs, t) + _comparison(inputs, t)
    parts += [f"## {t['figures']}", t["fig_def"]]
    parts += [f"![{name}](figures/{path.name})" for name, path in figures.items()]
    return parts


def _demote(parts: list[str]) -> list[str]:
    """Headings one level down (a group's sections inside its part)."""
    return [f"#{p}" if p.startswith("##") else p for p in parts]


def _number_sections(parts: list[str]) -> list[str]:
    """Number ``## `` sections and ``### `` subsections in order, so an omitted one leaves no gap."""
    numbered, n, m = [], 0, 0
    for part in parts:
        if part.startswith("## "):
            n, m = n + 1, 0
            part = f"## {n}. {part[3:]}"
        elif part.startswith("### ") and n:
            m += 1
            part = f"### {n}.{m} {part[4:]}"
        numbered.append(part)
    return numbered


def _base(inputs: ReportInputs, t: dict[str, str]) -> list[str]:
    info = inputs.base_info
    if not info or "base_model_id" not in info:
        return []
    return [
        f"## {t['base']}",
        t["base_def"].format(
            id=info["base_model_id"],
            steps=fmt(info["steps"]),
            tokens=fmt(info["train_tokens"]),
            records=fmt(info["records"]),
            first=fmt(info["first_loss"]),
            final=fmt(info["final_loss"]),
        ),
    ]


def _local_claims(inputs: ReportInputs, t: dict[str, str]) -> list[str]:
    """The claims audit of the local runs: only when they ran the profile the claims are about."""
    if not inputs.claims_path:
        return []
    if inputs.published_profile and inputs.local_profile != inputs.published_profile:
        return [
            f"## {t['claims']}",
            t["claims_na"].format(local=inputs.local_profile, profile=inputs.published_profile),
        ]
    return _claims(inputs, t)


def _overview(inputs: ReportInputs, t: dict[str, str]) -> list[str]:
    parts = [f"## {t['overview']}"]
    rows = []
    for r in inputs.runs.values():
        m = r.train_metrics
        rows.append(
            [
                r.name,
                f"`{r.history_path}`",
                fmt(analysis.last_step(r.history)),
                fmt(m.get("train_seconds"), 1),
                fmt(m.get("eval_seconds"), 1),
                fmt(m.get("tokens_per_second"), 1),
                fmt(m.get("hardware")),
            ]
        )
    header = [t["run"], t["source"], t["steps"], t["wall"], t["eval_time"], t["tps"], t["hardware"]]
    parts.append(md_table(header, rows))
    parts.append(t["timing_def"])
    if inputs.tracking_logdir:
        parts.append(t["tracking"].format(logdir=inputs.tracking_logdir))
    configs = {n: r.config for n, r in inputs.runs.items() if r.config}
    if len(configs) >= 2:
        parts.append(f"### {t['differences']}")
        parts.append(t["diff_def"])
        diff = config_differences(configs)
        if diff.empty:
            parts.append(t["no_diff"])
        else:
            rows = [[f"`{row['key']}`", *(fmt(row[n]) for n in configs)] for _, row in diff.iterrows()]
            parts.append(md_table(["key", *configs], rows))
    overridden = {name: r.profile_overrides for name, r in inputs.runs.items() if r.profile_overrides}
    if overridden:
        keys = sorted({k for o in overridden.values() for k in o})
        rows = []
        for key in keys:
            used = {fmt(o[key]["profile"]) for o in overridden.values() if key in o}
            asked = [fmt(o[key]["variant"]) if key in o else "—" for o in overridden.values()]
            rows.append([f"`training.{key}`", *asked, " / ".join(sorted(used))])
        parts.append(t["overrides_def"])
        parts.append(md_table(["key", *(f"{n}: {t['asked']}" for n in overridden), t["used"]], rows))
    return parts


def _data(inputs: ReportInputs, t: dict[str, str], figures: Path) -> list[str]:
    stats = inputs.data_stats
    if not stats:
        return []
    parts = [f"## {t['data']}"]
    reasons = ", ".join(f"{k}: {v}" for k, v in stats.get("rejected_by_reason", {}).items()) or "—"
    splits = stats["splits"]
    counts = ", ".join(f"{name} {s['records']}" for name, s in splits.items())
    parts.append(
        t["data_counts"].format(
            source=stats["source"],
            accepted=stats["accepted"],
            rejected=stats["rejected"],
            reasons=reasons,
            splits=counts,
            method=stats["split"]["method"],
            seed=stats["split"]["seed"],
        )
    )
    rows = []
    for name, s in splits.items():
        for field_name, f in s["fields"].items():
            rows.append(
                [name, field_name, fmt(f["sum"]), fmt(f["min"]), fmt(f["median"], 1), fmt(f["p95"], 1), fmt(f["max"])]
            )
        for part in ("prompt", "target", "total"):
            f = s["formatted"][part]
            rows.append(
                [
                    name,
                    f"formatted {part}",
                    fmt(f["sum"]),
                    fmt(f["min"]),
                    fmt(f["median"], 1),
                    fmt(f["p95"], 1),
                    fmt(f["max"]),
                ]
            )
    parts.append(md_table([t["split"], t["field"], "sum", "min", "median", "p95", "max"], rows))
    rows = [
        [
            name,
            fmt(s["max_length"]),
            f"{s['truncated_examples']} / {s['records']}",
            pct(s["target_tokens_lost_fraction"]).lstrip("↑"),
        ]
        for name, s in splits.items()
    ]
    parts.append(md_table([t["split"], "max_length", t["truncated"], t["lost"]], rows))
    parts.append(t["data_def"])
    mostly_cut = [s for s in splits.values() if s["records"] and s["truncated_examples"] / s["records"] > 0.5]
    if mostly_cut:
        median = max(s["formatted"]["total"]["median"] for s in mostly_cut)
        parts.append(t["truncation_note"].format(max_length=mostly_cut[0]["max_length"], median=fmt(median, 0)))
    lengths = {name: s.get("total_lengths", []) for name, s in splits.items()}
    if any(lengths.values()):
        path = plot_length_histogram(lengths, next(iter(splits.values()))["max_length"], figures / "lengths.png")
        parts.append(f"![lengths](figures/{path.name})")
    if inputs.augment_stats:
        rows = []
        for variant, a in inputs.augment_stats.items():
            ki = a["knowledge_injection"]
            tm = inputs.runs[variant].masking if variant in inputs.runs else {}
            per_epoch = "; ".join(
                f"e{e['epoch']}: {e['records_masked']} ({_counts(e['masks_by_type'])})" for e in tm.get("epochs", [])
            )
            rows.append(
                [
                    variant,
                    fmt(a["records"]),
                    "on" if ki["enabled"] else "off",
                    fmt(ki["records_touched"]),
                    fmt(ki["terms_injected"]),
                    f"{tm['probability']:.0%} · {tm['field']}" if tm else "—",
                    per_epoch or "—",
                ]
            )
        parts.append(
            md_table(
                [
                    t["run"],
                    t["records"],
                    t["injection"],
                    t["touched"],
                    t["injected"],
                    t["masking"],
                    t["masked_per_epoch"],
                ],
                rows,
            )
        )
        parts.append(t["augment_def"])
    return parts


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k}×{v}" for k, v in counts.items()) or "—"


def _phases(inputs: ReportInputs, t: dict[str, str]) -> list[str]:
    parts = [f"## {t['phases']}"]
    rows = []
    for r in inputs.runs.values():
        for p in analysis.phases(r.history, inputs.phase_steps):
            rows.append(
                [
                    r.name,
                    f"{p.index} ({p.start}, {p.end}]",
                    f"{fmt(p.first_loss)} @ {p.first_step}",
                    f"{fmt(p.last_loss)} @ {p.last_step}",
                    pct(p.drop),
                    "—" if p.eval_loss is None else f"{fmt(p.eval_loss)} @ {p.eval_step}",
                ]
            )
    parts.append(md_table([t["run"], t["phase"], "train loss (first)", "train loss (last)", "Δ", "eval loss"], rows))
    parts.append(t["phases_def"].format(n=inputs.phase_steps))
    return parts


def _learning_rate(inputs: ReportInputs, t: dict[str, str], figures: Mapping[str, Path]) -> list[str]:
    parts = [f"## {t['lr']}"]
    rows = []
    for r in inputs.runs.values():
        pts = analysis.lr_points(r.history)
        rows.append([r.name, *("—" if p is None else f"{lr_fmt(p[1])} @ {p[0]}" for p in pts.values())])
    parts.append(md_table([t["run"], "first", "warmup end", "mid-run", "end"], rows))
    parts.append(t["lr_def"])
    if "learning_rate" in figures:
        parts.append(f"![learning_rate](figures/{figures['learning_rate'].name})")
    return parts


def _shared_cutoff(runs: Mapping[str, RunFiles]) -> float:
    cuts = [c for c in (analysis.warmup_cutoff(r.history) for r in runs.values()) if c is not None]
    return max(cuts, default=0.0)


def _gradients(inputs: ReportInputs, t: dict[str, str]) -> list[str]:
    parts = [f"## {t['grad']}"]
    cut = _shared_cutoff(inputs.runs)
    late_from = max((analysis.last_step(r.history) or 0) for r in inputs.runs.values()) / 2
    rows = []
    for r in inputs.runs.values():
        every, after = analysis.spread(r.history), analysis.spread(r.history, from_step=cut)
        late = analysis.spread(r.history, from_step=late_from - 1e-9)
        if every is None:
            continue
        rows.append(
            [
                r.name,
                f"{fmt(every.min)} @ {every.min_step}",
                f"{fmt(every.max)} @ {every.max_step}",
                fmt(every.mean),
                fmt(every.std),
                fmt(every.cv, 3),
                fmt(after.cv if after else None, 3),
                "—" if late is None else f"{fmt(late.min)}–{fmt(late.max)}",
            ]
        )
    header = [t["run"], "min @ step", "max @ step", "mean", "std", "CV (all)", "CV (after warmup)", "late range"]
    parts.append(md_table(header, rows))
    parts.append(t["grad_def"].format(cut=fmt(int(cut)), late=fmt(int(math.ceil(late_from)))))
    group_rows = []
    for r in inputs.runs.values():
        for col in (c for c in r.history.columns if c.startswith("grad_norm_")):
            s = analysis.spread(r.history, col)
            if s is not None:
                group_rows.append(
                    [r.name, col.removeprefix("grad_norm_"), fmt(s.mean), fmt(s.min), fmt(s.max), fmt(s.cv, 3)]
                )
    if group_rows:
        parts.append(t["grad_groups"])
        parts.append(md_table([t["run"], "group", "mean", "min", "max", "CV"], group_rows))
    return parts


def _comparison(inputs: ReportInputs, t: dict[str, str]) -> list[str]:
    runs = list(inputs.runs.values())
    if len(runs) < 2:
        return []
    base = runs[0]
    parts = [f"## {t['compare']}"]

    measures = {
        "train": lambda h: analysis.final_value(h, "loss"),
        "eval": lambda h: analysis.final_value(h, "eval_loss"),
        "gap": analysis.generalization_gap,
    }
    rows = []
    for r in runs:
        row = [r.name]
        for measure in measures.values():
            value = measure(r.history)
            change = analysis.relative_change(measure(base.history), value)
            row += [fmt(value), "—" if r is base else pct(change)]
        grad = analysis.spread(r.history)
        row += [fmt(analysis.plateau_step(r.history, inputs.plateau_tolerance)), fmt(grad.cv if grad else None, 3)]
        rows.append(row)
    header = [t["run"], "final train loss", "Δ", "final eval loss", "Δ", t["gap"], "Δ", t["plateau"], "grad CV"]
    parts.append(md_table(header, rows))
    parts.append(t["compare_def"].format(base=base.name, tol=inputs.plateau_tolerance))
    return parts


EVAL_COLUMNS = {
    "eval_loss": ("eval loss", 4),
    "perplexity": ("perplexity", 2),
    "think_format_validity": ("think format", 3),
    "rouge_l_f1": ("ROUGE-L F1", 3),
    "bleu": ("BLEU", 3),
    "word_rouge_1": ("ROUGE-1 (words)", 2),
    "word_rouge_2": ("ROUGE-2 (words)", 2),
    "word_rouge_l": ("ROUGE-L (words)", 2),
    "bleu_4": ("BLEU-4", 2),
    "term_recall": ("term recall", 3),
    "mechanism_mention_rate": ("mechanism mentions", 3),
    "rare_term_rate": ("rare-term rate", 3),
}


def _evaluation(inputs: ReportInputs, t: dict[str, str]) -> list[str]:
    evaluated = {n: r for n, r in inputs.runs.items() if r.eval_metrics}
    if not evaluated:
        return []
    parts = [f"## {t['eval']}"]
    rows = [[n, *(fmt(r.eval_metrics.get(k), d) for k, (_, d) in EVAL_COLUMNS.items())] for n, r in evaluated.items()]
    parts.append(md_table([t["run"], *(label for label, _ in EVAL_COLUMNS.values())], rows))
    first = next(iter(evaluated.values())).eval_metrics
    parts.append(t["eval_def"].format(n=first.get("num_generations", "—"), decoding=first.get("decoding", "greedy")))
    with_probes = {n: r for n, r in evaluated.items() if r.probes}
    if with_probes:
        parts.append(f"### {t['probes']}")
        parts.append(t["probes_def"])
        for i, probe in enumerate(next(iter(with_probes.values())).probes):
            parts.append(f"**{probe['id']}**: {probe['question']}")
            rows = [
                [n, _clip(r.probes[i]["output"], 300) if i < len(r.probes) else "—"] for n, r in with_probes.items()
            ]
            parts.append(md_table([t["run"], t["output"]], rows))
    with_gen = {n: r for n, r in evaluated.items() if r.generations}
    if with_gen:
        parts.append(f"### {t['generations']}")
        parts.append(t["gen_def"])
        for i, item in enumerate(next(iter(with_gen.values())).generations[:2]):
            parts.append(f"**{t['question']} {i + 1}**: {item['question']}")
            rows = [
                [n, _clip(r.generations[i]["output"]) if i < len(r.generations) else "—"] for n, r in with_gen.items()
            ]
            rows.append([t["reference"], _clip(item["reference"], show_breaks=False)])
            parts.append(md_table([t["run"], t["output"]], rows))
    return parts


SWEEP_COLUMNS = (
    "final_train_loss",
    "final_eval_loss",
    "generalization_gap",
    "grad_norm_cv",
    "rouge_l_f1",
    "term_recall",
)


def _sweep(inputs: ReportInputs, t: dict[str, str], figures: Path) -> list[str]:
    if not inputs.sweep_dir or not (Path(inputs.sweep_dir) / "summary.csv").exists():
        return []
    sweep_dir = Path(inputs.sweep_dir)
    summary = pd.read_csv(sweep_dir / "summary.csv")
    keys = [c for c in summary.columns if c.startswith("variant.")]
    columns = ["rank", *keys, "status", *(c for c in SWEEP_COLUMNS if c in summary)]
    rows = [
        [v if isinstance(v, str) else fmt(v.item() if hasattr(v, "item") else v) for v in r]
        for r in summary[columns].itertuples(index=False)
    ]
    parts = [
        f"### {t['sweep']}",
        t["sweep_def"].format(path=f"{sweep_dir}/summary.csv"),
        md_table([c.removeprefix("variant.") for c in columns], rows),
    ]
    if (sweep_dir / "heatmap.png").exists():
        figures.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sweep_dir / "heatmap.png", figures / "sweep_heatmap.png")
        parts.append("![sweep heatmap](figures/sweep_heatmap.png)")
    return parts


def _claims(inputs: ReportInputs, t: dict[str, str]) -> list[str]:
    if not inputs.claims_path:
        return []
    results = audit(load_claims(inputs.claims_path), inputs.runs, inputs.phase_steps)
    parts = [f"## {t['claims']}", t["claims_def"].format(path=inputs.claims_path)]
    rows = []
    for res in results:
        measured = "; ".join(f"{c.description} = {_measured(c.measured)} (≈ {c.expect})" for c in res.checks)
        rows.append([res.id, res.statement, f"**{t[res.status]}**", measured])
    parts.append(md_table([t["claim"], "", t["status"], t["measured"]], rows))
    notes = [f"- `{res.id}`: {note_text(res.note, inputs.lang)}" for res in results if res.note]
    if notes:
        parts.append("\n".join(notes))
    return parts


def _measured(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.5g}"
    return "—" if value is None else str(value)


def _reproducibility(inputs: ReportInputs, t: dict[str, str]) -> list[str]:
    prov = inputs.provenance
    if not prov:
        return []
    parts = [f"## {t['repro']}"]
    commit = prov.get("git", {})
    state = t["dirty"] if commit.get("dirty") else t["regenerated"] if commit.get("regenerated") else ""
    lines = [f"- {t['commit']}: `{commit.get('commit') or '—'}` {state}".rstrip()]
    if prov.get("params_sha256"):
        lines.append(f"- {t['params_hash']}: `{prov['params_sha256']}`")
    if prov.get("seeds"):
        lines.append(f"- {t['seeds']}: " + ", ".join(f"`{k}={v}`" for k, v in prov["seeds"].items()))
    if prov.get("packages"):
        lines.append(f"- {t['packages']}: " + ", ".join(f"{k} {v}" for k, v in prov["packages"].items()))
    if prov.get("hardware"):
        lines.append(f"- {t['generated_on']}: {prov['hardware']}")
    if prov.get("command"):
        lines.append(f"- {t['command']}: `{prov['command']}`")
    parts.append("\n".join(lines))
    if prov.get("hashes"):
        parts.append(f"{t['hashes']}:")
        parts.append(md_table(["path", "md5"], [[f"`{p}`", f"`{h}`"] for p, h in prov["hashes"].items()]))
    return parts
