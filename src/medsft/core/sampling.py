"""The config's ``generation`` section as ``model.generate`` arguments."""

from __future__ import annotations

from typing import Any

# GenerationConfig fields that only sampling reads; dropped from a greedy call, where
# transformers would warn that they are set and unused.
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff")


def generate_kwargs(generation: dict[str, Any]) -> dict[str, Any]:
    """``generation`` as ``model.generate`` keyword arguments: greedy unless ``do_sample``."""
    kwargs = {k: v for k, v in generation.items() if v is not None}
    kwargs["do_sample"] = bool(kwargs.get("do_sample", False))
    if not kwargs["do_sample"]:
        for name in SAMPLING_FIELDS:
            kwargs.pop(name, None)
    return kwargs
