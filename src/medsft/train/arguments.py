"""The one place ``transformers.TrainingArguments`` are built: the variants' training, the
pretrain stage and the throughput benchmark pass their fields here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transformers import TrainingArguments

from medsft.train.tracking import report_to, tracking_enabled


def training_arguments(
    fields: Mapping[str, Any], tracking: Mapping[str, Any] | None = None, run_name: str | None = None
) -> TrainingArguments:
    """TrainingArguments of ``fields`` (TrainingArguments field names), reporting to SwanLab
    through transformers' integration when ``tracking`` asks for it, as the run ``run_name``.
    Tracking is not among ``fields``: it changes no trained byte."""
    settings = dict(tracking) if tracking else None
    where: dict[str, Any] = {"report_to": report_to(settings)}
    if tracking_enabled(settings) and run_name:
        where["run_name"] = run_name
    return TrainingArguments(**fields, **where)
