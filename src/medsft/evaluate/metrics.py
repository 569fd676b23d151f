"""Answer-quality metrics of generated replies, each with a written definition.

Overlap is measured in two conventions, side by side:

- ours, at character level (Chinese has no spaces; no segmenter involved): ``rouge_l_f1``
  and ``bleu``, on a 0–1 scale;
- the field's, as LLaMA-Factory reports Chinese SFT results (``scripts/eval_bleu_rouge.py``,
  ``ComputeSimilarity``), computed by the same libraries: ROUGE-1/2/L F1 with
  ``rouge-chinese`` over ``jieba`` words (``word_rouge_1``, ``word_rouge_2``,
  ``word_rouge_l``) and BLEU-4 with nltk's ``sentence_bleu`` and ``method3`` smoothing over
  characters, as LLaMA-Factory passes it ``list(text)`` (``bleu_4``); ×100.

The seed report's claimed gains ("term recognition", "rare-term generation", "mechanism
mentions") map to term_recall, rare_term_rate and mechanism_mention_rate here.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import cache

import jieba
from rouge_chinese import Rouge

from medsft.data.augmentation import Lexicon
from medsft.data.formatting import parse_reply


def lcs_length(a: str, b: str) -> int:
    """Length of the longest common subsequence of two strings (O(len(a)·len(b)))."""
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for ch in a:
        current = [0]
        for j, other in enumerate(b, 1):
            current.append(previous[j - 1] + 1 if ch == other else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l_f1(candidate: str, reference: str) -> float:
    """ROUGE-L F1 on characters: LCS-based precision P = lcs/len(candidate), recall
    R = lcs/len(reference), F1 = 2PR/(P+R); 0 when either side is empty."""
    lcs = lcs_length(candidate, reference)
    if lcs == 0:
        return 0.0
    p, r = lcs / len(candidate), lcs / len(reference)
    return 2 * p * r / (p + r)


def _ngrams(text: str, n: int) -> Counter[str]:
    return Counter(text[i : i + n] for i in range(len(text) - n + 1))


def bleu(candidate: str, reference: str, max_n: int = 4) -> float:
    """Sentence BLEU on characters: geometric mean of clipped n-gram precisions, n = 1..4,
    with add-one smoothing for n > 1 (Lin & Och 2004), times the brevity penalty
    exp(1 − len(reference)/len(candidate)) when the candidate is shorter. 0 for an empty
    candidate or no shared character."""
    if not candidate or not reference:
        return 0.0
    log_sum = 0.0
    for n in range(1, max_n + 1):
        cand, ref = _ngrams(candidate, n), _ngrams(reference, n)
        total = sum(cand.values())
        matched = sum(min(c, ref[g]) for g, c in cand.items())
        if n == 1 and matched == 0:
            return 0.0
        if n > 1:
            matched, total = matched + 1, total + 1
        log_sum += math.log(matched / total) if total else 0.0
    bp = 1.0 if len(candidate) >= len(reference) else math.exp(1 - len(reference) / len(candidate))
    return bp * math.exp(log_sum / max_n)


@cache
def _segmenter() -> jieba.Tokenizer:
    """jieba with its default dictionary, initialised once.

    A tokenizer of our own rather than jieba's global one, with the same dictionary (so the
    same words as ``jieba.cut``). jieba logs its dictionary loading to stderr at DEBUG: kept
    to warnings. Its prefix-dict cache goes to the system temp dir (jieba's default), never
    the working tree; a cache it cannot write is only logged.
    """
    jieba.setLogLevel(logging.WARNING)
    segmenter = jieba.Tokenizer()
    segmenter.initialize()
    return segmenter


def segment(text: str) -> list[str]:
    """jieba words of ``text`` (precise mode with HMM, as ``jieba.cut``), whitespace kept."""
    return list(_segmenter().cut(text))


WORD_ROUGE = {"word_rouge_1": "rouge-1", "word_rouge_2": "rouge-2", "word_rouge_l": "rouge-l"}


def word_rouge(candidate: str, reference: str) -> dict[str, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F1 ×100 over jieba words, by ``rouge-chinese`` on the
    space-joined words (LLaMA-Factory's definition); all 0 when either side has no word
    (``rouge-chinese`` raises on an empty text)."""
    hypothesis, ref = " ".join(segment(candidate)), " ".join(segment(reference))
    if not hypothesis.split() or not ref.split():
        return dict.fromkeys(WORD_ROUGE, 0.0)
    scores = Rouge().get_scores(hypothesis, ref)[0]
    return {key: scores[name]["f"] * 100 for key, name in WORD_ROUGE.items()}


def bleu_4(candidate: str, reference: str) -> float:
    """BLEU-4 ×100 by nltk's ``sentence_bleu`` (uniform weights over 1- to 4-grams,
    ``SmoothingFunction().method3``) over characters, as LLaMA-Factory computes it; 0 for a
    candidate or reference of whitespace only."""
    if not candidate.strip() or not reference.strip():
        return 0.0
    # nltk imports all of itself (about a second) for this one function: only when scoring.
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    return (
        float(sentence_bleu([list(reference)], list(candidate), smoothing_function=SmoothingFunction().method3)) * 100
    )


def term_recall(candidate: str, reference: str, lexicon: Lexicon) -> float | None:
    """Of the lexicon terms in the reference answer, the share present in the candidate;
    ``None`` when the reference names no lexicon term (left out of the mean)."""
    wanted = set(lexicon.find(reference))
    if not wanted:
        return None
    return sum(1 for term in wanted if term in candidate) / len(wanted)


def states_mechanism(answer: str, lexicon: Lexicon) -> bool:
    """Whether an answer contains a mechanism marker of the lexicon (机制, 导致, 病理生理 …)."""
    return any(marker in answer for marker in lexicon.mechanism_markers)


def term_document_frequency(texts: Iterable[str], lexicon: Lexicon) -> Counter[str]:
    """For each lexicon term, the number of texts (training records) that contain it."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(set(lexicon.find(text)))
    return counts


def rare_term_rate(answers: Sequence[str], lexicon: Lexicon, train_df: Counter[str], threshold: int) -> float | None:
    """Of the distinct lexicon terms in each generated answer (pooled over answers), the
    share whose training document frequency is below ``threshold``; ``None`` if no answer
    names a lexicon term."""
    found = [term for answer in answers for term in set(lexicon.find(answer))]
    if not found:
        return None
    return sum(1 for term in found if train_df[term] < threshold) / len(found)


def mean(values: Iterable[float | None]) -> float | None:
    """Mean of the values that are not ``None``; ``None`` if there are none."""
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def score_replies(
    replies: Sequence[str], references: Sequence[str], lexicon: Lexicon, train_df: Counter[str], threshold: int
) -> tuple[list[dict[str, float | bool | None]], dict[str, float | None]]:
    """Per-item scores of each reply against its reference answer, and their means.

    Overlap, recall and mechanism mentions are computed on answers: the text after
    ``</think>`` of the reply, and of the reference when it holds a reasoning block (the whole
    text, stripped, when there is no valid block: see :func:`parse_reply`).
    """
    items = []
    answers = []
    for reply, reference in zip(replies, references, strict=True):
        parsed = parse_reply(reply)
        answer, expected = parsed.answer, parse_reply(reference).answer
        answers.append(answer)
        items.append(
            {
                "think_format_valid": parsed.valid,
                "rouge_l_f1": rouge_l_f1(answer, expected),
                "bleu": bleu(answer, expected),
                **word_rouge(answer, expected),
                "bleu_4": bleu_4(answer, expected),
                "term_recall": term_recall(answer, expected, lexicon),
                "mechanism_mentioned": states_mechanism(answer, lexicon),
            }
        )
    overlap = ("rouge_l_f1", "bleu", *WORD_ROUGE, "bleu_4")
    summary = {
        "think_format_validity": mean(float(i["think_format_valid"]) for i in items),
        **{key: mean(i[key] for i in items) for key in overlap},
        "term_recall": mean(i["term_recall"] for i in items),
        "mechanism_mention_rate": mean(float(i["mechanism_mentioned"]) for i in items),
        "rare_term_rate": rare_term_rate(answers, lexicon, train_df, threshold),
    }
    return items, summary
