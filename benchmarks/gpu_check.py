"""N optimizer steps of a variant on the qwen3-1.7b profile; prints throughput and peak memory.

    python benchmarks/gpu_check.py --model DIR [--variant v2] [--steps 10] [--max-length 2048]
        [--data FILE] [--liger] [--loss-chunk-size N] [--packing] [--attn IMPL] [--out DIR]

The driver of ``benchmarks/gpu_check.sh`` (which installs, writes the random model and calls
this); it runs on CPU too, slowly (``gpu_check.sh --dry-run``: a tiny random Qwen3 on CPU, the
peak resident set size in place of CUDA memory). The variant trains as written (batch 4 x accumulation 4,
paged 8-bit Adam, bf16, gradient checkpointing, QLoRA NF4) for ``--steps`` optimizer steps on
``--data`` through the train stage's own function, into ``--out`` (never ``runs/``), then
prints non-padding tokens per second of training and the peak memory (``timing.json``:
``tokens_per_second``, ``peak_cuda_allocated_bytes``) beside ``benchmarks/memory_estimate.py``'s
prediction for the longest batch the data can form, on the architecture of ``--model``'s
``config.json``.

- ``--liger``: ``TrainingArguments.use_liger_kernel`` (``pip install -e '.[liger]'``): Liger's
  Triton kernels, among them a fused output layer + cross-entropy that never holds the
  logits (the memory model's largest term at length 2048).
- ``--loss-chunk-size N|null``: ``model.loss_chunk_size`` (the profile's 256 by default): the
  same fusion in plain torch (``medsft.modeling.loss``), N positions at a time, checked on CPU
  against transformers' loss; ``null`` computes transformers' loss over the full logits.
- ``--packing``: ``model.packing=true``, padding-free batches (``medsft.train.packing``). On a
  GPU, ``--attn flash_attention_2`` (needs ``flash-attn``) is what keeps them cheap: its varlen
  kernel reads the example boundaries from ``position_ids``; with ``sdpa`` transformers builds a
  materialised block-diagonal mask of the packed row (memory quadratic in its length).
- ``--attn IMPL``: the ``attn_implementation`` the base is loaded with (``sdpa`` by default;
  ``flash_attention_2``, or a hub kernel such as ``kernels-community/flash-attn2``). The
  pipeline's profiles have no such field yet, so this driver passes it to ``from_pretrained``.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import torch

from medsft.core.config import load_config
from medsft.core.spec import resolve_spec
from medsft.data.formatting import encode_records
from medsft.data.records import read_records
from medsft.data.tokenizer import load_tokenizer
from medsft.modeling import loading
from medsft.train.trainer import train_variant

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference" / "delicate_medical_r1_val241.jsonl"
SAMPLE = ROOT / "data" / "raw" / "medical_qa_sample.jsonl"


def load_memory_estimate():
    """benchmarks/memory_estimate.py as a module (benchmarks/ is no package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("memory_estimate", ROOT / "benchmarks" / "memory_estimate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["memory_estimate"] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a Qwen3-1.7B directory (real or make_random_model.py's)")
    parser.add_argument("--variant", default="v2")
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps (each: batch 4 x accumulation 4)")
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--data", type=Path, help="QA records (JSONL); default: the reference records, else the sample")
    parser.add_argument("--val", type=int, default=8, help="records held out for the final evaluation")
    parser.add_argument("--liger", action="store_true", help="use_liger_kernel=true")
    parser.add_argument(
        "--loss-chunk-size",
        help="model.loss_chunk_size: positions per chunk of the fused loss, or null (default: the profile's; "
        "null with --liger)",
    )
    parser.add_argument("--packing", action="store_true", help="model.packing=true (padding-free batches)")
    parser.add_argument("--attn", default="sdpa", help="attn_implementation of the base model")
    parser.add_argument("--out", type=Path, default=Path("gpu-check"), help="where the run's files go")
    args = parser.parse_args(argv)

    data = args.data or (REFERENCE if REFERENCE.exists() else SAMPLE)
    records = read_records(data).accepted
    if len(records) <= args.val:
        raise SystemExit(f"error: {data}: {len(records)} records, need more than --val {args.val}")
    overrides = [
        "model=qwen3-1.7b",
        f"model.pretrained_model_name_or_path={args.model}",
        "tracking.mode=disabled",
        f"model.max_length={args.max_length}",
        f"model.training.max_steps={args.steps}",
        f"model.training.logging_steps={max(1, args.steps // 5)}",
        f"model.training.eval_steps={args.steps}",
        f"model.training.save_steps={args.steps}",
        f"model.packing={str(args.packing).lower()}",
    ]
    if args.loss_chunk_size is not None or args.liger:
        # Liger's kernel fuses the loss inside the model's forward, which the chunked loss bypasses.
        overrides.append(f"model.loss_chunk_size={args.loss_chunk_size or 'null'}")
    if args.liger:
        overrides.append("model.training.use_liger_kernel=true")
    cfg = load_config(overrides, path=ROOT / "params.yaml")
    # The profile has no attn_implementation field: pass it where the base is loaded.
    loading.AutoModelForCausalLM.from_pretrained = functools.partial(
        loading.AutoModelForCausalLM.from_pretrained, attn_implementation=args.attn
    )

    start = time.perf_counter()
    train, val = records[args.val :], records[: args.val]
    metrics = train_variant(cfg, args.variant, train, val, args.out / args.variant)
    wall = time.perf_counter() - start

    tok = load_tokenizer(args.model)
    lengths = encode_records(train, tok, cfg.format.system_prompt, cfg.format.target_style, args.max_length)
    longest = max(len(ids) for ids in lengths.input_ids)
    spec = resolve_spec(cfg, args.variant)
    batch = int(spec.training["per_device_train_batch_size"])
    mem = load_memory_estimate()
    # The model's own shapes: Qwen3-1.7B's, or the dry run's tiny Qwen3.
    arch = mem.Architecture.from_config(json.loads((Path(args.model) / "config.json").read_text(encoding="utf-8")))
    optim = spec.training.get("optim", "paged_adamw_8bit")
    predicted = mem.estimate(arch, spec.lora, batch, longest, optim, loss_chunk_size=cfg.model.loss_chunk_size)
    # Liger's fused output layer + loss never holds the logits: the layer working set remains.
    full = mem.estimate(arch, spec.lora, batch, longest, optim)
    fused = full["peak"] - max(full["layer working set"], full["logits and loss"]) + full["layer working set"]

    print(f"\n{args.variant} on {args.model}: {metrics['steps']} steps in {wall:.0f} s ({metrics['hardware']})")
    print(
        f"  liger {args.liger}, loss_chunk_size {cfg.model.loss_chunk_size}, packing {args.packing}, "
        f"attention {args.attn}, max_length {args.max_length}"
    )
    print(f"  non-padding tokens/s of training: {metrics['tokens_per_second']:,.0f}")
    if "peak_cuda_allocated_bytes" in metrics:
        print(f"  peak CUDA memory allocated: {metrics['peak_cuda_allocated_bytes'] / 1e9:.2f} GB")
        print(f"  peak CUDA memory reserved:  {torch.cuda.max_memory_reserved() / 1e9:.2f} GB")
    else:
        print(f"  peak memory (no CUDA: CPU resident set size, RSS): {metrics['peak_cpu_rss_bytes'] / 1e9:.2f} GB")
    print(
        f"  memory model at batch {batch} x {longest} (the longest example), this run's loss: "
        f"{predicted['peak'] / 1e9:.2f} GB; all logits: {full['peak'] / 1e9:.2f} GB; "
        f"without the logits term (Liger): {fused / 1e9:.2f} GB"
    )
    print(f"  final train loss {metrics['final_train_loss']:.4f}, eval loss {metrics['final_eval_loss']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
