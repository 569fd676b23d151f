"""A base model that predicts text, for profiles without a pretrained checkpoint (``tiny``).

A LoRA adapter on a random model whose output layer is frozen and random cannot learn: the
loss stays at ln |V|. So the ``pretrain`` stage trains the seeded architecture in full, as a
causal language model over the formatted training split (prompt and target), and saves it as
a local checkpoint. The variants then start from a model of the data's token statistics.
Only the training split is read, so the validation loss stays a held-out measure.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import DataCollatorForSeq2Seq, set_seed

from medsft.core.config import FormatConfig, ModelProfile
from medsft.core.history import write_history_csv
from medsft.core.io import atomic_dir, atomic_write_json
from medsft.core.outputs import mark
from medsft.core.runtime import reproducibility_settings
from medsft.core.spec import BASE_FILE, seeded_model_id
from medsft.data.formatting import IGNORE_INDEX, encode_records
from medsft.data.tokenizer import load_tokenizer
from medsft.modeling.loading import build_tiny_qwen3
from medsft.modeling.vocab import TokenMap, apply_token_map, clear_special_ids
from medsft.train.arguments import training_arguments
from medsft.train.callbacks import DivergenceCallback
from medsft.train.loop import PipelineTrainer

log = logging.getLogger(__name__)


def build_pretrain_trainer(
    model: ModelProfile,
    fmt: FormatConfig,
    records: list[dict[str, Any]],
    scratch: str | Path,
    divergence: dict[str, Any] | None = None,
    tmap: TokenMap | None = None,
) -> PipelineTrainer:
    """The Trainer of the profile's seeded architecture trained in full on ``records`` (a
    causal LM of the whole formatted text), its scratch files in ``scratch``; with ``tmap``,
    the architecture has that trimmed vocabulary (:mod:`medsft.modeling.vocab`)."""
    args = training_arguments(
        {
            **model.pretrain.training,
            "output_dir": str(scratch),
            "save_strategy": "no",
            "eval_strategy": "no",
            "logging_nan_inf_filter": False,
            "include_num_input_tokens_seen": "non_padding",
            # as train's (medsft.train.trainer.trainer_fields): pinned memory serves a GPU only,
            # and without one torch warns about it at every run
            "dataloader_pin_memory": torch.cuda.is_available(),
        }
    )
    set_seed(args.seed)
    tokenizer = load_tokenizer(None)
    enc = encode_records(records, tokenizer, fmt.system_prompt, fmt.target_style, model.max_length)
    config = dict(model.config)
    if tmap is not None:
        config["vocab_size"] = tmap.size
    base = build_tiny_qwen3(config, model.init_seed)
    if tmap is not None:
        apply_token_map(base, tmap)
    # A language model of the whole formatted text: every token is a label.
    dataset = Dataset.from_dict({"input_ids": enc.input_ids, "labels": enc.input_ids})
    return PipelineTrainer(
        model=base,
        args=args,
        train_dataset=dataset,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX),
        processing_class=tokenizer,
        callbacks=[DivergenceCallback.from_settings(divergence)],
        loss_chunk_size=model.loss_chunk_size,
    )


def vocabulary_of(model: ModelProfile, fmt: FormatConfig, splits: list[list[dict[str, Any]]]) -> TokenMap | None:
    """The trimmed vocabulary of ``model.pretrain.trim_vocabulary``: every token id of the
    formatted records of ``splits`` (whole, before truncation) and the tokenizer's added
    tokens; None when the profile keeps ``config.vocab_size`` rows. The validation split's
    ids count too: a held-out token gets an untrained row, as in a real vocabulary, instead of
    the reserved one."""
    if not model.pretrain.trim_vocabulary:
        return None
    tokenizer = load_tokenizer(None)
    longest = 1 << 30
    ids = [
        ids
        for records in splits
        for ids in encode_records(records, tokenizer, fmt.system_prompt, fmt.target_style, longest).input_ids
    ]
    added = tokenizer.convert_tokens_to_ids(list(tokenizer.get_added_vocab()))
    return TokenMap.from_ids(ids, added, int(model.config["vocab_size"]))


def pretrain_base(
    model: ModelProfile,
    fmt: FormatConfig,
    records: list[dict[str, Any]],
    out_dir: str | Path,
    divergence: dict[str, Any] | None = None,
    vocabulary_records: list[dict[str, Any]] = (),
) -> dict[str, Any]:
    """Train the profile's seeded architecture in full on ``records`` and write it to
    ``out_dir``: safetensors weights, config, tokenizer, ``history.csv``, ``base.json``
    (its identity: architecture, seed and a hash of the weights; its final loss; and the
    settings that decide its bits) and, with ``model.pretrain.trim_vocabulary``, the
    ``token_map.json`` of the ids of ``records`` and ``vocabulary_records``."""
    reproducibility = reproducibility_settings()
    tmap = vocabulary_of(model, fmt, [records, list(vocabulary_records)])
    with tempfile.TemporaryDirectory(prefix="pretrain-") as scratch:
        trainer = build_pretrain_trainer(model, fmt, records, scratch, divergence, tmap)
        trainer.train()
    base, tokenizer = trainer.model, trainer.processing_class
    history = trainer.state.log_history
    losses = [e["loss"] for e in history if "loss" in e]
    out = Path(out_dir)
    if tmap is not None:
        clear_special_ids(base)
    with atomic_dir(out) as tmp:
        base.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if tmap is not None:
            tmap.save(tmp)
        digest = hashlib.sha256((tmp / "model.safetensors").read_bytes()).hexdigest()
        identity = f"{seeded_model_id(model.config, model.init_seed)}-base-{digest[:12]}"
        write_history_csv(tmp / "history.csv", history)
        info = {
            "base_model_id": identity,
            "steps": trainer.state.global_step,
            "train_tokens": int(trainer.state.num_input_tokens_seen),
            "first_loss": losses[0] if losses else None,
            "final_loss": losses[-1] if losses else None,
            "records": len(records),
            "trimmed_vocabulary_rows": tmap.size if tmap is not None else None,
            "reproducibility": reproducibility,
        }
        atomic_write_json(tmp / BASE_FILE, info)
        mark(tmp, "pretrain")
    log.info(
        "base model: %s, loss %s -> %s over %d steps", identity, info["first_loss"], info["final_loss"], info["steps"]
    )
    return info
