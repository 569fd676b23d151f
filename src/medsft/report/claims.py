"""Auditing a report's claims against logged runs.

A claims file (YAML) lists statements, each with checks: a named measurement on the logged
runs, the value the statement asserts (``expect``) and an optional ``tolerance``. A claim
holds when every check holds, does not hold when any check fails, and has no data when a
measurement cannot be made from the logs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from medsft.analysis import measures as analysis
from medsft.core.errors import UserError
from medsft.report.compare import flatten
from medsft.report.runs import RunFiles

HOLDS, FAILS, NO_DATA = "holds", "does not hold", "no data"


class ClaimsError(UserError, ValueError):
    """The claims file is malformed; the message names the claim and the field."""


def _spread(run: RunFiles, from_step: float | None = None):
    return analysis.spread(run.history, "grad_norm", from_step)


def _attr(obj: Any, name: str) -> Any:
    return None if obj is None else getattr(obj, name)


def _phase(run: RunFiles, phase: int, phase_steps: int):
    return analysis.phase(run.history, phase_steps, phase)


def _eval_metric(run: RunFiles, name: str) -> Any:
    return run.eval_metrics.get(name)


def _config(run: RunFiles, key: str) -> Any:
    flat = flatten(run.config)
    return flat.get(key)


def _peak_cuda_gib(run: RunFiles) -> float | None:
    value = run.timing.get("peak_cuda_allocated_bytes")
    return None if value is None else value / 2**30


def _cv(run: RunFiles, after_warmup: bool = False, from_step: float | None = None) -> float | None:
    if after_warmup:
        from_step = analysis.warmup_cutoff(run.history)
    return _attr(_spread(run, from_step), "cv")


# name -> f(run, **args); every one returns None where the logs hold no data.
SINGLE_RUN: dict[str, Callable[..., Any]] = {
    "final_train_loss": lambda r: analysis.final_value(r.history, "loss"),
    "final_eval_loss": lambda r: analysis.final_value(r.history, "eval_loss"),
    "generalization_gap": lambda r: analysis.generalization_gap(r.history),
    "last_step": lambda r: analysis.last_step(r.history),
    "phase_first_loss": lambda r, phase, phase_steps: _attr(_phase(r, phase, phase_steps), "first_loss"),
    "phase_last_loss": lambda r, phase, phase_steps: _attr(_phase(r, phase, phase_steps), "last_loss"),
    "phase_eval_loss": lambda r, phase, phase_steps: _attr(_phase(r, phase, phase_steps), "eval_loss"),
    "phase_drop": lambda r, phase, phase_steps: _attr(_phase(r, phase, phase_steps), "drop"),
    "grad_norm_min": lambda r, from_step=None: _attr(_spread(r, from_step), "min"),
    "grad_norm_min_step": lambda r, from_step=None: _attr(_spread(r, from_step), "min_step"),
    "grad_norm_max": lambda r, from_step=None: _attr(_spread(r, from_step), "max"),
    "grad_norm_max_step": lambda r, from_step=None: _attr(_spread(r, from_step), "max_step"),
    "grad_norm_std": lambda r, from_step=None: _attr(_spread(r, from_step), "std"),
    "grad_norm_range": lambda r, from_step=None: _attr(_spread(r, from_step), "range"),
    "grad_norm_cv": _cv,
    "learning_rate_at": lambda r, step: analysis.value_at(r.history, "learning_rate", step),
    "plateau_step": lambda r, tolerance=0.01: analysis.plateau_step(r.history, tolerance),
    "config": _config,
    "eval_metric": _eval_metric,
    "peak_cuda_memory_gib": _peak_cuda_gib,
}
PHASED = {"phase_first_loss", "phase_last_loss", "phase_eval_loss", "phase_drop"}


@dataclass
class CheckResult:
    description: str
    expect: Any
    measured: Any
    tolerance: float | None
    status: str


@dataclass
class ClaimResult:
    id: str
    statement: str
    status: str
    checks: list[CheckResult] = field(default_factory=list)
    # One text, or one per report language ({zh: …, en: …}).
    note: str | dict[str, str] | None = None


def default_tolerance(expect: Any) -> float | None:
    """One unit of the last decimal place written: 0.52 → 0.01, 1.1073 → 0.0001, 300 → 1."""
    if isinstance(expect, bool) or not isinstance(expect, (int, float)):
        return None
    exponent = Decimal(repr(expect)).normalize().as_tuple().exponent
    if isinstance(expect, int):
        return 1.0
    return float(Decimal(1).scaleb(min(int(exponent), 0)))


def measure(runs: Mapping[str, RunFiles], check: Mapping[str, Any], phase_steps: int) -> Any:
    """The value a check's measurement gives on ``runs`` (``None``: no data)."""
    args = {k: v for k, v in check.items() if k not in ("measure", "expect", "tolerance", "run", "runs", "of")}
    name = check["measure"]
    if name == "relative_change":
        before, after = (measure(runs, {**args, "measure": check["of"], "run": r}, phase_steps) for r in check["runs"])
        return analysis.relative_change(before, after)
    run = runs.get(check["run"])
    if run is None:
        return None
    if name in PHASED:
        args["phase_steps"] = phase_steps
    return SINGLE_RUN[name](run, **args)


def _describe(check: Mapping[str, Any]) -> str:
    args = ", ".join(f"{k}={v}" for k, v in check.items() if k not in ("measure", "expect", "tolerance"))
    return f"{check['measure']}({args})"


def _judge(expect: Any, measured: Any, tolerance: float | None) -> str:
    if measured is None or (isinstance(measured, float) and math.isnan(measured)):
        return NO_DATA
    if tolerance is None:
        return HOLDS if measured == expect else FAILS
    return HOLDS if abs(float(measured) - float(expect)) <= tolerance + 1e-12 else FAILS


def load_claims(path: str | Path) -> dict[str, Any]:
    """Read and check a claims file: every check names a known measurement and an ``expect``."""
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh) or {}
    for i, claim in enumerate(doc.get("claims", [])):
        where = f"{path}: claims[{i}] ({claim.get('id', '?')})"
        for key in ("id", "statement", "checks"):
            if key not in claim:
                raise ClaimsError(f"{where}: missing field {key!r}")
        for j, check in enumerate(claim["checks"]):
            name = check.get("measure")
            if name != "relative_change" and name not in SINGLE_RUN:
                raise ClaimsError(f"{where}.checks[{j}].measure: unknown measurement {name!r}")
            if name == "relative_change" and (check.get("of") not in SINGLE_RUN or len(check.get("runs", [])) != 2):
                raise ClaimsError(f"{where}.checks[{j}]: relative_change needs 'of' (a measurement) and two 'runs'")
            if name != "relative_change" and "run" not in check:
                raise ClaimsError(f"{where}.checks[{j}]: missing field 'run'")
            if "expect" not in check:
                raise ClaimsError(f"{where}.checks[{j}]: missing field 'expect'")
        note = claim.get("note")
        if note is not None and not (
            isinstance(note, str)
            or (isinstance(note, dict) and note and all(isinstance(v, str) for v in note.values()))
        ):
            raise ClaimsError(f"{where}.note: a text, or a mapping of report language to text ({{zh: …, en: …}})")
    return doc


def note_text(note: str | Mapping[str, str] | None, lang: str) -> str | None:
    """A claim's note in the report's language (else the first one given)."""
    if note is None or isinstance(note, str):
        return note
    return note.get(lang) or next(iter(note.values()))


def audit(doc: Mapping[str, Any], runs: Mapping[str, RunFiles], phase_steps: int = 100) -> list[ClaimResult]:
    """Judge every claim of a loaded claims file on ``runs``."""
    results = []
    for claim in doc.get("claims", []):
        checks = []
        for check in claim["checks"]:
            tolerance = check.get("tolerance", default_tolerance(check["expect"]))
            measured = measure(runs, check, phase_steps)
            checks.append(
                CheckResult(
                    _describe(check), check["expect"], measured, tolerance, _judge(check["expect"], measured, tolerance)
                )
            )
        statuses = {c.status for c in checks}
        status = FAILS if FAILS in statuses else NO_DATA if NO_DATA in statuses else HOLDS
        results.append(ClaimResult(claim["id"], claim["statement"], status, checks, claim.get("note")))
    return results
