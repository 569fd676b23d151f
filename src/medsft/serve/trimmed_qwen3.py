"""A trimmed-vocabulary Qwen3 that speaks the tokenizer's ids, for tools without medsft.

The export of a trimmed base (the ``tiny`` profile) copies this file beside the model and
names it in ``config.json``'s ``auto_map``, with the map in ``config.token_map``: row ``i + 1``
of the saved model is token id ``kept[i]``, row 0 stands for every other id. Loaded with
``trust_remote_code=True`` (transformers, peft, ``lm_eval --model hf --model_args
pretrained=EXPORT,trust_remote_code=True``), the model takes the tokenizer's ids and returns
logits over the tokenizer's whole vocabulary, ``-inf`` where it has no row, as evaluate's
model does (``medsft.modeling.vocab``); so lm-eval's log-likelihoods and ``generate`` need no
id mapping. Loaded without ``trust_remote_code``, the folder is the plain ``Qwen3ForCausalLM``
of its rows, fed through ``token_map.json`` as before.

This file must import nothing but torch and transformers: it runs where medsft is absent.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Qwen3ForCausalLM

SPECIAL_IDS = ("bos_token_id", "eos_token_id", "pad_token_id")


class TrimmedVocabQwen3ForCausalLM(Qwen3ForCausalLM):
    """``Qwen3ForCausalLM`` of ``config.vocab_size`` rows that takes and gives the ids of
    ``config.token_map`` (``kept``, ``real_vocab_size``). It computes no loss: a loss over the
    real vocabulary is the cross-entropy of these logits."""

    def _token_tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Token id -> row (0 for an id with none) and row -> token id (rows 1..), on ``device``;
        built on first use rather than as buffers, so loading and ``.to()`` need no care."""
        cached = getattr(self, "_tables", None)
        if cached is None or cached[0].device != device:
            token_map = self.config.token_map
            kept = torch.tensor(token_map["kept"], dtype=torch.long, device=device)
            row_of = torch.zeros(token_map["real_vocab_size"], dtype=torch.long, device=device)
            row_of[kept] = torch.arange(1, kept.numel() + 1, device=device)
            cached = self._tables = (row_of, kept)
        return cached

    def forward(self, input_ids: torch.Tensor | None = None, labels: Any = None, **kwargs: Any) -> Any:
        """Qwen3's forward on the rows of ``input_ids``; logits over the tokenizer's ids."""
        if labels is not None:
            raise ValueError("a trimmed-vocabulary model computes no loss: take the cross-entropy of its logits")
        row_of, kept = self._token_tables(self.device)
        out = super().forward(input_ids=None if input_ids is None else row_of[input_ids], **kwargs)
        rows = out.logits
        logits = rows.new_full((*rows.shape[:-1], row_of.numel()), float("-inf"))
        logits[..., kept] = rows[..., 1:]  # row 0 (any other id) is never predicted
        out.logits = logits
        return out

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
        """Load as transformers does, then give ``generation_config.json``'s special ids (saved
        as rows, for the plain model) as the tokenizer's ids this class speaks."""
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # output_loading_info=True
        kept = model.config.token_map["kept"]
        config = model.generation_config
        for key in SPECIAL_IDS:
            value = getattr(config, key, None)
            if isinstance(value, int):
                setattr(config, key, kept[value - 1] if value > 0 else None)
            elif isinstance(value, list):
                setattr(config, key, [kept[v - 1] for v in value if v > 0])
        return loaded
