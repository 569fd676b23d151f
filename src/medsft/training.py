"""Supervised fine-tuning of one variant with ``transformers.Trainer`` and a LoRA adapter."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import resource
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from medsft.config import training_arguments
from medsft.history import write_history_csv, write_trainer_state
from medsft.io import atomic_dir, atomic_write_json

log = logging.getLogger(__name__)


def encode_dataset(records: list[dict[str, Any]], tokenizer, cfg: DictConfig):
    """A ``datasets.Dataset`` of (input_ids, labels) for the records."""
    from datasets import Dataset

    from medsft.formatting import encode_records

    enc = encode_records(records, tokenizer, cfg.format.system_prompt, cfg.format.target_style, cfg.model.max_length)
    return Dataset.from_dict({"input_ids": enc.input_ids, "labels": enc.labels})


class EpochAugmentedDataset(torch.utils.data.Dataset):
    """Training examples that apply the variant's term masking of the current epoch.

    :class:`EpochCallback` moves ``epoch`` forward; with the same seeds the masks equal
    those the augment stage counted.
    """

    def __init__(self, records: list[dict[str, Any]], tokenizer, cfg: DictConfig, variant: str) -> None:
        from medsft.augmentation import load_lexicon

        self.records, self.tokenizer, self.cfg = records, tokenizer, cfg
        self.settings = OmegaConf.to_container(cfg.variants[variant].augment, resolve=True)
        self.lexicon = load_lexicon(cfg.augment.lexicon)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        from medsft.augmentation import augment_for_epoch
        from medsft.formatting import encode_records

        record, _ = augment_for_epoch(
            self.records[index], self.settings, self.lexicon, self.cfg.augment.seed, self.epoch
        )
        fmt = self.cfg.format
        enc = encode_records([record], self.tokenizer, fmt.system_prompt, fmt.target_style, self.cfg.model.max_length)
        return enc.rows()[0]


def last_checkpoint(checkpoint_dir: Path) -> str | None:
    """The newest ``checkpoint-N`` folder that holds a complete trainer state, if any."""
    if not checkpoint_dir.is_dir():
        return None
    done = [p for p in checkpoint_dir.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    return str(max(done, key=lambda p: int(p.name.split("-")[1]))) if done else None


def fingerprint(*parts: Any) -> str:
    """A short hash of JSON-serialisable parts (config, data) that identifies a run."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def reset_stale_checkpoints(checkpoint_dir: Path, run_id: str) -> None:
    """Delete checkpoints left by a run of another config or data, so only ours resume."""
    stamp = checkpoint_dir / "run_fingerprint.txt"
    if checkpoint_dir.exists() and (not stamp.exists() or stamp.read_text().strip() != run_id):
        if any(checkpoint_dir.glob("checkpoint-*")):
            log.info("%s: checkpoints are from another config or data; starting afresh", checkpoint_dir)
        shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(run_id + "\n")


def clear_checkpoints(checkpoint_dir: Path) -> None:
    """Remove the ``checkpoint-N`` folders, keeping the folder itself (a declared output)."""
    for path in checkpoint_dir.glob("checkpoint-*"):
        shutil.rmtree(path)


def hardware_name() -> str:
    """The GPU's name, or the CPU model from /proc/cpuinfo (the machine type elsewhere)."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def peak_memory_bytes() -> dict[str, int]:
    """Peak CUDA memory allocated, or the process's peak resident set on CPU."""
    if torch.cuda.is_available():
        return {"peak_cuda_allocated_bytes": int(torch.cuda.max_memory_allocated())}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"peak_cpu_rss_bytes": int(rss) * 1024}


def train_variant(
    cfg: DictConfig,
    variant: str,
    train_records: list[dict[str, Any]],
    val_records: list[dict[str, Any]],
    out_dir: str | Path,
) -> dict[str, Any]:
    """Train ``variant`` and write its outputs under ``out_dir``.

    Writes ``adapter/`` (safetensors), ``history.csv`` and ``trainer_state.json`` (rewritten
    at every log), ``metrics.json``, and checkpoints under ``checkpoints/`` from which a
    rerun resumes. Returns the metrics.
    """
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments, set_seed

    from medsft.callbacks import (
        EpochCallback,
        GradGroupNormCallback,
        HistoryCallback,
        NonFiniteLossCallback,
        SwanLabCallback,
    )
    from medsft.modeling import add_lora, load_model_and_tokenizer, parameter_counts

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fields = training_arguments(cfg, variant)
    fields.update(
        output_dir=str(out / "checkpoints"),
        eval_strategy="steps",
        save_strategy="steps",
        logging_strategy="steps",
        report_to=[],
        include_num_input_tokens_seen="non_padding",
        # Log a NaN/inf loss as it is (the Trainer would average it away) so the run stops on it.
        logging_nan_inf_filter=False,
        remove_unused_columns=False,
    )
    fields.setdefault("save_total_limit", 2)
    fields.setdefault("disable_tqdm", False)
    fields.setdefault("dataloader_pin_memory", torch.cuda.is_available())
    args = TrainingArguments(**fields)

    # LoRA's A matrices are drawn from the global RNG: seed it first, or every run differs.
    set_seed(args.seed)
    model, tokenizer = load_model_and_tokenizer(cfg.model)
    lora = OmegaConf.to_container(cfg.variants[variant].lora, resolve=True)
    model = add_lora(model, lora, args.gradient_checkpointing)
    counts = parameter_counts(model)
    log.info(
        "%s: %s trainable of %s parameters", variant, f"{counts['trainable_params']:,}", f"{counts['total_params']:,}"
    )

    masking = cfg.variants[variant].augment.term_masking.probability > 0
    train_ds = (
        EpochAugmentedDataset(train_records, tokenizer, cfg, variant)
        if masking
        else encode_dataset(train_records, tokenizer, cfg)
    )
    val_ds = encode_dataset(val_records, tokenizer, cfg)
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)

    callbacks = [
        GradGroupNormCallback(),
        HistoryCallback(out / "history.csv", out / "trainer_state.json"),
        NonFiniteLossCallback(),
    ]
    if masking:
        callbacks.append(EpochCallback(train_ds))
    if cfg.tracking.mode != "disabled":
        full_config = OmegaConf.to_container(cfg, resolve=True)
        full_config["variant"] = variant
        callbacks.append(
            SwanLabCallback(
                project=cfg.tracking.project,
                name=variant,
                mode=cfg.tracking.mode,
                logdir=str(Path(cfg.tracking.logdir) / variant),
                config=full_config,
            )
        )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    augment = OmegaConf.to_container(cfg.variants[variant].augment)
    run_id = fingerprint(
        fields,
        lora,
        augment,
        OmegaConf.to_container(cfg.model),
        OmegaConf.to_container(cfg.format),
        cfg.augment.seed,
        train_records,
        val_records,
    )
    with args.main_process_first(desc="checkpoints"):
        if args.process_index == 0:
            # Outputs of an earlier run must not outlive a failure of this one.
            shutil.rmtree(out / "adapter", ignore_errors=True)
            (out / "metrics.json").unlink(missing_ok=True)
        reset_stale_checkpoints(out / "checkpoints", run_id)
    resume = last_checkpoint(out / "checkpoints")
    start_tokens = 0
    if resume:
        log.info("%s: resuming from %s", variant, resume)
        state = json.loads((Path(resume) / "trainer_state.json").read_text(encoding="utf-8"))
        start_tokens = int(state.get("num_input_tokens_seen", 0))
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    wall = time.perf_counter() - start

    history = trainer.state.log_history
    train_losses = [e["loss"] for e in history if "loss" in e]
    eval_losses = [e["eval_loss"] for e in history if "eval_loss" in e]
    if not any("eval_loss" in e and e["step"] == trainer.state.global_step for e in history):
        final_eval = trainer.evaluate()  # the last step fell between two evaluations
        eval_losses.append(final_eval["eval_loss"])
    if trainer.is_world_process_zero():
        with atomic_dir(out / "adapter") as tmp:
            trainer.model.save_pretrained(tmp, safe_serialization=True)
        # A final evaluation may have been appended: keep the files in step with the state.
        write_history_csv(out / "history.csv", trainer.state.log_history)
        write_trainer_state(out / "trainer_state.json", trainer.state)
    tokens = trainer.state.num_input_tokens_seen
    metrics = {
        "final_train_loss": train_losses[-1] if train_losses else None,
        "final_eval_loss": eval_losses[-1],
        "train_loss_mean": result.training_loss,
        "steps": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "wall_seconds": wall,
        "train_tokens": int(tokens),
        # this session's tokens over this session's time (a resumed run did part of it before)
        "tokens_per_second": (tokens - start_tokens) / wall if wall > 0 else None,
        **counts,
        **peak_memory_bytes(),
        "device": str(args.device),
        "hardware": hardware_name(),
        "cpu_count": os.cpu_count(),
        "resumed_from": resume,
    }
    if trainer.is_world_process_zero():
        atomic_write_json(out / "metrics.json", metrics)
        # Checkpoints only serve to resume an interrupted run: a finished run drops them, so
        # a rerun (new code, same config) trains afresh instead of resuming at the end.
        clear_checkpoints(out / "checkpoints")
    log.info("%s: %s", variant, json.dumps({k: metrics[k] for k in ("final_train_loss", "final_eval_loss", "steps")}))
    return metrics
