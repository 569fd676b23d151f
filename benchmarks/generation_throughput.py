"""Generation throughput of the evaluate stage, batched vs one question at a time (tiny).

    python benchmarks/generation_throughput.py [--questions 16] [--batch-size 16] [--max-new-tokens 32]

Same model (the tiny profile with the v1 adapter of `dvc repro`, so that replies run to
max_new_tokens), same greedy decoding, same questions from the sample data; prints generated
tokens per second of both ways and their ratio.
"""

from __future__ import annotations

import argparse
import time

from omegaconf import OmegaConf

from medsft.core.config import load_config
from medsft.core.paths import train_dir
from medsft.core.runtime import keep_large_allocations
from medsft.core.spec import RunSpec
from medsft.data.records import read_records
from medsft.evaluate.run import generate_answers
from medsft.modeling.loading import load_adapter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()
    keep_large_allocations()
    cfg = load_config()
    adapter = train_dir("v1") / "adapter"
    if not adapter.exists():
        raise SystemExit(f"{adapter}: missing; run `dvc repro train@v1` first")
    spec = RunSpec.read(adapter.parent)
    model, tok = load_adapter(spec.model, adapter, spec.artifacts)
    questions = [r["question"] for r in read_records(cfg.data.path).accepted[: args.questions]]
    system = cfg.format.system_prompt

    def run(batch_size: int) -> tuple[float, int]:
        counts: list[int] = []
        start = time.perf_counter()
        generation = {
            **OmegaConf.to_container(cfg.generation),
            "max_new_tokens": args.max_new_tokens,
            "do_sample": False,
        }
        generate_answers(model, tok, questions, system, batch_size, generation, token_counts=counts)
        return time.perf_counter() - start, sum(counts)

    run(args.batch_size)  # warm-up
    t_batch, n_batch = run(args.batch_size)
    t_single, n_single = run(1)
    print(f"questions: {len(questions)}, max_new_tokens: {args.max_new_tokens}, greedy")
    print(f"batched (batch {args.batch_size}): {t_batch:.2f} s, {n_batch / t_batch:,.1f} generated tokens/s")
    print(f"one at a time:      {t_single:.2f} s, {n_single / t_single:,.1f} generated tokens/s")
    print(f"speed-up: {t_single / t_batch:.2f}x")


if __name__ == "__main__":
    main()
