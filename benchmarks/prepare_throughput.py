"""Records per second of the prepare stage's tokenization, batched vs one record at a time.

    python benchmarks/prepare_throughput.py [RECORDS.jsonl] [--repeats N]

Default input: ../shared/reference/delicate_medical_r1_val241.jsonl (else the sample data).
Prints the median of N timed passes of each way, and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from medsft.data.formatting import encode_records
from medsft.data.records import read_records
from medsft.data.stats import token_stats
from medsft.data.tokenizer import build_offline_qwen3_tokenizer

SYSTEM = "你是一个医学专家，你需要根据用户的问题，给出带有思考的回答。"
REFERENCE = Path(__file__).resolve().parents[2] / "shared/reference/delicate_medical_r1_val241.jsonl"


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = REFERENCE if REFERENCE.exists() else Path("data/raw/medical_qa_sample.jsonl")
    parser.add_argument("records", nargs="?", default=str(default))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    records = read_records(args.records).accepted
    tok = build_offline_qwen3_tokenizer()

    def batched():
        token_stats(records, tok, SYSTEM, "qwen3", 2048)

    def one_by_one():
        for rec in records:
            for name in ("question", "think", "answer"):
                tok(rec[name], add_special_tokens=False)
            encode_records([rec], tok, SYSTEM, "qwen3", 2048)

    batched()  # warm-up
    t_batch, t_single = timed(batched, args.repeats), timed(one_by_one, args.repeats)
    n = len(records)
    print(f"records: {n} from {args.records}")
    print(f"batched:       median {t_batch:.3f} s  -> {n / t_batch:,.0f} records/s")
    print(f"one at a time: median {t_single:.3f} s  -> {n / t_single:,.0f} records/s")
    print(f"ratio batched / one at a time: {t_single / t_batch:.2f}x")


if __name__ == "__main__":
    main()
