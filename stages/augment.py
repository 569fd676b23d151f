"""augment: a variant's training records after knowledge injection, with what was changed.

    python -m stages.augment VARIANT [key=value ...]

Reads prepare.out_dir/train.jsonl and writes augment.out_dir/VARIANT/train.jsonl (after
knowledge injection, when the variant asks for it) and augment.out_dir/VARIANT/stats.json
(records touched, terms injected). Term masking changes with the epoch, so the train stage
owns it: it applies the masks and reports their counts in runs/VARIANT/train/masking.json.
"""

from __future__ import annotations

import logging
from pathlib import Path

from medsft.core.cli import parse_variant_args, require_inputs, run_stage
from medsft.core.io import atomic_dir, atomic_write_json, read_jsonl, write_jsonl
from medsft.core.outputs import check_output_dir, check_output_place
from medsft.data.augmentation import augment_records, load_lexicon

log = logging.getLogger("augment")

OUTPUTS = ("train.jsonl", "stats.json")  # the files dvc.yaml declares, per variant


def main(argv: list[str] | None = None) -> int:
    variant, cfg = parse_variant_args(argv, usage=__doc__, libraries=False)
    # A folder of per-variant folders; each holds the two files DVC tracks, and nothing else.
    check_output_place("augment.out_dir", cfg.augment.out_dir, cfg.output_roots)
    check_output_dir("augment.out_dir", Path(cfg.augment.out_dir) / variant, "augment", cfg.output_roots, OUTPUTS)
    knowledge = cfg.variants[variant].augment.knowledge_injection
    source = Path(cfg.prepare.out_dir) / "train.jsonl"
    require_inputs((source, "prepare"))
    lexicon = load_lexicon(cfg.augment.lexicon) if knowledge else None
    records, injection = augment_records(read_jsonl(source), knowledge, lexicon)
    out_dir = Path(cfg.augment.out_dir) / variant
    stats = {"variant": variant, "records": len(records), "knowledge_injection": injection}
    with atomic_dir(out_dir) as tmp:
        write_jsonl(tmp / "train.jsonl", records)
        atomic_write_json(tmp / "stats.json", stats)
    log.info("%s: %d records, %d with injected knowledge", variant, len(records), injection["records_touched"])
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
