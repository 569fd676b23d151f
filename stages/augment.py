"""augment: write the training records that the train stages read.

    python -m stages.augment [augment.out_dir=DIR] [key=value ...]

Reads prepare.out_dir/train.jsonl and writes DIR/train.jsonl and DIR/stats.json. The
records pass unchanged for now: the variants v1 and v2 train without augmentation, as
the real runs did.
"""

from __future__ import annotations

import logging
from pathlib import Path

from medsft.cli import parse_args
from medsft.io import atomic_write_json
from medsft.records import read_jsonl, write_jsonl

log = logging.getLogger("augment")


def main(argv: list[str] | None = None) -> int:
    _, cfg = parse_args(argv, usage=__doc__)
    records = read_jsonl(Path(cfg.prepare.out_dir) / "train.jsonl")
    out = Path(cfg.augment.out_dir)
    write_jsonl(out / "train.jsonl", records)
    atomic_write_json(out / "stats.json", {"records": len(records), "records_touched": 0})
    log.info("%d records -> %s", len(records), out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
