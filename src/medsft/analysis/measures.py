"""Measurements of one logged history, each with a stated definition.

Every function reads a history table (:func:`medsft.history.load_history`) and returns plain
numbers; ``None`` means the history holds no data for it. The report quotes these
definitions under its tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd


def logged(history: pd.DataFrame, column: str, from_step: float | None = None) -> pd.DataFrame:
    """Rows with a finite ``column``, optionally only those with ``step > from_step``."""
    if column not in history:
        return history.iloc[0:0]
    rows = history[history[column].notna()]
    if from_step is not None:
        rows = rows[rows["step"] > from_step]
    return rows


def final_value(history: pd.DataFrame, column: str) -> float | None:
    """The last logged value of ``column``."""
    rows = logged(history, column)
    return float(rows[column].iloc[-1]) if not rows.empty else None


def last_step(history: pd.DataFrame) -> int | None:
    """The last logged optimizer step."""
    return int(history["step"].max()) if not history.empty else None


def generalization_gap(history: pd.DataFrame) -> float | None:
    """Final eval loss − final train loss."""
    train, ev = final_value(history, "loss"), final_value(history, "eval_loss")
    return None if train is None or ev is None else ev - train


def relative_change(before: float | None, after: float | None) -> float | None:
    """``(after − before) / before``; ``None`` when either is missing or ``before`` is 0."""
    if before is None or after is None or before == 0 or not math.isfinite(before):
        return None
    return (after - before) / before


@dataclass
class Phase:
    """Train loss over one window of optimizer steps ``(start, end]``."""

    index: int
    start: int
    end: int
    first_step: int
    first_loss: float
    last_step: int
    last_loss: float
    eval_step: int | None
    eval_loss: float | None

    @property
    def drop(self) -> float | None:
        """Relative change of train loss from the window's first to its last logged step."""
        return relative_change(self.first_loss, self.last_loss)


def phases(history: pd.DataFrame, phase_steps: int) -> list[Phase]:
    """Windows ``(0, n], (n, 2n], …`` up to the last logged step.

    Each gives the train loss at its first and last logged step, and the eval loss of the
    last evaluation inside the window (at its end when the run evaluates every n steps).
    """
    train = logged(history, "loss")
    evals = logged(history, "eval_loss")
    end_step = last_step(history) or 0
    out = []
    for index, start in enumerate(range(0, end_step, phase_steps), 1):
        end = start + phase_steps
        window = train[(train["step"] > start) & (train["step"] <= end)]
        if window.empty:
            continue
        ev = evals[(evals["step"] > start) & (evals["step"] <= end)]
        out.append(
            Phase(
                index=index,
                start=start,
                end=end,
                first_step=int(window["step"].iloc[0]),
                first_loss=float(window["loss"].iloc[0]),
                last_step=int(window["step"].iloc[-1]),
                last_loss=float(window["loss"].iloc[-1]),
                eval_step=int(ev["step"].iloc[-1]) if not ev.empty else None,
                eval_loss=float(ev["eval_loss"].iloc[-1]) if not ev.empty else None,
            )
        )
    return out


def phase(history: pd.DataFrame, phase_steps: int, index: int) -> Phase | None:
    """The ``index``-th window (1-based) of :func:`phases`, if logged."""
    return next((p for p in phases(history, phase_steps) if p.index == index), None)


def warmup_end_step(history: pd.DataFrame) -> int | None:
    """The first logged step at which the learning rate reaches its maximum.

    For a schedule with warmup that is where warmup ends (as logged); for a decay without
    warmup it is the first logged step.
    """
    rows = logged(history, "learning_rate")
    if rows.empty:
        return None
    return int(rows.loc[rows["learning_rate"].idxmax(), "step"])


def warmup_cutoff(history: pd.DataFrame) -> float | None:
    """Steps up to this one count as warmup: the logged step before the learning-rate peak
    (``None`` when the peak is the first logged step, i.e. no warmup was logged)."""
    peak = warmup_end_step(history)
    if peak is None:
        return None
    earlier = history[history["step"] < peak]["step"]
    return float(earlier.max()) if not earlier.empty else None


def value_at(history: pd.DataFrame, column: str, step: int) -> float | None:
    """``column`` at exactly ``step`` (``None`` when that step was not logged)."""
    rows = logged(history, column)
    rows = rows[rows["step"] == step]
    return float(rows[column].iloc[0]) if not rows.empty else None


def nearest_logged_step(history: pd.DataFrame, column: str, step: float) -> int | None:
    """The logged step of ``column`` closest to ``step`` (the earlier one on a tie)."""
    rows = logged(history, column)
    if rows.empty:
        return None
    distance = (rows["step"] - step).abs()
    return int(rows.loc[distance.idxmin(), "step"])


def lr_points(history: pd.DataFrame) -> dict[str, tuple[int, float] | None]:
    """Learning rate at the first logged step, at the end of warmup, at mid-run, at the end.

    Mid-run: the logged step nearest half the last logged step.
    """
    rows = logged(history, "learning_rate")
    if rows.empty:
        return {k: None for k in ("first", "warmup_end", "mid", "end")}

    def at(step: int | None) -> tuple[int, float] | None:
        return None if step is None else (step, value_at(history, "learning_rate", step))

    mid = nearest_logged_step(history, "learning_rate", (last_step(history) or 0) / 2)
    return {
        "first": at(int(rows["step"].iloc[0])),
        "warmup_end": at(warmup_end_step(history)),
        "mid": at(mid),
        "end": at(int(rows["step"].iloc[-1])),
    }


@dataclass
class Spread:
    """Distribution of a logged series: extremes with their steps, mean, population std, CV."""

    count: int
    min: float
    min_step: int
    max: float
    max_step: int
    mean: float
    std: float

    @property
    def cv(self) -> float:
        """Coefficient of variation: population standard deviation / mean."""
        return self.std / self.mean if self.mean else float("nan")

    @property
    def range(self) -> float:
        return self.max - self.min


def spread(history: pd.DataFrame, column: str = "grad_norm", from_step: float | None = None) -> Spread | None:
    """:class:`Spread` of ``column`` over logged steps (only ``step > from_step`` if given)."""
    rows = logged(history, column, from_step)
    if rows.empty:
        return None
    values = rows[column].astype(float)
    return Spread(
        count=len(values),
        min=float(values.min()),
        min_step=int(rows.loc[values.idxmin(), "step"]),
        max=float(values.max()),
        max_step=int(rows.loc[values.idxmax(), "step"]),
        mean=float(values.mean()),
        std=float(values.std(ddof=0)),
    )


def plateau_step(history: pd.DataFrame, tolerance: float = 0.01) -> int | None:
    """The first evaluation step after which no evaluation improves on the one before it by
    more than ``tolerance`` (relative). ``None`` with fewer than two evaluations, or when the
    eval loss still improves by more than that at the last evaluation.
    """
    evals = logged(history, "eval_loss")
    if len(evals) < 2:
        return None
    steps, losses = evals["step"].tolist(), evals["eval_loss"].tolist()
    improving = [(losses[i - 1] - losses[i]) / losses[i - 1] > tolerance for i in range(1, len(losses))]
    if improving[-1]:
        return None
    last_big = max((i for i, big in enumerate(improving) if big), default=-1)
    return int(steps[last_big + 1])
