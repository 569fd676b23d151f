"""The resolved spec of one run: the settings train actually used, read by every later consumer.

``params.yaml`` says what a variant asks for; the model profile then scales it to the hardware.
The rule is one: **the profile's ``model.training`` fields replace the variant's**
(``max_steps``, batch sizes, precision… on ``tiny``). Every replaced value is listed in the
spec's ``profile_overrides`` with both values, logged when training starts, and shown in the
report; to change such a value, set it in ``model.training`` (e.g.
``dvc exp run -S model.training.per_device_train_batch_size=8``).

Train writes the spec as ``runs/<variant>/train/run_config.yaml``; evaluate, chat, export, the
model card and the sweep read it instead of looking the variant up in the config again, the
same way an imported run's ``run_config.yaml`` is read.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import MISSING, DictConfig, OmegaConf

from medsft.core.config import (
    ConfigError,
    FormatConfig,
    ModelProfile,
    VariantAugmentConfig,
    as_schema,
    require_variant,
)
from medsft.core.io import atomic_write_text

SPEC_FILE = "run_config.yaml"
BASE_FILE = "base.json"  # written by the pretrain stage beside the base it trained


def fingerprint(*parts: Any) -> str:
    """A short hash of JSON-serialisable parts (config, data) that identifies them."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


@functools.cache  # the package does not change while a process runs: read it once
def code_fingerprint() -> str:
    """A short hash of the ``medsft`` package's own files (code and report templates): a result
    kept across runs, such as a finished sweep point, is reused only by the code that made it."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(path.relative_to(package).as_posix().encode("utf-8") + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def base_model_id(model: ModelProfile) -> str:
    """The identity of a profile's base model: its hub id or local path; for the seeded
    architecture (no checkpoint) a name fixed by its config and init seed; for a base the
    ``pretrain`` stage trained from it, the name the stage recorded (with a hash of the
    weights) in ``<pretrain.output_dir>/base.json``."""
    if model.pretrained_model_name_or_path:
        return str(model.pretrained_model_name_or_path)
    if model.pretrain.training:
        info = Path(model.pretrain.output_dir) / BASE_FILE
        if not info.exists():
            raise FileNotFoundError(f"{info}: the pretrained base model is missing (run: dvc repro pretrain)")
        return json.loads(info.read_text(encoding="utf-8"))["base_model_id"]
    return seeded_model_id(model.config, model.init_seed)


def seeded_model_id(config: dict[str, Any], init_seed: int) -> str:
    """The name of the seeded architecture built from ``config`` with ``init_seed``."""
    digest = hashlib.sha256(json.dumps([config, init_seed], sort_keys=True).encode()).hexdigest()
    return f"medsft/tiny-qwen3-{digest[:12]}"


def base_model_source(model: ModelProfile) -> str:
    """Where a profile's base model loads from, as ``from_pretrained`` takes it: the hub id or
    local path of a checkpoint, or the folder the ``pretrain`` stage wrote (relative to the
    repository root). An adapter records it as ``base_model_name_or_path``, so that peft and
    transformers alone can load it. The seeded architecture without pretraining has no saved
    weights: its identity (:func:`base_model_id`) stands in."""
    if model.pretrained_model_name_or_path:
        return str(model.pretrained_model_name_or_path)
    if model.pretrain.training:
        return str(model.pretrain.output_dir)
    return getattr(model, "base_model_id", None) or base_model_id(model)


@dataclass
class RunModel(ModelProfile):
    """The model profile a run used, with the identity of its base (:func:`base_model_id`)."""

    base_model_id: str = MISSING


@dataclass
class RunAugment(VariantAugmentConfig):
    """A variant's augmentation with the pipeline's augment seed and lexicon (``augment.*``)."""

    seed: int = MISSING
    lexicon: str = MISSING


@dataclass
class RunSpec:
    """What one run used: the ``model`` profile with its ``base_model_id``, the ``format``,
    ``lora`` = ``peft.LoraConfig`` fields, ``training`` = ``transformers.TrainingArguments``
    fields (the profile's on top of the variant's; both libraries check their own fields,
    :func:`medsft.core.config.check_library_fields`) and the ``augment`` settings with their
    seed and lexicon."""

    variant: str
    model: RunModel
    format: FormatConfig
    lora: dict[str, Any]
    training: dict[str, Any]
    augment: RunAugment
    # TrainingArguments field -> {"variant": asked, "profile": used}
    profile_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    # TrainingArguments field -> {"asked", "used", "why"}: what a machine without CUDA cannot
    # run as asked (medsft.train.devices); written only when one applied.
    device_fallbacks: dict[str, dict[str, Any]] = field(default_factory=dict)
    # What decides the run's bits beyond its settings (medsft.core.runtime): deterministic
    # algorithms, the kernels' instruction set, MKL's code path, the thread count.
    reproducibility: dict[str, Any] = field(default_factory=dict)
    # SHA-256 of the files the run wrote and read (medsft.core.artifacts): "adapter/<file>"
    # relative to the run folder, and the pipeline-made base's weights by their path.
    artifacts: dict[str, str] = field(default_factory=dict)

    @property
    def base_model_id(self) -> str:
        return self.model.base_model_id

    @property
    def base_model_source(self) -> str:
        """Where the base loads from (:func:`base_model_source`)."""
        return base_model_source(self.model)

    @property
    def max_length(self) -> int:
        return self.model.max_length

    def training_value(self, name: str) -> Any:
        """The ``TrainingArguments`` field ``name`` as the run used it: its value in
        ``training``, else the library's own default (not restated here)."""
        if name in self.training:
            return self.training[name]
        from transformers import TrainingArguments  # the library, only when a default is needed

        defaults = {f.name: f.default for f in dataclasses.fields(TrainingArguments)}
        if name not in defaults:
            raise KeyError(f"{name!r} is not a transformers.TrainingArguments field")
        return defaults[name]

    @property
    def term_masking(self) -> bool:
        return self.augment.term_masking.probability > 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for optional in ("device_fallbacks", "reproducibility", "artifacts"):  # written only when set
            if not data[optional]:
                del data[optional]
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), allow_unicode=True, sort_keys=True, default_flow_style=False)

    def write(self, path: str | Path) -> None:
        atomic_write_text(path, self.to_yaml())

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "run spec") -> RunSpec:
        missing = [f for f in ("variant", "model", "format", "lora", "training", "augment") if f not in data]
        if missing:
            raise ValueError(f"{source}: not a run spec of this pipeline (missing {missing})")
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        for name, schema in (("model", RunModel), ("format", FormatConfig), ("augment", RunAugment)):
            fields[name] = as_schema(schema, fields[name], f"{source}: {name}")
        return cls(**fields)

    @classmethod
    def read(cls, path: str | Path) -> RunSpec:
        """The spec in ``path`` (a ``run_config.yaml``, or a run folder holding one)."""
        path = Path(path)
        if path.is_dir():
            path = path / SPEC_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path}: no run spec (train writes it; run: dvc repro train@<variant>)")
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: not a run spec (expected a mapping)")
        return cls.from_dict(data, source=str(path))


# transformers 5 renamed these TrainingArguments fields (the old names still work, with a
# FutureWarning). The seed's runs were logged under the old names; a config may use either,
# and the spec, like TrainingArguments, holds the new one.
RENAMED_TRAINING_FIELDS = {
    "gradient_checkpointing": "activation_checkpointing",
    "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs",
}


def current_field_names(training: dict[str, Any], where: str) -> dict[str, Any]:
    """``training`` with renamed TrainingArguments fields under their current names."""
    out: dict[str, Any] = {}
    for key, value in training.items():
        new = RENAMED_TRAINING_FIELDS.get(key, key)
        if new in out and out[new] != value:
            raise ConfigError(f"{where}: {key}={value!r} and {new}={out[new]!r} disagree (set only {new})")
        out[new] = value
    return out


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def resolve_spec(cfg: DictConfig, variant: str, variant_cfg: DictConfig | None = None) -> RunSpec:
    """The spec of ``variant`` under ``cfg``'s model profile (``variant_cfg`` replaces the
    variant's section, as a sweep point does)."""
    if variant_cfg is None:
        require_variant(cfg, variant)
        variant_cfg = cfg.variants[variant]
    asked = current_field_names(_plain(variant_cfg.training) or {}, f"variants.{variant}.training")
    profile = current_field_names(_plain(cfg.model.training) or {}, "model.training")
    overrides = {
        key: {"variant": asked[key], "profile": value}
        for key, value in sorted(profile.items())
        if key in asked and asked[key] != value
    }
    profile_model = as_schema(ModelProfile, {k: v for k, v in _plain(cfg.model).items() if k != "training"}, "model")
    model = RunModel(**vars(profile_model), base_model_id=base_model_id(profile_model))
    augment = {**_plain(variant_cfg.augment), "seed": cfg.augment.seed, "lexicon": cfg.augment.lexicon}
    return RunSpec(
        variant=variant,
        model=model,
        format=as_schema(FormatConfig, _plain(cfg.format), "format"),
        lora=_plain(variant_cfg.lora),
        training={**asked, **profile},
        augment=as_schema(RunAugment, augment, "augment"),
        profile_overrides=overrides,
    )
