"""Run-to-run reproducibility of a train stage's first step, process by process.

    python benchmarks/first_step_gradients.py [--variant v1] [--runs 24] [key=value ...]

Each run is a fresh process that does what ``train@<variant>`` does up to its first backward
pass (the stage's reproducibility settings, seed, model, LoRA, first batch, the pipeline
Trainer's loss) and prints the loss and a SHA-256 of every gradient. Identical code and
inputs must give one hash; the script prints how many processes gave each, and for a second
hash which parameters differ and by how much (relative to their largest gradient). Needs
``dvc repro augment`` (or a full repro) first: it reads ``data/augmented/<variant>/train.jsonl``.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(variant: str, overrides: list[str], out: Path) -> None:
    """One process: the first step's loss and gradients, saved to ``out``."""
    from medsft.core.runtime import reproducible_math

    reproducible_math()  # as the stages do, before torch (and MKL) loads

    from dataclasses import replace

    from safetensors.torch import save_file
    from transformers import DataCollatorForSeq2Seq, TrainingArguments, set_seed

    from medsft.core.config import load_config
    from medsft.core.io import read_jsonl
    from medsft.core.spec import resolve_spec
    from medsft.modeling.loading import add_lora, load_model_and_tokenizer
    from medsft.train.datasets import encode_dataset
    from medsft.train.devices import apply_device_fallbacks
    from medsft.train.loop import PipelineTrainer
    from medsft.train.trainer import trainer_fields

    cfg = load_config(["tracking.mode=disabled", *overrides])
    spec = resolve_spec(cfg, variant)
    spec = apply_device_fallbacks(replace(spec, training=trainer_fields(spec.training, out)))
    args = TrainingArguments(**spec.training)
    set_seed(args.seed)
    model, tokenizer = load_model_and_tokenizer(spec.model)
    model = add_lora(model, spec.lora, args.activation_checkpointing)
    dataset = encode_dataset(read_jsonl(f"data/augmented/{variant}/train.jsonl"), tokenizer, spec)
    trainer = PipelineTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        eval_dataset=dataset,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
        loss_chunk_size=spec.model.get("loss_chunk_size"),
    )
    model.train()
    loss = trainer.compute_loss(model, next(iter(trainer.get_train_dataloader())))
    loss.backward()
    grads = {n: p.grad.detach().contiguous() for n, p in model.named_parameters() if p.grad is not None}
    save_file(grads, str(out / "grads.safetensors"))
    digest = hashlib.sha256(b"".join(g.numpy().tobytes() for g in grads.values())).hexdigest()[:12]
    print(f"RESULT {loss.item()!r} {digest}")


def compare(a: Path, b: Path) -> None:
    from safetensors.torch import load_file

    first, second = load_file(str(a)), load_file(str(b))
    for name, tensor in first.items():
        diff = (tensor - second[name]).abs().max().item()
        if diff:
            scale = tensor.abs().max().item() or 1.0
            share = (tensor != second[name]).float().mean().item()
            print(f"  {name}: largest difference {diff:.3g} ({diff / scale:.2g} relative), {share:.1%} of values")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="v1")
    parser.add_argument("--runs", type=int, default=24)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="key=value overrides of params.yaml")
    args = parser.parse_args()
    if args.child:
        child(args.variant, args.overrides, args.child)
        return
    seen: dict[str, list[int]] = collections.defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="first-step-") as tmp:
        for run in range(args.runs):
            out = Path(tmp) / str(run)
            out.mkdir()
            cmd = [sys.executable, __file__, "--variant", args.variant, "--child", str(out), *args.overrides]
            done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
            result = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode or not result:
                sys.exit(f"error: run {run} failed (rc {done.returncode}):\n{done.stderr[-2000:]}")
            loss, digest = result[0].split()[1:]
            seen[digest].append(run)
            print(f"run {run}: loss {loss}, gradients {digest}", flush=True)
        print(f"\n{len(seen)} distinct gradient hash(es) over {args.runs} processes:")
        for digest, runs in seen.items():
            print(f"  {digest}: {len(runs)} run(s) {runs}")
        if len(seen) > 1:
            (base, *_), (other, *_) = (runs for runs in list(seen.values())[:2])
            print(f"\nrun {other} against run {base}:")
            compare(Path(tmp) / str(base) / "grads.safetensors", Path(tmp) / str(other) / "grads.safetensors")


if __name__ == "__main__":
    main()
