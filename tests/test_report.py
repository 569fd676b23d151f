"""History loading, comparison numbers and the rendered report, on hand-made histories."""

import json
from dataclasses import replace

import pandas as pd
import pytest

from medsft.analysis.measures import final_value, relative_change
from medsft.analysis.tables import md_table
from medsft.core.history import load_history, write_history_csv
from medsft.report import sections
from medsft.report.compare import config_differences
from medsft.report.labels import Label, Name, Table
from medsft.report.render import Outline, ReportInputs, render_report
from medsft.report.runs import RunFiles

LOG = [
    {"step": 10, "loss": 2.0, "grad_norm": 1.0, "learning_rate": 1e-4, "epoch": 0.1},
    {"step": 20, "loss": 1.5, "grad_norm": 0.8, "learning_rate": 2e-4, "epoch": 0.2},
    {"step": 20, "eval_loss": 1.6, "eval_runtime": 3.0, "epoch": 0.2},
    {"step": 20, "train_runtime": 9.0, "train_loss": 1.75, "epoch": 0.2},
]


def test_history_merges_train_and_eval_entries_by_step(tmp_path):
    write_history_csv(tmp_path / "history.csv", LOG)
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": LOG}))
    from_csv = load_history(tmp_path / "history.csv")
    from_state = load_history(tmp_path / "trainer_state.json")
    pd.testing.assert_frame_equal(from_csv, from_state)
    assert from_csv["step"].tolist() == [10, 20]
    assert from_csv.loc[1, "eval_loss"] == 1.6 and pd.isna(from_csv.loc[0, "eval_loss"])


def test_load_history_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.csv"):
        load_history(tmp_path / "nothing.csv")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="x.json: not a trainer_state.json"):
        load_history(tmp_path / "x.json")


def test_config_differences_and_relative_change():
    diff = config_differences(
        {
            "v1": {"lora": {"r": 64, "lora_dropout": 0.05, "modules_to_save": None}},
            "v2": {"lora": {"r": 64.0, "lora_dropout": 0.1, "modules_to_save": ["embed_tokens"]}},
        }
    )
    assert diff["key"].tolist() == ["lora.lora_dropout", "lora.modules_to_save"]
    assert relative_change(1.1073, 0.8717) == pytest.approx(-0.21277, abs=1e-5)
    assert relative_change(0.0, 1.0) is None


def two_runs(tmp_path, **v2_files) -> dict[str, RunFiles]:
    """v1 logs LOG; v2 the same with every train loss ×1.1, a different dropout and ``v2_files``."""
    scale = [dict(e, loss=e["loss"] * 1.1) if "loss" in e else e for e in LOG]
    runs = {}
    for name, log in (("v1", LOG), ("v2", scale)):
        write_history_csv(tmp_path / f"{name}.csv", log)
        runs[name] = RunFiles(
            name,
            load_history(tmp_path / f"{name}.csv"),
            f"{name}.csv",
            config={"lora": {"lora_dropout": 0.05 if name == "v1" else 0.1}},
        )
    runs["v2"] = replace(runs["v2"], **v2_files)
    return runs


def test_section_tables_on_hand_made_runs(tmp_path):
    runs = two_runs(
        tmp_path,
        timing={"train_seconds": 9.0, "hardware": "cpu"},
        profile_overrides={"max_steps": {"variant": 400, "profile": 20}},
    )
    overview = sections.overview(runs, tracking_logdir="swanlog")
    assert overview["table"].rows[1] == ["v2", "`v2.csv`", "20", "9.0", "—", "—", "`cpu`"]
    assert overview["differences"] == Table(
        ("key", Name("v1"), Name("v2")), [["`lora.lora_dropout`", "0.0500", "0.1000"]]
    )
    assert overview["overrides"] == Table(
        ("key", Label("asked", {"run": "v2"}), "used"), [["`training.max_steps`", "400", "20"]]
    )
    assert overview["overrides"].header("zh") == ["配置键", "v2: 变体的值", "实际使用"]
    # Train loss 2.0 -> 1.5 over the phase: a 25% drop; the eval loss is the phase's last.
    assert sections.phase_rows(runs, 100).rows[0] == [
        "v1",
        "1 (0, 100]",
        "2.0000 @ 10",
        "1.5000 @ 20",
        "↓25.0%",
        "1.6000 @ 20",
    ]
    assert sections.learning_rate_rows(runs).rows[0] == [
        "v1",
        "1.0000e-04 @ 10",
        "2.0000e-04 @ 20",
        "1.0000e-04 @ 10",
        "2.0000e-04 @ 20",
    ]
    # Grad norms 1.0 and 0.8: mean 0.9, population std 0.1, CV 0.111.
    grads = sections.gradient_tables(runs)
    assert grads["table"].rows[0][:6] == ["v1", "0.8000 @ 20", "1.0000 @ 10", "0.9000", "0.1000", "0.111"]
    assert (grads["cut"], grads["groups"]) == ("10", None)
    compared = sections.comparison(runs, plateau_tolerance=0.01)
    assert (compared["base"], compared["tolerance"]) == ("v1", "1.0%")
    assert compared["table"].rows[1][:3] == ["v2", "1.6500", "↑10.0%"]
    assert sections.comparison({"v1": runs["v1"]}, 0.01) is None
    assert sections.evaluation(runs, "en") is None and sections.reproducibility({}) is None


def test_evaluation_section_shows_both_conventions(tmp_path):
    metrics = {
        "eval_loss_token_weighted": 1.25,
        "rouge_l_f1": 0.5,
        "bleu": 0.25,
        "word_rouge_1": 40.0,
        "word_rouge_2": 12.5,
    }
    metrics |= {"word_rouge_l": 37.5, "bleu_4": 20.0, "num_generations": 1, "decoding": "greedy"}
    generation = {"question": "问题？", "reference": "参考\n答案", "output": "<think>\n\n</think>\n\n回答|一"}
    runs = two_runs(tmp_path, eval_metrics=metrics, generations=[generation])
    table = sections.evaluation(runs, "en")
    columns = dict(zip(table["table"].header("en"), table["table"].rows[0], strict=True))
    assert [name for name, *_ in table["table"].rows] == ["v2"]  # v1 was not evaluated
    assert columns["ROUGE-L F1"] == "0.500" and columns["BLEU"] == "0.250"
    assert columns["ROUGE-1 (words)"] == "40.00" and columns["ROUGE-L (words)"] == "37.50"
    assert columns["BLEU-4"] == "20.00" and columns["term recall"] == "—"
    assert table["probes"] == []
    assert table["generations"] == [
        {
            "question": "问题？",
            "table": Table(("run", "output"), [["v2", "<think>\\n×2</think>\\n×2回答|一"], ["reference", "参考 答案"]]),
        }
    ]
    for lang, definition, header in (
        ("en", "ROUGE F1 by rouge-chinese over jieba words", "| ROUGE-1 (words) | ROUGE-2 (words) | ROUGE-L (words) |"),
        ("zh", "rouge-chinese 在 jieba 分词上", "| ROUGE-1（词） | ROUGE-2（词） | ROUGE-L（词） |"),
    ):
        report = render_report(ReportInputs(runs=runs, lang=lang), tmp_path / lang).read_text()
        assert f"| ROUGE-L F1 | BLEU {header} BLEU-4 |" in report
        assert "| v2 | 1.2500 | — | — | 0.500 | 0.250 | 40.00 | 12.50 | 37.50 | 20.00 | — | — | — |" in report
        assert definition in report
        assert "回答\\|一" in report  # a pipe in a generation is escaped, not a column


def test_outline_numbers_sections_in_order():
    heading = Outline()
    assert heading(2, "before any section") == "### before any section"
    assert [heading(1, "a"), heading(2, "b"), heading(3, "c"), heading(2, "d"), heading(1, "e"), heading(2, "f")] == [
        "## 1. a",
        "### 1.1 b",
        "#### c",
        "### 1.2 d",
        "## 2. e",
        "### 2.1 f",
    ]


def test_tables_and_templates_fail_loudly(tmp_path):
    import jinja2

    from medsft.report.render import _environment, languages

    with pytest.raises(ValueError, match="row 0 has 1 cells, its header 2"):
        md_table(["run", "loss"], [["v1"]])
    runs = two_runs(tmp_path)
    with pytest.raises(ValueError, match="report.lang: no report template for 'fr' \\(have: en, zh\\)"):
        render_report(ReportInputs(runs=runs, lang="fr"), tmp_path / "fr")
    assert languages() == ["en", "zh"]
    # A value the template uses and the code did not give is an error, not a blank.
    with pytest.raises(jinja2.UndefinedError, match="repro"):
        _environment().get_template("report.en.md.j2").render(published=None, local=None, heading=Outline())


def test_the_templates_are_package_data():
    import fnmatch

    from tests.conftest import ROOT

    tomllib = pytest.importorskip("tomllib")
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "medsft.report"
    ]
    package = ROOT / "src/medsft/report"
    templates = [p.relative_to(package).as_posix() for p in (package / "templates").iterdir()]
    assert sorted(templates) == ["templates/report.en.md.j2", "templates/report.zh.md.j2"]
    assert all(any(fnmatch.fnmatch(t, pattern) for pattern in patterns) for t in templates)


def test_report_shows_the_logged_numbers(tmp_path):
    runs = two_runs(tmp_path)
    assert [final_value(r.history, "loss") for r in runs.values()] == pytest.approx([1.5, 1.65])
    report = render_report(ReportInputs(runs=runs, lang="en"), tmp_path / "out").read_text()
    assert "| v1 | 1.5000 | — | 1.6000 | — | 0.1000 | — |" in report
    assert "| v2 | 1.6500 | ↑10.0% | 1.6000 | 0.0% | -0.0500 | ↓150.0% |" in report
    assert "`lora.lora_dropout`" in report
    for fig in ("loss", "eval_loss", "learning_rate", "grad_norm"):
        assert (tmp_path / "out/figures" / f"{fig}.png").stat().st_size > 1000
        assert f"figures/{fig}.png" in report


def test_the_report_opens_with_the_published_runs_and_judges_claims_on_their_profile_only(tmp_path):
    from medsft.report.runs import load_imported_run
    from tests.conftest import ROOT

    published = {v: load_imported_run(v, ROOT / "data/published" / v) for v in ("v1", "v2")}
    write_history_csv(tmp_path / "local.csv", LOG)
    local = {
        "v1": RunFiles("v1", load_history(tmp_path / "local.csv"), "local.csv", config={"model": {"name": "tiny"}})
    }
    inputs = ReportInputs(
        runs=local,
        published=published,
        published_source="data/published",
        published_profile="qwen3-1.7b",
        local_profile="tiny",
        claims_path=str(ROOT / "conf/claims/seed_report.yaml"),
        lang="en",
    )
    report = render_report(inputs, tmp_path / "out").read_text()
    published_part, local_part = report.split("## 2. Local runs")
    assert "## 1. Published runs" in published_part and "### 1." in published_part
    # The claims are judged on the published logs: the seed's V2 phase 1 numbers hold there.
    assert "| phase_1 |" in published_part and "**holds**" in published_part
    assert "Not applicable" in local_part and "`tiny`" in local_part and "**holds**" not in local_part
    assert (tmp_path / "out/figures/published_loss.png").exists() and (tmp_path / "out/figures/loss.png").exists()
    # The same local runs on the published profile are audited.
    same = render_report(replace(inputs, local_profile="qwen3-1.7b"), tmp_path / "same").read_text()
    assert "Not applicable" not in same.split("## 2. Local runs")[1]


def test_whitespace_only_output_shows_as_blank():
    from medsft.report.sections import _clip

    assert _clip("\n\n\n \n") == "(blank)" and _clip("") == "(empty)"
    assert _clip("\n" * 24 + "，，") == "\\n×24，，"


def test_provenance_tells_regenerated_results_from_uncommitted_changes(tmp_path):
    import subprocess

    from medsft.report.provenance import git_state

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True)

    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  train:\n    outs:\n    - path: runs/v1/train/metrics.json\n      md5: x\n"
        "  report:\n    outs:\n    - path: reports\n      md5: y\n",
        encoding="utf-8",
    )
    for name in ("runs/v1/train/metrics.json", "reports/report.md", "src/code.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("1\n", encoding="utf-8")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "c")
    assert git_state(tmp_path) | {"commit": None} == {"commit": None, "dirty": False, "regenerated": False}
    (tmp_path / "runs/v1/train/metrics.json").write_text("2\n", encoding="utf-8")
    (tmp_path / "dvc.lock").write_text((tmp_path / "dvc.lock").read_text() + "\n", encoding="utf-8")
    assert git_state(tmp_path)["regenerated"] and not git_state(tmp_path)["dirty"]
    # The report's own folder, removed by DVC while the report is written, says nothing.
    (tmp_path / "reports/report.md").unlink()
    (tmp_path / "dvc.lock").write_text((tmp_path / "dvc.lock").read_text().rstrip() + "\n", encoding="utf-8")
    git("checkout", "-q", "--", "runs", "dvc.lock")
    assert git_state(tmp_path, writing="reports") | {"commit": None} == {
        "commit": None,
        "dirty": False,
        "regenerated": False,
    }
    (tmp_path / "src/code.py").write_text("2\n", encoding="utf-8")
    assert git_state(tmp_path)["dirty"]
    git("checkout", "-q", "--", "src")
    (tmp_path / ".gitignore").write_text("/models/\n", encoding="utf-8")  # the user's, not the pipeline's
    assert git_state(tmp_path)["dirty"]


def test_benchmark_table_shows_each_runs_lm_eval_scores_and_nothing_without_them(tmp_path):
    scores = {"acc": 0.25, "acc_stderr": 0.125, "acc_norm": 0.5, "acc_norm_stderr": None}
    record = {
        "lm_eval_version": "0.4.13",
        "limit": 8,
        "num_fewshot": None,
        "apply_chat_template": False,
        "tasks": {"medsft_clinical_mc": scores},
        "versions": {"medsft_clinical_mc": 1.0},
        "n-samples": {"medsft_clinical_mc": {"effective": 8, "original": 12}},
        "n-shot": {"medsft_clinical_mc": 0},
    }
    empty = {**record, "lm_eval_version": None, "tasks": {}, "versions": {}, "n-samples": {}, "n-shot": {}}
    runs = two_runs(tmp_path, benchmarks=record)
    runs["v1"] = replace(runs["v1"], benchmarks=empty)
    table = sections.benchmarks(runs)
    assert table["table"].columns[5:] == (Name("v2"),)  # v1 ran none
    assert table["table"].rows == [
        ["`medsft_clinical_mc`", "1.0", "8 / 12", "0", "acc", "0.250 ± 0.125"],
        ["`medsft_clinical_mc`", "1.0", "8 / 12", "0", "acc_norm", "0.500"],
    ]
    assert (table["lm_eval_version"], table["limit"], table["chat_template"]) == ("0.4.13", "8", False)
    for lang, words in (
        ("en", "lm-evaluation-harness 0.4.13"),
        ("zh", "lm-evaluation-harness 0.4.13 在各运行的适配器"),
    ):
        report = render_report(ReportInputs(runs=runs, lang=lang), tmp_path / lang).read_text()
        assert "| `medsft_clinical_mc` | 1.0 | 8 / 12 | 0 | acc | 0.250 ± 0.125 |" in report
        assert words in report and "evaluate.lm_eval.limit" in report
    # No scores: no section.
    runs["v2"] = replace(runs["v2"], benchmarks=empty)
    assert sections.benchmarks(runs) is None
    report = render_report(ReportInputs(runs=runs, lang="en"), tmp_path / "none").read_text()
    assert "lm-evaluation-harness" not in report and "Benchmarks" not in report


def test_numbers_keep_their_stated_decimals_and_tiny_ones_their_digits():
    from medsft.analysis.tables import fmt

    assert fmt(0.9114, 1) == "0.9"  # a time under a second is not tiny (it printed 0.9114)
    assert (fmt(6.29766, 4), fmt(0.0123, 4), fmt(12_345)) == ("6.2977", "0.0123", "12,345")
    assert (fmt(0.00042, 4), fmt(0.04, 1), fmt(1e-7)) == ("0.00042", "0.04", "1e-07")
    assert (fmt(None), fmt(float("nan")), fmt("cpu")) == ("—", "—", "`cpu`")
