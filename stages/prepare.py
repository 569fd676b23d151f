"""prepare: validate the raw records, split them, and write token statistics.

    python -m stages.prepare [data.path=FILE] [prepare.out_dir=DIR] [key=value ...]

Writes DIR/train.jsonl, DIR/val.jsonl, DIR/rejects.jsonl (line, field, reason, raw) and
DIR/stats.json. Exits non-zero when more than data.max_reject_fraction is rejected.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from pathlib import Path

from medsft.core.cli import parse_args
from medsft.core.io import atomic_write_json, write_jsonl
from medsft.data.records import load_source, split_records
from medsft.data.stats import token_stats
from medsft.data.tokenizer import load_tokenizer

log = logging.getLogger("prepare")


def main(argv: list[str] | None = None) -> int:
    _, cfg = parse_args(argv, usage=__doc__)
    out = Path(cfg.prepare.out_dir)
    try:
        result = load_source(
            cfg.data.source, cfg.data.path, cfg.data.dataset_id, cfg.data.dataset_split, cfg.data.max_record_chars
        )
    except (FileNotFoundError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    write_jsonl(out / "rejects.jsonl", (r.to_json() for r in result.rejects))
    for r in result.rejects:
        log.warning("%s:%d: rejected (%s): %s", result.source, r.line, r.field or "record", r.reason)
    fraction = len(result.rejects) / result.total if result.total else 1.0
    if fraction > cfg.data.max_reject_fraction or not result.accepted:
        print(
            f"error: {result.source}: {len(result.rejects)} of {result.total} records rejected "
            f"({fraction:.1%} > data.max_reject_fraction={cfg.data.max_reject_fraction}); "
            f"see {out / 'rejects.jsonl'}",
            file=sys.stderr,
        )
        return 1

    train, val = split_records(result.accepted, cfg.split.method, cfg.split.val_fraction, cfg.split.seed)
    tokenizer = load_tokenizer(cfg.model.pretrained_model_name_or_path, cfg.model.trust_remote_code)
    stats = {
        "source": result.source,
        "accepted": len(result.accepted),
        "rejected": len(result.rejects),
        "rejected_by_reason": dict(Counter(r.reason.split(":")[0] for r in result.rejects)),
        "split": {"method": cfg.split.method, "val_fraction": cfg.split.val_fraction, "seed": cfg.split.seed},
        "splits": {
            name: token_stats(rows, tokenizer, cfg.format.system_prompt, cfg.format.target_style, cfg.model.max_length)
            for name, rows in (("train", train), ("val", val))
        },
    }
    write_jsonl(out / "train.jsonl", train)
    write_jsonl(out / "val.jsonl", val)
    atomic_write_json(out / "stats.json", stats)
    log.info(
        "%d accepted (%d train, %d val), %d rejected -> %s",
        len(result.accepted),
        len(train),
        len(val),
        len(result.rejects),
        out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
