"""Each evaluation metric on hand-made examples with known values."""

import math
from collections import Counter

import pytest

from medsft.evaluate.metrics import (
    bleu,
    parse_reply,
    rare_term_rate,
    rouge_l_f1,
    score_replies,
    states_mechanism,
    term_recall,
)
from tests.test_augmentation import LEX

REF = "糖尿病与胰岛素抵抗有关，机制是外周组织对胰岛素反应下降。"


def test_perfect_answer_scores_one():
    reply = f"<think>\n想一想\n</think>\n\n{REF}"
    items, summary = score_replies([reply], [REF], LEX, Counter(), threshold=3)
    assert items[0]["think_format_valid"] is True
    assert summary["rouge_l_f1"] == 1.0 and summary["bleu"] == pytest.approx(1.0) and summary["term_recall"] == 1.0
    assert summary["mechanism_mention_rate"] == 1.0


@pytest.mark.parametrize(
    "reply", ["", "\n\n\n", "<think>只有思考</think>", "<think>a</think><think>b</think>答", "没有思考块的回答"]
)
def test_empty_or_malformed_replies_fail_format(reply):
    parsed = parse_reply(reply)
    assert parsed.valid is False
    if not reply.strip() or reply.startswith("<think>"):
        items, summary = score_replies([reply], [REF], LEX, Counter(), threshold=3)
        assert summary["think_format_validity"] == 0.0
        if not parsed.answer:
            assert summary["rouge_l_f1"] == 0.0 and summary["bleu"] == 0.0 and summary["term_recall"] == 0.0


def test_partial_overlap_hand_computed():
    cand, ref = "糖尿病需控制", "糖尿病需要控制饮食"
    # LCS 6: P = 6/6, R = 6/9 -> F1 = 0.8
    assert rouge_l_f1(cand, ref) == pytest.approx(0.8)
    # p1 = 6/6; p2 = (4+1)/(5+1); p3 = (2+1)/(4+1); p4 = (1+1)/(3+1); BP = exp(1 - 9/6)
    expected = math.exp(1 - 9 / 6) * (1 * 5 / 6 * 3 / 5 * 2 / 4) ** 0.25
    assert bleu(cand, ref) == pytest.approx(expected)
    assert expected == pytest.approx(0.42888, abs=1e-5)


def test_term_recall_mechanism_and_rare_terms():
    assert term_recall("糖尿病要控制饮食", REF, LEX) == 0.5  # reference names 糖尿病 and 胰岛素抵抗
    assert term_recall("任何回答", "参考里没有术语", LEX) is None
    assert states_mechanism("这会导致多尿", LEX) and not states_mechanism("多喝水", LEX)
    df = Counter({"糖尿病": 10, "多尿": 1})
    # distinct terms per answer, pooled: {糖尿病, 多尿} + {多尿} -> 2 of 3 are rare (< 3 records)
    assert rare_term_rate(["糖尿病患者多尿", "多尿"], LEX, df, threshold=3) == pytest.approx(2 / 3)
    assert rare_term_rate(["没有术语"], LEX, df, threshold=3) is None
