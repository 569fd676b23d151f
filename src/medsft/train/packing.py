"""Padding-free training batches: a batch's examples concatenated into one row.

``transformers.DataCollatorWithFlattening`` concatenates the examples of a batch, restarts
``position_ids`` at every example and sets the first label of each example to -100 (so no
example predicts the next one's first token). It passes no ``attention_mask``: from
transformers 4.54 on, sdpa, eager and flex attention detect the example boundaries from the
``position_ids`` alone and build a block-diagonal causal mask, but only without a KV cache.
An ``attention_mask`` of ones, or a cache (Qwen3's config has ``use_cache: true``, and the
model then builds one even in training), switches that detection off and lets examples
attend to each other.

Only training batches are flattened. Evaluation keeps padded batches, so ``eval_loss`` means
the same with packing on or off (the Trainer averages per-batch losses weighted by batch
rows, and a flattened batch is one row).
"""

from __future__ import annotations

from typing import Any

from transformers import DataCollatorWithFlattening

from medsft.core.config import ConfigError
from medsft.data.formatting import IGNORE_INDEX

# Attention implementations that read packed boundaries from position_ids (flash attention
# through its varlen kernels).
PACKING_ATTENTION = ("sdpa", "eager", "flex_attention", "flash_attention_2", "flash_attention_3")


def prepare_for_packing(model: Any) -> None:
    """Make ``model`` keep packed examples apart: no KV cache in its forward passes (training
    needs none). Raise a :class:`ConfigError` when its attention cannot separate them."""
    impl = getattr(model.config, "_attn_implementation", None)
    if impl not in PACKING_ATTENTION:
        raise ConfigError(
            f"model.packing: attention implementation {impl!r} does not separate packed examples "
            f"(one of {', '.join(PACKING_ATTENTION)} does); set model.packing=false"
        )
    model.config.use_cache = False


def flattening_collator() -> DataCollatorWithFlattening:
    """The training collator under ``model.packing``: one row a batch, no attention mask."""
    return DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)
