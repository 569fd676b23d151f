"""prepare: validate the raw records, split them, and write token statistics.

    python -m stages.prepare [data.path=FILE] [prepare.out_dir=DIR] [key=value ...]

Writes DIR/train.jsonl, DIR/val.jsonl, DIR/rejects.jsonl (line, field, reason, raw) and
DIR/stats.json. A record is rejected when it is not valid JSON/UTF-8, lacks a field, is a
duplicate or over-long, or keeps no target token within model.max_length. Exits non-zero
when more than data.max_reject_fraction is rejected or a split comes out empty.
"""

from __future__ import annotations

import logging
from pathlib import Path

from medsft.core.cli import fail, parse_args, run_stage
from medsft.core.io import atomic_dir, atomic_write_json, write_jsonl
from medsft.core.outputs import check_output_dir, mark
from medsft.data.prepare import PrepareError, prepare_records

log = logging.getLogger("prepare")

OUTPUTS = ("train.jsonl", "val.jsonl", "rejects.jsonl", "stats.json")


def main(argv: list[str] | None = None) -> int:
    _, cfg = parse_args(argv, usage=__doc__, libraries=False)
    out = check_output_dir("prepare.out_dir", cfg.prepare.out_dir, "prepare", cfg.output_roots, OUTPUTS)
    try:
        prepared = prepare_records(cfg, rejects_path=str(out / "rejects.jsonl"))
    except PrepareError as err:
        if err.rejects is not None:  # they replace the earlier outputs: no split of another config stays
            write_outputs(out, {"rejects.jsonl": err.rejects})
        fail(str(err), code=err.code)
    splits = {"train.jsonl": prepared.train, "val.jsonl": prepared.val}
    write_outputs(out, {**splits, "rejects.jsonl": prepared.rejects, "stats.json": prepared.stats})
    counts = (prepared.stats["accepted"], len(prepared.train), len(prepared.val), prepared.stats["rejected"])
    log.info("%d accepted (%d train, %d val), %d rejected -> %s", *counts, out)
    return 0


def write_outputs(out: Path, files: dict[str, list | dict]) -> None:
    """Replace ``out`` with ``files`` (JSONL for lists, JSON for dicts) and the stage's
    marker, all at once: the folder holds one run's outputs, never a mix."""
    with atomic_dir(out) as tmp:
        for name, content in files.items():
            (write_jsonl if isinstance(content, list) else atomic_write_json)(tmp / name, content)
        mark(tmp, "prepare")


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
