"""The trimmed vocabulary (medsft.modeling.vocab): a small model that speaks real token ids."""

from __future__ import annotations

import json

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers.loss.loss_utils import ForCausalLMLoss

from medsft.core.config import ConfigError, ModelProfile, load_config
from medsft.modeling.loading import build_tiny_qwen3, load_base_model, peft_quietly
from medsft.modeling.loss import causal_lm_loss, final_hidden_states
from medsft.modeling.vocab import TokenMap, TokenMapError, apply_token_map, unknown_inputs

REAL = 151936
ARCH = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 16,
    "tie_word_embeddings": True,
}
KEPT_TEXT = [5, 9, 100, 2000, 151645]
ADDED = [151643, 151644]


def trimmed(seed: int = 0):
    tmap = TokenMap.from_ids([KEPT_TEXT], ADDED, REAL)
    return apply_token_map(build_tiny_qwen3({**ARCH, "vocab_size": tmap.size}, seed), tmap), tmap


def test_the_map_keeps_each_id_once_in_order_with_row_zero_reserved():
    tmap = TokenMap.from_ids([[9, 5, 9], [100]], [151643], REAL)
    assert tmap.kept == (5, 9, 100, 151643) and tmap.size == 5
    table = tmap.compact_of()
    assert table[[5, 9, 100, 151643]].tolist() == [1, 2, 3, 4]
    assert table[[0, 6, 151935]].tolist() == [0, 0, 0]  # everything else: the reserved row
    with pytest.raises(TokenMapError, match="outside the vocabulary"):
        TokenMap.from_ids([[REAL]], [], REAL)


def test_the_map_round_trips_and_a_corrupt_file_is_refused(tmp_path):
    tmap = TokenMap.from_ids([KEPT_TEXT], ADDED, REAL)
    tmap.save(tmp_path)
    assert TokenMap.load(tmp_path) == tmap
    assert TokenMap.load(tmp_path / "elsewhere") is None
    data = json.loads((tmp_path / "token_map.json").read_text())
    for bad in ([9, 5], [5, 5], [5, REAL], [5, "9"], [True], None):
        (tmp_path / "token_map.json").write_text(json.dumps({**data, "kept": bad}))
        with pytest.raises(TokenMapError, match="token_map.json: `kept` must be a sorted list of distinct"):
            TokenMap.load(tmp_path)
    (tmp_path / "token_map.json").write_text(json.dumps({**data, "real_vocab_size": "big"}))
    with pytest.raises(TokenMapError, match="real_vocab_size"):
        TokenMap.load(tmp_path)
    (tmp_path / "token_map.json").write_text('{"kept": [1, 2')  # a write cut short
    with pytest.raises(TokenMapError, match="not readable as JSON"):
        TokenMap.load(tmp_path)


def test_a_map_of_another_size_than_the_model_is_refused_naming_the_folder(tmp_path):
    model, tmap = trimmed()
    model.save_pretrained(tmp_path)
    TokenMap(tmap.kept[:-1], REAL).save(tmp_path)  # one id short: one row too many in the model
    with pytest.raises(TokenMapError, match=f"{tmp_path}: the model has {tmap.size} vocabulary rows"):
        load_base_model(ModelProfile(pretrained_model_name_or_path=str(tmp_path)))


def test_logits_are_over_real_ids_and_the_loss_equals_transformers_on_them():
    model, tmap = trimmed()
    ids = torch.tensor([[151644, 5, 9, 100, 2000, 151645]])
    logits = model(input_ids=ids).logits
    assert logits.shape == (1, 6, REAL)
    finite = torch.isfinite(logits[0, 0]).nonzero().squeeze(-1).tolist()
    assert finite == list(tmap.kept)  # -inf wherever the model has no row (the reserved row too)
    labels = ids.clone()
    labels[0, 0] = -100
    with final_hidden_states(model) as captured:
        model(input_ids=ids, logits_to_keep=1)
    for chunk in (1, 3, 64):
        loss = causal_lm_loss(model, captured[-1], labels, None, chunk)
        torch.testing.assert_close(loss, ForCausalLMLoss(logits, labels, vocab_size=REAL))


def test_an_unknown_input_takes_the_reserved_row_and_is_counted_and_an_unknown_target_is_left_out():
    model, _ = trimmed()
    known = torch.tensor([[151644, 5, 9, 100]])
    unknown = torch.tensor([[151644, 5, 7, 100]])  # 7 is not in the vocabulary
    assert unknown_inputs(model) == 0
    model(input_ids=known)
    assert unknown_inputs(model) == 0
    model(input_ids=unknown)
    assert unknown_inputs(model) == 1
    with final_hidden_states(model) as captured:
        model(input_ids=unknown, logits_to_keep=1)
    hidden = captured[-1]
    with_unknown = causal_lm_loss(model, hidden, torch.tensor([[-100, 5, 7, 100]]), None, 8)
    without = causal_lm_loss(model, hidden, torch.tensor([[-100, 5, -100, 100]]), None, 8)
    torch.testing.assert_close(with_unknown, without)


def test_transformers_loss_on_a_trimmed_model_is_refused_not_miscomputed():
    model, _ = trimmed()
    ids = torch.tensor([[151644, 5, 9]])
    with pytest.raises(RuntimeError, match="model.loss_chunk_size"):
        model(input_ids=ids, labels=ids)


def test_generation_gives_real_ids_only_from_the_vocabulary():
    model, tmap = trimmed()
    out = model.generate(input_ids=torch.tensor([[151644, 5]]), max_new_tokens=6, do_sample=False, pad_token_id=151643)
    assert set(out[0, 2:].tolist()) <= set(tmap.kept)


def test_peft_trains_copies_of_the_trimmed_layers_and_a_saved_base_reloads_trimmed(tmp_path):
    model, tmap = trimmed()
    peft = peft_quietly(
        get_peft_model,
        model,
        LoraConfig(r=4, target_modules=["q_proj"], modules_to_save=["embed_tokens", "lm_head"]),
    )
    ids = torch.tensor([[151644, 5, 9, 100]])
    assert peft(input_ids=ids).logits.shape[-1] == REAL
    peft.save_pretrained(tmp_path / "adapter")
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert {t.shape[0] for k, t in saved.items() if "embed_tokens" in k or "lm_head" in k} == {tmap.size}
    # The base on disk is a plain Qwen3 of tmap.size rows; loading it with its map gives the same logits.
    base, _ = trimmed()
    base.save_pretrained(tmp_path / "base")
    tmap.save(tmp_path / "base")
    assert json.loads((tmp_path / "base" / "config.json").read_text())["vocab_size"] == tmap.size
    reloaded = load_base_model(ModelProfile(pretrained_model_name_or_path=str(tmp_path / "base")))
    torch.testing.assert_close(reloaded(input_ids=ids).logits, trimmed()[0](input_ids=ids).logits)


def test_trimming_needs_the_chunked_loss_and_a_base_to_pretrain():
    with pytest.raises(ConfigError, match="model.pretrain.trim_vocabulary.*model.loss_chunk_size"):
        load_config(["model.loss_chunk_size=null"])
    with pytest.raises(ConfigError, match="model.pretrain.trim_vocabulary.*model.pretrain.training"):
        load_config(["model.pretrain.training=null"])
    assert load_config(["model.pretrain.training=null", "model.pretrain.trim_vocabulary=false"])
