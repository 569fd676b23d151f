"""Knowledge injection and progressive term masking: rules, determinism, stats."""

import json
from dataclasses import replace

import pytest

from medsft.core.config import TermMaskingConfig
from medsft.data.augmentation import (
    PLAIN_MASK,
    Lexicon,
    augment_for_epoch,
    inject_knowledge,
    load_lexicon,
    mask_terms,
    masking_stats,
    record_id,
    rng_for,
)
from tests.conftest import ROOT

LEX = Lexicon(
    terms={
        "mechanism": ["胰岛素抵抗"],
        "clinical_feature": ["多尿", "口渴"],
        "diagnosis": ["糖尿病", "高血压", "2型糖尿病"],
    },
    mechanisms={"糖尿病": "胰岛素抵抗/分泌不足", "高血压": "RAAS系统异常"},
    mechanism_markers=["机制", "导致"],
)
MASKING = TermMaskingConfig(probability=1.0, max_terms=2, field="question", typed_from_epoch=1)


def test_injection_once_at_first_mention():
    text, terms = inject_knowledge("糖尿病患者常伴高血压，糖尿病需长期管理。", LEX)
    assert text == "糖尿病(机制:胰岛素抵抗/分泌不足)患者常伴高血压(机制:RAAS系统异常)，糖尿病需长期管理。"
    assert sorted(terms) == ["糖尿病", "高血压"]


def test_no_injection_when_a_mechanism_is_stated():
    assert inject_knowledge("糖尿病的机制是胰岛素抵抗。", LEX) == ("糖尿病的机制是胰岛素抵抗。", [])
    assert inject_knowledge("糖尿病与胰岛素抵抗/分泌不足有关。", LEX)[1] == []
    assert inject_knowledge("没有相关术语。", LEX)[1] == []


def test_masking_plain_first_epoch_then_typed():
    rng = rng_for(1, "r", 0)
    text, masks = mask_terms("2型糖尿病多尿口渴", LEX, rng, epoch=0, max_terms=2, typed_from_epoch=1)
    assert 1 <= len(masks) <= 2 and all(m == PLAIN_MASK for _, m in masks)
    assert all(term not in text for term, _ in masks)
    assert all(term != "糖尿病" for term, _ in masks)  # the longer "2型糖尿病" wins
    typed = {term: mask for term, mask in mask_terms("2型糖尿病多尿口渴", LEX, rng_for(1, "r", 2), 2, 3, 1)[1]}
    expected = {"2型糖尿病": "[鉴别诊断]", "多尿": "[临床特征]", "口渴": "[临床特征]"}
    assert typed and all(expected[term] == mask for term, mask in typed.items())


def test_augmentation_depends_only_on_seed_record_and_epoch():
    rec = {"question": "糖尿病和高血压有什么关系？多尿怎么办？", "think": "t", "answer": "a"}
    first = [augment_for_epoch(rec, MASKING, LEX, seed=42, epoch=e) for e in range(6)]
    assert first == [augment_for_epoch(dict(rec), MASKING, LEX, seed=42, epoch=e) for e in range(6)]
    assert first != [augment_for_epoch(rec, MASKING, LEX, seed=7, epoch=e) for e in range(6)]
    assert record_id(rec) == record_id({**rec, "answer": "other"})
    assert rec["question"] == "糖尿病和高血压有什么关系？多尿怎么办？"  # input untouched


def test_masking_probability_is_respected():
    recs = [{"question": f"第{i}例糖尿病多尿", "think": "t", "answer": "a"} for i in range(2000)]
    settings = replace(MASKING, probability=0.1)
    masked = sum(bool(augment_for_epoch(r, settings, LEX, 42, 0)[1]) for r in recs)
    assert 150 < masked < 250  # 10% of 2000, binomial sd ~13


def test_project_lexicon_is_well_formed():
    lex = load_lexicon(ROOT / "conf/lexicon/medical.yaml")
    assert set(lex.terms) == {"mechanism", "clinical_feature", "diagnosis", "treatment"}
    assert lex.mechanisms["糖尿病"] == "胰岛素抵抗/分泌不足" and lex.mechanisms["高血压"] == "RAAS系统异常"
    assert len(lex.mechanisms) >= 22 and all(t in lex.terms["diagnosis"] for t in lex.mechanisms)
    every = [t for terms in lex.terms.values() for t in terms]
    assert len(every) == len(set(every))


def test_augment_stage_injects_knowledge_and_counts_it(tmp_path):
    from stages.augment import main

    prepared = tmp_path / "prep"
    prepared.mkdir()
    recs = [{"question": f"第{i}例糖尿病多尿，高血压吗", "think": "t", "answer": "糖尿病需控制饮食"} for i in range(40)]
    (prepared / "train.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs))
    out = tmp_path / "aug"
    args = [f"prepare.out_dir={prepared}", f"augment.out_dir={out}", f"output_roots=[{tmp_path}]"]
    args.append("variants.v3.augment.knowledge_injection=true")
    assert main(["v3", *args]) == 0
    stats = json.loads((out / "v3" / "stats.json").read_text())
    written = [json.loads(line) for line in (out / "v3" / "train.jsonl").read_text().splitlines()]
    assert stats["knowledge_injection"]["records_touched"] == 40 == stats["knowledge_injection"]["by_term"]["糖尿病"]
    assert all("(机制:" in r["answer"] for r in written)
    assert "term_masking" not in stats  # train owns masking (runs/<v>/train/masking.json)


@pytest.mark.parametrize("field", ["question", "answer"])
def test_masked_field_is_configurable(field):
    rec = {"question": "糖尿病多尿", "think": "t", "answer": "糖尿病多尿"}
    out, masks = augment_for_epoch(rec, replace(MASKING, field=field), LEX, 1, 0)
    assert masks and out[field] != rec[field] and all(out[k] == rec[k] for k in rec if k != field)


def test_augment_stage_is_byte_identical_and_masks_follow_the_seed(tmp_path):
    from stages.augment import main

    prepared = tmp_path / "prep"
    prepared.mkdir()
    recs = [
        {"question": f"第{i}例糖尿病多尿，高血压怎么办", "think": "t", "answer": "糖尿病需控制饮食"} for i in range(60)
    ]
    (prepared / "train.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs))
    common = [
        f"prepare.out_dir={prepared}",
        "variants.v3.augment.knowledge_injection=true",
        f"output_roots=[{tmp_path}]",
    ]
    for name in ("a", "b"):
        assert main(["v3", *common, f"augment.out_dir={tmp_path / name}"]) == 0
    read = {n: [(tmp_path / n / "v3" / f).read_bytes() for f in ("train.jsonl", "stats.json")] for n in "ab"}
    assert read["a"] == read["b"]
    settings = TermMaskingConfig(probability=0.5, max_terms=2, field="question", typed_from_epoch=1)
    lex = load_lexicon(ROOT / "conf/lexicon/medical.yaml")
    assert masking_stats(recs, settings, lex, 42, 2) == masking_stats(recs, settings, lex, 42, 2)
    assert masking_stats(recs, settings, lex, 42, 2) != masking_stats(recs, settings, lex, 7, 2)
