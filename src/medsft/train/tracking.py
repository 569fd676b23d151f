"""SwanLab tracking through transformers' own integration (``report_to="swanlab"``).

transformers' ``SwanLabCallback`` logs every Trainer log (``train/loss``, ``eval/loss``, …)
and the TrainingArguments, model and peft configs, and joins a run that is already open.
It reads the mode, log folder and project only from environment variables, so the run is
opened here from the ``tracking`` config instead (one run per variant, named after it, with
the run's spec as its config), and closed when training ends. The API key stays in the
environment (``SWANLAB_API_KEY``); nothing here reads or writes it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import swanlab
from transformers import Trainer
from transformers.integrations import SwanLabCallback


def tracking_enabled(tracking: dict[str, Any] | None) -> bool:
    """Whether the ``tracking`` settings ask for a SwanLab run."""
    return bool(tracking) and tracking.get("mode", "disabled") != "disabled"


def report_to(tracking: dict[str, Any] | None) -> list[str]:
    """The TrainingArguments ``report_to`` of a run."""
    return ["swanlab"] if tracking_enabled(tracking) else []


@contextmanager
def swanlab_run(
    tracking: dict[str, Any] | None, name: str, config: dict[str, Any], main_process: bool = True
) -> Iterator[None]:
    """An open SwanLab run ``name`` (a variant) with ``config`` while the block runs; its logs
    go to ``<logdir>/<name>``. Nothing when tracking is disabled, or on a process other than
    the main one."""
    if not (tracking_enabled(tracking) and main_process):
        yield
        return
    logdir = Path(tracking["logdir"]) / name
    logdir.mkdir(parents=True, exist_ok=True)
    with _sync_tip_at_the_end_only():
        swanlab.init(project=tracking["project"], name=name, mode=tracking["mode"], log_dir=str(logdir), config=config)
    try:
        yield
    finally:
        swanlab.finish()


@contextmanager
def _sync_tip_at_the_end_only() -> Iterator[None]:
    """Leave out the ``swanlab sync <run>`` line SwanLab prints when an offline run opens:
    it prints the same line again when the run finishes, which is when the run can be synced.
    SwanLab has no setting for it, so its private greeting function is replaced while the run
    opens (the local and online modes' lines, a dashboard to watch live, are kept); a SwanLab
    without that function prints both (tests/test_swanlab_import.py counts them)."""
    try:
        greeting = importlib.import_module("swanlab.sdk.internal.run.greeting")
    except ImportError:
        greeting = None
    original = getattr(greeting, "_print_offline_tip", None)
    if original is None:
        yield
        return
    greeting._print_offline_tip = lambda *args, **kwargs: None
    try:
        yield
    finally:
        greeting._print_offline_tip = original


def log_last(trainer: Trainer) -> None:
    """Move transformers' SwanLab callback behind ours, so it logs the gradient norms by
    group that :class:`~medsft.train.callbacks.GradGroupNormCallback` adds to each log
    (the Trainer puts its integrations first)."""
    callback = trainer.pop_callback(SwanLabCallback)
    if callback is not None:
        trainer.add_callback(callback)
