"""The report's table headers come from one place, in the report's language."""

from __future__ import annotations

import re

import pytest

from medsft.report.labels import LABELS, Label, Name, Table, label
from medsft.report.render import ReportInputs, languages, render_report
from tests.test_report import two_runs

CJK = re.compile(r"[\u4e00-\u9fff]")


def header_cells(report: str) -> list[str]:
    """The cells of every markdown table's header line (the line above a |---| line)."""
    lines = report.splitlines()
    return [
        cell.strip()
        for above, line in zip(lines, lines[1:], strict=False)
        if line.startswith("|---")
        for cell in above.strip().strip("|").split("|")
    ]


def test_every_label_is_written_in_every_report_language():
    for key, texts in LABELS.items():
        assert "*" in texts or set(texts) >= set(languages()), f"{key}: {texts}"
        if "*" not in texts:
            assert CJK.search(texts["zh"]), f"{key}: its zh text {texts['zh']!r} has no Chinese"


def test_the_chinese_report_has_no_english_column_label(tmp_path):
    metrics = {"eval_loss_token_weighted": 1.25, "rouge_l_f1": 0.5, "num_generations": 1, "decoding": "greedy"}
    generation = {"question": "问题？", "reference": "参考", "output": "回答"}
    runs = two_runs(
        tmp_path,
        timing={"train_seconds": 9.0, "hardware": "cpu"},
        profile_overrides={"max_steps": {"variant": 400, "profile": 20}},
        eval_metrics=metrics,
        generations=[generation],
    )
    english = {texts["en"] for texts in LABELS.values() if "*" not in texts}
    zh = header_cells(render_report(ReportInputs(runs=runs, lang="zh"), tmp_path / "zh").read_text())
    en = header_cells(render_report(ReportInputs(runs=runs, lang="en"), tmp_path / "en").read_text())
    assert len(zh) == len(en) > 20  # the same tables in both
    assert [c for c in zh if c in english] == []
    assert {"运行", "最终验证损失", "配置键", "v2: 变体的值"} <= set(zh)
    assert {"run", "final eval loss", "config key", "v2: variant's value"} <= set(en)
    assert {"v1", "v2"} <= set(zh)  # run names are data, the same in every language


def test_a_table_names_its_columns_and_a_missing_label_is_an_error():
    table = Table(("run", Name("v1"), Label("asked", {"run": "v1"})), [["a", "b", "c"]])
    assert table.header("zh") == ["运行", "v1", "v1: 变体的值"]
    assert table.markdown("en").splitlines()[0] == "| run | v1 | v1: variant's value |"
    with pytest.raises(KeyError, match="'nonexistent' is not defined"):
        label("nonexistent", "zh")
    with pytest.raises(KeyError, match="has no 'fr' text"):
        label("run", "fr")
    with pytest.raises(ValueError, match="row 0 has 1 cells, its header 2"):
        Table(("run", "output"), [["v1"]]).markdown("en")
