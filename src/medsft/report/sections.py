"""What each section of the report shows, computed from the logged runs as plain data.

Every function returns its tables as :class:`~medsft.report.labels.Table` (columns named by
label keys, cells already formatted: rounding is part of what a number means here) and dicts
of the values its prose quotes; the templates under ``templates/`` hold the prose and the
layout, :mod:`medsft.report.labels` the words of the headers. A section with nothing to show is
``None``. Dict keys avoid the names of dict methods (``items``, ``values`` …), which a
template's ``section.key`` would find first.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from medsft.analysis import measures as analysis
from medsft.analysis.tables import fmt, lr_fmt, pct
from medsft.report.claims import audit, load_claims, note_text
from medsft.report.compare import config_differences
from medsft.report.labels import Label, Name, Table, label, names
from medsft.report.runs import RunFiles

Row = list[str]

# eval/metrics.json field -> decimals shown (its header is the field's label)
EVAL_COLUMNS = {
    "eval_loss_token_weighted": 4,
    "perplexity": 2,
    "think_format_validity": 3,
    "rouge_l_f1": 3,
    "bleu": 3,
    "word_rouge_1": 2,
    "word_rouge_2": 2,
    "word_rouge_l": 2,
    "bleu_4": 2,
    "term_recall": 3,
    "mechanism_mention_rate": 3,
    "rare_term_rate": 3,
}

SWEEP_COLUMNS = (
    "final_train_loss",
    "final_eval_loss",
    "generalization_gap",
    "grad_norm_cv",
    "rouge_l_f1",
    "term_recall",
)


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


def overview(runs: Mapping[str, RunFiles], tracking_logdir: str | None = None) -> dict[str, Any]:
    """The runs' sources and timings (``table``: run, history file, last step, training and
    evaluation seconds, tokens/s, hardware), where SwanLab logged them (``tracking``), the
    config keys whose values differ (``differences``) and the values the model profile
    replaced (``overrides``)."""
    rows = []
    for r in runs.values():
        m = r.timing  # timing.json: run-time figures are no DVC metrics
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
    columns = ("run", "history_file", "last_step", "train_seconds", "eval_seconds", "tokens_per_second", "hardware")
    return {
        "table": Table(columns, rows),
        "tracking": tracking_logdir,
        "differences": config_difference_rows(runs),
        "overrides": override_rows(runs),
    }


def config_difference_rows(runs: Mapping[str, RunFiles]) -> Table | None:
    """Key-by-key config differences of the runs that have a config (key, then each run's
    value; no rows when the configs agree); ``None`` for fewer than two such runs."""
    configs = {n: r.config for n, r in runs.items() if r.config}
    if len(configs) < 2:
        return None
    diff = config_differences(configs)
    rows = [[f"`{row['key']}`", *(fmt(row[n]) for n in configs)] for _, row in diff.iterrows()]
    return Table(("key", *names(list(configs))), rows)


def override_rows(runs: Mapping[str, RunFiles]) -> Table | None:
    """The ``training.*`` values the model profile replaced: key, the asked-for value of each
    run with any, the value(s) used; ``None`` if none were."""
    overridden = {name: r.profile_overrides for name, r in runs.items() if r.profile_overrides}
    if not overridden:
        return None
    rows = []
    for key in sorted({k for o in overridden.values() for k in o}):
        used = {fmt(o[key]["profile"]) for o in overridden.values() if key in o}
        asked = [fmt(o[key]["variant"]) if key in o else "—" for o in overridden.values()]
        rows.append([f"`training.{key}`", *asked, " / ".join(sorted(used))])
    return Table(("key", *(Label("asked", {"run": n}) for n in overridden), "used"), rows)


def data_tables(stats: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """prepare's ``stats.json`` as the report shows it: the record counts its prose quotes
    (``counts``), token statistics per split and field (``tokens``), truncation per split
    (``truncation_table``) and, when most examples of a split are cut, the ``truncation`` note's
    values; ``None`` without stats."""
    if not stats:
        return None
    splits = stats["splits"]
    counts = {
        "source": stats["source"],
        "accepted": stats["accepted"],
        "rejected": stats["rejected"],
        "reasons": ", ".join(f"{k}: {v}" for k, v in stats.get("rejected_by_reason", {}).items()) or "—",
        "splits": ", ".join(f"{name} {s['records']}" for name, s in splits.items()),
        "method": stats["split"]["method"],
        "seed": stats["split"]["seed"],
    }

    def spread(label: str, f: Mapping[str, Any]) -> list[str]:
        return [label, fmt(f["sum"]), fmt(f["min"]), fmt(f["median"], 1), fmt(f["p95"], 1), fmt(f["max"])]

    token_rows = []
    for name, s in splits.items():
        token_rows += [[name, *spread(field_name, f)] for field_name, f in s["fields"].items()]
        token_rows += [
            [name, *spread(f"formatted {part}", s["formatted"][part])] for part in ("prompt", "target", "total")
        ]
    truncation_rows = [
        [
            name,
            fmt(s["max_length"]),
            f"{s['truncated_examples']} / {s['records']}",
            pct(s["target_tokens_lost_fraction"]).lstrip("↑"),
        ]
        for name, s in splits.items()
    ]
    mostly_cut = [s for s in splits.values() if s["records"] and s["truncated_examples"] / s["records"] > 0.5]
    truncation = None
    if mostly_cut:
        median = max(s["formatted"]["total"]["median"] for s in mostly_cut)
        truncation = {"max_length": mostly_cut[0]["max_length"], "median": fmt(median, 0)}
    return {
        "counts": counts,
        "tokens": Table(("split", "field", "sum", "min", "median", "p95", "max"), token_rows),
        "truncation_table": Table(("split", "max_length", "truncated", "target_lost"), truncation_rows),
        "truncation": truncation,
    }


def augment_rows(
    augment_stats: Mapping[str, Mapping[str, Any]], runs: Mapping[str, RunFiles], lang: str
) -> Table | None:
    """Per variant: augmented records, knowledge injection (on/off, records touched, terms
    injected) and the term masking train applied (probability · field, records per epoch);
    ``None`` without augment stats."""
    if not augment_stats:
        return None
    rows = []
    for variant, a in augment_stats.items():
        ki = a["knowledge_injection"]
        tm = runs[variant].masking if variant in runs else {}
        per_epoch = "; ".join(
            f"e{e['epoch']}: {e['records_masked']} ({_counts(e['masks_by_type'])})" for e in tm.get("epochs", [])
        )
        rows.append(
            [
                variant,
                fmt(a["records"]),
                label("on" if ki["enabled"] else "off", lang),
                fmt(ki["records_touched"]),
                fmt(ki["terms_injected"]),
                f"{tm['probability']:.0%} · {tm['field']}" if tm else "—",
                per_epoch or "—",
            ]
        )
    columns = ("run", "records", "knowledge_injection", "records_injected", "terms_injected")
    return Table((*columns, "term_masking", "masked_per_epoch"), rows)


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k}×{v}" for k, v in counts.items()) or "—"


def base_model(info: Mapping[str, Any] | None) -> dict[str, str] | None:
    """The pretrained base's identity, steps, tokens, records, first/final loss and its trimmed
    vocabulary's rows (None for a full one); ``None`` without the pretrain stage's ``base.json``."""
    if not info or "base_model_id" not in info:
        return None
    return {
        "id": info["base_model_id"],
        "steps": fmt(info["steps"]),
        "tokens": fmt(info["train_tokens"]),
        "records": fmt(info["records"]),
        "first": fmt(info["first_loss"]),
        "final": fmt(info["final_loss"]),
        "vocabulary_rows": fmt(info["trimmed_vocabulary_rows"]) if info.get("trimmed_vocabulary_rows") else None,
    }


def phase_rows(runs: Mapping[str, RunFiles], phase_steps: int) -> Table:
    """Per run and window of ``phase_steps`` steps: train loss first and last (value @ step),
    its relative drop, and the window's last eval loss."""
    rows = []
    for r in runs.values():
        for p in analysis.phases(r.history, phase_steps):
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
    return Table(("run", "phase", "phase_first_loss", "phase_last_loss", "phase_drop", "phase_eval_loss"), rows)


def learning_rate_rows(runs: Mapping[str, RunFiles]) -> Table:
    """Per run: the learning rate at the first step, the end of warmup, mid-run and the end."""
    rows = []
    for r in runs.values():
        pts = analysis.lr_points(r.history)
        rows.append([r.name, *("—" if p is None else f"{lr_fmt(p[1])} @ {p[0]}" for p in pts.values())])
    return Table(("run", "lr_first", "lr_warmup_end", "lr_mid", "lr_end"), rows)


def _shared_cutoff(runs: Mapping[str, RunFiles]) -> float:
    cuts = [c for c in (analysis.warmup_cutoff(r.history) for r in runs.values()) if c is not None]
    return max(cuts, default=0.0)


def gradient_tables(runs: Mapping[str, RunFiles]) -> dict[str, Any]:
    """Grad-norm spread per run (``table``: min and max @ step, mean, std, CV over all steps
    and after the shared warmup ``cut``, range from step ``late``) and per parameter group
    (``groups``: run, group, mean, min, max, CV; ``None`` without per-group norms)."""
    cut = _shared_cutoff(runs)
    late_from = max((analysis.last_step(r.history) or 0) for r in runs.values()) / 2
    rows = []
    for r in runs.values():
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
    groups = []
    for r in runs.values():
        for col in (c for c in r.history.columns if c.startswith("grad_norm_")):
            s = analysis.spread(r.history, col)
            if s is not None:
                groups.append(
                    [r.name, col.removeprefix("grad_norm_"), fmt(s.mean), fmt(s.min), fmt(s.max), fmt(s.cv, 3)]
                )
    columns = ("run", "min_at", "max_at", "mean", "std", "cv_all", "cv_after_warmup", "late_range")
    return {
        "table": Table(columns, rows),
        "cut": fmt(int(cut)),
        "late": fmt(int(math.ceil(late_from))),
        "groups": Table(("run", "group", "mean", "min", "max", "cv"), groups) if groups else None,
    }


def comparison(runs: Mapping[str, RunFiles], plateau_tolerance: float) -> dict[str, Any] | None:
    """Final train and eval loss and generalization gap, each with its change against the
    first run (the ``base``), plateau step and grad-norm CV; ``None`` for a single run."""
    if len(runs) < 2:
        return None
    base = next(iter(runs.values()))
    measures = (
        lambda h: analysis.final_value(h, "loss"),
        lambda h: analysis.final_value(h, "eval_loss"),
        analysis.generalization_gap,
    )
    rows = []
    for r in runs.values():
        row = [r.name]
        for measure in measures:
            value = measure(r.history)
            change = analysis.relative_change(measure(base.history), value)
            row += [fmt(value), "—" if r is base else pct(change)]
        grad = analysis.spread(r.history)
        row += [fmt(analysis.plateau_step(r.history, plateau_tolerance)), fmt(grad.cv if grad else None, 3)]
        rows.append(row)
    columns = ("run", "final_train_loss", "change", "final_eval_loss", "change", "generalization_gap", "change")
    return {
        "table": Table((*columns, "plateau_step", "grad_norm_cv"), rows),
        "base": base.name,
        "tolerance": f"{plateau_tolerance:.1%}",
    }


def evaluation(runs: Mapping[str, RunFiles], lang: str) -> dict[str, Any] | None:
    """The evaluated runs' metrics (``table``), the decoding they share, and the replies to
    each probe and to the first two validation questions, clipped (``probes``,
    ``generations``: each a table of run and output, a generation's ending with the
    reference answer); ``None`` when no run was evaluated."""
    evaluated = {n: r for n, r in runs.items() if r.eval_metrics}
    if not evaluated:
        return None
    rows = [[n, *(fmt(r.eval_metrics.get(k), d) for k, d in EVAL_COLUMNS.items())] for n, r in evaluated.items()]
    first = next(iter(evaluated.values())).eval_metrics
    probes = [
        {"id": probe["id"], "question": probe["question"], "table": Table(("run", "output"), replies)}
        for probe, replies in _replies(evaluated, "probes", limit=300)
    ]
    generations = [
        {
            "question": item["question"],
            "table": Table(
                ("run", "output"), [*replies, [label("reference", lang), _clip(item["reference"], show_breaks=False)]]
            ),
        }
        for item, replies in _replies(evaluated, "generations", limit=160, first=2)
    ]
    return {
        "table": Table(("run", *EVAL_COLUMNS), rows),
        "num_generations": first.get("num_generations", "—"),
        "decoding": first.get("decoding", "greedy"),
        "probes": probes,
        "generations": generations,
    }


def _replies(
    runs: Mapping[str, RunFiles], kind: str, limit: int, first: int | None = None
) -> list[tuple[dict[str, Any], list[Row]]]:
    """For each of the ``first`` items (``probes`` or ``generations``) of the first run that
    has any: the item, and each such run's reply to it, clipped to ``limit`` characters."""
    replied = {n: getattr(r, kind) for n, r in runs.items() if getattr(r, kind)}
    items = next(iter(replied.values()), [])[:first]
    return [
        (item, [[n, _clip(replies[i]["output"], limit) if i < len(replies) else "—"] for n, replies in replied.items()])
        for i, item in enumerate(items)
    ]


def benchmarks(runs: Mapping[str, RunFiles]) -> dict[str, Any] | None:
    """The lm-eval scores of the runs that have any (``table``: task, task version, examples
    scored, shots, metric, then each run's score ± standard error to 3 decimals), the lm-eval
    version(s), ``limit`` and ``chat_template`` they ran with; ``None`` when no run has a
    benchmark score."""
    scored = {n: r.benchmarks for n, r in runs.items() if r.benchmarks.get("tasks")}
    if not scored:
        return None
    rows = []
    for task in sorted({t for b in scored.values() for t in b["tasks"]}):
        # A task's version, examples and shots as the first run that scored it ran it.
        ran = next(b for b in scored.values() if task in b["tasks"])
        samples = ran.get("n-samples", {}).get(task, {})
        examples = fmt(samples.get("effective"))
        if samples and samples.get("effective") != samples.get("original"):
            examples += f" / {fmt(samples.get('original'))}"
        metrics = sorted({m for b in scored.values() for m in b["tasks"].get(task, {}) if not _is_stderr(m)})
        for metric in metrics:
            scores = [_score(b["tasks"].get(task, {}), metric) for b in scored.values()]
            version = ran.get("versions", {}).get(task)
            rows.append([f"`{task}`", fmt(version, 1), examples, fmt(ran.get("n-shot", {}).get(task)), metric, *scores])
    limits = sorted({str(b["limit"]) for b in scored.values() if b.get("limit") is not None})
    return {
        "table": Table(("task", "version", "examples", "shots", "metric", *names(list(scored))), rows),
        "lm_eval_version": " / ".join(sorted({str(b.get("lm_eval_version")) for b in scored.values()})),
        "limit": " / ".join(limits) or None,
        "chat_template": any(b.get("apply_chat_template") for b in scored.values()),
    }


def _is_stderr(metric: str) -> bool:
    return metric.partition(",")[0].endswith("_stderr")


def _score(scores: Mapping[str, Any], metric: str) -> str:
    """``metric``'s score ± its standard error (lm-eval's ``<metric>_stderr[,filter]``)."""
    name, comma, filter_name = metric.partition(",")
    value, stderr = scores.get(metric), scores.get(f"{name}_stderr{comma}{filter_name}")
    if value is None:
        return "—"
    return fmt(value, 3) if stderr is None else f"{fmt(value, 3)} ± {fmt(stderr, 3)}"


def sweep(sweep_dir: str | Path | None, noise_floor: float | None = None) -> dict[str, Any] | None:
    """A sweep's grid points from its ``summary.csv`` (``table``: the swept keys without the
    ``variant.`` prefix, status, measures), ranked by final eval loss unless its completed
    points differ by no more than ``noise_floor`` (``ranked`` False: then in grid order, as a
    ranking within the noise would be read as a result); ``None`` when there is no summary."""
    if not sweep_dir or not (Path(sweep_dir) / "summary.csv").exists():
        return None
    summary = pd.read_csv(Path(sweep_dir) / "summary.csv")
    keys = [c for c in summary.columns if c.startswith("variant.")]
    done = summary[summary["status"] == "complete"]
    losses = [float(v) for v in done["final_eval_loss"].dropna()] if "final_eval_loss" in done else []
    ranked = noise_floor is None or len(losses) < 2 or max(losses) - min(losses) > noise_floor
    columns = ["rank"] * ranked + [*keys, "status", *(c for c in SWEEP_COLUMNS if c in summary)]
    if not ranked:
        summary = summary.sort_values(keys, kind="stable")
    rows = [
        [v if isinstance(v, str) else fmt(v.item() if hasattr(v, "item") else v) for v in r]
        for r in summary[columns].itertuples(index=False)
    ]
    headers = [Name(c.removeprefix("variant.")) if c in keys else c for c in columns]
    return {
        "path": f"{Path(sweep_dir)}/summary.csv",
        "table": Table(tuple(headers), rows),
        "ranked": ranked,
        "losses": losses,
        "points": done,  # the completed points, for main_effects
        "grid_size": len(summary),
        "keys": keys,
    }


def seed_spread(seeds_dir: str | Path | None, runs: Mapping[str, RunFiles]) -> dict[str, Any] | None:
    """The variants' own runs beside the seeds sweep (``<seeds_dir>/<variant>/summary.csv``,
    one point per further training seed): per variant the final eval loss of each seed, their
    mean and spread (max − min); for two variants, the difference of their means beside the
    larger spread (the noise floor). ``None`` when no summary is there."""
    if not seeds_dir:
        return None
    frames = {p.parent.name: pd.read_csv(p) for p in sorted(Path(seeds_dir).glob("*/summary.csv"))}
    means: dict[str, float] = {}
    spreads: dict[str, float] = {}
    rows = []
    for variant, frame in frames.items():
        done = frame[frame["status"] == "complete"]
        pairs = zip(done["variant.training.seed"], done["final_eval_loss"], strict=True)
        by_seed = {int(seed): float(loss) for seed, loss in pairs}
        own = runs[variant] if variant in runs else None
        if own is not None and own.train_metrics.get("final_eval_loss") is not None:
            by_seed.setdefault(int(own.config["training"]["seed"]), float(own.train_metrics["final_eval_loss"]))
        if not by_seed:
            continue
        seeds = sorted(by_seed)
        losses = [by_seed[s] for s in seeds]
        means[variant], spreads[variant] = sum(losses) / len(losses), max(losses) - min(losses)
        row = [variant, ", ".join(str(s) for s in seeds), " / ".join(fmt(v) for v in losses)]
        rows.append([*row, fmt(means[variant]), fmt(spreads[variant])])
    if not rows:
        return None
    pair = None
    if len(means) == 2:
        (a, mean_a), (b, mean_b) = sorted(means.items())
        floor = max(spreads.values())
        difference = mean_b - mean_a
        pair = {"a": a, "b": b, "difference": fmt(difference), "floor": fmt(floor), "exceeds": abs(difference) > floor}
    table = Table(("variant", "seeds", "loss_per_seed", "mean", "spread"), rows)
    return {"path": str(seeds_dir), "table": table, "pair": pair, "spreads": spreads}


def within_noise(
    sweep_table: dict[str, Any] | None, seeds: dict[str, Any] | None, variant: str, lang: str
) -> dict[str, Any] | None:
    """The sweep's best-to-worst difference in final eval loss beside ``variant``'s seed
    spread (a sweep whose cells differ by less than the seeds do shows no effect), and each
    swept key's main effect (:func:`main_effects`)."""
    if not sweep_table or not seeds or variant not in seeds["spreads"] or len(sweep_table["losses"]) < 2:
        return None
    losses = sweep_table["losses"]
    span = max(losses) - min(losses)
    floor = seeds["spreads"][variant]
    effects = main_effects(sweep_table, floor, lang)
    return {"span": fmt(span), "floor": fmt(floor), "exceeds": span > floor, "variant": variant, "effects": effects}


def main_effects(sweep_table: dict[str, Any], noise_floor: float, lang: str) -> Table | None:
    """Each swept key's main effect on the final eval loss, from the completed points of
    :func:`sweep`'s table: the mean over the other keys' values at each of its values, and the
    range (max − min) of those means, set beside ``noise_floor`` (the base variant's seed
    spread). ``None`` for a grid of one key, or with a point that did not complete (a missing
    cell would tilt the means of its values)."""
    keys, done = sweep_table["keys"], sweep_table["points"]
    if len(keys) < 2 or len(sweep_table["losses"]) < sweep_table["grid_size"]:
        return None
    rows = []
    for key in keys:
        # dropna=False: a point with no value for the key (an empty cell) is a value of its own, not dropped
        means = done.groupby(key, sort=False, dropna=False)["final_eval_loss"].mean()
        spread = float(means.max() - means.min())
        per_value = " · ".join(f"{'—' if pd.isna(v) else v}: {fmt(float(mean))}" for v, mean in means.items())
        verdict = label("above_noise" if spread > noise_floor else "within_noise", lang)
        rows.append([key.removeprefix("variant."), per_value, fmt(spread), verdict])
    return Table(("swept_key", "mean_per_value", "effect", "vs_seed_spread"), rows)


def claims(runs: Mapping[str, RunFiles], claims_path: str, phase_steps: int, lang: str) -> dict[str, Any]:
    """The claims audit on ``runs`` (``table``: per claim its id, statement, verdict in
    ``lang`` and each check as ``measure = measured (≈ stated)``); the claims' notes in ``lang``."""
    results = audit(load_claims(claims_path), runs, phase_steps)
    rows = [
        [
            res.id,
            res.statement,
            f"**{label(res.status, lang)}**",
            "; ".join(f"{c.description} = {_measured(c.measured)} (≈ {c.expect})" for c in res.checks),
        ]
        for res in results
    ]
    notes = [{"id": res.id, "text": note_text(res.note, lang)} for res in results if res.note]
    return {"path": claims_path, "table": Table(("claim_id", "claim", "verdict", "measured"), rows), "notes": notes}


def _measured(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.5g}"
    return "—" if value is None else str(value)


def reproducibility(prov: Mapping[str, Any]) -> dict[str, Any] | None:
    """The code version and its ``state`` (``dirty``, ``regenerated`` or ``None``), params
    hash, seeds, package versions, machine, command and data hashes; ``None`` without any."""
    if not prov:
        return None
    commit = prov.get("git", {})
    return {
        "commit": commit.get("commit") or "—",
        "state": "dirty" if commit.get("dirty") else "regenerated" if commit.get("regenerated") else None,
        "params_sha256": prov.get("params_sha256"),
        "seeds": ", ".join(f"`{k}={v}`" for k, v in (prov.get("seeds") or {}).items()),
        "packages": ", ".join(f"{k} {v}" for k, v in (prov.get("packages") or {}).items()),
        "hardware": prov.get("hardware"),
        "command": prov.get("command"),
        "hashes": Table(("path", "md5"), [[f"`{p}`", f"`{h}`"] for p, h in (prov.get("hashes") or {}).items()]),
    }
