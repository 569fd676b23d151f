"""A run's logged history: Trainer ``log_history`` entries as one table, on disk and back.

The same table is read from our ``history.csv`` or from any Trainer ``trainer_state.json``,
so runs made elsewhere feed the report like the DAG's own.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from medsft.core.io import atomic_write_json, atomic_write_text

HISTORY_COLUMNS = ("step", "epoch", "loss", "grad_norm", "learning_rate", "eval_loss")


def history_rows(log_history: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per logged step: training and evaluation entries of a step merged.

    Entries without a ``loss`` or ``eval_loss`` (the final training summary) are skipped.
    """
    rows: dict[int, dict[str, Any]] = {}
    for entry in log_history:
        if "loss" not in entry and "eval_loss" not in entry:
            continue
        row = rows.setdefault(int(entry["step"]), {"step": int(entry["step"])})
        for key, value in entry.items():
            if (key in HISTORY_COLUMNS[1:] or key.startswith("grad_norm_")) and value is not None:
                row[key] = float(value)
    return [rows[s] for s in sorted(rows)]


def write_history_csv(path: str | Path, log_history: Iterable[dict[str, Any]]) -> None:
    """Write the history table as CSV (empty cells where a step has no such value), with a
    ``grad_norm_<group>`` column per parameter group when the run logged them."""
    rows = history_rows(log_history)
    columns = [*HISTORY_COLUMNS, *sorted({k for r in rows for k in r if k.startswith("grad_norm_")})]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k)) for k in columns})
    atomic_write_text(path, buf.getvalue())


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


# Log keys that measure the machine, not the run (``train_runtime``, ``eval_samples_per_second``…):
# left out of the versioned history so that the same run writes the same bytes; the stage
# reports time in metrics.json.
RUNTIME_SUFFIXES = ("_runtime", "_per_second", "preparation_time")


def without_runtime(entry: dict[str, Any]) -> dict[str, Any]:
    """A log entry without its wall-time figures."""
    return {k: v for k, v in entry.items() if not k.endswith(RUNTIME_SUFFIXES)}


def write_trainer_state(path: str | Path, state: Any) -> None:
    """Write the Trainer's state in its own ``trainer_state.json`` layout, without wall-time figures."""
    atomic_write_json(
        path,
        {
            "global_step": state.global_step,
            "max_steps": state.max_steps,
            "num_train_epochs": state.num_train_epochs,
            "logging_steps": state.logging_steps,
            "eval_steps": state.eval_steps,
            "save_steps": state.save_steps,
            "train_batch_size": state.train_batch_size,
            "log_history": [without_runtime(e) for e in state.log_history],
        },
    )


def load_history(path: str | Path) -> pd.DataFrame:
    """A run's history table from ``history.csv``, ``trainer_state.json`` or a folder holding one."""
    path = Path(path)
    if path.is_dir():
        for name in ("history.csv", "trainer_state.json"):
            if (path / name).exists():
                return load_history(path / name)
        raise FileNotFoundError(f"{path}: no history.csv or trainer_state.json in this folder")
    if not path.exists():
        raise FileNotFoundError(f"{path}: history file not found")
    if path.suffix == ".csv":
        frame = pd.read_csv(path)
        missing = [c for c in ("step", "loss") if c not in frame.columns]
        if missing:
            raise ValueError(f"{path}: history CSV lacks column(s) {missing}")
    else:
        with open(path, encoding="utf-8") as fh:
            state = json.load(fh)
        if "log_history" not in state:
            raise ValueError(f"{path}: not a trainer_state.json (no 'log_history' field)")
        frame = pd.DataFrame(history_rows(state["log_history"]))
    return normalise_history(frame)


def normalise_history(frame: pd.DataFrame) -> pd.DataFrame:
    """The history columns in order (missing ones as NaN, extra ``grad_norm_*`` kept), by step."""
    for col in HISTORY_COLUMNS:
        if col not in frame.columns:
            frame[col] = float("nan")
    extra = sorted(c for c in frame.columns if c.startswith("grad_norm_"))
    return frame[[*HISTORY_COLUMNS, *extra]].sort_values("step").reset_index(drop=True)
