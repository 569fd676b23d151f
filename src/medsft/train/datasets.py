"""Training and evaluation datasets of a run: records encoded as (input_ids, labels)."""

from __future__ import annotations

from typing import Any

import torch
from datasets import Dataset

from medsft.core.spec import RunSpec
from medsft.data.augmentation import Lexicon, augment_for_epoch
from medsft.data.formatting import encode_records


def encode_dataset(records: list[dict[str, Any]], tokenizer, spec: RunSpec) -> Dataset:
    """A ``datasets.Dataset`` of (input_ids, labels) for the records, in the spec's format."""
    fmt = spec.format
    enc = encode_records(records, tokenizer, fmt.system_prompt, fmt.target_style, spec.max_length)
    return Dataset.from_dict({"input_ids": enc.input_ids, "labels": enc.labels})


class EpochAugmentedDataset(torch.utils.data.Dataset):
    """Training examples with the spec's term masking of the current epoch applied.

    :class:`medsft.train.callbacks.EpochCallback` moves ``epoch`` forward. Train owns term
    masking: it applies the masks here and reports their counts (``masking.json``).
    """

    def __init__(self, records: list[dict[str, Any]], tokenizer, spec: RunSpec, lexicon: Lexicon) -> None:
        self.records, self.tokenizer, self.spec, self.lexicon = records, tokenizer, spec, lexicon
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        augment = self.spec.augment
        record, _ = augment_for_epoch(self.records[index], augment.term_masking, self.lexicon, augment.seed, self.epoch)
        fmt = self.spec.format
        enc = encode_records([record], self.tokenizer, fmt.system_prompt, fmt.target_style, self.spec.max_length)
        return enc.rows()[0]
