"""The chunked loss (model.loss_chunk_size) is transformers' causal-LM loss, with the same
gradients, whether the output layer is frozen (v1), a trained copy (v2) or tied and trained
in full (pretrain); runs with it on and off give the same history."""

import pandas as pd
import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file
from transformers.loss.loss_utils import ForCausalLMLoss

from medsft.core.config import ConfigError, FormatConfig, ModelConfig, as_schema, load_config
from medsft.modeling.loading import build_tiny_qwen3
from medsft.modeling.loss import linear_cross_entropy, output_weight
from medsft.train.pretrain import pretrain_base
from medsft.train.trainer import train_variant
from tests.test_packing import CONFIG
from tests.test_qwen3_path import QWEN3_1_7B, load_script, variant_lora
from tests.test_training import FAST, RECORDS

VOCAB, HIDDEN = 1000, 16


def inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hidden states (2 x 50), an output layer, labels with prompts and padding set to -100."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(2, 50, HIDDEN, generator=g)
    weight = torch.randn(VOCAB, HIDDEN, generator=g)
    labels = torch.randint(0, VOCAB, (2, 50), generator=g)
    labels[0, :10] = -100  # a prompt
    labels[1, 40:] = -100  # padding
    return hidden, weight, labels


def reference(hidden, weight, labels, num_items):
    return ForCausalLMLoss(torch.nn.functional.linear(hidden, weight), labels, VOCAB, num_items_in_batch=num_items)


@pytest.mark.parametrize("trainable", [False, True])
@pytest.mark.parametrize("num_items", [None, 77])
@pytest.mark.parametrize("chunk", [1, 7, 64, 10_000])
def test_loss_and_gradients_equal_transformers(trainable, num_items, chunk):
    hidden, weight, labels = inputs()
    weight.requires_grad_(trainable)
    wrt = [hidden.requires_grad_(True)] + ([weight] if trainable else [])
    expected = reference(hidden, weight, labels, num_items)
    expected_grads = torch.autograd.grad(expected, wrt)
    loss = linear_cross_entropy(hidden, weight, labels, num_items, chunk)
    grads = torch.autograd.grad(loss, wrt)
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_an_upstream_gradient_scales_the_stored_gradients():
    """The backward pass multiplies by d(out)/d(loss), as for any loss (gradient accumulation
    divides the loss before backward)."""
    hidden, weight, labels = inputs()
    hidden.requires_grad_(True)
    (g1,) = torch.autograd.grad(linear_cross_entropy(hidden, weight, labels, None, 8) * 0.25, [hidden])
    (g2,) = torch.autograd.grad(reference(hidden, weight, labels, None) * 0.25, [hidden])
    torch.testing.assert_close(g1, g2, rtol=1e-5, atol=1e-7)


def test_a_batch_without_targets_is_nan_as_a_mean_and_zero_over_the_accumulated_count():
    hidden, weight, labels = inputs()
    labels[:] = -100
    assert torch.isnan(reference(hidden, weight, labels, None))
    assert torch.isnan(linear_cross_entropy(hidden, weight, labels, None, 8))
    hidden.requires_grad_(True)
    loss = linear_cross_entropy(hidden, weight, labels, torch.tensor(5), 8)
    (grad,) = torch.autograd.grad(loss, [hidden])
    assert loss.item() == 0.0 and not grad.any()


def test_autocast_bf16_matches_the_bf16_loss_of_transformers():
    """Under bf16 autocast (the CPU fallback of fp16/bf16 runs) the logits are bf16 and the loss
    float32, in both."""
    hidden, weight, labels = inputs()
    hidden.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = reference(hidden, weight, labels, None)
        loss = linear_cross_entropy(hidden, weight, labels, None, 16)
    (want,) = torch.autograd.grad(expected, [hidden])
    (got,) = torch.autograd.grad(loss, [hidden])
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(got, want, rtol=0.05, atol=1e-4)


def test_a_chunk_size_below_one_is_refused():
    hidden, weight, labels = inputs()
    with pytest.raises(ConfigError, match="loss_chunk_size"):
        linear_cross_entropy(hidden, weight, labels, None, 0)
    with pytest.raises(ConfigError, match="model.loss_chunk_size"):
        load_config([*FAST, "model.loss_chunk_size=0"])


def test_output_weight_is_the_trained_copy_under_modules_to_save():
    model = build_tiny_qwen3(CONFIG, 0)
    original = model.lm_head.weight
    peft = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"], modules_to_save=["lm_head"]))
    weight = output_weight(peft.get_base_model())
    assert weight is not original and weight.requires_grad
    torch.testing.assert_close(weight, original)


def test_output_layers_it_cannot_fuse_are_refused():
    lora_head = get_peft_model(build_tiny_qwen3(CONFIG, 0), LoraConfig(r=2, target_modules=["lm_head"]))
    with pytest.raises(ConfigError, match="not a plain bias-free"):
        output_weight(lora_head.get_base_model())
    capped = build_tiny_qwen3(CONFIG, 0)
    capped.config.final_logit_softcapping = 30.0
    with pytest.raises(ConfigError, match="rescales its logits"):
        output_weight(capped)


def run_history(tmp_path, variant: str, chunk: str, packing: bool):
    overrides = [
        *FAST,
        "model.training.max_steps=3",
        "model.training.gradient_accumulation_steps=2",
        "model.training.learning_rate=0.0002",  # the variants' own: the updates stay comparable to 1e-5
        f"model.packing={packing}",
        f"model.loss_chunk_size={chunk}",
    ]
    out = tmp_path / f"{variant}-{chunk}-{packing}"
    train_variant(load_config(overrides), variant, RECORDS[:10], RECORDS[10:], out)
    return pd.read_csv(out / "history.csv"), load_file(str(out / "adapter" / "adapter_model.safetensors"))


@pytest.mark.parametrize(("variant", "packing"), [("v1", False), ("v2", True)])
def test_a_run_with_the_chunked_loss_trains_as_one_without(tmp_path, variant, packing):
    """v1 (frozen tied output layer, padded batches) and v2 (its trained copy, packed), with
    gradient accumulation: the same losses, gradient norms, eval losses and adapter."""
    full, full_adapter = run_history(tmp_path, variant, "null", packing)
    chunked, adapter = run_history(tmp_path, variant, "16", packing)
    for column in ("loss", "grad_norm", "eval_loss"):
        a, b = full[column].dropna().to_numpy(), chunked[column].dropna().to_numpy()
        assert len(a) == len(b) > 0
        assert abs(a - b).max() < 1e-5, column
    assert full_adapter.keys() == adapter.keys()
    for name, tensor in full_adapter.items():
        torch.testing.assert_close(adapter[name], tensor, rtol=1e-4, atol=1e-5)


def test_pretraining_a_tied_output_layer_with_the_chunked_loss_trains_as_without(tmp_path):
    """Pretrain trains the tied embedding and output layer in full: the output layer's
    gradient from the chunked loss adds up with the embedding's."""
    losses = {}
    for chunk in ("null", "16"):
        cfg = load_config(
            [
                "model.max_length=64",
                "model.pretrain.training.max_steps=3",
                "model.pretrain.training.logging_steps=1",
                f"model.loss_chunk_size={chunk}",
                "model.pretrain.trim_vocabulary=false",  # transformers' loss needs the full rows
            ]
        )
        model, fmt = as_schema(ModelConfig, cfg.model, "model"), as_schema(FormatConfig, cfg.format, "format")
        pretrain_base(model, fmt, RECORDS, tmp_path / chunk)
        losses[chunk] = pd.read_csv(tmp_path / chunk / "history.csv")["loss"].dropna().to_numpy()
    assert len(losses["null"]) == 3
    assert abs(losses["null"] - losses["16"]).max() < 1e-5


def test_liger_kernels_and_the_chunked_loss_are_not_combined(tmp_path):
    """Liger fuses the loss inside the model's forward pass, which the chunked loss bypasses:
    asking for both is refused with the config, before any stage loads a model."""
    with pytest.raises(ConfigError, match="model.loss_chunk_size=null"):
        load_config([*FAST, "model.loss_chunk_size=16", "model.training.use_liger_kernel=true"])
    with pytest.raises(ConfigError, match="variants.v2.training.use_liger_kernel"):
        load_config([*FAST, "model.loss_chunk_size=16", "variants.v2.training.use_liger_kernel=true"])
    assert load_config([*FAST, "model.loss_chunk_size=null", "model.training.use_liger_kernel=true"])


def test_a_training_step_leaves_no_hook_on_the_model(tmp_path):
    """The final hidden states are caught by a forward hook that each step removes, also when
    the forward pass fails."""
    from transformers import TrainingArguments

    from medsft.train.loop import PipelineTrainer

    model = get_peft_model(build_tiny_qwen3(CONFIG, 0), LoraConfig(r=2, target_modules=["q_proj"]))
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    trainer = PipelineTrainer(model=model, args=args, loss_chunk_size=8)
    decoder = model.get_base_model().get_decoder()
    batch = {"input_ids": torch.tensor([[1, 2, 3, 4]]), "labels": torch.tensor([[-100, 2, 3, 4]])}
    model.train()
    loss = trainer.compute_loss(model, batch)
    assert torch.isfinite(loss) and not decoder._forward_hooks
    with pytest.raises(IndexError):  # a token id beyond the vocabulary
        trainer.compute_loss(model, {**batch, "input_ids": torch.tensor([[10**7, 2, 3, 4]])})
    assert not decoder._forward_hooks


def test_the_memory_model_counts_one_chunk_of_logits_and_the_trained_heads_gradient():
    mem = load_script("memory_estimate")
    arch = mem.Architecture.from_config(QWEN3_1_7B)
    v1, v2 = variant_lora("v1"), variant_lora("v2")
    tokens, vocab, hidden = 4 * 2048, 151_936, 2048
    chunked_v1 = mem.estimate(arch, v1, 4, 2048, loss_chunk_size=256)
    chunked_v2 = mem.estimate(arch, v2, 4, 2048, loss_chunk_size=256)
    assert chunked_v1["logits and loss"] == 256 * vocab * 8 + 4 * tokens * hidden
    assert chunked_v2["logits and loss"] == chunked_v1["logits and loss"] + 4 * vocab * hidden
    full = mem.estimate(arch, v2, 4, 2048)
    assert full["peak"] - chunked_v2["peak"] > 10e9  # the logits: 12.4 GB at the seed's batch


def test_the_throughput_benchmarks_chunk_table_agrees_with_the_full_loss():
    bench = load_script("train_throughput")
    times = bench.loss_timings(96, 8, 500, [16, 64], repeats=1)
    assert set(times) == {None, 16, 64}
    assert all(diff < 1e-5 for _, diff in times.values())


@pytest.mark.parametrize("value", ["abc", "2.5", "true", "[1]", "-3"])
def test_a_chunk_size_that_is_not_a_positive_integer_names_the_key(value):
    with pytest.raises(ConfigError, match="model.loss_chunk_size"):
        load_config([*FAST, f"model.loss_chunk_size={value}"])
