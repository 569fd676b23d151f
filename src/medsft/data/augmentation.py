"""The seed report's proposed augmentations (its §5), made deterministic and measurable.

- Knowledge injection: where an answer names a lexicon disease that has a mechanism entry and
  states no mechanism, ``term(机制:mechanism)`` is written once, at the first mention. (The
  report's snippet replaced every occurrence; a term repeated five times got five glosses.)
- Progressive term masking: with probability ``p`` a record has 1–``max_terms`` lexicon terms
  of one field replaced by a mask, ``[MASK]`` in the first epoch and a mask typed by the
  term's category afterwards (``[病理机制]``, ``[临床特征]``, ``[鉴别诊断]``).

Masking the question (the default) trains the model to answer when the question leaves a
term out. Masking a target field (``answer`` or ``think``, what the real V3 run did) puts the
mask strings into the loss: the model learns to *emit* ``[MASK]`` and ``[病理机制]`` in its
answers. Both are reachable through ``term_masking.field``.

Every random choice comes from a generator seeded by (seed, record id, epoch) alone, so a
record's augmentation does not depend on the order or on the other records.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medsft.core.config import TermMaskingConfig
from medsft.data.records import normalise_question

PLAIN_MASK = "[MASK]"
TYPED_MASKS = {"mechanism": "[病理机制]", "clinical_feature": "[临床特征]", "diagnosis": "[鉴别诊断]"}


@dataclass
class Lexicon:
    """Medical terms by category, disease → mechanism glosses, and mechanism markers."""

    terms: dict[str, list[str]]
    mechanisms: dict[str, str]
    mechanism_markers: list[str]
    _by_term: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_term = {t: cat for cat, terms in self.terms.items() for t in terms}

    def category(self, term: str) -> str | None:
        return self._by_term.get(term)

    def all_terms(self) -> list[str]:
        return list(self._by_term)

    def find(self, text: str, categories: tuple[str, ...] | None = None) -> list[str]:
        """Lexicon terms present in ``text``, longest first, none inside a longer one found."""
        found = []
        for term in sorted(self._by_term, key=len, reverse=True):
            if categories and self._by_term[term] not in categories:
                continue
            if term in text and not any(term in longer for longer in found):
                found.append(term)
        return found


def load_lexicon(path: str | Path) -> Lexicon:
    """Read the lexicon YAML (``terms``, ``mechanisms``, ``mechanism_markers``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: lexicon not found")
    with open(path, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh) or {}
    for key in ("terms", "mechanisms", "mechanism_markers"):
        if key not in doc:
            raise ValueError(f"{path}: missing top-level key {key!r}")
    return Lexicon(doc["terms"], doc["mechanisms"], doc["mechanism_markers"])


def record_id(record: dict[str, Any]) -> str:
    """A stable id of a record: a hash of its normalised question."""
    return hashlib.sha256(normalise_question(record["question"]).encode("utf-8")).hexdigest()[:16]


def rng_for(seed: int, rid: str, epoch: int) -> random.Random:
    """A generator fixed by (seed, record id, epoch) alone."""
    digest = hashlib.sha256(f"{seed}:{rid}:{epoch}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def inject_knowledge(answer: str, lexicon: Lexicon) -> tuple[str, list[str]]:
    """Gloss each named disease with its mechanism once, at its first mention.

    Skipped when the answer already states a mechanism ("机制" in it, the report's own test)
    or already contains that disease's mechanism text. Returns (answer, injected terms).
    """
    if "机制" in answer:
        return answer, []
    injected = []
    for term in sorted(lexicon.mechanisms, key=len, reverse=True):
        mechanism = lexicon.mechanisms[term]
        at = answer.find(term)
        if at < 0 or mechanism in answer or any(term in t for t in injected):
            continue
        end = at + len(term)
        answer = f"{answer[:end]}(机制:{mechanism}){answer[end:]}"
        injected.append(term)
    return answer, injected


def mask_terms(
    text: str, lexicon: Lexicon, rng: random.Random, epoch: int, max_terms: int, typed_from_epoch: int
) -> tuple[str, list[tuple[str, str]]]:
    """Replace 1–``max_terms`` lexicon terms of ``text`` (every occurrence) by a mask.

    Epochs before ``typed_from_epoch`` use ``[MASK]``; later ones the term's typed mask.
    Returns (text, [(term, mask), …]).
    """
    candidates = lexicon.find(text, tuple(TYPED_MASKS))
    if not candidates:
        return text, []
    k = min(len(candidates), rng.randint(1, max_terms))
    chosen = rng.sample(sorted(candidates), k)
    masks = []
    for term in sorted(chosen, key=len, reverse=True):
        mask = PLAIN_MASK if epoch < typed_from_epoch else TYPED_MASKS[lexicon.category(term)]
        text = text.replace(term, mask)
        masks.append((term, mask))
    return text, masks


def augment_for_epoch(
    record: dict[str, Any], masking: TermMaskingConfig, lexicon: Lexicon | None, seed: int, epoch: int
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The record as training sees it in ``epoch`` (0-based) under ``masking`` (a variant's
    ``augment.term_masking``), and the masks applied."""
    if not masking.probability or lexicon is None:
        return record, []
    rng = rng_for(seed, record_id(record), epoch)
    if rng.random() >= masking.probability:
        return record, []
    name = masking.field
    text, masks = mask_terms(record[name], lexicon, rng, epoch, masking.max_terms, masking.typed_from_epoch)
    return ({**record, name: text} if masks else record), masks


def masking_stats(
    records: list[dict[str, Any]], masking: TermMaskingConfig, lexicon: Lexicon | None, seed: int, epochs: int
) -> list[dict[str, Any]]:
    """Per epoch (0 … ``epochs`` − 1): the records masked, the terms masked, and the masks by type."""
    out = []
    for epoch in range(epochs):
        masks = [augment_for_epoch(r, masking, lexicon, seed, epoch)[1] for r in records]
        by_type = Counter(mask for record_masks in masks for _, mask in record_masks)
        out.append(
            {
                "epoch": epoch,
                "records_masked": sum(1 for m in masks if m),
                "terms_masked": sum(by_type.values()),
                "masks_by_type": dict(sorted(by_type.items())),
            }
        )
    return out


def augment_records(
    records: list[dict[str, Any]], knowledge_injection: bool, lexicon: Lexicon | None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A variant's training records after knowledge injection (when it asks for it, with
    ``lexicon``) and what was injected: ``enabled``, ``records_touched``, ``terms_injected``
    and ``by_term`` (most injected first). Term masking is not applied here: train applies it
    per epoch."""
    injected: Counter[str] = Counter()
    touched = 0
    if knowledge_injection:
        out = []
        for rec in records:
            answer, terms = inject_knowledge(rec["answer"], lexicon)
            touched += bool(terms)
            injected.update(terms)
            out.append({**rec, "answer": answer} if terms else rec)
        records = out
    stats = {
        "enabled": knowledge_injection,
        "records_touched": touched,
        "terms_injected": sum(injected.values()),
        "by_term": dict(injected.most_common()),
    }
    return records, stats
