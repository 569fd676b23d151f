"""prepare: validate the raw records, split them, and write token statistics.

    python -m stages.prepare [data.path=FILE] [prepare.out_dir=DIR] [key=value ...]

Writes DIR/train.jsonl, DIR/val.jsonl, DIR/rejects.jsonl (line, field, reason, raw) and
DIR/stats.json. A record is rejected when it is not valid JSON/UTF-8, lacks a field, is a
duplicate or over-long, or keeps no target token within model.max_length. Exits non-zero
when more than data.max_reject_fraction is rejected or a split comes out empty.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from medsft.core.cli import fail, parse_args, run_stage
from medsft.core.io import atomic_dir, atomic_write_json, write_jsonl
from medsft.core.outputs import check_output_dir, mark
from medsft.data.records import load_source, reject_without_target, split_records
from medsft.data.stats import token_stats
from medsft.data.tokenizer import load_tokenizer

log = logging.getLogger("prepare")

OUTPUTS = ("train.jsonl", "val.jsonl", "rejects.jsonl", "stats.json")


def main(argv: list[str] | None = None) -> int:
    _, cfg = parse_args(argv, usage=__doc__, libraries=False)
    out = check_output_dir("prepare.out_dir", cfg.prepare.out_dir, "prepare", cfg.output_roots, OUTPUTS)
    fmt, max_length = cfg.format, cfg.model.max_length
    try:
        result = load_source(
            cfg.data.source, cfg.data.path, cfg.data.dataset_id, cfg.data.dataset_split, cfg.data.max_record_chars
        )
    except (FileNotFoundError, ValueError, ImportError) as err:
        fail(str(err))
    if result.total == 0:
        fail(f"{result.source}: no records (the source is empty or holds only blank lines)")
    tokenizer = load_tokenizer(cfg.model.pretrained_model_name_or_path, cfg.model.trust_remote_code)
    result = reject_without_target(result, tokenizer, fmt.system_prompt, fmt.target_style, max_length)
    for r in result.rejects:
        log.warning("%s:%d: rejected (%s): %s", result.source, r.line, r.field or "record", r.reason)
    fraction = len(result.rejects) / result.total
    by_kind = Counter(r.kind for r in result.rejects)
    rejects = [r.to_json() for r in result.rejects]
    if fraction > cfg.data.max_reject_fraction or not result.accepted:
        # The rejects replace the earlier run's outputs (no split of another config stays behind).
        write_outputs(out, {"rejects.jsonl": rejects})
        common = ", ".join(f"{kind} ({n})" for kind, n in by_kind.most_common(3))
        fail(
            f"{result.source}: {len(result.rejects)} of {result.total} records rejected "
            f"({fraction:.1%} > data.max_reject_fraction={cfg.data.max_reject_fraction}), most for: {common}; "
            f"see {out / 'rejects.jsonl'}",
            code=1,
        )

    train, val = split_records(result.accepted, cfg.split.method, cfg.split.val_fraction, cfg.split.seed)
    for name, rows in (("train", train), ("val", val)):
        if not rows:
            write_outputs(out, {"rejects.jsonl": rejects})
            fail(
                f"{result.source}: the {name} split is empty ({len(result.accepted)} records accepted, "
                f"split.val_fraction={cfg.split.val_fraction}); add records or change split.val_fraction",
                code=1,
            )
    stats = {
        "source": result.source,
        "accepted": len(result.accepted),
        "rejected": len(result.rejects),
        "rejected_by_reason": dict(sorted(by_kind.items())),
        "split": {"method": cfg.split.method, "val_fraction": cfg.split.val_fraction, "seed": cfg.split.seed},
        "splits": {
            name: token_stats(rows, tokenizer, fmt.system_prompt, fmt.target_style, max_length)
            for name, rows in (("train", train), ("val", val))
        },
    }
    write_outputs(out, {"train.jsonl": train, "val.jsonl": val, "rejects.jsonl": rejects, "stats.json": stats})
    log.info(
        "%d accepted (%d train, %d val), %d rejected -> %s",
        len(result.accepted),
        len(train),
        len(val),
        len(result.rejects),
        out,
    )
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
