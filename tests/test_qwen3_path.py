"""The qwen3-1.7b path without a GPU: the exact architecture's parameter counts (on the meta
device), a random model directory run through the real qwen3-1.7b profile (4-bit NF4,
modules_to_save, checkpointing, bf16, the CPU fallbacks), the memory model's arithmetic, and
Qwen3's pitfalls: tied embeddings under modules_to_save, the training format against the chat
template, pad and end tokens."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from medsft.core.config import load_config
from medsft.core.spec import RunSpec
from medsft.data.formatting import IGNORE_INDEX, chat_parts, encode_parts, encode_records, prompt_parts
from medsft.data.tokenizer import build_offline_qwen3_tokenizer
from medsft.modeling import loading
from medsft.modeling.architecture import QWEN3_1_7B, lora_parameter_counts, profile_architecture
from medsft.train import trainer as training
from medsft.train.devices import apply_device_fallbacks, device_fallbacks
from tests.conftest import NO_PRETRAIN, ROOT
from tests.test_training import FAST, RECORDS

# model_num_parameters of the seed's real v2 run (../shared/reference/seed_runs/v2/run_config.yaml).
SEED_V2_PARAMETERS = 2_412_635_136


def load_script(name: str):
    """A module of benchmarks/ (scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def variant_lora(name: str, **changes) -> dict:
    cfg = load_config(NO_PRETRAIN, path=ROOT / "params.yaml")
    return {**OmegaConf.to_container(cfg.variants[name].lora, resolve=True), **changes}


# --- the exact architecture, counted on the meta device -------------------------------------


def test_v2_on_the_exact_architecture_counts_what_the_seed_run_logged(reference):
    logged = yaml.safe_load((reference / "seed_runs" / "v2" / "run_config.yaml").read_text(encoding="utf-8"))
    assert logged["model_num_parameters"] == SEED_V2_PARAMETERS


def test_parameter_counts_of_qwen3_1_7b_on_meta():
    arch = profile_architecture("qwen3-1.7b")
    assert arch == QWEN3_1_7B
    # 311,164,928 embedding (tied: once) + 28 layers x 50,336,000 + the final norm.
    assert lora_parameter_counts(arch, None)["total_params"] == 1_720_574_976
    v1 = lora_parameter_counts(arch, variant_lora("v1"))
    assert v1 == {"total_params": 1_720_574_976 + 69_730_304, "trainable_params": 69_730_304}
    # v2: LoRA plus an untied copy each of the embedding and the output layer, as the real run.
    v2 = lora_parameter_counts(arch, variant_lora("v2"))
    assert v2 == {"total_params": SEED_V2_PARAMETERS, "trainable_params": 69_730_304 + 2 * 311_164_928}
    assert v2["trainable_params"] / v2["total_params"] == pytest.approx(0.287, abs=1e-3)  # the logs' 28.7%
    tied = lora_parameter_counts(arch, variant_lora("v2", ensure_weight_tying=True))
    assert tied["total_params"] == SEED_V2_PARAMETERS - 311_164_928


def test_an_unknown_profile_is_named():
    with pytest.raises(ValueError, match=r"conf/model/qwen3-17b.yaml: no such model profile"):
        profile_architecture("qwen3-17b", conf_dir=ROOT / "conf")


# --- a random model directory through the real qwen3-1.7b profile ---------------------------


@pytest.fixture(scope="module")
def random_tiny_dir(tmp_path_factory):
    """benchmarks/make_random_model.py --profile tiny: the tiny shapes, written like a checkpoint."""
    out = tmp_path_factory.mktemp("random-tiny")
    load_script("make_random_model").write_random_model(out, "tiny", seed=0, dtype=torch.bfloat16)
    return out


def test_random_model_directory_is_a_checkpoint_with_the_chat_template(random_tiny_dir, tmp_path):
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    config = AutoConfig.from_pretrained(random_tiny_dir)
    assert (config.hidden_size, config.vocab_size, config.tie_word_embeddings) == (64, 151936, True)
    assert GenerationConfig.from_pretrained(random_tiny_dir).eos_token_id == [151645, 151643]
    tok = AutoTokenizer.from_pretrained(random_tiny_dir)
    offline = build_offline_qwen3_tokenizer()
    assert tok.chat_template == offline.chat_template and "enable_thinking" in tok.chat_template
    text = "糖尿病<think>\n口渴</think>\n\n多饮<|im_end|>"
    assert tok(text)["input_ids"] == offline(text)["input_ids"]
    # Same seed, same bytes.
    again = tmp_path / "again"
    load_script("make_random_model").write_random_model(again, "tiny", seed=0, dtype=torch.bfloat16)
    assert (again / "model.safetensors").read_bytes() == (random_tiny_dir / "model.safetensors").read_bytes()


def qwen3_profile(model_dir, *extra: str) -> list[str]:
    """The qwen3-1.7b profile on a local directory, scaled to a few CPU seconds."""
    return [
        "model=qwen3-1.7b",
        f"model.pretrained_model_name_or_path={model_dir}",
        "tracking.mode=disabled",
        "model.max_length=64",
        "model.training.max_steps=2",
        "model.training.per_device_train_batch_size=1",
        "model.training.gradient_accumulation_steps=2",
        "model.training.logging_steps=1",
        "model.training.eval_steps=2",
        "model.training.save_steps=100",
        *extra,
    ]


def test_qwen3_profile_trains_v2_in_4bit_on_cpu_with_logged_fallbacks(random_tiny_dir, tmp_path, monkeypatch, caplog):
    seen = {}
    original = training.add_lora

    def spy(model, *args, **kwargs):
        seen["base"] = model
        return original(model, *args, **kwargs)

    monkeypatch.setattr(training, "add_lora", spy)
    cfg = load_config(qwen3_profile(random_tiny_dir), path=ROOT / "params.yaml")
    with caplog.at_level("WARNING", logger="medsft.train.devices"):
        metrics = training.train_variant(cfg, "v2", RECORDS[:10], RECORDS[10:], tmp_path)
    assert any(type(m).__name__ == "Linear4bit" for m in seen["base"].modules())
    assert metrics["steps"] == 2 and metrics["final_eval_loss"] > 0
    # 4-bit tensors counted at their logical size: the same count as the meta model's.
    arch = profile_architecture("tiny", conf_dir=ROOT / "conf")
    assert metrics["total_params"] == lora_parameter_counts(arch, variant_lora("v2"))["total_params"]
    spec = RunSpec.read(tmp_path)
    assert spec.training["optim"] == "adamw_8bit" and spec.training["use_cpu"] is True
    assert spec.training["bf16"] is True and spec.training["activation_checkpointing"] is True
    assert spec.device_fallbacks["optim"]["asked"] == "paged_adamw_8bit"
    assert [r.getMessage() for r in caplog.records if "optim" in r.getMessage()] == [
        "v2: optim 'paged_adamw_8bit' asked, 'adamw_8bit' used on this machine: "
        "paged optimizers keep their state in CUDA unified memory; no CUDA here"
    ]
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]


def test_fallbacks_apply_only_without_cuda():
    asked = {"optim": "paged_adamw_8bit", "bf16": True, "fp16": False}
    assert device_fallbacks(asked, cuda=True) == {}
    assert {k: v["used"] for k, v in device_fallbacks(asked, cuda=False).items()} == {
        "optim": "adamw_8bit",
        "use_cpu": True,
    }
    assert device_fallbacks({"optim": "adamw_torch", "bf16": False}, cuda=False) == {}
    fp16 = device_fallbacks({"optim": "adamw_torch", "fp16": True, "bf16": False}, cuda=False)
    assert {k: v["used"] for k, v in fp16.items()} == {"fp16": False, "bf16": True, "use_cpu": True}
    assert device_fallbacks({"fp16": True}, cuda=True) == {}
    spec = load_config(NO_PRETRAIN, path=ROOT / "params.yaml")
    from medsft.core.spec import resolve_spec

    plain = resolve_spec(spec, "v2")
    assert apply_device_fallbacks(plain, cuda=True) is plain
    assert "device_fallbacks" not in plain.to_dict()  # specs without a fallback are unchanged


def test_device_map_follows_local_rank(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert loading.default_device_map() == {"": 3}
    monkeypatch.delenv("LOCAL_RANK")
    assert loading.default_device_map() == {"": 0}


# --- tied embeddings under modules_to_save --------------------------------------------------


def trained_copies(tmp_path, monkeypatch, *overrides: str):
    """The trained embedding and output-layer copies of a two-step v2 run on tiny."""
    seen = {}
    original = training.add_lora

    def spy(*args, **kwargs):
        seen["model"] = original(*args, **kwargs)
        return seen["model"]

    monkeypatch.setattr(training, "add_lora", spy)
    cfg = load_config([*FAST, "model.training.max_steps=2", *overrides], path=ROOT / "params.yaml")
    metrics = training.train_variant(cfg, "v2", RECORDS[:10], RECORDS[10:], tmp_path)
    inner = seen["model"].base_model.model
    embed = inner.model.embed_tokens.modules_to_save["default"].weight
    head = inner.lm_head.modules_to_save["default"].weight
    return embed, head, inner.model.embed_tokens.original_module.weight, metrics


def test_modules_to_save_copies_stay_untied_by_default(tmp_path, monkeypatch):
    embed, head, original, metrics = trained_copies(tmp_path, monkeypatch)
    assert embed is not head and not torch.equal(embed, head)  # trained apart, as the seed's v2
    assert not torch.equal(embed, original)


def test_ensure_weight_tying_trains_one_copy(tmp_path, monkeypatch):
    embed, head, original, metrics = trained_copies(tmp_path, monkeypatch, "variants.v2.lora.ensure_weight_tying=true")
    assert embed is head and torch.equal(embed, head)
    assert not torch.equal(embed, original)  # trained
    vocab, hidden = embed.shape
    untied = lora_parameter_counts(profile_architecture("tiny", conf_dir=ROOT / "conf"), variant_lora("v2"))
    assert metrics["trainable_params"] == untied["trainable_params"] - vocab * hidden


# --- the training format against Qwen3's chat template --------------------------------------

SYSTEM = "你是一个医学专家，你需要根据用户的问题，给出带有思考的回答。"
RECORD = {
    "question": "空腹血糖7.8 mmol/L是糖尿病吗？",
    "think": "\n空腹血糖≥7.0提示糖尿病，需复查。\n",
    "answer": "需要复查并做糖耐量试验。",
}


def template_ids(tok, messages, **kwargs) -> list[int]:
    text = tok.apply_chat_template(messages, tokenize=False, **kwargs)
    return tok(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("think", [RECORD["think"], ""], ids=["thinking", "no-thinking"])
def test_training_example_equals_the_chat_template(think):
    tok = build_offline_qwen3_tokenizer()
    record = {**RECORD, "think": think}
    ours = encode_records([record], tok, SYSTEM, "qwen3", max_length=4096).input_ids[0]
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": record["question"]},
        {"role": "assistant", "content": record["answer"], "reasoning_content": record["think"]},
    ]
    # The template closes the turn with "<|im_end|>\n"; the example ends at <|im_end|>, the
    # token generation stops at (the newline belongs to the next turn and is never generated).
    for enable_thinking in (True, False):  # the switch acts on the generation prompt only
        rendered = template_ids(tok, messages, enable_thinking=enable_thinking)
        assert ours + tok("\n", add_special_tokens=False)["input_ids"] == rendered
    # The prompt is the template's generation prompt with thinking on; with thinking off the
    # template prefills an empty think block, as chat_parts(think=False) does.
    (prompt,) = encode_parts(tok, [prompt_parts(record["question"], SYSTEM)])
    assert prompt == template_ids(tok, messages[:2], add_generation_prompt=True, enable_thinking=True)
    (no_think,) = encode_parts(tok, [chat_parts(SYSTEM, [], record["question"], think=False)])
    assert no_think == template_ids(tok, messages[:2], add_generation_prompt=True, enable_thinking=False)


def test_earlier_turns_keep_answers_only_like_the_template():
    tok = build_offline_qwen3_tokenizer()
    history = [("第一问", "第一答")]
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "第一问"},
        {"role": "assistant", "content": "第一答", "reasoning_content": "旧的推理"},  # dropped by the template
        {"role": "user", "content": RECORD["question"]},
    ]
    (ours,) = encode_parts(tok, [chat_parts(SYSTEM, history, RECORD["question"], think=True)])
    assert ours == template_ids(tok, messages, add_generation_prompt=True)


def test_training_examples_equal_the_template_on_the_reference_records(reference):
    tok = build_offline_qwen3_tokenizer()
    rows = [json.loads(line) for line in open(reference / "delicate_medical_r1_val241.jsonl", encoding="utf-8")]
    newline = tok("\n", add_special_tokens=False)["input_ids"]
    encoded = encode_records(rows, tok, SYSTEM, "qwen3", max_length=100_000)
    for row, ids in zip(rows, encoded.input_ids, strict=True):
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": row["question"]},
            {"role": "assistant", "content": row["answer"], "reasoning_content": row["think"]},
        ]
        assert ids + newline == template_ids(tok, messages), row["question"]


def test_pad_is_not_eos_and_every_target_ends_with_eos():
    tok = build_offline_qwen3_tokenizer()
    assert tok.pad_token_id == 151643 != tok.eos_token_id == 151645
    encoded = encode_records(RECORDS[:3], tok, SYSTEM, "qwen3", max_length=4096)
    for ids, labels in zip(encoded.input_ids, encoded.labels, strict=True):
        assert ids[-1] == labels[-1] == tok.convert_tokens_to_ids("<|im_end|>")
        assert tok.pad_token_id not in ids
        assert labels.count(tok.eos_token_id) == 1  # the prompt's own <|im_end|>s are masked
        assert all(label == IGNORE_INDEX for label in labels[: encoded.prompt_tokens[0]])


# --- the memory model ------------------------------------------------------------------------


def test_memory_terms_follow_their_formulas():
    mem = load_script("memory_estimate")
    arch = mem.Architecture.from_config(QWEN3_1_7B)
    assert arch.projection_params() == 28 * 50_331_648
    v1, v2 = variant_lora("v1"), variant_lora("v2")
    assert mem.lora_params(arch, v1) == 69_730_304  # the meta count's LoRA parameters
    assert mem.saved_copies(arch, v2) == 2 * 151_936 * 2048
    assert mem.saved_copies(arch, {**v2, "ensure_weight_tying": True}) == 151_936 * 2048
    terms = mem.estimate(arch, v2, batch=4, length=2048, optim="paged_adamw_8bit")
    p4 = 28 * 50_331_648
    assert terms["4-bit weights"] == pytest.approx(p4 * (0.5 + 1 / 64 + 4 / (64 * 256)))
    assert terms["modules_to_save gradients"] == 4 * 2 * 151_936 * 2048
    assert terms["modules_to_save optimizer state"] == pytest.approx((2 + 8 / 256) * 2 * 151_936 * 2048)
    assert terms["activation checkpoints"] == 4 * 28 * 4 * 2048 * 2048
    assert terms["logits and loss"] == 10 * 4 * 2048 * 151_936
    static = sum(v for k, v in terms.items() if k not in ("layer working set", "logits and loss", "peak"))
    assert terms["peak"] == pytest.approx(static + max(terms["layer working set"], terms["logits and loss"]))
    # v1 has no copies; tying saves one copy's weight, gradient and optimizer state.
    assert terms["peak"] - mem.estimate(arch, v1, 4, 2048)["peak"] == pytest.approx(
        2 * 151_936 * 2048 * (4 + 4 + 2 + 8 / 256)
    )
    tied = mem.estimate(arch, {**v2, "ensure_weight_tying": True}, 4, 2048)["peak"]
    assert terms["peak"] - tied == pytest.approx(151_936 * 2048 * (4 + 4 + 2 + 8 / 256))
    # Peak grows with the batch's tokens; tokens_for_peak inverts it.
    tokens = mem.tokens_for_peak(arch, v2, 14.2e9)
    assert mem.estimate(arch, v2, 1, tokens)["peak"] < 14.2e9 <= mem.estimate(arch, v2, 1, tokens + 1)["peak"]
    with pytest.raises(ValueError, match="lora.target_modules"):
        mem.lora_params(arch, {**v1, "target_modules": ["qkv"]})


def test_the_offline_chat_template_refuses_tool_calls():
    """The offline template covers Qwen3's conversation layout only: tools are an error, not
    a silently different prompt."""
    tok = build_offline_qwen3_tokenizer()
    conversation = [{"role": "user", "content": "血压多少算高？"}]
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    with pytest.raises(Exception, match="no tool calls"):
        tok.apply_chat_template(conversation, tools=tools, tokenize=False)
