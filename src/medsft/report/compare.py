"""What differs between the configs of several runs."""

from __future__ import annotations

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
