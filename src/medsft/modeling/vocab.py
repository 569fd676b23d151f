"""A trimmed vocabulary: a small model that speaks the real tokenizer's ids.

With Qwen3's 151,936-row vocabulary and a hidden size of 64, the output layer is nearly all
the cost of a ``tiny`` step. So the ``pretrain`` stage (``model.pretrain.trim_vocabulary``)
builds the seeded architecture with one row per token id that occurs in the project's data,
plus Qwen3's added tokens, plus one reserved row (compact id 0) for every other id, and
writes the mapping beside the base as ``token_map.json``.

The mapping lives here only. :func:`apply_token_map` swaps the base's embedding and output
layer for subclasses that take and give real ids: :class:`TrimmedEmbedding` maps input ids
(an id outside the vocabulary becomes the reserved row, and is counted), and
:class:`TrimmedHead` returns logits over the real vocabulary, ``-inf`` for every id it has no
row for, so ``generate``, repetition penalties and lm-eval see Qwen3's ids. The tokenizer,
the data, the label masks and every statistic keep the real ids. Losses are computed on the
compact rows (:func:`output_rows`, used by :mod:`medsft.modeling.loss`), which equals the
cross-entropy of the real-vocabulary logits for every target in the vocabulary.

On disk the base is a plain ``Qwen3ForCausalLM`` of ``len(kept) + 1`` rows (its
``config.json`` says so) and ``token_map.json`` lists the real id of each row, so
transformers and peft load it alone; a tool that feeds it ids maps them through that list.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from medsft.core.errors import UserError
from medsft.core.io import atomic_write_json
from medsft.data.formatting import IGNORE_INDEX

TOKEN_MAP_FILE = "token_map.json"
RESERVED = 0  # the compact id of every real id outside the vocabulary


class TokenMapError(UserError, ValueError):
    """A ``token_map.json`` that does not describe the model beside it."""


@dataclass(frozen=True)
class TokenMap:
    """Compact row ``i + 1`` of the model is real id ``kept[i]``; row 0 is reserved."""

    kept: tuple[int, ...]
    real_vocab_size: int

    @classmethod
    def from_ids(cls, id_lists: Iterable[Iterable[int]], always: Iterable[int], real_vocab_size: int) -> TokenMap:
        """The map of every id in ``id_lists`` and ``always`` (the tokenizer's added tokens)."""
        seen = set(always)
        for ids in id_lists:
            seen.update(ids)
        bad = [i for i in seen if not 0 <= i < real_vocab_size]
        if bad:
            raise TokenMapError(f"token ids {sorted(bad)[:5]} are outside the vocabulary of {real_vocab_size}")
        return cls(tuple(sorted(seen)), real_vocab_size)

    @property
    def size(self) -> int:
        """Rows of the trimmed model: the kept ids and the reserved row."""
        return len(self.kept) + 1

    def compact_of(self) -> torch.Tensor:
        """Real id -> compact id (``RESERVED`` for an id outside the vocabulary)."""
        table = torch.full((self.real_vocab_size,), RESERVED, dtype=torch.long)
        table[torch.tensor(self.kept, dtype=torch.long)] = torch.arange(1, self.size)
        return table

    @functools.cached_property
    def _rows(self) -> dict[int, int]:
        return {t: i + 1 for i, t in enumerate(self.kept)}

    def row(self, real_id: int) -> int:
        """The compact row of ``real_id`` (``RESERVED`` when it has none)."""
        return self._rows.get(real_id, RESERVED)

    def save(self, folder: str | Path) -> None:
        """Write ``token_map.json`` into ``folder``."""
        atomic_write_json(
            Path(folder) / TOKEN_MAP_FILE,
            {
                "description": "row i+1 of this model is token id kept[i] of the tokenizer; row 0 stands for "
                "every other id",
                "real_vocab_size": self.real_vocab_size,
                "reserved_row": RESERVED,
                "kept": list(self.kept),
            },
        )

    @classmethod
    def load(cls, folder: str | Path) -> TokenMap | None:
        """The map saved in ``folder``, or None when the model there is not trimmed."""
        path = Path(folder) / TOKEN_MAP_FILE
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise TokenMapError(f"{path}: not readable as JSON ({err}); rerun the pretrain stage") from None
        kept, size = (data.get("kept"), data.get("real_vocab_size")) if isinstance(data, dict) else (None, None)
        if not isinstance(size, int) or size < 1:
            raise TokenMapError(f"{path}: `real_vocab_size` must be a positive integer")
        if (
            not isinstance(kept, list)
            or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < size for i in kept)
            or kept != sorted(set(kept))
        ):
            raise TokenMapError(f"{path}: `kept` must be a sorted list of distinct token ids below {size}")
        return cls(tuple(kept), size)


class TrimmedEmbedding(nn.Embedding):
    """An embedding of compact rows that takes real ids; counts the ids it had no row for."""

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        compact = self.compact_of[input_ids]
        self.unknown_inputs += int((compact == RESERVED).sum())
        return super().forward(compact)


class TrimmedHead(nn.Linear):
    """An output layer of compact rows that gives logits over the real ids (``-inf`` where
    it has no row; the reserved row is never predicted)."""

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        compact = super().forward(hidden)
        logits = compact.new_full((*compact.shape[:-1], self.real_vocab_size), float("-inf"))
        logits[..., self.real_ids[1:]] = compact[..., 1:]
        return logits


def _trim(module: nn.Module, kind: type, tmap: TokenMap, table: torch.Tensor) -> None:
    """Turn ``module`` (an ``nn.Embedding`` or ``nn.Linear`` of ``tmap.size`` rows) into its
    trimmed subclass in place: the same parameters, so tied weights stay tied."""
    rows = module.weight.shape[0]
    if rows != tmap.size:
        raise TokenMapError(f"the model has {rows} vocabulary rows but its {TOKEN_MAP_FILE} maps {tmap.size}")
    module.__class__ = kind
    device = module.weight.device
    module.register_buffer("compact_of", table.to(device), persistent=False)
    module.register_buffer("real_ids", torch.tensor((RESERVED, *tmap.kept), device=device), persistent=False)
    module.real_vocab_size = tmap.real_vocab_size
    module.unknown_inputs = 0


def clear_special_ids(model: nn.Module) -> None:
    """Unset the special token ids of a trimmed model's config and generation config before
    it is saved: they are real ids (the Trainer copies them from the tokenizer), with no row
    in the saved model. Whoever feeds the saved model maps ids through ``token_map.json``."""
    for config in (model.config, model.generation_config):
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            setattr(config, key, None)


def _no_transformers_loss(*_args, **_kwargs):
    raise RuntimeError(
        "a trimmed-vocabulary model computes its loss on its compact rows (medsft.modeling.loss); "
        "set model.loss_chunk_size"
    )


def apply_token_map(model: nn.Module, tmap: TokenMap) -> nn.Module:
    """Make ``model`` (a causal LM with ``tmap.size`` vocabulary rows) take and give real ids."""
    table = tmap.compact_of()
    _trim(model.get_input_embeddings(), TrimmedEmbedding, tmap, table)
    head = model.get_output_embeddings()
    if type(head) is not nn.Linear:
        raise TokenMapError(f"a trimmed vocabulary needs a plain linear output layer, not {type(head).__name__}")
    _trim(head, TrimmedHead, tmap, table)
    # transformers' loss reshapes the logits by config.vocab_size (the compact rows): refuse it.
    model.loss_function = _no_transformers_loss
    model.token_map = tmap
    return model


def output_rows(head: nn.Module, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows a loss scores and ``labels`` (real ids, -100 ignored) as indices into them.

    For a :class:`TrimmedHead`: its rows but the reserved one (which is an input row only, as
    in its real-vocabulary logits), and each label as its row; a label with no row is an id
    the model cannot give, and is ignored like -100. Any other layer: its weight, the labels."""
    if not isinstance(head, TrimmedHead):
        return head.weight, labels
    rows = head.compact_of[labels.clamp(min=0)] - 1
    return head.weight[1:], torch.where((labels < 0) | (rows < 0), IGNORE_INDEX, rows)


def unknown_inputs(model: nn.Module) -> int:
    """Input ids the model's trimmed embeddings mapped to the reserved row so far (0 untrimmed)."""
    return sum(m.unknown_inputs for m in model.modules() if isinstance(m, TrimmedEmbedding))
