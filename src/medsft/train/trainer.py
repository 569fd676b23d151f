"""Supervised fine-tuning of one run with ``transformers.Trainer`` and a LoRA adapter.

Everything the run uses comes from its :class:`~medsft.core.spec.RunSpec`; the spec is
written beside the outputs as ``run_config.yaml``, with the TrainingArguments fields exactly
as passed to the Trainer.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import resource
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import DataCollatorForSeq2Seq, set_seed

from medsft.core.artifacts import run_artifacts
from medsft.core.history import write_history_csv, write_trainer_state
from medsft.core.io import atomic_dir, atomic_write_json
from medsft.core.paths import TIMING_FILE
from medsft.core.runtime import reproducibility_settings
from medsft.core.spec import SPEC_FILE, RunSpec, fingerprint, resolve_spec
from medsft.data.augmentation import Lexicon, load_lexicon, masking_stats
from medsft.data.formatting import IGNORE_INDEX
from medsft.modeling.card import model_card, write_model_card
from medsft.modeling.loading import add_lora, load_model_and_tokenizer, parameter_counts
from medsft.modeling.loss import output_weight
from medsft.train.arguments import training_arguments
from medsft.train.callbacks import (
    DivergenceCallback,
    EpochCallback,
    GradGroupNormCallback,
    HistoryCallback,
)
from medsft.train.checkpoints import (
    CheckpointCommitCallback,
    clear_checkpoints,
    last_checkpoint,
    reset_stale_checkpoints,
)
from medsft.train.datasets import EpochAugmentedDataset, encode_dataset
from medsft.train.devices import apply_device_fallbacks
from medsft.train.loop import PipelineTrainer
from medsft.train.packing import flattening_collator, prepare_for_packing
from medsft.train.tracking import log_last, swanlab_run

log = logging.getLogger(__name__)


def trainer_fields(training: dict[str, Any], out: Path, packing: bool = False) -> dict[str, Any]:
    """The TrainingArguments fields of a run as its spec records them: the variant's and the
    profile's, plus what the pipeline fixes. Where its logs go (``report_to``, ``run_name``)
    is no part of it: tracking changes no trained byte (see :func:`medsft.train.arguments.training_arguments`)."""
    fields = dict(training)
    fields.update(
        output_dir=str(out / "checkpoints"),
        eval_strategy="steps",
        save_strategy="steps",
        logging_strategy="steps",
        # A packed batch has no padding (and no attention mask to count by): every token is real.
        include_num_input_tokens_seen="all" if packing else "non_padding",
        # Log a NaN/inf loss as it is (the Trainer would average it away) so the run stops on it.
        logging_nan_inf_filter=False,
        remove_unused_columns=False,
        # Evaluation computes the loss only, as training does (medsft.train.loop.PipelineTrainer).
        prediction_loss_only=True,
    )
    fields.setdefault("save_total_limit", 2)
    fields.setdefault("disable_tqdm", False)
    fields.setdefault("dataloader_pin_memory", torch.cuda.is_available())
    return dict(sorted(fields.items()))


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


def logged_loss_mean(log_history: list[dict[str, Any]]) -> float | None:
    """Mean training loss over the whole run: each logged window's mean ``loss`` weighted by
    the optimizer steps it covers. The same for a resumed run as for an uninterrupted one
    (the Trainer's own ``train_loss`` covers only the steps after a resume)."""
    total, steps, previous = 0.0, 0, 0
    for entry in log_history:
        if "loss" in entry:
            width = int(entry["step"]) - previous
            total += float(entry["loss"]) * width
            steps += width
            previous = int(entry["step"])
    return total / steps if steps else None


def normalise_adapter_config(adapter_dir: Path, base_model: str) -> None:
    """Rewrite ``adapter_config.json`` with sorted keys and lists (peft writes
    ``target_modules`` from a set, in an order that changes between processes) and with
    ``base_model`` (where the base loads from) as ``base_model_name_or_path``."""
    path = adapter_dir / "adapter_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    for key in ("target_modules", "modules_to_save"):
        if isinstance(config.get(key), list):
            config[key] = sorted(config[key])
    config["base_model_name_or_path"] = base_model
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def log_profile_overrides(spec: RunSpec) -> None:
    """One line naming every variant value the model profile replaced, with both values."""
    if spec.profile_overrides:
        changes = ", ".join(f"{k} {v['variant']!r}->{v['profile']!r}" for k, v in spec.profile_overrides.items())
        log.info(
            "%s: the model profile replaces %d variant field(s): %s (change them with model.training.<field>=…)",
            spec.variant,
            len(spec.profile_overrides),
            changes,
        )


@dataclass
class TrainSetup:
    """A run ready to train: its spec as used, and the Trainer built from it."""

    spec: RunSpec
    trainer: PipelineTrainer
    counts: dict[str, int]
    lexicon: Lexicon | None
    fingerprint: str


def run_spec(spec: RunSpec, out: Path) -> RunSpec:
    """``spec`` as the run uses it: the pipeline's TrainingArguments fields, the fallbacks of
    a machine without CUDA, and the settings that decide its bits (all logged)."""
    spec = replace(spec, training=trainer_fields(spec.training, out, spec.model.packing))
    spec = apply_device_fallbacks(spec)  # paged optimizers, bf16: CUDA-only asks, logged and recorded
    return replace(spec, reproducibility=reproducibility_settings())


def build_trainer(
    spec: RunSpec,
    train_records: list[dict[str, Any]],
    val_records: list[dict[str, Any]],
    out: Path,
    tracking: dict[str, Any] | None = None,
    divergence: dict[str, Any] | None = None,
) -> TrainSetup:
    """Load the base, add the LoRA adapter, encode the data and build the Trainer of ``spec``."""
    spec = run_spec(spec, out)
    args = training_arguments(spec.training, tracking, run_name=spec.variant)
    log_profile_overrides(spec)
    # LoRA's A matrices are drawn from the global RNG: seed it first, or every run differs.
    set_seed(args.seed)
    model, tokenizer = load_model_and_tokenizer(spec.model)
    model = add_lora(model, spec.lora, args.activation_checkpointing)
    counts = parameter_counts(model)
    log.info(
        "%s: %s trainable of %s parameters",
        spec.variant,
        f"{counts['trainable_params']:,}",
        f"{counts['total_params']:,}",
    )
    lexicon = load_lexicon(spec.augment.lexicon) if spec.term_masking else None
    train_ds = (
        EpochAugmentedDataset(train_records, tokenizer, spec, lexicon)
        if lexicon is not None
        else encode_dataset(train_records, tokenizer, spec)
    )
    padded = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)
    packing = spec.model.packing
    if packing:
        prepare_for_packing(model)
    loss_chunk_size = spec.model.loss_chunk_size
    if loss_chunk_size is not None:
        output_weight(model.get_base_model())  # an output layer it cannot fuse fails here, not mid-run
    callbacks = [
        GradGroupNormCallback(),
        HistoryCallback(out / "history.csv", out / "trainer_state.json"),
        DivergenceCallback.from_settings(divergence),
        CheckpointCommitCallback(),
    ]
    if lexicon is not None:
        callbacks.append(EpochCallback(train_ds))
    trainer = PipelineTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=encode_dataset(val_records, tokenizer, spec),
        data_collator=flattening_collator() if packing else padded,
        eval_data_collator=padded,
        loss_chunk_size=loss_chunk_size,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    log_last(trainer)
    # The run's identity, for resuming: its settings and data, not where its folder is.
    identity = {**spec.to_dict(), "training": {k: v for k, v in spec.training.items() if k != "output_dir"}}
    return TrainSetup(spec, trainer, counts, lexicon, fingerprint(identity, train_records, val_records))


def prepare_run_dir(setup: TrainSetup, out: Path) -> str | None:
    """Clear the outputs of an earlier run (they must not outlive a failure of this one) and
    the checkpoints of another config or data; return the checkpoint to resume from."""
    args = setup.trainer.args
    with args.main_process_first(desc="checkpoints"):
        if args.process_index == 0:
            shutil.rmtree(out / "adapter", ignore_errors=True)
            for name in ("metrics.json", TIMING_FILE, "masking.json", SPEC_FILE):
                (out / name).unlink(missing_ok=True)
        reset_stale_checkpoints(out / "checkpoints", setup.fingerprint)
    resume = last_checkpoint(out / "checkpoints")
    if resume:
        log.info("%s: resuming from %s", setup.spec.variant, resume)
    return resume


def run_training(setup: TrainSetup, resume: str | None, tracking: dict[str, Any] | None) -> dict[str, Any]:
    """Train (from ``resume`` if given) and evaluate at the last step; return the figures of
    this process: wall, training and evaluation seconds, and the tokens it trained on."""
    trainer, spec = setup.trainer, setup.spec
    start_tokens, start_step = 0, 0
    if resume:
        state = json.loads((Path(resume) / "trainer_state.json").read_text(encoding="utf-8"))
        start_tokens = int(state.get("num_input_tokens_seen", 0))
        start_step = int(state.get("global_step", 0))
    start = time.perf_counter()
    with swanlab_run(tracking, spec.variant, spec.to_dict(), main_process=trainer.args.process_index == 0):
        trainer.train(resume_from_checkpoint=resume)
        history = trainer.state.log_history
        if not any("eval_loss" in e and e["step"] == trainer.state.global_step for e in history):
            trainer.evaluate()  # the last step fell between two evaluations
    wall = time.perf_counter() - start
    # Evaluation inside the loop is not training: its time is reported apart.
    eval_seconds = sum(e["eval_runtime"] for e in history if "eval_runtime" in e and e["step"] > start_step)
    train_seconds = max(wall - eval_seconds, 0.0)
    tokens = trainer.state.num_input_tokens_seen - start_tokens
    return {
        "wall_seconds": wall,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "tokens_per_second": tokens / train_seconds if train_seconds > 0 else None,
    }


def run_metrics(setup: TrainSetup) -> dict[str, Any]:
    """``metrics.json``: the run's results from the Trainer's state (the same for the same
    config, seed and data; DVC declares the file as metrics, so ``dvc metrics diff`` shows them)."""
    state = setup.trainer.state
    train_losses = [e["loss"] for e in state.log_history if "loss" in e]
    eval_losses = [e["eval_loss"] for e in state.log_history if "eval_loss" in e]
    return {
        "final_train_loss": train_losses[-1] if train_losses else None,
        "final_eval_loss": eval_losses[-1],
        "train_loss_mean": logged_loss_mean(state.log_history),
        "steps": state.global_step,
        "epochs": state.epoch,
        "train_tokens": int(state.num_input_tokens_seen),
        **setup.counts,
    }


def run_timing(setup: TrainSetup, timing: dict[str, Any], resume: str | None) -> dict[str, Any]:
    """``timing.json``: how this process ran, which changes from run to run and machine to
    machine (a plain output, not metrics, so ``dvc metrics diff`` shows only results): its
    wall, training and evaluation seconds and tokens/s (a resumed run did part of the work
    before), peak memory, device, hardware, CPU count and the checkpoint it resumed from."""
    return {
        **timing,
        **peak_memory_bytes(),
        "device": str(setup.trainer.args.device),
        "hardware": hardware_name(),
        "cpu_count": os.cpu_count(),
        "resumed_from": resume,
    }


def write_outputs(
    setup: TrainSetup, out: Path, train_records: list[dict[str, Any]], metrics: dict[str, Any], timing: dict[str, Any]
) -> None:
    """Write the adapter, history, state, masking counts, spec, metrics and timing (main process)."""
    trainer, spec = setup.trainer, setup.spec
    if not trainer.is_world_process_zero():
        return
    epochs_entered = max(1, math.ceil(trainer.state.epoch or 0))
    settings = spec.augment
    masking = {
        **asdict(settings.term_masking),
        "epochs": masking_stats(train_records, settings.term_masking, setup.lexicon, settings.seed, epochs_entered),
    }
    with atomic_dir(out / "adapter") as tmp:
        trainer.model.save_pretrained(tmp, safe_serialization=True)
        normalise_adapter_config(tmp, spec.base_model_source)
        write_model_card(tmp, model_card(spec))
        # What every consumer checks before it reads the adapter (medsft.core.artifacts).
        spec = replace(spec, artifacts=run_artifacts(tmp, spec.model))
    # A final evaluation may have been appended: keep the files in step with the state.
    write_history_csv(out / "history.csv", trainer.state.log_history)
    write_trainer_state(out / "trainer_state.json", trainer.state)
    atomic_write_json(out / "masking.json", masking)
    spec.write(out / SPEC_FILE)
    atomic_write_json(out / "metrics.json", metrics)
    atomic_write_json(out / TIMING_FILE, timing)
    # Checkpoints only serve to resume an interrupted run: a finished run drops them, so
    # a rerun (new code, same config) trains afresh instead of resuming at the end.
    clear_checkpoints(out / "checkpoints")


def train_run(
    spec: RunSpec,
    train_records: list[dict[str, Any]],
    val_records: list[dict[str, Any]],
    out_dir: str | Path,
    tracking: dict[str, Any] | None = None,
    divergence: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train the run ``spec`` describes and write its outputs under ``out_dir``.

    Writes ``adapter/`` (safetensors, with a model card), ``run_config.yaml`` (the spec as
    used), ``history.csv`` and ``trainer_state.json`` (rewritten at every log),
    ``masking.json`` (the term masks applied per epoch), ``metrics.json`` (results),
    ``timing.json`` (run-time figures), and checkpoints
    under ``checkpoints/`` from which a rerun resumes. ``tracking``: the SwanLab settings
    (``mode``, ``project``, ``logdir``), or ``None``. Returns the metrics and the timing in
    one dict.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    setup = build_trainer(spec, train_records, val_records, out, tracking, divergence)
    resume = prepare_run_dir(setup, out)
    timing = run_timing(setup, run_training(setup, resume, tracking), resume)
    metrics = run_metrics(setup)
    write_outputs(setup, out, train_records, metrics, timing)
    summary = {k: metrics[k] for k in ("final_train_loss", "final_eval_loss", "steps")}
    log.info("%s: %s", setup.spec.variant, json.dumps(summary))
    return {**metrics, **timing}


def train_variant(
    cfg: DictConfig,
    variant: str,
    train_records: list[dict[str, Any]],
    val_records: list[dict[str, Any]],
    out_dir: str | Path,
) -> dict[str, Any]:
    """Resolve ``variant``'s spec under ``cfg`` and train it (the train stage's work)."""
    return train_run(
        resolve_spec(cfg, variant),
        train_records,
        val_records,
        out_dir,
        tracking=OmegaConf.to_container(cfg.tracking, resolve=True),
        divergence=OmegaConf.to_container(cfg.divergence, resolve=True),
    )
