"""Typed schema of the composed config (``params.yaml``) and its loading.

Our own sections are dataclasses merged with OmegaConf, so a misspelt key or a wrong type
fails with the key's full name. ``lora``, ``training`` and ``quantization`` hold the fields
of ``peft.LoraConfig``, ``transformers.TrainingArguments`` and
``transformers.BitsAndBytesConfig`` unchanged; they are checked against those classes'
own field lists and annotations, so the schema follows the installed library.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from medsft.core.errors import UserError
from medsft.core.launcher import launcher_problem
from medsft.core.outputs import OutputPathError, check_name
from medsft.core.ranges import check_own_ranges, check_ranges

PARAMS_FILE = Path("params.yaml")

# Allowed values of our own string keys (OmegaConf 2.3 cannot type Literal fields).
CHOICES = {
    "data.source": ("local", "huggingface", "modelscope"),
    "split.method": ("hash", "seed_shuffle"),
    "tracking.mode": ("offline", "online", "local", "disabled"),
    "format.target_style": ("qwen3", "seed"),
    "report.lang": ("zh", "en"),
}


T = TypeVar("T")


class ConfigError(UserError, ValueError):
    """The config is invalid; the message names the key."""


@dataclass
class PretrainConfig:
    # Where the pretrain stage writes the base (or a note that the profile needs none).
    output_dir: str = "models/base"
    # TrainingArguments fields of a full-parameter causal-LM run from the seeded init on the
    # train split; null: the profile loads a pretrained checkpoint (or the seeded init as is).
    training: dict[str, Any] | None = None
    # Build the base with one vocabulary row per token id of the prepared data (plus the
    # tokenizer's added tokens and a reserved row for any other id) instead of config.vocab_size
    # rows; the model still takes and gives the tokenizer's real ids (medsft.modeling.vocab).
    trim_vocabulary: bool = False


@dataclass
class ModelProfile:
    """A model profile (``conf/model/``) but its ``training`` overrides: what a run's spec
    keeps of it (:class:`medsft.core.spec.RunModel`) and what loading a model reads."""

    name: str = "tiny"
    # Hub id or local directory; null builds the Qwen3 architecture from ``config``.
    pretrained_model_name_or_path: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    init_seed: int = 0
    dtype: str = "float32"
    trust_remote_code: bool = False
    quantization: dict[str, Any] | None = None
    max_length: int = 2048
    # Padding-free training batches: a batch's examples in one row, position_ids restarting
    # per example (medsft.train.packing). Evaluation batches stay padded.
    packing: bool = False
    # Training loss computed this many positions at a time, the output layer fused in, never
    # holding the full logits (medsft.modeling.loss); null: transformers' loss over all logits.
    loss_chunk_size: int | None = None
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)


@dataclass
class ModelConfig(ModelProfile):
    # TrainingArguments fields that replace the variants' (the one precedence rule, medsft.core.spec).
    training: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    # local: the JSONL/JSON file at path; huggingface / modelscope: dataset_id from that hub.
    source: str = "local"
    path: str = "data/raw/medical_qa_sample.jsonl"
    dataset_id: str | None = None
    dataset_split: str = "train"
    max_reject_fraction: float = 0.05
    max_record_chars: int = 20000


@dataclass
class SplitConfig:
    method: str = "hash"
    val_fraction: float = 0.1
    seed: int = 42


@dataclass
class TrackingConfig:
    mode: str = "offline"
    project: str = "qwen3-medical-sft"
    logdir: str = "swanlog"


@dataclass
class TermMaskingConfig:
    # Share of records masked in each epoch (the seed report proposed 0.15; the real V3 ran 0.1).
    probability: float = 0.0
    max_terms: int = 2
    # question (default), think or answer; see medsft.data.augmentation for why targets are risky.
    field: str = "question"
    # 0-based epoch from which typed masks replace [MASK].
    typed_from_epoch: int = 1


@dataclass
class VariantAugmentConfig:
    knowledge_injection: bool = False
    term_masking: TermMaskingConfig = field(default_factory=TermMaskingConfig)


@dataclass
class VariantConfig:
    lora: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    augment: VariantAugmentConfig = field(default_factory=VariantAugmentConfig)


@dataclass
class TrainConfig:
    # The command prefix of the train stage: dvc.yaml runs `<launcher> -m stages.train <variant>`
    # (python: one process; torchrun / accelerate launch with options: one DDP job; medsft.core.launcher).
    launcher: str = "python"


@dataclass
class DivergenceConfig:
    # Stop when a logged loss exceeds this multiple of the first logged loss.
    max_loss_ratio: float = 4.0
    # Stop after this many consecutive logs with a gradient norm of exactly 0 (0: never).
    zero_grad_norm_logs: int = 3


@dataclass
class FormatConfig:
    system_prompt: str = "你是一个医学专家，你需要根据用户的问题，给出带有思考的回答。"
    target_style: str = "qwen3"


@dataclass
class PrepareConfig:
    out_dir: str = "data/prepared"


@dataclass
class AugmentConfig:
    out_dir: str = "data/augmented"
    lexicon: str = "conf/lexicon/medical.yaml"
    seed: int = 42


@dataclass
class LmEvalConfig:
    # lm_eval.tasks.TaskManager(include_path=...): a folder of local task YAMLs.
    include_path: str = "conf/benchmarks"
    # lm_eval.simple_evaluate fields. limit: examples per task (a count, or a fraction < 1);
    # null: all of them. num_fewshot: null keeps each task's own.
    limit: Any = None
    num_fewshot: int | None = None
    apply_chat_template: bool = False


@dataclass
class EvaluateConfig:
    probes: str | None = "conf/probes.yaml"
    # A generated term is rare when fewer training records than this contain it.
    rare_term_threshold: int = 3
    num_generations: int = 4
    # Prompts generated for at once (left-padded), for the held-out questions and the probes.
    generation_batch_size: int = 8
    # lm-evaluation-harness task names run on each variant (medsft.evaluate.benchmarks).
    benchmarks: list[str] = field(default_factory=list)
    lm_eval: LmEvalConfig = field(default_factory=LmEvalConfig)


@dataclass
class PublishedConfig:
    # The published runs of the seed experiment (data/published/README.md) and where the
    # import stage writes them.
    dir: str = "data/published"
    out_dir: str = "imported/published"
    # The model profile they were trained with: the seed report's claims are judged on them
    # and on local runs of this profile only.
    profile: str = "qwen3-1.7b"


@dataclass
class ReportConfig:
    out_dir: str = "reports"
    lang: str = "zh"
    # Runs made elsewhere, name -> trainer_state.json or a folder holding one; when set, the
    # report covers these runs instead of the DAG's variants.
    runs: dict[str, str] = field(default_factory=dict)
    phase_steps: int = 100
    plateau_tolerance: float = 0.01
    claims: str | None = "conf/claims/seed_report.yaml"


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    # transformers.GenerationConfig fields of evaluate, chat and export (conf/generation/,
    # chosen by the model profile). Not a train setting: changing it retrains nothing.
    generation: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    variants: dict[str, VariantConfig] = field(default_factory=dict)
    format: FormatConfig = field(default_factory=FormatConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    divergence: DivergenceConfig = field(default_factory=DivergenceConfig)
    published: PublishedConfig = field(default_factory=PublishedConfig)
    sweep_name: str = "ci"
    sweep_variant: str = "v2"
    # Folders outside the repository where stages may write their outputs (medsft.core.outputs).
    output_roots: list[str] = field(default_factory=list)


def load_config(
    overrides: list[str] | None = None, path: Path | str = PARAMS_FILE, libraries: bool = True
) -> DictConfig:
    """Read ``params.yaml``, apply ``key=value`` overrides, validate, and return it.

    Overrides use OmegaConf's dotlist syntax (``data.path=FILE``); they are checked like
    the file itself, so ``prepare.outdir=X`` fails naming ``prepare.outdir``.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: not found (run from the repository root)")
    raw = OmegaConf.load(path)
    overrides = list(overrides or [])
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"override {bad[0]!r} is not of the form key=value")
    groups = [o for o in overrides if is_group_override(o)]
    for override in groups:  # tracking=disabled, model=qwen3-1.7b, variant@variants.v4=v2
        for key, value in group_sections(override).items():
            OmegaConf.update(raw, key, value, merge=False, force_add=True)
    dotlist = [o for o in overrides if o not in groups]
    for override in dotlist:
        head = override.split("=", 1)[0].split(".")[0].lstrip("+~")
        if head in VARIANT_SECTIONS:
            raise ConfigError(
                f"override {override!r}: {head} settings belong to a variant: "
                f"use variants.<variant>.{override.lstrip('+~')} (e.g. variants.v2.{override.lstrip('+~')})"
            )
    if dotlist:
        raw = OmegaConf.merge(raw, OmegaConf.from_dotlist(dotlist))
    return validate(raw, source=str(path), libraries=libraries)


# Sections of a variant with no top-level section of the same name (`augment` has one).
VARIANT_SECTIONS = ("lora", "training")
CONF_DIR = Path("conf")


def as_schema(schema: type[T], data: Any, source: str) -> T:
    """``data`` (a config section: a mapping or DictConfig) as an instance of the dataclass
    ``schema``, its values over the schema's defaults and checked by OmegaConf; a wrong type
    or a missing value is an error naming ``source`` and the key."""
    if isinstance(data, DictConfig):
        data = OmegaConf.to_container(data, resolve=True)
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), data))
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        raise ConfigError(f"{source}: {key}: {str(err.msg).splitlines()[0]}") from None


def is_group(name: str) -> bool:
    """Whether ``name`` is a config group that ``conf/config.yaml`` chooses options of
    (``model``, ``data``, ``tracking``, and ``variant``, packaged under ``variants.<name>``)."""
    primary = CONF_DIR / "config.yaml"
    if not primary.exists():
        return False
    try:
        defaults = OmegaConf.load(primary).get("defaults", [])
    except yaml.YAMLError:
        compose_conf()  # raises the one-line error naming the file and line
        raise
    return any(isinstance(d, DictConfig) and any(k.split("@")[0] == name for k in d) for d in defaults)


def is_group_override(override: str) -> bool:
    """``group=option`` or ``group@package=option`` (Hydra's syntax for choosing an option)."""
    key = override.split("=", 1)[0].lstrip("+~")
    return "." not in key.split("@", 1)[0] and is_group(key.split("@", 1)[0])


def compose_conf(overrides: list[str] | None = None, config_name: str = "config") -> DictConfig:
    """``conf/`` composed by Hydra with ``overrides``; a YAML error names the file and line,
    an unknown option the group and the options it has, each as one :class:`ConfigError`."""
    from hydra.errors import HydraException

    for override in overrides or []:
        _check_option(override)
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR.resolve()), version_base=None):
            return compose(config_name=config_name, overrides=list(overrides or []))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{_relative(mark.name)}:{mark.line + 1}:{mark.column + 1}" if mark else str(CONF_DIR)
        raise ConfigError(f"{where}: YAML syntax error: {err.problem or err.context}") from None
    except HydraException as err:
        raise ConfigError(_hydra_message(err)) from None


def _check_option(override: str) -> None:
    """Raise :class:`ConfigError` when ``override`` chooses an option its group lacks."""
    key, _, option = override.partition("=")
    group = key.lstrip("+~").split("@")[0]
    if "." in group or not (CONF_DIR / group).is_dir() or "," in option or not option:
        return  # a key=value setting, or a sweep's list of options
    if not (CONF_DIR / group / f"{option}.yaml").exists():
        options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        raise ConfigError(f"{override}: no option {option!r} in {CONF_DIR / group}/ (options: {options})")


def _relative(name: str) -> str:
    try:
        return str(Path(name).resolve().relative_to(Path.cwd()))
    except ValueError:
        return name


def _hydra_message(err: Exception) -> str:
    """Hydra's composition error in one line."""
    return f"conf/: {' '.join(str(err).split())}"


def group_sections(override: str) -> dict[str, Any]:
    """What choosing a group option changes, composed from ``conf/``: ``{dotted key: node}``
    for the option's own package (``model``, ``variants.v4``) and each other top-level section
    the option brings (``model=qwen3-1.7b`` brings its ``generation``)."""
    key, option = override.split("=", 1)
    group, _, package = key.lstrip("+~").partition("@")
    package = package or group
    _check_option(override)
    default = compose_conf()
    exists = OmegaConf.select(default, package) is not None
    composed = compose_conf([override if exists or override.startswith("+") else f"+{override}"])
    changed = {package: OmegaConf.select(composed, package)}
    for name in composed:
        if name != package.split(".")[0] and composed[name] != default.get(name):
            changed[name] = composed[name]
    return changed


def validate(raw: DictConfig | dict, source: str = "config", libraries: bool = True) -> DictConfig:
    """Check ``raw`` against the schema; raise :class:`ConfigError` naming the bad key.

    ``libraries=False`` leaves out :func:`check_library_fields` (for stages that read none of
    those sections).
    """
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(Config), raw)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        message = str(err.msg).splitlines()[0]  # OmegaConf appends full_key/object_type lines
        raise ConfigError(f"{source}: invalid key {key!r}: {message}") from None
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise ConfigError(f"{source}: {key}: {value!r} is not one of {list(allowed)}")
    for name, variant in cfg.variants.items():
        masking = variant.augment.term_masking
        if masking.field not in ("question", "think", "answer"):
            raise ConfigError(
                f"{source}: variants.{name}.augment.term_masking.field: {masking.field!r} is not one of "
                "['question', 'think', 'answer']"
            )
        if not 0 <= masking.probability <= 1:
            raise ConfigError(f"{source}: variants.{name}.augment.term_masking.probability must be in [0, 1]")
    if cfg.model.pretrain.training is not None and cfg.model.pretrained_model_name_or_path is not None:
        raise ConfigError(f"{source}: model.pretrain.training is for the seeded architecture; set it to null")
    if cfg.model.pretrain.trim_vocabulary and cfg.model.pretrain.training is None:
        raise ConfigError(
            f"{source}: model.pretrain.trim_vocabulary builds a base to pretrain; set model.pretrain.training"
        )
    if cfg.model.pretrain.trim_vocabulary and cfg.model.loss_chunk_size is None:
        raise ConfigError(
            f"{source}: model.pretrain.trim_vocabulary computes losses on the trimmed rows (medsft.modeling.loss); "
            "set model.loss_chunk_size"
        )
    check_own_ranges(cfg, source)
    try:  # names that become folders: runs/<variant>, sweeps/<sweep_name>
        for name in cfg.variants:
            check_name("variants", name)
        check_name("sweep_name", cfg.sweep_name)
    except OutputPathError as err:
        raise ConfigError(f"{source}: {err}") from None
    if libraries:
        check_library_fields(cfg, source)
        check_ranges(cfg, source)
    if not cfg.divergence.max_loss_ratio > 1:
        raise ConfigError(f"{source}: divergence.max_loss_ratio must be > 1, got {cfg.divergence.max_loss_ratio}")
    if cfg.divergence.zero_grad_norm_logs < 0:
        raise ConfigError(f"{source}: divergence.zero_grad_norm_logs must be >= 0")
    problem = launcher_problem(cfg.train.launcher)
    if problem:
        raise ConfigError(f"{source}: train.launcher={cfg.train.launcher!r} {problem}")
    if not 0 < cfg.split.val_fraction < 1:
        raise ConfigError(f"{source}: split.val_fraction must be in (0, 1), got {cfg.split.val_fraction}")
    if cfg.model.loss_chunk_size is not None and cfg.model.loss_chunk_size < 1:
        raise ConfigError(f"{source}: model.loss_chunk_size must be a positive number of positions or null")
    _check_liger(cfg, source)
    _check_benchmarks(cfg.evaluate, source)
    return cfg


def _check_liger(cfg: DictConfig, source: str) -> None:
    """Liger's kernels fuse the loss inside the model's forward pass, which
    ``model.loss_chunk_size`` replaces: a run cannot ask for both."""
    if cfg.model.loss_chunk_size is None:
        return
    for name, variant in cfg.variants.items():
        for key, section in (("model.training", cfg.model.training), (f"variants.{name}.training", variant.training)):
            if section.get("use_liger_kernel"):
                raise ConfigError(
                    f"{source}: {key}.use_liger_kernel fuses the loss inside the model's forward pass, which "
                    "model.loss_chunk_size replaces; set model.loss_chunk_size=null to train with Liger's kernels"
                )


def _check_benchmarks(evaluate: DictConfig, source: str) -> None:
    """``evaluate.benchmarks`` names each task once; ``evaluate.lm_eval.limit`` is null or a
    positive number (task names are checked against lm-eval when evaluate loads the tasks)."""
    repeated = sorted({name for name in evaluate.benchmarks if list(evaluate.benchmarks).count(name) > 1})
    if repeated:
        raise ConfigError(f"{source}: evaluate.benchmarks: {repeated[0]!r} is listed more than once")
    limit = evaluate.lm_eval.limit
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit <= 0):
        raise ConfigError(
            f"{source}: evaluate.lm_eval.limit: {limit!r} is not null or a positive number "
            "(examples per task, or a fraction < 1)"
        )


def check_library_fields(cfg: DictConfig, source: str = "config") -> None:
    """Check the sections that feed library classes against the installed classes: ``lora``
    (peft.LoraConfig), ``training`` (TrainingArguments), ``quantization``
    (BitsAndBytesConfig), ``generation`` (GenerationConfig).

    peft and transformers are imported here, not at module top: importing peft takes about
    7 s, and the stages that read none of these sections (prepare, augment, import, report)
    would pay it in every process of the DAG.
    """
    from peft import LoraConfig
    from transformers import GenerationConfig, TrainingArguments

    for name, variant in cfg.variants.items():
        _check_library_fields(variant.lora, LoraConfig, f"variants.{name}.lora", source)
        _check_library_fields(variant.training, TrainingArguments, f"variants.{name}.training", source)
    _check_library_fields(cfg.model.training, TrainingArguments, "model.training", source)
    if cfg.model.pretrain.training is not None:
        _check_library_fields(cfg.model.pretrain.training, TrainingArguments, "model.pretrain.training", source)
    # GenerationConfig is no dataclass either: its fields are the attributes of a default one.
    generation_fields = dict.fromkeys(vars(GenerationConfig()), Any)
    _check_library_fields(cfg.generation, generation_fields, "generation", source, "GenerationConfig")
    if cfg.model.quantization is not None:
        _check_library_fields(
            cfg.model.quantization, _bnb_config_fields(), "model.quantization", source, "BitsAndBytesConfig"
        )


def require_variant(cfg: DictConfig, variant: str) -> None:
    """Raise :class:`ConfigError` naming the defined variants when ``variant`` is not one."""
    if variant not in cfg.variants:
        raise ConfigError(f"unknown variant {variant!r}; params.yaml defines {sorted(cfg.variants)}")


# --- library field checks -------------------------------------------------------------


def _bnb_config_fields() -> dict[str, Any]:
    """BitsAndBytesConfig is no dataclass: its fields are its __init__ parameters."""
    from transformers import BitsAndBytesConfig

    params = inspect.signature(BitsAndBytesConfig.__init__).parameters
    return {n: p.annotation for n, p in params.items() if n not in ("self", "kwargs")}


def _check_library_fields(
    section: Any, spec: type | dict[str, Any], key: str, source: str, owner: str | None = None
) -> None:
    """``section``'s keys against a dataclass's fields, or against ``spec`` (name -> annotation)
    of the class named ``owner``."""
    values = OmegaConf.to_container(section, resolve=True) if section is not None else {}
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: {key} must be a mapping, got {type(values).__name__}")
    if isinstance(spec, dict):
        fields = spec
    else:
        hints = typing.get_type_hints(spec)
        fields = {f.name: hints.get(f.name, Any) for f in dataclasses.fields(spec) if f.init}
        owner = spec.__name__
    for name, value in values.items():
        if name not in fields:
            close = difflib.get_close_matches(name, list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{source}: {key}.{name}: not a field of {owner}{hint}")
        if not _matches(value, fields[name]):
            raise ConfigError(
                f"{source}: {key}.{name}: {value!r} ({type(value).__name__}) does not fit "
                f"{owner}.{name}: {_type_name(fields[name])}"
            )


def _matches(value: Any, annotation: Any) -> bool:
    """A lenient isinstance for annotations: unknown shapes pass, clear mismatches fail."""
    if annotation is Any or annotation is typing.Any or annotation is dataclasses.MISSING:
        return True
    if isinstance(annotation, str):  # an unresolved forward reference
        return True
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is Literal:
        return value in args
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin in (list, tuple, set) or annotation in (list, tuple, set):
        return isinstance(value, (list, tuple))
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    if isinstance(annotation, type) and issubclass(annotation, str):  # str enums
        return isinstance(value, str)
    return True


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
