"""Training throughput: the seed's loop against this pipeline's grouped and packed batches.

    python benchmarks/train_throughput.py [RECORDS.jsonl] [--records 40] [--lengths 512 1024 2048]

Four ways to train the same LoRA (variant v1: r=64 on all seven projections) on the same
tiny Qwen3 (the seeded init, the real 152k-token vocabulary), batch size and records, one
epoch each, so all of them see exactly the same examples and tokens:

- seed loop: what the seed's code did, written here: each example tokenized on its own
  (``Dataset.map``), random batches padded to their longest example, a plain ``Trainer``
  with no callbacks, transformers' loss over the full logits;
- grouped: the train stage (``train_variant``) with ``model.packing=false`` and
  ``model.loss_chunk_size=null``: batches of similar length
  (``train_sampling_strategy=group_by_length``), the per-step extras (gradient norms by
  group, history.csv rewritten at every log);
- packed: the same with ``model.packing=true``: each batch's examples in one row, no padding;
- packed + chunked loss: and ``model.loss_chunk_size`` (``--chunk``): the output layer and
  the loss fused, a chunk of positions at a time (``medsft.modeling.loss``).

Throughput is non-padding tokens per second of training: tokens the model reads that are not
padding, over the training loop's seconds without evaluation (``timing.json``'s
``train_seconds``; the seed loop runs no evaluation). Then a profile splits one packed step
into data, forward (the decoder), output layer + loss (forward and, for the fused loss, its
gradients), backward, optimizer and callbacks (the extras), timed part by part with the same
model and collator, with and without the chunked loss; a last table times the output layer
and the loss, forward and backward, all logits at once against several chunk sizes. Compare
ratios within one run: machines differ.
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
from datasets import Dataset
from omegaconf import OmegaConf
from transformers import DataCollatorForSeq2Seq, Trainer
from transformers.loss.loss_utils import ForCausalLMLoss

from medsft.core.config import load_config
from medsft.core.history import write_history_csv
from medsft.core.runtime import keep_large_allocations
from medsft.core.spec import resolve_spec
from medsft.data.formatting import IGNORE_INDEX, encode_records
from medsft.data.records import read_records
from medsft.data.tokenizer import load_tokenizer
from medsft.modeling.loading import add_lora, load_base_model
from medsft.modeling.loss import linear_cross_entropy, output_weight
from medsft.train.arguments import training_arguments
from medsft.train.callbacks import GradGroupNormCallback
from medsft.train.packing import flattening_collator, prepare_for_packing
from medsft.train.trainer import train_variant

log = logging.getLogger("train_throughput")
PROFILE_PARTS = ("data", "forward", "output layer + loss", "backward", "optimizer", "callbacks")
REFERENCE = Path(__file__).resolve().parents[2] / "shared/reference/delicate_medical_r1_val241.jsonl"


def settings(max_length: int, batch_size: int, packing: bool, chunk: int | None = None) -> list[str]:
    """Overrides shared by every loop: the seeded init, one epoch, no tracking, no mid-run
    evaluation or checkpoint."""
    return [
        "tracking.mode=disabled",
        "model.pretrain.training=null",
        f"model.max_length={max_length}",
        f"model.packing={packing}",
        f"model.loss_chunk_size={'null' if chunk is None else chunk}",
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
        enc = encode_records([record], tok, fmt.system_prompt, fmt.target_style, spec.max_length)
        return enc.rows()[0]

    start = time.perf_counter()
    dataset = Dataset.from_list(records).map(encode_one, remove_columns=list(records[0]))
    tokenize_seconds = time.perf_counter() - start
    torch.manual_seed(spec.training["seed"])
    model = add_lora(load_base_model(spec.model), spec.lora, False)
    fields = {k: spec.training[k] for k in ("learning_rate", "lr_scheduler_type", "max_grad_norm", "optim", "seed")}
    args = training_arguments(
        {
            "output_dir": str(out),
            "per_device_train_batch_size": spec.training["per_device_train_batch_size"],
            "num_train_epochs": 1,
            "logging_steps": 1,
            "save_strategy": "no",
            "eval_strategy": "no",
            "disable_tqdm": True,
            "include_num_input_tokens_seen": "non_padding",
            **fields,
        }
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=IGNORE_INDEX),
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    tokens = int(trainer.state.num_input_tokens_seen)
    log.info("seed loop: %d examples tokenized one by one in %.2f s", len(records), tokenize_seconds)
    return {"tokens": tokens, "seconds": seconds, "tokens_per_second": tokens / seconds}


def stage_loop(cfg, records: list[dict[str, Any]], val: list[dict[str, Any]], out: Path) -> dict[str, float]:
    """The train stage's own function; its metrics.json and timing.json figures."""
    m = train_variant(cfg, "v1", records, val, out)
    return {"tokens": m["train_tokens"], "seconds": m["train_seconds"], "tokens_per_second": m["tokens_per_second"]}


def profile_step(cfg, records: list[dict[str, Any]], steps: int) -> dict[str, float]:
    """Median seconds of each part of a packed training step, over ``steps`` batches, with
    the loss ``cfg``'s ``model.loss_chunk_size`` selects."""
    spec = resolve_spec(cfg, "v1")
    chunk = spec.model.loss_chunk_size
    tok = load_tokenizer(None)
    fmt = spec.format
    rows = encode_records(records, tok, fmt.system_prompt, fmt.target_style, spec.max_length).rows()
    torch.manual_seed(0)
    model = add_lora(load_base_model(spec.model), spec.lora, False)
    prepare_for_packing(model)
    model.train()
    lm = model.get_base_model()
    decoder, head = lm.get_decoder(), lm.get_output_embeddings()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    collate = flattening_collator()
    grad_norms = GradGroupNormCallback()
    batch_size = spec.training["per_device_train_batch_size"]
    parts: dict[str, list[float]] = {k: [] for k in PROFILE_PARTS}
    history: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for step in range(steps + 1):  # the first step warms up and is not counted
            times = {}
            t = time.perf_counter()
            batch = collate(rows[(step * batch_size) % len(rows) :][:batch_size])
            times["data"] = time.perf_counter() - t
            t = time.perf_counter()
            hidden = decoder(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).last_hidden_state
            times["forward"] = time.perf_counter() - t
            t = time.perf_counter()
            if chunk is None:
                loss = ForCausalLMLoss(head(hidden), batch["labels"], head.out_features)
            else:
                loss = linear_cross_entropy(hidden, output_weight(lm), batch["labels"], None, chunk)
            times["output layer + loss"] = time.perf_counter() - t
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


def loss_timings(positions: int, hidden: int, vocab: int, chunks: list[int], repeats: int = 3) -> dict:
    """Median seconds of forward + backward of the output layer and the loss over
    ``positions`` positions (a frozen output layer, as v1's): transformers' loss over all
    logits at once (key ``None``), and :func:`linear_cross_entropy` at each chunk size, with
    the largest difference of its loss from the full one."""
    torch.manual_seed(0)
    weight = torch.randn(vocab, hidden) * 0.02
    states = torch.randn(1, positions, hidden)
    labels = torch.randint(0, vocab, (1, positions))

    def timed(loss_of) -> tuple[float, float]:
        seconds = []
        for _ in range(repeats + 1):
            h = states.clone().requires_grad_(True)
            start = time.perf_counter()
            loss = loss_of(h)
            loss.backward()
            seconds.append(time.perf_counter() - start)
        return statistics.median(seconds[1:]), loss.item()

    full, full_loss = timed(lambda h: ForCausalLMLoss(torch.nn.functional.linear(h, weight), labels, vocab))
    out: dict = {None: (full, 0.0)}
    for chunk in chunks:
        seconds, loss = timed(lambda h, c=chunk: linear_cross_entropy(h, weight, labels, None, c))
        out[chunk] = (seconds, abs(loss - full_loss))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = REFERENCE if REFERENCE.exists() else Path("data/raw/medical_qa_sample.jsonl")
    parser.add_argument("records_file", nargs="?", default=str(default))
    parser.add_argument("--records", type=int, default=40, help="training records (one epoch over them)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--chunk", type=int, default=256, help="model.loss_chunk_size of the chunked loop")
    parser.add_argument("--chunks", type=int, nargs="+", default=[128, 256, 512, 1024], help="chunk sizes timed")
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
    # name: (train function, packing, loss_chunk_size)
    loops = {
        "seed loop": (lambda cfg, out: seed_loop(cfg, train, out), False, None),
        "grouped": (lambda cfg, out: stage_loop(cfg, train, val, out), False, None),
        "packed": (lambda cfg, out: stage_loop(cfg, train, val, out), True, None),
        "packed + chunked loss": (lambda cfg, out: stage_loop(cfg, train, val, out), True, args.chunk),
    }
    table = []
    for length in args.lengths:
        # Interleaved repeats (A B C D A B C D …): a slow minute of the machine hits every loop.
        speeds: dict[str, list[float]] = {name: [] for name in loops}
        tokens: dict[str, int] = {}
        for _ in range(args.repeats):
            for name, (loop, packing, chunk) in loops.items():
                cfg = load_config(settings(length, args.batch_size, packing, chunk))
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
    print(f"| max_length | loss | {' | '.join(PROFILE_PARTS)} | step | callbacks share |")
    print("|---:|---|" + "---:|" * (len(PROFILE_PARTS) + 2))
    for length in args.lengths:
        for chunk in (None, args.chunk):
            p = profile_step(load_config(settings(length, args.batch_size, True, chunk)), train, args.profile_steps)
            total = sum(p.values())
            cells = " | ".join(f"{p[k]:.3f}" for k in PROFILE_PARTS)
            name = "all logits" if chunk is None else f"chunks of {chunk}"
            print(f"| {length} | {name} | {cells} | {total:.3f} | {100 * p['callbacks'] / total:.1f}% |")
    vocab = int(load_config([]).model.config.vocab_size)
    print("\nOutput layer + loss, forward and backward (seconds): all logits at once vs chunks of positions")
    print(f"| positions | all logits | {' | '.join(f'chunks of {c}' for c in args.chunks)} | largest loss difference |")
    print("|---:|---:|" + "---:|" * (len(args.chunks) + 1))
    for length in args.lengths:
        times = loss_timings(length * args.batch_size, 64, vocab, args.chunks)
        full = times[None][0]
        cells = " | ".join(f"{times[c][0]:.3f} ({full / times[c][0]:.2f}x)" for c in args.chunks)
        diff = max(times[c][1] for c in args.chunks)
        print(f"| {length * args.batch_size} | {full:.3f} | {cells} | {diff:.2g} |")
    training = load_config(settings(args.lengths[0], args.batch_size, True)).model.training
    print("\nTrainingArguments fields of the profile:", OmegaConf.to_yaml(training))


if __name__ == "__main__":
    main()
