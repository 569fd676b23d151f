"""Model architectures by profile, and parameter counts computed without allocating weights.

``qwen3-1.7b`` loads its architecture from the checkpoint (``Qwen/Qwen3-1.7B``), so the profile
holds no ``config``; :data:`QWEN3_1_7B` states it here, from the checkpoint's public
``config.json``, so that a model of the exact shapes can be built without the hub
(``benchmarks/make_random_model.py``) and its memory estimated (``benchmarks/memory_estimate.py``).

Counting happens on PyTorch's meta device: the modules and their shapes exist, no storage is
allocated, so the 2.4-billion-parameter v2 model is counted in about a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml
from peft import LoraConfig, get_peft_model
from transformers import PreTrainedModel, Qwen3Config, Qwen3ForCausalLM

from medsft.core.errors import UserError
from medsft.modeling.loading import TINY_SPECIAL_IDS, parameter_counts, peft_quietly

# Qwen/Qwen3-1.7B's config.json (architecture fields). The hub file sets no pad_token_id: the
# tokenizer's pad token (<|endoftext|>, 151643) and generation_config.json carry it.
QWEN3_1_7B: dict[str, Any] = {
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 151936,
    "max_position_embeddings": 40960,
    "max_window_layers": 28,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
    "hidden_act": "silu",
    "attention_bias": False,
    "attention_dropout": 0.0,
    "use_sliding_window": False,
    "sliding_window": None,
    "initializer_range": 0.02,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "use_cache": True,
}
# Qwen/Qwen3-1.7B's generation_config.json: its sampling defaults and both end tokens.
QWEN3_GENERATION: dict[str, Any] = {
    "bos_token_id": 151643,
    "pad_token_id": 151643,
    "eos_token_id": [151645, 151643],
    "do_sample": True,
    "temperature": 0.6,
    "top_k": 20,
    "top_p": 0.95,
}
ARCHITECTURES: dict[str, dict[str, Any]] = {"qwen3-1.7b": QWEN3_1_7B}


class UnknownProfile(UserError, ValueError):
    """A profile with no architecture to build."""


def profile_architecture(profile: str, conf_dir: str | Path = "conf") -> dict[str, Any]:
    """``Qwen3Config`` fields of a model profile: :data:`ARCHITECTURES`, else the ``config``
    of ``conf/model/<profile>.yaml`` (the seeded profiles, such as ``tiny``)."""
    if profile in ARCHITECTURES:
        return dict(ARCHITECTURES[profile])
    path = Path(conf_dir) / "model" / f"{profile}.yaml"
    if not path.exists():
        known = sorted({*ARCHITECTURES, *(p.stem for p in (Path(conf_dir) / "model").glob("*.yaml"))})
        raise UnknownProfile(f"{path}: no such model profile (one of {known})")
    fields = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("config") or {}
    if not fields:
        raise UnknownProfile(f"{path}: the profile's `config` is empty (it loads a checkpoint's own)")
    return {**TINY_SPECIAL_IDS, **fields}


def meta_model(config: dict[str, Any]) -> PreTrainedModel:
    """``Qwen3ForCausalLM`` of ``config`` on the meta device: shapes, no storage."""
    with torch.device("meta"):
        return Qwen3ForCausalLM(Qwen3Config(**config))


def lora_parameter_counts(config: dict[str, Any], lora: dict[str, Any] | None) -> dict[str, int]:
    """Parameter counts of ``config``'s model wrapped with ``peft.LoraConfig(**lora)`` (the
    base alone when ``lora`` is None), counted on the meta device."""
    model = meta_model(config)
    if lora:
        model = peft_quietly(get_peft_model, model, LoraConfig(**lora))
    return parameter_counts(model)
