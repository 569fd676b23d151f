"""Training throughput: the seed's loop against this pipeline's grouped and packed batches.

    python benchmarks/train_throughput.py [RECORDS.jsonl] [--records 40] [--lengths 512 1024 2048]

Three ways to train the same LoRA (variant v1: r=64 on all seven projections) on the same
tiny Qwen3 (the seeded init, the real 152k-token vocabulary), batch size and records, one
epoch each, so all three see exactly the same examples and tokens:

- seed loop: what the seed's code did, written here: each example tokenized on its own
  (``Dataset.map``), random batches padded to their longest example, a plain ``Trainer``
  with no callbacks;
- grouped: the train stage (``train_variant``) with ``model.packing=false``: batches of
  similar length (``train_sampling_strategy=group_by_length``), the per-step extras
  (gradient norms by group, history.csv rewritten at every log);
- packed: the train stage with ``model.packing=true``: each batch's examples in one row, no
  padding.

Throughput is non-padding tokens per second of training: tokens the model reads that are not
padding, over the training loop's seconds without evaluation (``metrics.json``'s
``train_seconds``; the seed loop runs no evaluation). Then a profile splits one packed step
into data, forward, loss, backward, optimizer and callbacks (the extras), timed part by part
with the same model and collator, and a last table times the output layer and the loss
computed all at once against in chunks that never hold the full logits. Compare ratios within
one run: machines differ.
Default records: ../shared/reference/delicate_medical_r1_val241.jsonl (else the sample data).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.utils.checkpoint
from datasets import Dataset
from omegaconf import OmegaConf
from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

from medsft.core.config import load_config
from medsft.core.history import write_history_csv
from medsft.core.runtime import keep_large_allocations
from medsft.core.spec import resolve_spec
from medsft.data.formatting import encode_records
from medsft.data.records import read_records
from medsft.data.tokenizer import load_tokenizer
from medsft.modeling.loading import add_lora, load_base_model
from medsft.train.callbacks import GradGroupNormCallback
from medsft.train.packing import flattening_collator, prepare_for_packing
from medsft.train.trainer import train_variant

log = logging.getLogger("train_throughput")
REFERENCE = Path(__file__).resolve().parents[2] / "shared/reference/delicate_medical_r1_val241.jsonl"


def settings(max_length: int, batch_size: int, packing: bool) -> list[str]:
    """Overrides shared by every loop: the seeded init, one epoch, no tracking, no mid-run
    evaluation or checkpoint."""
    return [
        "tracking.mode=disabled",
        "model.pretrain.training=null",
        f"model.max_length={max_length}",
        f"model.packing={packing}",
        "model.training.max_steps=-1",
        "model.training.num_train_epochs=1",
        f"model.training.per_device_train_batch_size={batch_size}",
        "model.training.gradient_accumulation_steps=1",
        "model.training.eval_steps=100000",
        "model.training.save_steps=100000",
        "model.training.logging_steps=1",
    ]


def seed_loop(cfg, records: list[dict[str, Any]], out: Path) -> dict[str, float]:
    """The seed's loop: per-example tokenization, random padded batches, a plain Trainer."""
    spec = resolve_spec(cfg, "v1")
    tok = load_tokenizer(None)
    fmt = spec.format

    def encode_one(record: dict[str, Any]) -> dict[str, list[int]]:
        enc = encode_records([record], tok, fmt["system_prompt"], fmt["target_style"], spec.max_length)
        return enc.rows()[0]

    start = time.perf_counter()
    dataset = Dataset.from_list(records).map(encode_one, remove_columns=list(records[0]))
    tokenize_seconds = time.perf_counter() - start
    torch.manual_seed(spec.training["seed"])
    model = add_lora(load_base_model(spec.model), spec.lora, False)
    fields = {k: spec.training[k] for k in ("learning_rate", "lr_scheduler_type", "max_grad_norm", "optim", "seed")}
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=spec.training["per_device_train_batch_size"],
        num_train_epochs=1,
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
        **fields,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100),
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    tokens = int(trainer.state.num_input_tokens_seen)
    log.info("seed loop: %d examples tokenized one by one in %.2f s", len(records), tokenize_seconds)
    return {"tokens": tokens, "seconds": seconds, "tokens_per_second": tokens / seconds}


def stage_loop(cfg, records: list[dict[str, Any]], val: list[dict[str, Any]], out: Path) -> dict[str, float]:
    """The train stage's own function; its metrics.json figures."""
    m = train_variant(cfg, "v1", records, val, out)
    return {"tokens": m["train_tokens"], "seconds": m["train_seconds"], "tokens_per_second": m["tokens_per_second"]}


def profile_step(cfg, records: list[dict[str, Any]], steps: int) -> dict[str, float]:
    """Median seconds of each part of a packed training step, over ``steps`` batches."""
    spec = resolve_spec(cfg, "v1")
    tok = load_tokenizer(None)
    fmt = spec.format
    rows = encode_records(records, tok, fmt["system_prompt"], fmt["target_style"], spec.max_length).rows()
    torch.manual_seed(0)
    model = add_lora(load_base_model(spec.model), spec.lora, False)
    prepare_for_packing(model)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    collate = flattening_collator()
    grad_norms = GradGroupNormCallback()
    batch_size = spec.training["per_device_train_batch_size"]
    parts: dict[str, list[float]] = {k: [] for k in ("data", "forward", "loss", "backward", "optimizer", "callbacks")}
    history: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for step in range(steps + 1):  # the first step warms up and is not counted
            times = {}
            t = time.perf_counter()
            batch = collate(rows[(step * batch_size) % len(rows) :][:batch_size])
            times["data"] = time.perf_counter() - t
            t = time.perf_counter()
            logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
            times["forward"] = time.perf_counter() - t
            t = time.perf_counter()
            loss = model.loss_function(logits, batch["labels"], vocab_size=logits.shape[-1])
            times["loss"] = time.perf_counter() - t
            t = time.perf_counter()
            loss.backward()
            times["backward"] = time.perf_counter() - t
            t = time.perf_counter()
            grad_norms.on_pre_optimizer_step(None, None, None, model=model)
            history.append({"step": step, "loss": loss.item(), "grad_norm": grad_norms.last["_total"]})
            write_history_csv(Path(tmp) / "history.csv", history)
            times["callbacks"] = time.perf_counter() - t
            t = time.perf_counter()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            times["optimizer"] = time.perf_counter() - t
            if step:
                for k, v in times.items():
                    parts[k].append(v)
    return {k: statistics.median(v) for k, v in parts.items()}


def loss_chunking(tokens: int, hidden: int, vocab: int, chunk: int, repeats: int = 3) -> tuple[float, float, float]:
    """Median seconds of forward + backward of the output layer and the loss over ``tokens``
    positions: as transformers computes it (all logits at once) and in chunks of ``chunk``
    positions whose logits are recomputed in the backward pass instead of kept (never more
    than one chunk of logits alive). Returns (full, chunked, largest loss difference)."""
    torch.manual_seed(0)
    head = torch.nn.Linear(hidden, vocab, bias=False)
    states = torch.randn(tokens, hidden)
    targets = torch.randint(0, vocab, (tokens,))

    def piece(h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(head(h).float(), t, reduction="sum")

    def chunked(h: torch.Tensor) -> torch.Tensor:
        parts = [
            torch.utils.checkpoint.checkpoint(piece, h[i : i + chunk], targets[i : i + chunk], use_reentrant=False)
            for i in range(0, tokens, chunk)
        ]
        return torch.stack(parts).sum()

    def timed(loss_of) -> tuple[float, float]:
        seconds = []
        for _ in range(repeats + 1):
            h = states.clone().requires_grad_(True)
            start = time.perf_counter()
            loss = loss_of(h)
            loss.backward()
            seconds.append(time.perf_counter() - start)
        return statistics.median(seconds[1:]), loss.item()

    (full, full_loss), (parts, parts_loss) = timed(lambda h: piece(h, targets)), timed(chunked)
    return full, parts, abs(full_loss - parts_loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = REFERENCE if REFERENCE.exists() else Path("data/raw/medical_qa_sample.jsonl")
    parser.add_argument("records_file", nargs="?", default=str(default))
    parser.add_argument("--records", type=int, default=40, help="training records (one epoch over them)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=1, help="interleaved runs of each loop (medians shown)")
    parser.add_argument("--profile-steps", type=int, default=3)
    args = parser.parse_args()
    keep_large_allocations()
    records = read_records(args.records_file).accepted
    train, val = records[: args.records], records[-2:]
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    print(
        f"{len(train)} records from {args.records_file}, batch {args.batch_size}, one epoch each; "
        f"{torch.get_num_threads()} torch threads, {torch.backends.cpu.get_cpu_capability()}"
    )
    loops = {
        "seed loop": lambda cfg, out: seed_loop(cfg, train, out),
        "grouped": lambda cfg, out: stage_loop(cfg, train, val, out),
        "packed": lambda cfg, out: stage_loop(cfg, train, val, out),
    }
    table = []
    for length in args.lengths:
        # Interleaved repeats (A B C A B C …): a slow minute of the machine hits every loop.
        speeds: dict[str, list[float]] = {name: [] for name in loops}
        tokens: dict[str, int] = {}
        for _ in range(args.repeats):
            for name, loop in loops.items():
                cfg = load_config(settings(length, args.batch_size, packing=name == "packed"))
                with tempfile.TemporaryDirectory() as tmp:
                    r = loop(cfg, Path(tmp))
                speeds[name].append(r["tokens_per_second"])
                tokens[name] = r["tokens"]
        base = statistics.median(speeds["seed loop"])
        for name in loops:
            tps = statistics.median(speeds[name])
            table.append((length, name, tokens[name], tps, min(speeds[name]), max(speeds[name]), tps / base))
    print(f"\nnon-padding tokens/s of training, median of {args.repeats} interleaved runs")
    print("| max_length | loop | tokens | tokens/s | min | max | vs seed loop |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for length, name, n, tps, lo, hi, ratio in table:
        print(f"| {length} | {name} | {n} | {tps:.0f} | {lo:.0f} | {hi:.0f} | {ratio:.2f}x |")
    print("\nProfile of a packed step (median seconds over", args.profile_steps, "steps, first step not counted)")
    print("| max_length | data | forward | loss | backward | optimizer | callbacks | step | callbacks share |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for length in args.lengths:
        cfg = load_config(settings(length, args.batch_size, True))
        p = profile_step(cfg, train, args.profile_steps)
        total = sum(p.values())
        cells = " | ".join(f"{p[k]:.3f}" for k in ("data", "forward", "loss", "backward", "optimizer", "callbacks"))
        print(f"| {length} | {cells} | {total:.3f} | {100 * p['callbacks'] / total:.1f}% |")
    vocab = int(load_config([]).model.config.vocab_size)
    print("\nOutput layer + loss, forward and backward: all logits at once vs chunks of 1024 positions")
    print("| positions | all logits (s) | chunked (s) | ratio | loss difference |")
    print("|---:|---:|---:|---:|---:|")
    for length in args.lengths:
        positions = length * args.batch_size
        full, parts, diff = loss_chunking(positions, 64, vocab, 1024)
        print(f"| {positions} | {full:.3f} | {parts:.3f} | {full / parts:.2f}x | {diff:.2g} |")
    training = load_config(settings(args.lengths[0], args.batch_size, True)).model.training
    print("\nTrainingArguments fields of the profile:", OmegaConf.to_yaml(training))


if __name__ == "__main__":
    main()
