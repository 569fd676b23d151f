"""Loading a run's base model (``RunSpec.model``) and wrapping it with a LoRA adapter."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, PreTrainedModel, Qwen3Config, Qwen3ForCausalLM

from medsft.core.artifacts import verify_run_artifacts
from medsft.core.config import ModelProfile
from medsft.core.errors import UserError
from medsft.core.spec import RunModel, base_model_source, seeded_model_id
from medsft.data.tokenizer import load_tokenizer
from medsft.modeling.vocab import TokenMap, TokenMapError, apply_token_map


def peft_quietly(wrap, *args, **kwargs):
    """``wrap(*args, **kwargs)`` (a peft constructor) without one warning: peft reads the
    model's ``is_gradient_checkpointing``, which transformers 5 deprecates; the warning is
    about peft's code, not about a setting of ours."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        return wrap(*args, **kwargs)


log = logging.getLogger(__name__)


class BaseModelMismatch(UserError, ValueError):
    """An adapter is loaded on a base model other than the one it was trained on."""


class AdapterFormatError(UserError, ValueError):
    """An adapter folder that is not safetensors, or not readable as such."""


# Token ids the seeded tiny model uses, and Qwen3's vocabulary size (Qwen3Config's own default).
TINY_SPECIAL_IDS = {"bos_token_id": 151643, "eos_token_id": 151645, "pad_token_id": 151643}
QWEN3_VOCAB_SIZE = 151936


def build_tiny_qwen3(config: dict[str, Any], init_seed: int) -> PreTrainedModel:
    """``Qwen3ForCausalLM`` from a small config with a seeded init (same seed, same weights).
    ``config`` may set ``vocab_size`` to a trimmed vocabulary's rows (:mod:`medsft.modeling.vocab`)."""
    # Qwen3's special ids; a trimmed vocabulary has no row at those ids, and sets none (its
    # users pass the end tokens to generate, as medsft.modeling.generation does).
    fields = {k: v for k, v in TINY_SPECIAL_IDS.items() if v < config.get("vocab_size", QWEN3_VOCAB_SIZE)}
    fields.update(config)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(init_seed)
    try:
        model = Qwen3ForCausalLM(Qwen3Config(**fields))
    finally:
        torch.random.set_rng_state(generator_state)
    model.config._name_or_path = seeded_model_id(config, init_seed)
    return model


def quantization_config(model: ModelProfile) -> BitsAndBytesConfig | None:
    """``BitsAndBytesConfig`` from the profile's ``quantization`` fields, or ``None``."""
    fields = model.quantization
    if not fields:
        return None
    try:
        import bitsandbytes  # noqa: F401  (optional at import time: only quantized profiles need it)
    except ImportError as err:
        raise ImportError("model.quantization needs bitsandbytes (pip install bitsandbytes)") from err
    return BitsAndBytesConfig(**fields)


def default_device_map() -> dict[str, int] | None:
    """The whole model on this process's GPU (``LOCAL_RANK`` under accelerate/torchrun), or
    ``None`` on a machine without CUDA. 4-bit weights must be placed at load time."""
    if not torch.cuda.is_available():
        return None
    return {"": int(os.environ.get("LOCAL_RANK", "0"))}


def load_base_model(model: ModelProfile, device_map: Any = None, quantize: bool = True) -> PreTrainedModel:
    """The profile's base model: a hub id or local directory, or the seeded tiny Qwen3.

    A base saved with a ``token_map.json`` (a trimmed vocabulary) takes and gives real token
    ids (:func:`~medsft.modeling.vocab.apply_token_map`). A tiny model with ``quantization``
    set is saved to a temporary directory and reloaded
    through ``from_pretrained``, so 4-bit loading follows the same path as a real checkpoint.
    ``quantize=False`` loads it unquantized in the profile's dtype (for merging).
    """
    dtype = getattr(torch, model.dtype)
    quant = quantization_config(model) if quantize else None
    device_map = device_map if device_map is not None else default_device_map()
    source = model.pretrained_model_name_or_path
    if source is None and model.pretrain.training:
        source = model.pretrain.output_dir  # the base the pretrain stage trained (a local checkpoint)
        if not (Path(source) / "config.json").exists():
            raise FileNotFoundError(f"{source}: the pretrained base model is missing (run: dvc repro pretrain)")
    if source is None:
        tiny = build_tiny_qwen3(model.config, model.init_seed)
        if quant is None:
            tiny = tiny.to(dtype)
            return tiny.to(f"cuda:{device_map['']}") if device_map else tiny
        with tempfile.TemporaryDirectory(prefix="tiny-qwen3-") as tmp:
            tiny.save_pretrained(tmp)
            quantized = AutoModelForCausalLM.from_pretrained(
                tmp, dtype=dtype, quantization_config=quant, device_map=device_map
            )
        quantized.config._name_or_path = tiny.config._name_or_path
        return quantized
    loaded = AutoModelForCausalLM.from_pretrained(
        source,
        dtype=dtype,
        quantization_config=quant,
        device_map=device_map,
        trust_remote_code=model.trust_remote_code,
    )
    tmap = TokenMap.load(source) if Path(source).is_dir() else None
    if tmap is None:
        return loaded
    try:
        return apply_token_map(loaded, tmap)
    except TokenMapError as err:
        raise TokenMapError(f"{source}: {err}") from None


def load_model_and_tokenizer(model: ModelProfile, device_map: Any = None, quantize: bool = True):
    """``(model, tokenizer)`` of a profile."""
    tokenizer = load_tokenizer(model.pretrained_model_name_or_path, model.trust_remote_code)
    return load_base_model(model, device_map=device_map, quantize=quantize), tokenizer


def add_lora(model: PreTrainedModel, lora: dict[str, Any], activation_checkpointing: bool):
    """Wrap ``model`` with a fresh LoRA adapter built from ``peft.LoraConfig`` fields."""
    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=activation_checkpointing)
    return peft_quietly(get_peft_model, model, LoraConfig(**lora))


def adapter_base(adapter_dir: str | Path) -> str | None:
    """The base model an adapter folder records (``base_model_name_or_path``)."""
    config_file = Path(adapter_dir) / "adapter_config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"{adapter_dir}: no adapter_config.json (not a trained adapter)")
    return json.loads(config_file.read_text(encoding="utf-8")).get("base_model_name_or_path")


def check_adapter_base(adapter_dir: str | Path, expected: str) -> None:
    """Raise :class:`BaseModelMismatch` when the adapter records another base than ``expected``."""
    recorded = adapter_base(adapter_dir)
    if not recorded:
        raise BaseModelMismatch(f"{adapter_dir}: the adapter records no base model; retrain it (dvc repro train@…)")
    if recorded != expected:
        raise BaseModelMismatch(
            f"{adapter_dir}: adapter was trained on {recorded!r}, but the model to load is {expected!r}; "
            "load the base it was trained on"
        )


def check_safetensors_only(adapter_dir: str | Path) -> None:
    """Refuse an adapter folder without ``adapter_model.safetensors`` or with pickled weights
    beside it: peft would load a ``.bin`` through torch's unpickler."""
    adapter_dir = Path(adapter_dir)
    pickled = sorted(p.name for p in adapter_dir.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl"))
    if pickled:
        raise AdapterFormatError(f"{adapter_dir}: holds {pickled}; adapters load from safetensors only")
    if not (adapter_dir / "adapter_model.safetensors").is_file():
        raise AdapterFormatError(f"{adapter_dir}: no adapter_model.safetensors (adapters load from safetensors only)")


def load_adapter(model: RunModel, adapter_dir: str | Path, artifacts: dict[str, str] | None = None):
    """Base model of the profile with a trained adapter loaded on top, in eval mode.

    ``artifacts``: the hashes train recorded (``RunSpec.artifacts``), checked first
    (:func:`verify_run_artifacts`). The adapter must be safetensors and record this base
    (:func:`check_adapter_base`); a shape mismatch (a checkpoint of another size) or an
    unreadable file is a one-line error too.
    """
    check_adapter_base(adapter_dir, base_model_source(model))
    if artifacts:
        verify_run_artifacts(artifacts, adapter_dir)
    else:
        log.warning("%s: not verified (its run_config.yaml records no SHA-256; retrain to record them)", adapter_dir)
    check_safetensors_only(adapter_dir)
    base, tokenizer = load_model_and_tokenizer(model)
    try:
        peft_model = peft_quietly(PeftModel.from_pretrained, base, str(adapter_dir))
    except SafetensorError as err:
        raise AdapterFormatError(
            f"{adapter_dir}/adapter_model.safetensors: not readable as safetensors ({err})"
        ) from None
    except RuntimeError as err:
        if "size mismatch" not in str(err):
            raise
        first = next(line.strip() for line in str(err).splitlines() if "size mismatch" in line)
        raise BaseModelMismatch(
            f"{adapter_dir}: adapter does not fit the base model {model.base_model_id!r}: {first}"
        ) from None
    peft_model.eval()
    return peft_model, tokenizer


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """Trainable and total parameter counts: a tied tensor once, a 4-bit one at its logical
    size (bitsandbytes packs two 4-bit values per byte, so its ``numel()`` counts bytes), as
    transformers' ``num_parameters`` and the seed runs' logged counts do."""

    def numel(p: torch.Tensor) -> int:
        shape = getattr(getattr(p, "quant_state", None), "shape", None)
        return torch.Size(shape).numel() if shape is not None else p.numel()

    params = list(model.parameters())  # parameters() yields a tied tensor once
    total = sum(numel(p) for p in params)
    trainable = sum(numel(p) for p in params if p.requires_grad)
    return {"trainable_params": trainable, "total_params": total}
