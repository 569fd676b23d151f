import dataclasses

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from medsft.core.config import ConfigError, load_config, validate
from medsft.core.spec import resolve_spec
from tests.conftest import NO_PRETRAIN, ROOT


def compose_conf(overrides=()):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        return compose("config", overrides=list(overrides))


def test_params_yaml_is_the_composition_of_conf():
    composed = OmegaConf.to_container(compose_conf(), resolve=True)
    params = OmegaConf.to_container(OmegaConf.load(ROOT / "params.yaml"), resolve=True)
    assert params == composed, "params.yaml is stale: regenerate it with `python -m stages.compose`"


def test_v2_is_v1_plus_what_changed():
    v1, v2 = (OmegaConf.to_container(compose_conf().variants[v]) for v in ("v1", "v2"))
    changed = {(s, k) for s in ("lora", "training") for k in v1[s] if v1[s][k] != v2[s].get(k)}
    assert changed == {
        ("lora", "lora_dropout"),
        ("lora", "modules_to_save"),
        ("training", "lr_scheduler_type"),
        ("training", "warmup_steps"),
        ("training", "bf16"),
        ("training", "fp16"),
    }
    text = (ROOT / "conf/variant/v2.yaml").read_text()
    assert "- v1" in text and "target_modules" not in text  # composed, not copied


def test_variant_sections_build_the_library_objects(cfg):
    from peft import LoraConfig
    from transformers import TrainingArguments

    for name, variant in cfg.variants.items():
        LoraConfig(**OmegaConf.to_container(variant.lora))
        fields = dict(resolve_spec(cfg, name).training)
        fields.update(fp16=False, bf16=False, optim="adamw_torch")  # CPU here
        TrainingArguments(output_dir="/tmp/unused", **fields)
    assert {f.name for f in dataclasses.fields(TrainingArguments)} >= set(cfg.variants.v2.training)


@pytest.mark.parametrize("profile", ["tiny", "qwen3-1.7b"])
def test_no_deprecation_warning_from_our_config(profile, recwarn):
    from transformers import TrainingArguments

    from medsft.modeling.loading import add_lora, build_tiny_qwen3

    cfg = load_config([*NO_PRETRAIN, f"model={profile}"], path=ROOT / "params.yaml")
    tiny = load_config(NO_PRETRAIN, path=ROOT / "params.yaml").model.config
    for name in cfg.variants:
        spec = resolve_spec(cfg, name)
        fields = {**spec.training, "fp16": False, "bf16": False, "optim": "adamw_torch"}  # CPU here
        args = TrainingArguments(output_dir="/tmp/unused", **fields)
        add_lora(build_tiny_qwen3(OmegaConf.to_container(tiny), 0), spec.lora, args.activation_checkpointing)
    assert resolve_spec(cfg, "v1").training["activation_checkpointing"] is (profile == "qwen3-1.7b")
    deprecations = [str(w.message) for w in recwarn if issubclass(w.category, (FutureWarning, DeprecationWarning))]
    assert not [m for m in deprecations if "checkpointing" in m], deprecations


def test_the_old_checkpointing_name_maps_to_the_new_and_a_clash_is_named():
    from medsft.core.spec import current_field_names

    assert current_field_names({"gradient_checkpointing": True, "seed": 1}, "x") == {
        "activation_checkpointing": True,
        "seed": 1,
    }
    assert current_field_names({"gradient_checkpointing": True, "activation_checkpointing": True}, "x") == {
        "activation_checkpointing": True
    }
    with pytest.raises(
        ConfigError, match="v2.training: gradient_checkpointing=False and activation_checkpointing=True"
    ):
        current_field_names({"activation_checkpointing": True, "gradient_checkpointing": False}, "v2.training")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "variants.v2.training.learnig_rate=0.1",
            "variants.v2.training.learnig_rate: not a field of TrainingArguments (did you mean 'learning_rate'?)",
        ),
        ("variants.v1.lora.lora_dropot=0.1", "variants.v1.lora.lora_dropot: not a field of LoraConfig"),
        ("variants.v1.lora.r=sixty", "variants.v1.lora.r: 'sixty' (str) does not fit LoraConfig.r"),
        ("variants.v1.training.bf16=maybe", "variants.v1.training.bf16"),
        ("model.quantization.load_in_5bit=true", "model.quantization.load_in_5bit: not a field of BitsAndBytesConfig"),
        ("prepare.outdir=x", "prepare.outdir"),
        ("model.max_length=long", "model.max_length"),
        ("split.method=random", "split.method: 'random' is not one of"),
        ("tracking.mode=cloud", "tracking.mode"),
    ],
)
def test_invalid_keys_and_types_fail_naming_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_config([override], path=ROOT / "params.yaml")
    assert message in str(err.value)


def test_unknown_variant_is_named():
    cfg = validate(OmegaConf.load(ROOT / "params.yaml"))
    with pytest.raises(ConfigError, match="unknown variant 'v9'"):
        resolve_spec(cfg, "v9")


def test_model_profile_settings_apply_on_top_of_every_variant(cfg):
    for name in cfg.variants:
        spec = resolve_spec(cfg, name)
        for key, value in cfg.model.training.items():
            assert spec.training[key] == value
            asked = cfg.variants[name].training.get(key)
            if asked is not None and asked != value:  # every replaced value is listed with both values
                assert spec.profile_overrides[key] == {"variant": asked, "profile": value}
        assert set(spec.profile_overrides) <= set(cfg.model.training)
    # qwen3-1.7b runs the variants as written
    big = compose_conf(["model=qwen3-1.7b"])
    assert OmegaConf.to_container(big.model.training) == {"train_sampling_strategy": "group_by_length"}
    assert big.model.max_length == 2048


@pytest.mark.parametrize("stage", ["train", "augment"])
def test_variant_stages_reject_an_unknown_variant_naming_the_defined_ones(stage, capsys):
    import importlib

    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(f"stages.{stage}").main(["v9"])
    assert exit_info.value.code == 2
    assert "unknown variant 'v9'; params.yaml defines ['v1', 'v2', 'v3']" in capsys.readouterr().err


@pytest.mark.parametrize("stage", ["evaluate", "export"])
def test_stages_of_an_untrained_variant_name_the_stage_to_run(stage, capsys):
    import importlib

    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(f"stages.{stage}").main(["v9"])
    assert exit_info.value.code == 2
    assert "runs/v9/train/run_config.yaml: not found; it is written by the train@v9 stage" in capsys.readouterr().err


def test_a_profile_replaced_value_changes_through_model_training_as_documented(caplog):
    # On tiny the profile sets the batch: the variant's value is replaced, and says so.
    asked = resolve_spec(load_config([*NO_PRETRAIN, "variants.v2.training.per_device_train_batch_size=8"]), "v2")
    assert asked.training["per_device_train_batch_size"] == 2
    assert asked.profile_overrides["per_device_train_batch_size"] == {"variant": 8, "profile": 2}
    # The documented way (spec.py, README): set it in model.training.
    changed = resolve_spec(load_config([*NO_PRETRAIN, "model.training.per_device_train_batch_size=8"]), "v2")
    assert changed.training["per_device_train_batch_size"] == 8
    assert changed.profile_overrides["per_device_train_batch_size"] == {"variant": 4, "profile": 8}
    # A variant value the profile does not set is used as written.
    own = resolve_spec(load_config([*NO_PRETRAIN, "variants.v2.training.max_grad_norm=0.5"]), "v2")
    assert own.training["max_grad_norm"] == 0.5 and "max_grad_norm" not in own.profile_overrides


def test_group_choices_and_misplaced_variant_keys_on_the_stage_command_line():
    assert load_config(["tracking=disabled"]).tracking.mode == "disabled"  # the README's form
    big = load_config(["model=qwen3-1.7b"])
    assert big.model.name == "qwen3-1.7b" and big.model.config == {} and big.model.max_length == 2048
    with pytest.raises(ConfigError, match=r"no option 'nope' in conf/tracking/ \(options: \['disabled'"):
        load_config(["tracking=nope"])
    with pytest.raises(ConfigError, match=r"use variants.<variant>.training.lr=1 \(e.g. variants.v2.training.lr=1\)"):
        load_config(["training.lr=1"])


def test_files_follow_the_process_umask(tmp_path):
    import os

    from medsft.core.io import atomic_dir, atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("y")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["model"].update(max_length="abc"), r"run_config.yaml: model: max_length: Value 'abc'"),
        (lambda d: d["model"].pop("base_model_id"), r"run_config.yaml: model: base_model_id: .*missing mandatory"),
        (lambda d: d["augment"]["term_masking"].update(probability=[1]), r"run_config.yaml: augment: term_masking"),
    ],
)
def test_a_run_spec_with_a_wrong_type_or_a_missing_value_names_the_file_and_key(tmp_path, edit, message):
    import yaml

    from medsft.core.spec import RunSpec

    data = resolve_spec(load_config(NO_PRETRAIN, path=ROOT / "params.yaml"), "v2").to_dict()
    edit(data)
    (tmp_path / "run_config.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        RunSpec.read(tmp_path)
