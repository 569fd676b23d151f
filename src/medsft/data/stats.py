"""Token statistics of a split: per field, and of the formatted (prompt, target) examples."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

from medsft.data.formatting import encode_records, encode_text

STAT_FIELDS = ("question", "think", "answer")


def summary(values: Sequence[int]) -> dict[str, float | int]:
    """Sum, min, median, 95th percentile (linear interpolation) and max of token counts."""
    if not values:
        return {"count": 0, "sum": 0, "min": None, "median": None, "p95": None, "max": None}
    return {
        "count": len(values),
        "sum": int(sum(values)),
        "min": int(min(values)),
        "median": float(statistics.median(values)),
        "p95": float(np.percentile(values, 95)),
        "max": int(max(values)),
    }


def token_stats(
    records: Sequence[dict[str, Any]], tokenizer, system_prompt: str, target_style: str, max_length: int
) -> dict[str, Any]:
    """Token counts of each raw field and of the formatted examples, with truncation losses.

    ``truncated_examples``: examples whose prompt + target exceed ``max_length``;
    ``target_tokens_lost_fraction``: target tokens cut by truncation / all target tokens.
    """
    fields = {}
    for name in STAT_FIELDS:
        ids = encode_text(tokenizer, [r[name] for r in records]) if records else []
        fields[name] = summary([len(i) for i in ids])
    enc = encode_records(records, tokenizer, system_prompt, target_style, max_length)
    totals = [p + t for p, t in zip(enc.prompt_tokens, enc.target_tokens, strict=True)]
    target_all = sum(enc.target_tokens)
    lost = target_all - sum(enc.kept_target_tokens)
    return {
        "records": len(records),
        "fields": fields,
        "formatted": {
            "prompt": summary(enc.prompt_tokens),
            "target": summary(enc.target_tokens),
            "total": summary(totals),
        },
        "max_length": max_length,
        "truncated_examples": sum(1 for n in totals if n > max_length),
        "target_tokens_lost_fraction": lost / target_all if target_all else 0.0,
        "total_lengths": totals,
    }
