"""Allowed values of the config's numbers and names, checked before any work.

The libraries check some fields only once a model is loaded (peft builds ``nn.Dropout`` with
the LoRA layers; a ``target_modules`` name that matches nothing fails after the weights are
in memory) and others never (``TrainingArguments`` takes a learning rate of 0 and trains
nothing). Where a library lists the allowed values, they are read from it (scheduler and
optimizer names from transformers' enums, ``GenerationConfig.validate``, the module names of
the profile's architecture built on the meta device); the ranges it does not state are stated
here, once, with why.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

# (test, what the value must be). Numbers only: a wrong type is caught before, by the schema.
Rule = tuple[Callable[[Any], bool], str]


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _steps(v: Any) -> bool:  # a step count, or a ratio of the run in (0, 1) as transformers reads it
    return _positive_int(v) or (isinstance(v, float) and 0 < v < 1)


LORA: dict[str, Rule] = {
    "r": (_positive_int, "an integer >= 1"),
    "lora_alpha": (lambda v: v > 0, "> 0 (the update is scaled by lora_alpha / r)"),
    # nn.Dropout accepts 1, which drops every input of the adapter: it could never learn.
    "lora_dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
}
TRAINING: dict[str, Rule] = {
    "learning_rate": (lambda v: v > 0, "> 0 (at 0 the adapter stays at its initialisation)"),
    "max_steps": (lambda v: v == -1 or _positive_int(v), ">= 1, or -1 (num_train_epochs decides)"),
    "num_train_epochs": (lambda v: v > 0, "> 0"),
    "per_device_train_batch_size": (_positive_int, "an integer >= 1"),
    "per_device_eval_batch_size": (_positive_int, "an integer >= 1"),
    "gradient_accumulation_steps": (_positive_int, "an integer >= 1"),
    "max_grad_norm": (lambda v: v >= 0, ">= 0 (0: no clipping)"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    "warmup_steps": (lambda v: v >= 0 and (isinstance(v, int) or v < 1), "a step count >= 0, or a ratio in [0, 1)"),
    "logging_steps": (_steps, "a step count >= 1, or a ratio in (0, 1)"),
    "eval_steps": (_steps, "a step count >= 1, or a ratio in (0, 1)"),
    "save_steps": (_steps, "a step count >= 1, or a ratio in (0, 1)"),
}
GENERATION: dict[str, Rule] = {
    "temperature": (lambda v: v > 0, "> 0"),
    "top_p": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "top_k": (lambda v: v >= 0, ">= 0"),
    "repetition_penalty": (lambda v: v > 0, "> 0 (1: none)"),
}
# Our own keys (dotted paths of params.yaml).
OWN: dict[str, Rule] = {
    "data.max_reject_fraction": (lambda v: 0 <= v <= 1, "in [0, 1] (a share of the records)"),
    "data.max_record_chars": (_positive_int, "an integer >= 1"),
    "model.max_length": (lambda v: isinstance(v, int) and v >= 2, "an integer >= 2 (a prompt token and a target)"),
    "evaluate.num_generations": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0"),
    "evaluate.generation_batch_size": (lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
    "evaluate.rare_term_threshold": (_positive_int, "an integer >= 1"),
    "report.phase_steps": (_positive_int, "an integer >= 1 (optimizer steps per window)"),
    "report.plateau_tolerance": (lambda v: v >= 0, ">= 0"),
}


def check_own_ranges(cfg: DictConfig, source: str) -> None:
    """Raise :class:`~medsft.core.config.ConfigError` naming the first of our own keys whose
    value is out of its range (:data:`OWN`)."""
    for key, rule in OWN.items():
        _check(OmegaConf.select(cfg, key), rule, key, source)


def check_ranges(cfg: DictConfig, source: str) -> None:
    """Raise :class:`~medsft.core.config.ConfigError` naming the first key of a library's
    fields (LoRA, training, generation) whose value is out of its range, or whose name the
    library does not know."""
    profile = _plain(cfg.model.training)
    for name, variant in cfg.variants.items():
        lora = _plain(variant.lora)
        _check_section(lora, LORA, f"variants.{name}.lora", source)
        _check_modules(lora, cfg.model, f"variants.{name}.lora", source)
        training = _plain(variant.training)
        # The profile's model.training fields replace the variant's on this profile; a variant's
        # own value is still checked, since it is in force on a profile that does not set it.
        for field, rule in TRAINING.items():
            if field in training:
                _check(training[field], rule, f"variants.{name}.training.{field}", source)
            if field in profile:
                _check(profile[field], rule, f"model.training.{field}", source)
        _check_choices({**training, **profile}, f"variants.{name}.training", source)
    if cfg.model.pretrain.training is not None:
        pretrain = _plain(cfg.model.pretrain.training)
        _check_section(pretrain, TRAINING, "model.pretrain.training", source)
        _check_choices(pretrain, "model.pretrain.training", source)
    generation = _plain(cfg.generation)
    _check_section(generation, GENERATION, "generation", source)
    _check_generation(generation, source)


def _plain(node: Any) -> dict[str, Any]:
    return OmegaConf.to_container(node, resolve=True) if node is not None else {}


def _fail(message: str) -> None:
    from medsft.core.config import ConfigError

    raise ConfigError(message)


def _check(value: Any, rule: Rule, key: str, source: str) -> None:
    test, allowed = rule
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return  # not a number: the schema's type check names it
    if isinstance(value, float) and not math.isfinite(value) or not test(value):
        _fail(f"{source}: {key}: {value!r} is out of range: must be {allowed}")


def _check_section(section: dict[str, Any], rules: dict[str, Rule], prefix: str, source: str) -> None:
    for field, rule in rules.items():
        if field in section:
            _check(section[field], rule, f"{prefix}.{field}", source)


def _check_choices(training: dict[str, Any], prefix: str, source: str) -> None:
    """Scheduler and optimizer names, against transformers' own lists."""
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    for field, enum in (("lr_scheduler_type", SchedulerType), ("optim", OptimizerNames)):
        value = training.get(field)
        known = sorted(e.value for e in enum)
        if value is not None and value not in known:
            _fail(f"{source}: {prefix}.{field}: {value!r} is not one of transformers' {known}")


def _check_generation(generation: dict[str, Any], source: str) -> None:
    """transformers' own checks of the generation fields (``GenerationConfig.validate``)."""
    from transformers import GenerationConfig

    from medsft.core.sampling import generate_kwargs

    try:
        GenerationConfig(**generate_kwargs(generation)).validate()
    except ValueError as err:
        _fail(f"{source}: generation: {' '.join(str(err).split())}")


def _check_modules(lora: dict[str, Any], model: DictConfig, prefix: str, source: str) -> None:
    """``target_modules`` and ``modules_to_save`` names against the profile's architecture."""
    names = module_names(model)
    if names is None:
        return  # an architecture only the checkpoint knows: peft checks when it loads
    for field in ("target_modules", "modules_to_save"):
        wanted = lora.get(field)
        if not isinstance(wanted, list):  # null, a regular expression, or "all-linear"
            continue
        unknown = [m for m in wanted if m not in names[0]]
        if unknown:
            _fail(f"{source}: {prefix}.{field}: {unknown} not among the model's layers {sorted(names[1])}")


def module_names(model: DictConfig) -> tuple[frozenset[str], frozenset[str]] | None:
    """The last parts of the module names of the profile's model (all of them, and those of
    its linear and embedding layers, which LoRA can wrap), built on the meta device
    from its architecture (no weights): the seeded ``config``, a local checkpoint's
    config.json, or a hub model's in the local cache; ``None`` when none is at hand (peft
    then checks when the model loads)."""
    if model.pretrained_model_name_or_path is None:
        config = {"model_type": "qwen3", **_plain(model.config)}
    else:
        from transformers import AutoConfig

        try:
            found = AutoConfig.from_pretrained(
                model.pretrained_model_name_or_path, local_files_only=True, trust_remote_code=False
            )
        except (OSError, ValueError):
            return None
        config = found.to_dict()
    return _module_names(json.dumps(config, sort_keys=True, default=str))


@functools.lru_cache(maxsize=8)
def _module_names(config_json: str) -> tuple[frozenset[str], frozenset[str]]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = json.loads(config_json)
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    modules = [(name.rsplit(".", 1)[-1], module) for name, module in model.named_modules() if name]
    layers = (torch.nn.Linear, torch.nn.Embedding)
    return frozenset(n for n, _ in modules), frozenset(n for n, m in modules if isinstance(m, layers))
