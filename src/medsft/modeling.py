"""Loading the base model of a profile and wrapping it with a LoRA adapter."""

from __future__ import annotations

import tempfile
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import AutoModelForCausalLM, PreTrainedModel

from medsft.tokenizer import load_tokenizer


def _container(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def tiny_model_id(config: dict[str, Any], init_seed: int) -> str:
    """A name for a seeded tiny model, fixed by its config and seed (adapters record it)."""
    import hashlib
    import json

    digest = hashlib.sha256(json.dumps([config, init_seed], sort_keys=True).encode()).hexdigest()[:12]
    return f"medsft/tiny-qwen3-{digest}"


def base_model_id(model_cfg: DictConfig) -> str:
    """What an adapter trained on this profile records as its base model."""
    if model_cfg.pretrained_model_name_or_path is not None:
        return model_cfg.pretrained_model_name_or_path
    return tiny_model_id(_container(model_cfg.config), model_cfg.init_seed)


def build_tiny_qwen3(config: dict[str, Any], init_seed: int) -> PreTrainedModel:
    """``Qwen3ForCausalLM`` from a small config with a seeded init (same seed, same weights)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    fields = {"bos_token_id": 151643, "eos_token_id": 151645, "pad_token_id": 151643, **config}
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(init_seed)
    try:
        model = Qwen3ForCausalLM(Qwen3Config(**fields))
    finally:
        torch.random.set_rng_state(generator_state)
    model.config._name_or_path = tiny_model_id(config, init_seed)
    return model


def quantization_config(model_cfg: DictConfig) -> Any:
    """``BitsAndBytesConfig`` from the profile's ``quantization`` fields, or ``None``."""
    fields = _container(model_cfg.quantization)
    if not fields:
        return None
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as err:
        raise ImportError("model.quantization needs bitsandbytes (pip install bitsandbytes)") from err
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(**fields)


def default_device_map() -> dict[str, int] | None:
    """The whole model on this process's GPU (``LOCAL_RANK`` under accelerate/torchrun), or
    ``None`` on a machine without CUDA. 4-bit weights must be placed at load time."""
    if not torch.cuda.is_available():
        return None
    import os

    return {"": int(os.environ.get("LOCAL_RANK", "0"))}


def load_base_model(model_cfg: DictConfig, device_map: Any = None) -> PreTrainedModel:
    """The profile's base model: a hub id or local directory, or the seeded tiny Qwen3.

    A tiny model with ``quantization`` set is saved to a temporary directory and reloaded
    through ``from_pretrained``, so 4-bit loading follows the same path as a real checkpoint.
    """
    dtype = getattr(torch, model_cfg.dtype)
    quant = quantization_config(model_cfg)
    device_map = device_map if device_map is not None else default_device_map()
    source = model_cfg.pretrained_model_name_or_path
    if source is None:
        model = build_tiny_qwen3(_container(model_cfg.config), model_cfg.init_seed)
        if quant is None:
            model = model.to(dtype)
            return model.to(f"cuda:{device_map['']}") if device_map else model
        with tempfile.TemporaryDirectory(prefix="tiny-qwen3-") as tmp:
            model.save_pretrained(tmp)
            quantized = AutoModelForCausalLM.from_pretrained(
                tmp, dtype=dtype, quantization_config=quant, device_map=device_map
            )
        quantized.config._name_or_path = model.config._name_or_path
        return quantized
    return AutoModelForCausalLM.from_pretrained(
        source,
        dtype=dtype,
        quantization_config=quant,
        device_map=device_map,
        trust_remote_code=model_cfg.trust_remote_code,
    )


def load_model_and_tokenizer(model_cfg: DictConfig, device_map: Any = None):
    """``(model, tokenizer)`` of a profile."""
    tokenizer = load_tokenizer(model_cfg.pretrained_model_name_or_path, model_cfg.trust_remote_code)
    return load_base_model(model_cfg, device_map=device_map), tokenizer


def add_lora(model: PreTrainedModel, lora: dict[str, Any], gradient_checkpointing: bool):
    """Wrap ``model`` with a fresh LoRA adapter built from ``peft.LoraConfig`` fields."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    return get_peft_model(model, LoraConfig(**lora))


def load_adapter(model_cfg: DictConfig, adapter_dir: str):
    """Base model of the profile with a trained adapter loaded on top, in eval mode."""
    from peft import PeftModel

    model, tokenizer = load_model_and_tokenizer(model_cfg)
    model = PeftModel.from_pretrained(model, adapter_dir)
    model.eval()
    return model, tokenizer


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """Trainable and total parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable_params": trainable, "total_params": total}
