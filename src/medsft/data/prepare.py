"""The prepare stage's work: records validated, split and counted in tokens.

:func:`prepare_records` reads the source, rejects what cannot train (with line, field and
reason), splits the rest and computes the token statistics; it raises :class:`PrepareError`
when too much is rejected or a split comes out empty, carrying the rejects so the stage still
writes them.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from medsft.core.errors import UserError
from medsft.data.records import load_source, reject_without_target, split_records
from medsft.data.stats import token_stats
from medsft.data.tokenizer import load_tokenizer

log = logging.getLogger("prepare")  # the stage's name, as its other lines


class PrepareError(UserError):
    """The data cannot be prepared as configured. ``rejects``: the records rejected so far
    (the stage writes them); ``code``: 2 for a source that cannot be read, 1 for data that
    reads but does not make a dataset."""

    def __init__(self, message: str, rejects: list[dict[str, Any]] | None = None, code: int = 1) -> None:
        super().__init__(message)
        self.rejects, self.code = rejects, code


@dataclass
class Prepared:
    """What prepare writes: the splits, the rejects (JSON rows) and ``stats.json``."""

    train: list[dict[str, Any]]
    val: list[dict[str, Any]]
    rejects: list[dict[str, Any]]
    stats: dict[str, Any]


def prepare_records(cfg: Any, rejects_path: str) -> Prepared:
    """Read ``cfg.data``'s source, reject records with no target token within
    ``cfg.model.max_length`` (the profile's tokenizer, loaded once the source reads), split by
    ``cfg.split`` and count tokens in ``cfg.format``; ``rejects_path`` is named in the errors.
    Raises :class:`PrepareError` (rejects kept) beyond ``data.max_reject_fraction`` or for an
    empty split."""
    data, fmt, max_length = cfg.data, cfg.format, cfg.model.max_length
    try:
        result = load_source(data.source, data.path, data.dataset_id, data.dataset_split, data.max_record_chars)
    except (FileNotFoundError, ValueError, ImportError) as err:
        raise PrepareError(str(err), code=2) from None
    if result.total == 0:
        raise PrepareError(f"{result.source}: no records (the source is empty or holds only blank lines)", code=2)
    tokenizer = load_tokenizer(cfg.model.pretrained_model_name_or_path, cfg.model.trust_remote_code)
    result = reject_without_target(result, tokenizer, fmt.system_prompt, fmt.target_style, max_length)
    for r in result.rejects:
        log.warning("%s:%d: rejected (%s): %s", result.source, r.line, r.field or "record", r.reason)
    rejects = [r.to_json() for r in result.rejects]
    by_kind = Counter(r.kind for r in result.rejects)
    fraction = len(rejects) / result.total
    if fraction > data.max_reject_fraction or not result.accepted:
        common = ", ".join(f"{kind} ({n})" for kind, n in by_kind.most_common(3))
        raise PrepareError(
            f"{result.source}: {len(rejects)} of {result.total} records rejected "
            f"({fraction:.1%} > data.max_reject_fraction={data.max_reject_fraction}), most for: {common}; "
            f"see {rejects_path}",
            rejects,
        )
    split = cfg.split
    train, val = split_records(result.accepted, split.method, split.val_fraction, split.seed)
    for name, rows in (("train", train), ("val", val)):
        if not rows:
            raise PrepareError(
                f"{result.source}: the {name} split is empty ({len(result.accepted)} records accepted, "
                f"split.val_fraction={split.val_fraction}); add records or change split.val_fraction",
                rejects,
            )
    stats = {
        "source": result.source,
        "accepted": len(result.accepted),
        "rejected": len(rejects),
        "rejected_by_reason": dict(sorted(by_kind.items())),
        "split": {"method": split.method, "val_fraction": split.val_fraction, "seed": split.seed},
        "splits": {
            name: token_stats(rows, tokenizer, fmt.system_prompt, fmt.target_style, max_length)
            for name, rows in (("train", train), ("val", val))
        },
    }
    return Prepared(train, val, rejects, stats)
