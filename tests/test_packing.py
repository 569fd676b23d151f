"""Padding-free packed batches: packed examples see only themselves, and a run with packing
trains on the same tokens and evaluates the same way as one without."""

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from medsft.core.config import ConfigError, load_config
from medsft.data.formatting import encode_records
from medsft.data.tokenizer import load_tokenizer
from medsft.modeling.loading import build_tiny_qwen3
from medsft.train.packing import flattening_collator, prepare_for_packing
from medsft.train.trainer import train_variant
from tests.conftest import ROOT
from tests.test_training import FAST, RECORDS

CONFIG = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "vocab_size": 151936,
    "max_position_embeddings": 512,
    "tie_word_embeddings": True,
}


@pytest.fixture(scope="module")
def examples():
    """Three formatted examples of different lengths (so a padded batch would pad)."""
    records = [
        {"question": "高血压患者如何用药？", "think": "评估风险。", "answer": "改善生活方式。"},
        {"question": "糖尿病的诊断标准是什么？", "think": "回顾指南中的血糖阈值。" * 4, "answer": "空腹血糖≥7.0。"},
        {"question": "发热三天怎么办？", "think": "排除感染。" * 2, "answer": "就医。"},
    ]
    tok = load_tokenizer(None)
    enc = encode_records(records, tok, "你是医学专家。", "qwen3", 128)
    assert len({len(ids) for ids in enc.input_ids}) == 3
    return tok, enc.rows()


def token_losses(model, batch: dict) -> torch.Tensor:
    """Per-token next-token losses of a one-row batch, -100 labels left out (in order)."""
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits[0]
    labels = batch["labels"][0]
    losses = F.cross_entropy(logits[:-1].float(), labels[1:], ignore_index=-100, reduction="none")
    return losses[labels[1:] != -100]


def alone_losses(model, rows) -> list[torch.Tensor]:
    return [token_losses(model, {k: torch.tensor([v]) for k, v in row.items()}) for row in rows]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_examples_give_the_losses_they_give_alone(examples, attn):
    _, rows = examples
    model = build_tiny_qwen3(CONFIG, 0).eval()
    model.config._attn_implementation = attn
    packed = flattening_collator()(rows)
    assert set(packed) == {"input_ids", "labels", "position_ids"}  # no attention mask
    assert packed["input_ids"].shape == (1, sum(len(r["input_ids"]) for r in rows))
    # Each example's first label is -100: no example learns to predict the next one's start.
    starts = torch.cumsum(torch.tensor([0] + [len(r["input_ids"]) for r in rows[:-1]]), 0)
    assert (packed["labels"][0, starts] == -100).all()
    with torch.no_grad():
        together = token_losses(model, packed)
        alone = torch.cat(alone_losses(model, rows))
    # The same target tokens, in the same order, with the same losses.
    assert together.shape == alone.shape
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)


def test_an_attention_mask_beside_packed_rows_lets_examples_see_each_other(examples):
    """Why the collator passes no mask: with one, transformers no longer detects the packed
    boundaries, and the later examples' losses change (they attend to the earlier ones)."""
    _, rows = examples
    model = build_tiny_qwen3(CONFIG, 0).eval()
    model.config._attn_implementation = "sdpa"
    packed = flattening_collator()(rows)
    masked = {**packed, "attention_mask": torch.ones_like(packed["input_ids"])}
    with torch.no_grad():
        alone = torch.cat(alone_losses(model, rows))
        broken = token_losses(model, masked)
    assert not torch.allclose(broken, alone, atol=1e-5, rtol=0)


def test_a_kv_cache_beside_packed_rows_lets_examples_see_each_other(examples):
    """Qwen3's config asks for a cache, and transformers skips the packed detection when one
    is built: prepare_for_packing turns it off, and with it on the losses change."""
    _, rows = examples
    model = build_tiny_qwen3(CONFIG, 0).eval()
    assert model.config.use_cache
    packed = flattening_collator()(rows)
    with torch.no_grad():
        with_cache = model(**{k: v for k, v in packed.items() if k != "labels"}, use_cache=True).logits
        prepare_for_packing(model)
        assert model.config.use_cache is False
        default = model(**{k: v for k, v in packed.items() if k != "labels"}).logits
        without = model(**{k: v for k, v in packed.items() if k != "labels"}, use_cache=False).logits
    assert torch.equal(default, without)
    assert not torch.allclose(with_cache, without, atol=1e-5)


def test_packing_refuses_an_attention_that_cannot_separate_examples():
    model = build_tiny_qwen3(CONFIG, 0)
    model.config._attn_implementation = "sdpa"
    prepare_for_packing(model)
    model.config._attn_implementation = "paged|sdpa"
    with pytest.raises(ConfigError, match="model.packing"):
        prepare_for_packing(model)


def test_a_packed_run_trains_on_the_same_tokens_and_evaluates_like_a_padded_one(tmp_path):
    """Same seed and config with and without packing: the same number of real tokens is seen,
    the first step's loss is the same (same examples, same weights), and evaluation, which
    stays padded, gives the same eval loss before training moves the weights apart."""
    runs = {}
    for packing in (False, True):
        overrides = [*FAST, "model.training.max_steps=2", "model.training.eval_steps=1", f"model.packing={packing}"]
        cfg = load_config(overrides, path=ROOT / "params.yaml")
        metrics = train_variant(cfg, "v1", RECORDS[:10], RECORDS[10:], tmp_path / str(packing))
        runs[packing] = (metrics, pd.read_csv(tmp_path / str(packing) / "history.csv"))
    (plain, plain_hist), (packed, packed_hist) = runs[False], runs[True]
    assert packed["train_tokens"] == plain["train_tokens"] > 0
    assert packed_hist["loss"].iloc[0] == pytest.approx(plain_hist["loss"].iloc[0], abs=1e-5)
    first_eval = [h.dropna(subset=["eval_loss"])["eval_loss"].iloc[0] for h in (plain_hist, packed_hist)]
    assert first_eval[1] == pytest.approx(first_eval[0], abs=1e-5)
