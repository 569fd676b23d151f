"""Numbers that compare runs, each computed from a logged history or a config."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"lora": {"r": 64}}`` → ``{"lora.r": 64}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def config_differences(configs: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Keys whose value differs between any of the configs: one row a key, one column a run.

    A key a config lacks shows as ``None`` (absent), so it counts as a difference.
    """
    flat = {name: flatten(cfg) for name, cfg in configs.items()}
    keys = sorted(set().union(*(f.keys() for f in flat.values())))
    rows = []
    for key in keys:
        values = [flat[name].get(key) for name in flat]
        if any(_norm(v) != _norm(values[0]) for v in values[1:]):
            rows.append({"key": key, **{name: flat[name].get(key) for name in flat}})
    return pd.DataFrame(rows, columns=["key", *flat])


def _norm(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, list):
        return tuple(_norm(v) for v in value)
    return value


def last_value(history: pd.DataFrame, column: str) -> tuple[int, float] | None:
    """``(step, value)`` of the last logged, finite value of ``column``."""
    rows = history.dropna(subset=[column])
    if rows.empty:
        return None
    row = rows.iloc[-1]
    return int(row["step"]), float(row[column])


def relative_change(before: float | None, after: float | None) -> float | None:
    """``(after - before) / before`` as a fraction; ``None`` when undefined."""
    if before is None or after is None or before == 0 or not math.isfinite(before):
        return None
    return (after - before) / before


def final_losses(histories: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Final train loss and final eval loss of each run, with the step each was logged at."""
    rows = []
    for name, hist in histories.items():
        train, ev = last_value(hist, "loss"), last_value(hist, "eval_loss")
        rows.append(
            {
                "run": name,
                "train_step": train[0] if train else None,
                "final_train_loss": train[1] if train else None,
                "eval_step": ev[0] if ev else None,
                "final_eval_loss": ev[1] if ev else None,
            }
        )
    return pd.DataFrame(rows)
