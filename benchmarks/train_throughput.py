"""Training throughput: length-grouped batches (this pipeline) vs the original code's batches.

    python benchmarks/train_throughput.py [RECORDS.jsonl] [--steps 10] [--max-length 1024]

The original code tokenized example by example and trained on random batches padded to
their longest example. This pipeline tokenizes in one batch and groups examples of similar
length (TrainingArguments.train_sampling_strategy=group_by_length), so less compute goes to
padding. Same tiny model, data, seed, batch size and steps; prints non-padding tokens per
second of both and their ratio, and checks that both tokenizations give identical examples
(so on equal batches the two loops compute equal losses).
Default records: ../shared/reference/delicate_medical_r1_val241.jsonl (else the sample data).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from medsft.core.config import load_config
from medsft.core.runtime import keep_large_allocations
from medsft.data.formatting import encode_records
from medsft.data.records import read_records
from medsft.data.tokenizer import build_offline_qwen3_tokenizer
from medsft.train.trainer import train_variant

REFERENCE = Path(__file__).resolve().parents[2] / "shared/reference/delicate_medical_r1_val241.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = REFERENCE if REFERENCE.exists() else Path("data/raw/medical_qa_sample.jsonl")
    parser.add_argument("records", nargs="?", default=str(default))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=1024)
    args = parser.parse_args()
    keep_large_allocations()
    records = read_records(args.records).accepted
    train, val = records[:-8], records[-8:]

    base = [
        "tracking.mode=disabled",
        "model.pretrain.training=null",  # the seeded init: throughput does not need the pretrained base
        f"model.max_length={args.max_length}",
        f"model.training.max_steps={args.steps}",
        f"model.training.per_device_train_batch_size={args.batch_size}",
        "model.training.eval_steps=100000",
        "model.training.save_steps=100000",
        "model.training.logging_steps=1",
    ]
    cfg = load_config(base)
    tok = build_offline_qwen3_tokenizer()
    fmt = cfg.format
    batched = encode_records(train, tok, fmt.system_prompt, fmt.target_style, args.max_length)
    one_by_one = [encode_records([r], tok, fmt.system_prompt, fmt.target_style, args.max_length) for r in train]
    identical = all(
        batched.input_ids[i] == e.input_ids[0] and batched.labels[i] == e.labels[0] for i, e in enumerate(one_by_one)
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, strategy in (("original (random, padded)", "random"), ("grouped by length", "group_by_length")):
            cfg = load_config([*base, f"+model.training.train_sampling_strategy={strategy}".lstrip("+")])
            results[name] = train_variant(cfg, "v1", train, val, Path(tmp) / strategy)
    print(
        f"records: {len(train)} from {args.records}; batch {args.batch_size}, max_length {args.max_length}, "
        f"{args.steps} steps"
    )
    print(f"batched and per-example tokenization identical: {identical}")
    for name, m in results.items():
        print(
            f"{name:28s} {m['tokens_per_second']:8.1f} non-padding tokens/s  ({m['train_tokens']} tokens, "
            f"{m['wall_seconds']:.1f} s)"
        )
    a, b = (m["tokens_per_second"] for m in results.values())
    print(f"ratio grouped / original: {b / a:.2f}x")


if __name__ == "__main__":
    main()
