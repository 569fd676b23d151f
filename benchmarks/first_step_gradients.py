"""Run-to-run reproducibility of a training stage's first step, process by process.

    python benchmarks/first_step_gradients.py [--variant v1|v2|v3|pretrain] [--runs 48]
        [--jobs 1] [--records FILE] [key=value ...]

Each run is a fresh process that does what ``train@<variant>`` (or ``pretrain``) does up to
its first backward pass, through the stage's own code (``build_trainer`` /
``build_pretrain_trainer``, with the stages' process settings of ``medsft.core.runtime``),
and prints the loss and a SHA-256 of every gradient. Identical code and inputs must give one
hash; the script prints how many processes gave each, and for a second hash which parameters
differ and by how much (relative to their largest gradient). Exits 1 when the processes
disagree.

Records: ``--records`` (JSONL in the sample data's schema), else what the stage reads:
``data/augmented/<variant>/train.jsonl``, or ``data/prepared/train.jsonl`` for pretrain
(``dvc repro augment`` or a full repro first).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def default_records(variant: str) -> Path:
    if variant == "pretrain":
        return ROOT / "data/prepared/train.jsonl"
    return ROOT / "data/augmented" / variant / "train.jsonl"


def child(variant: str, records_file: Path, overrides: list[str], out: Path) -> None:
    """One process: the first step's loss and gradients, saved to ``out``."""
    from medsft.core.runtime import quiet_library_noise, reproducible_math

    reproducible_math()  # as the stages do, before torch (and MKL) loads
    quiet_library_noise()

    from safetensors.torch import save_file

    from medsft.core.config import FormatConfig, ModelConfig, as_schema, load_config
    from medsft.core.io import read_jsonl
    from medsft.core.runtime import reproducibility_settings
    from medsft.core.spec import resolve_spec
    from medsft.train.pretrain import build_pretrain_trainer
    from medsft.train.trainer import build_trainer

    cfg = load_config(["tracking.mode=disabled", *overrides])
    records = read_jsonl(records_file)
    if variant == "pretrain":
        reproducibility_settings()
        trainer = build_pretrain_trainer(
            as_schema(ModelConfig, cfg.model, "model"), as_schema(FormatConfig, cfg.format, "format"), records, out
        )
    else:
        trainer = build_trainer(resolve_spec(cfg, variant), records, records[:2], out).trainer
    model = trainer.model
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


def run_one(args: argparse.Namespace, run: int, tmp: Path) -> tuple[int, str, str]:
    out = tmp / str(run)
    out.mkdir()
    cmd = [sys.executable, __file__, "--variant", args.variant, "--records", str(args.records)]
    done = subprocess.run(
        [*cmd, "--child", str(out), *args.overrides], cwd=ROOT, capture_output=True, text=True, check=False
    )
    result = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not result:
        sys.exit(f"error: run {run} failed (rc {done.returncode}):\n{done.stderr[-2000:]}")
    loss, digest = result[0].split()[1:]
    return run, loss, digest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="v1", help="a variant of params.yaml, or pretrain")
    parser.add_argument("--runs", type=int, default=24)
    parser.add_argument("--jobs", type=int, default=1, help="processes at a time")
    parser.add_argument("--records", type=Path, help="training records (default: what the stage reads)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="key=value overrides of params.yaml")
    args = parser.parse_args()
    args.records = (args.records or default_records(args.variant)).resolve()
    if args.child:
        child(args.variant, args.records, args.overrides, args.child)
        return 0
    if not args.records.exists():
        sys.exit(f"error: {args.records}: not found (run: dvc repro, or give --records FILE)")
    seen: dict[str, list[int]] = collections.defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="first-step-") as tmp, ThreadPoolExecutor(args.jobs) as pool:
        for run, loss, digest in pool.map(lambda r: run_one(args, r, Path(tmp)), range(args.runs)):
            seen[digest].append(run)
            print(f"run {run}: loss {loss}, gradients {digest}", flush=True)
        print(f"\n{len(seen)} distinct gradient hash(es) over {args.runs} processes:")
        for digest, runs in seen.items():
            print(f"  {digest}: {len(runs)} run(s) {runs}")
        if len(seen) > 1:
            (base, *_), (other, *_) = (runs for runs in list(seen.values())[:2])
            print(f"\nrun {other} against run {base}:")
            compare(Path(tmp) / str(base) / "grads.safetensors", Path(tmp) / str(other) / "grads.safetensors")
    return 0 if len(seen) == 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
