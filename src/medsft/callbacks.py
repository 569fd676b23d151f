"""Trainer callbacks: the run's history on disk as it goes, SwanLab tracking, NaN guard."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from medsft.history import HISTORY_COLUMNS, write_history_csv, write_trainer_state


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class HistoryCallback(TrainerCallback):
    """Keep ``history.csv`` and ``trainer_state.json`` current at every log.

    Both are rewritten atomically after each logged entry, so a run that crashes keeps
    everything it logged until then.
    """

    def __init__(self, csv_path: str | Path, state_path: str | Path) -> None:
        self.csv_path = Path(csv_path)
        self.state_path = Path(state_path)

    def on_log(self, args, state, control, logs: dict[str, Any] | None = None, **kwargs) -> None:
        if not state.is_world_process_zero:
            return
        write_history_csv(self.csv_path, state.log_history)
        write_trainer_state(self.state_path, state)


class EpochCallback(TrainerCallback):
    """Tell a dataset with per-epoch augmentation which epoch is starting (0-based)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs) -> None:
        self.dataset.epoch = int(state.epoch or 0)


class NonFiniteLossCallback(TrainerCallback):
    """Stop with an error naming the step when a logged loss is NaN or infinite."""

    def on_log(self, args, state, control, logs: dict[str, Any] | None = None, **kwargs) -> None:
        for key in ("loss", "eval_loss"):
            value = (logs or {}).get(key)
            if value is not None and not math.isfinite(value):
                raise NonFiniteLossError(f"{key} is {value} at step {state.global_step}; stopping the run")


class SwanLabCallback(TrainerCallback):
    """Log the history's columns and the full config to a SwanLab run.

    ``mode`` is SwanLab's: offline (local files to ``swanlab sync`` later), online (needs
    SWANLAB_API_KEY in the environment), local, or disabled.
    """

    def __init__(self, project: str, name: str, mode: str, logdir: str, config: dict[str, Any]) -> None:
        self.kwargs = {"project": project, "name": name, "mode": mode, "log_dir": logdir, "config": config}
        self.run = None

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        if state.is_world_process_zero and self.run is None:
            import swanlab

            Path(self.kwargs["log_dir"]).mkdir(parents=True, exist_ok=True)
            self.run = swanlab.init(**self.kwargs)

    def on_log(self, args, state, control, logs: dict[str, Any] | None = None, **kwargs) -> None:
        if self.run is None or not logs:
            return
        import swanlab

        values = {}
        for key in HISTORY_COLUMNS:
            if key != "step" and isinstance(logs.get(key), (int, float)):
                prefix = "eval" if key.startswith("eval_") else "train"
                values[f"{prefix}/{key.removeprefix('eval_')}"] = logs[key]
        if values:
            swanlab.log(values, step=state.global_step)

    def on_train_end(self, args, state, control, **kwargs) -> None:
        if self.run is not None:
            import swanlab

            swanlab.finish()
            self.run = None
