"""augment: a variant's training records after augmentation, with what was changed.

    python -m stages.augment VARIANT [key=value ...]

Reads prepare.out_dir/train.jsonl and writes augment.out_dir/VARIANT/train.jsonl (after
knowledge injection, when the variant asks for it) and augment.out_dir/VARIANT/stats.json:
records touched per kind, terms injected, and the masks term masking applies in each epoch
(the train stage applies the same masks, epoch by epoch, from the same seeds).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import Path

from omegaconf import OmegaConf

from medsft.augmentation import augment_for_epoch, inject_knowledge, load_lexicon
from medsft.cli import parse_variant_args
from medsft.config import training_arguments
from medsft.io import atomic_write_json
from medsft.records import read_jsonl, write_jsonl

log = logging.getLogger("augment")


def planned_epochs(fields: dict, num_records: int) -> int:
    """Epochs the train stage will run: from max_steps when set, else num_train_epochs."""
    if fields.get("max_steps", -1) > 0:
        per_step = fields.get("per_device_train_batch_size", 8) * fields.get("gradient_accumulation_steps", 1)
        return max(1, math.ceil(fields["max_steps"] * per_step / max(num_records, 1)))
    return max(1, math.ceil(fields.get("num_train_epochs", 3)))


def main(argv: list[str] | None = None) -> int:
    variant, cfg = parse_variant_args(argv, usage=__doc__)
    settings = OmegaConf.to_container(cfg.variants[variant].augment, resolve=True)
    records = read_jsonl(Path(cfg.prepare.out_dir) / "train.jsonl")
    needs_lexicon = settings["knowledge_injection"] or settings["term_masking"]["probability"] > 0
    lexicon = load_lexicon(cfg.augment.lexicon) if needs_lexicon else None

    injected: Counter[str] = Counter()
    touched = 0
    if settings["knowledge_injection"]:
        out = []
        for rec in records:
            answer, terms = inject_knowledge(rec["answer"], lexicon)
            touched += bool(terms)
            injected.update(terms)
            out.append({**rec, "answer": answer} if terms else rec)
        records = out

    epochs = planned_epochs(training_arguments(cfg, variant), len(records))
    per_epoch = []
    for epoch in range(epochs):
        masks = [augment_for_epoch(r, settings, lexicon, cfg.augment.seed, epoch)[1] for r in records]
        by_type = Counter(mask for record_masks in masks for _, mask in record_masks)
        per_epoch.append(
            {
                "epoch": epoch,
                "records_masked": sum(1 for m in masks if m),
                "terms_masked": sum(by_type.values()),
                "masks_by_type": dict(sorted(by_type.items())),
            }
        )

    out_dir = Path(cfg.augment.out_dir) / variant
    write_jsonl(out_dir / "train.jsonl", records)
    stats = {
        "variant": variant,
        "records": len(records),
        "knowledge_injection": {
            "enabled": settings["knowledge_injection"],
            "records_touched": touched,
            "terms_injected": sum(injected.values()),
            "by_term": dict(injected.most_common()),
        },
        "term_masking": {**settings["term_masking"], "epochs": per_epoch},
    }
    atomic_write_json(out_dir / "stats.json", stats)
    log.info(
        "%s: %d records, %d with injected knowledge, masked per epoch %s",
        variant,
        len(records),
        touched,
        [e["records_masked"] for e in per_epoch],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
