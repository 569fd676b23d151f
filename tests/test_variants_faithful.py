"""On the qwen3-1.7b profile the composed variants are the real runs, key by key."""

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tests.conftest import ROOT

# The reference configs were logged with transformers 4.x, whose warmup_ratio became a
# fractional warmup_steps in transformers 5, and gradient_checkpointing became
# activation_checkpointing; precision flags are TrainingArguments fields too.
RENAMED = {"warmup_ratio": "warmup_steps", "gradient_checkpointing": "activation_checkpointing"}


def composed() -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = compose("config", overrides=["model=qwen3-1.7b"])
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("variant", ["v1", "v2", "v3"])
def test_composed_variant_equals_the_logged_run(reference, variant):
    real = yaml.safe_load((reference / "seed_runs" / variant / "run_config.yaml").read_text(encoding="utf-8"))
    cfg = composed()
    ours = cfg["variants"][variant]
    effective_training = {**ours["training"], **cfg["model"]["training"]}
    for key, value in real["lora"].items():
        assert ours["lora"][key] == value, f"lora.{key}"
    for key, value in {**real["training"], **real["precision"]}.items():
        assert effective_training[RENAMED.get(key, key)] == value, f"training.{key}"
    for key, value in real["quantization"].items():
        assert cfg["model"]["quantization"][key] == value, f"quantization.{key}"
    assert cfg["model"]["max_length"] == real["data"]["max_length"] == 2048


def test_v3_masks_terms_and_the_as_reported_variant_follows_the_text():
    cfg = composed()
    assert cfg["variants"]["v3"]["augment"]["term_masking"]["probability"] == 0.1
    assert cfg["variants"]["v2"]["augment"]["term_masking"]["probability"] == 0.0
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        extra = compose("config", overrides=["+variant@variants.v2_reported=v2_reported"])
    assert extra.variants.v2_reported.lora.lora_dropout == 0.2
    assert extra.variants.v2_reported.lora.modules_to_save == ["embed_tokens", "lm_head"]
