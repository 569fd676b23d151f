"""Each evaluation metric on hand-made examples with known values."""

import math
import os
import subprocess
import sys
from collections import Counter

import jieba
import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from rouge_chinese import Rouge

from medsft.evaluate.metrics import (
    bleu,
    bleu_4,
    parse_reply,
    rare_term_rate,
    rouge_l_f1,
    score_replies,
    segment,
    states_mechanism,
    term_recall,
    word_rouge,
)
from tests.test_augmentation import LEX

REF = "糖尿病与胰岛素抵抗有关，机制是外周组织对胰岛素反应下降。"


def test_perfect_answer_scores_one():
    reply = f"<think>\n想一想\n</think>\n\n{REF}"
    items, summary = score_replies([reply], [REF], LEX, Counter(), threshold=3)
    assert items[0]["think_format_valid"] is True
    assert summary["rouge_l_f1"] == 1.0 and summary["bleu"] == pytest.approx(1.0) and summary["term_recall"] == 1.0
    assert summary["mechanism_mention_rate"] == 1.0
    for key in ("word_rouge_1", "word_rouge_2", "word_rouge_l", "bleu_4"):
        assert summary[key] == pytest.approx(100.0), key


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
            assert summary["word_rouge_l"] == 0.0 and summary["bleu_4"] == 0.0


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


def llamafactory_scores(pred: str, label: str) -> dict[str, float]:
    """LLaMA-Factory's per-example metrics (scripts/eval_bleu_rouge.py), written out
    independently of medsft: jieba's global segmenter, rouge-chinese, nltk; ×100, unrounded."""
    hypothesis, reference = list(jieba.cut(pred)), list(jieba.cut(label))
    scores = Rouge().get_scores(" ".join(hypothesis), " ".join(reference))[0]
    bleu4 = sentence_bleu([list(label)], list(pred), smoothing_function=SmoothingFunction().method3)
    return {
        "word_rouge_1": scores["rouge-1"]["f"] * 100,
        "word_rouge_2": scores["rouge-2"]["f"] * 100,
        "word_rouge_l": scores["rouge-l"]["f"] * 100,
        "bleu_4": bleu4 * 100,
    }


def field_scores(candidate: str, reference: str) -> dict[str, float]:
    return {**word_rouge(candidate, reference), "bleu_4": bleu_4(candidate, reference)}


PAIRS = [
    ("糖尿病需控制", "糖尿病需要控制饮食"),
    ("高血压患者应低盐饮食并规律服药。", "高血压患者要限制钠盐摄入，规律服用降压药，定期监测血压。"),
    ("肺炎常见症状包括发热、咳嗽和咳痰。", "社区获得性肺炎的典型表现为发热、咳嗽、咳痰，可伴胸痛。"),
    (REF, "胰岛素抵抗是2型糖尿病的核心机制，外周组织摄取葡萄糖减少。"),
    # Odd inputs: punctuation only, English and digits mixed in, line breaks.
    ("。。。！？", REF),
    ("二甲双胍 (metformin) 500mg 每日两次，HbA1c<7%。", "二甲双胍 metformin 起始剂量500 mg，目标 HbA1c < 7%。"),
    ("第一步：补液。\n第二步：纠正电解质紊乱！", "首先补液\n\n然后纠正电解质紊乱。"),
]


@pytest.mark.parametrize(("candidate", "reference"), PAIRS)
def test_word_level_scores_are_llamafactorys(candidate, reference):
    assert field_scores(candidate, reference) == pytest.approx(llamafactory_scores(candidate, reference), abs=1e-9)


def test_word_level_scores_hand_checked():
    assert segment("糖尿病与胰岛素抵抗有关") == ["糖尿病", "与", "胰岛素", "抵抗", "有关"]
    assert segment("糖尿病与高血压有关") == ["糖尿病", "与", "高血压", "有关"]
    scores = word_rouge("糖尿病与高血压有关", "糖尿病与胰岛素抵抗有关")
    # 3 shared words of 4 and 5: P = 3/4, R = 3/5 -> F1 = 2/3; LCS (糖尿病 与 有关) is 3 as well;
    # bigrams: 1 shared ((糖尿病, 与)) of 3 and 4 -> F1 = 2/7. rouge-chinese's F1 adds 1e-8 below.
    assert scores["word_rouge_1"] == pytest.approx(200 / 3, abs=1e-5)
    assert scores["word_rouge_2"] == pytest.approx(200 / 7, abs=1e-5)
    assert scores["word_rouge_l"] == pytest.approx(200 / 3, abs=1e-5)
    assert field_scores(REF, REF) == pytest.approx(dict.fromkeys(scores.keys() | {"bleu_4"}, 100.0))
    assert field_scores("头痛", "腹泻") == dict.fromkeys(scores.keys() | {"bleu_4"}, 0.0)


@pytest.mark.parametrize("candidate", ["", " ", "\n\t \n"])
def test_empty_candidate_or_reference_scores_zero(candidate):
    with pytest.raises(ValueError, match="empty"):  # why word_rouge checks first
        Rouge().get_scores("", REF)
    zero = {"word_rouge_1": 0.0, "word_rouge_2": 0.0, "word_rouge_l": 0.0, "bleu_4": 0.0}
    assert field_scores(candidate, REF) == zero
    assert field_scores(REF, candidate) == zero


def test_reasoning_is_stripped_from_reply_and_reference():
    answer = "糖尿病需要控制饮食。"
    # The reasoning repeats the reference word for word; only the answer after </think> counts.
    reply = f"<think>\n{REF}\n</think>\n\n{answer}"
    reference = f"<think>参考的推理过程</think>\n{REF}"
    items, _ = score_replies([reply], [reference], LEX, Counter(), threshold=3)
    expected = field_scores(answer, REF)
    assert {k: items[0][k] for k in expected} == pytest.approx(expected)
    assert items[0]["rouge_l_f1"] == pytest.approx(rouge_l_f1(answer, REF))
    assert expected["word_rouge_l"] < 50
    # A reasoning block with no answer after it leaves nothing to score.
    items, _ = score_replies([f"<think>{REF}</think>"], [REF], LEX, Counter(), threshold=3)
    assert items[0]["word_rouge_1"] == 0.0 and items[0]["bleu_4"] == 0.0


def test_long_text_scores_as_the_libraries_do():
    # ~1,300 words with no sentence break in the candidate, in several sentences in the reference.
    candidate = "，".join(["糖尿病患者需要长期控制血糖并定期复查糖化血红蛋白"] * 120)
    reference = "。".join([REF.rstrip("。")] * 30) + "。"
    assert len(segment(candidate)) > 1000
    assert field_scores(candidate, reference) == pytest.approx(llamafactory_scores(candidate, reference), abs=1e-9)


def test_jieba_is_quiet_and_writes_nothing_in_the_working_directory(tmp_path):
    work, temp = tmp_path / "work", tmp_path / "temp"
    work.mkdir()
    temp.mkdir()
    code = "from medsft.evaluate.metrics import segment; print(' '.join(segment('糖尿病与胰岛素抵抗有关')))"
    env = {**os.environ, "TMPDIR": str(temp)}
    done = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True, check=True)
    assert done.stdout == "糖尿病 与 胰岛素 抵抗 有关\n"
    assert done.stderr == ""
    assert list(work.iterdir()) == []
    assert [p.name for p in temp.iterdir()] == ["jieba.cache"]
