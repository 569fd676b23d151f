"""Trainer callbacks: the run's history on disk as it goes, gradient norms by group, the
divergence guard, per-epoch augmentation. (SwanLab tracking is transformers' own callback:
medsft.train.tracking.)"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from medsft.core.config import DivergenceConfig
from medsft.core.errors import UserError
from medsft.core.history import write_history_csv, write_trainer_state


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


def parameter_group(name: str) -> str:
    """``lora`` for LoRA matrices, ``modules_to_save`` for fully trained layers, else ``other``."""
    if "lora_" in name:
        return "lora"
    if "modules_to_save" in name:
        return "modules_to_save"
    return "other"


class GradGroupNormCallback(TrainerCallback):
    """Add the gradient norm of each parameter group (LoRA matrices, modules_to_save layers)
    to every logged training entry, beside the global norm, as ``grad_norm_<group>``.

    The Trainer clips before the optimizer step and logs the norm from before clipping.
    Clipping scales every gradient by one factor, so the group norms measured here (after
    clipping) are rescaled by logged norm / measured global norm to be pre-clipping too.
    Must run before :class:`HistoryCallback`.
    """

    def __init__(self) -> None:
        self.last: dict[str, float] = {}

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs) -> None:
        squares: dict[str, float] = {}
        for name, param in model.named_parameters():
            if param.grad is not None:
                group = parameter_group(name)
                squares[group] = squares.get(group, 0.0) + float(param.grad.detach().float().pow(2).sum())
        self.last = {g: math.sqrt(v) for g, v in squares.items()}
        self.last["_total"] = math.sqrt(sum(squares.values()))

    def on_log(self, args, state, control, logs: dict[str, Any] | None = None, **kwargs) -> None:
        if not logs or "grad_norm" not in logs or not self.last or not state.log_history:
            return
        total = self.last["_total"]
        scale = float(logs["grad_norm"]) / total if total > 0 else 1.0
        # Into the history entry and into the log itself, which the tracking callback that
        # runs after this one (transformers' SwanLab integration) sends on.
        entry = state.log_history[-1]
        for group, norm in self.last.items():
            if group != "_total":
                entry[f"grad_norm_{group}"] = logs[f"grad_norm_{group}"] = norm * scale


class EpochCallback(TrainerCallback):
    """Tell a dataset with per-epoch augmentation which epoch is starting (0-based)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs) -> None:
        self.dataset.epoch = int(state.epoch or 0)


class DivergenceError(UserError, RuntimeError):
    """Training diverged; the message names the step and the reason."""


class DivergenceCallback(TrainerCallback):
    """Stop the run when it diverges, naming the step and the reason:

    - a logged ``loss`` or ``eval_loss`` that is NaN or infinite;
    - a ``loss`` above ``max_loss_ratio`` times the first logged ``loss``;
    - a ``grad_norm`` of exactly 0 in ``zero_grad_norm_logs`` consecutive logs (the
      weights no longer move: a saturated or dead model).
    """

    @classmethod
    def from_settings(cls, settings: dict[str, Any] | None) -> DivergenceCallback:
        """From the ``divergence`` config section; the schema's defaults where a field is absent."""
        return cls(**{**dataclasses.asdict(DivergenceConfig()), **(settings or {})})

    def __init__(self, max_loss_ratio: float, zero_grad_norm_logs: int) -> None:
        self.max_loss_ratio = max_loss_ratio
        self.zero_grad_norm_logs = zero_grad_norm_logs
        self.first_loss: float | None = None
        self.zero_grads = 0

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        # A resumed run judges against the first loss of the whole run.
        first = next((e["loss"] for e in state.log_history if "loss" in e), None)
        self.first_loss = first if first is not None and math.isfinite(first) else None

    def on_log(self, args, state, control, logs: dict[str, Any] | None = None, **kwargs) -> None:
        logs = logs or {}
        step = state.global_step
        for key in ("loss", "eval_loss"):
            value = logs.get(key)
            if value is not None and not math.isfinite(value):
                raise DivergenceError(f"training diverged at step {step}: {key} is {value}")
        loss = logs.get("loss")
        if loss is not None:
            if self.first_loss is None:
                self.first_loss = loss
            elif self.first_loss > 0 and loss > self.max_loss_ratio * self.first_loss:
                raise DivergenceError(
                    f"training diverged at step {step}: loss {loss:.6g} > {self.max_loss_ratio:g} x the first "
                    f"logged loss {self.first_loss:.6g} (divergence.max_loss_ratio)"
                )
        if "grad_norm" in logs:
            self.zero_grads = self.zero_grads + 1 if logs["grad_norm"] == 0 else 0
            if self.zero_grad_norm_logs and self.zero_grads >= self.zero_grad_norm_logs:
                raise DivergenceError(
                    f"training diverged at step {step}: grad_norm was 0 in {self.zero_grads} consecutive logs "
                    "(divergence.zero_grad_norm_logs)"
                )
