"""The report on the real seed runs (data/published, the project's copy of their logs)."""

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from medsft.analysis import measures as analysis
from medsft.report.claims import FAILS, HOLDS, NO_DATA, audit, load_claims
from medsft.report.render import ReportInputs, render_report
from medsft.report.runs import load_imported_run
from tests.conftest import ROOT

CLAIMS = ROOT / "conf/claims/seed_report.yaml"
PUBLISHED = ROOT / "data/published"
# The headings and the numbers of the reports on the seed's three runs, as the report showed
# them before it was rendered from templates (see seed_report_outline).
SEED_REPORT_OUTLINE = Path(__file__).parent / "fixtures/seed_report_outline.json"
NUMBER = re.compile(r"\d+(?:[.,]\d+)*(?:e[-+]?\d+)?")


def test_the_published_runs_are_the_reference_logs(reference):
    for run in ("v1", "v2", "v3"):
        for name in ("trainer_state.json", "run_config.yaml"):
            assert (PUBLISHED / run / name).read_bytes() == (reference / "seed_runs" / run / name).read_bytes()


@pytest.fixture
def seed_runs():
    return {v: load_imported_run(v, PUBLISHED / v) for v in ("v1", "v2")}


def scaled_copy(tmp_path, factor):
    """The reference runs with every loss (train and eval) multiplied by ``factor``."""
    runs = {}
    for v in ("v1", "v2"):
        dest = tmp_path / v
        shutil.copytree(PUBLISHED / v, dest)
        state = json.loads((dest / "trainer_state.json").read_text())
        for entry in state["log_history"]:
            for key in ("loss", "eval_loss"):
                if key in entry:
                    entry[key] *= factor
        (dest / "trainer_state.json").write_text(json.dumps(state))
        runs[v] = load_imported_run(v, dest)
    return runs


def test_v2_phases(seed_runs):
    got = [
        (round(p.first_loss, 4), round(p.last_loss, 4), round(p.drop * 100, 1), round(p.eval_loss, 4))
        for p in analysis.phases(seed_runs["v2"].history, 100)
    ]
    assert got == [
        (1.9088, 1.2358, -35.3, 1.2388),
        (1.2283, 1.0384, -15.5, 1.1916),
        (1.0245, 0.8942, -12.7, 1.1800),
        (0.8798, 0.8717, -0.9, 1.1771),
    ]


def test_final_losses_and_changes(seed_runs):
    h1, h2 = seed_runs["v1"].history, seed_runs["v2"].history
    assert round(analysis.final_value(h1, "loss"), 4) == 1.1073 and round(analysis.final_value(h2, "loss"), 4) == 0.8717
    train = analysis.relative_change(analysis.final_value(h1, "loss"), analysis.final_value(h2, "loss"))
    ev = analysis.relative_change(analysis.final_value(h1, "eval_loss"), analysis.final_value(h2, "eval_loss"))
    assert (round(train * 100, 1), round(ev * 100, 1)) == (-21.3, -3.1)


def test_gradient_stability(seed_runs):
    s1, s2 = (analysis.spread(seed_runs[v].history) for v in ("v1", "v2"))
    assert (round(s1.min, 4), s1.min_step, round(s1.max, 4), s1.max_step) == (0.0842, 30, 0.1740, 330)
    assert (round(s2.min, 4), s2.min_step, round(s2.max, 4), s2.max_step) == (0.5165, 280, 1.6313, 10)
    late = analysis.spread(seed_runs["v2"].history, from_step=199)
    assert (round(late.min, 4), round(late.max, 4)) == (0.5165, 0.6021)
    assert (round(s1.cv, 3), round(s2.cv, 3)) == (0.194, 0.317)
    after = [analysis.spread(seed_runs[v].history, from_step=40).cv for v in ("v1", "v2")]
    assert [round(c, 3) for c in after] == [0.172, 0.076]


def test_v2_learning_rate_points(seed_runs):
    pts = analysis.lr_points(seed_runs["v2"].history)
    assert pts["first"][0] == 10 and f"{pts['first'][1]:.3g}" == "4.39e-05"
    assert pts["mid"][0] == 200 and f"{pts['mid'][1]:.5g}" == "0.00012166"
    assert pts["end"][0] == 400 and f"{pts['end'][1]:.3g}" == "2.97e-07"


def test_claims_audit_verdicts(seed_runs):
    verdicts = {r.id: r for r in audit(load_claims(CLAIMS), seed_runs)}
    for claim in ("final_train_loss", "final_eval_loss", "phase_1", "phase_2", "phase_3", "phase_4"):
        assert verdicts[claim].status == HOLDS, claim
    assert verdicts["grad_norm_min"].status == FAILS
    assert [c.measured for c in verdicts["grad_norm_min"].checks][1] == 280
    cv = verdicts["grad_norm_cv"]
    assert cv.status == FAILS and [round(c.measured, 3) for c in cv.checks] == [0.317, 0.194]
    assert verdicts["term_recognition"].status == NO_DATA
    assert verdicts["dropout"].status == FAILS


def test_rendered_report_on_reference_and_scaled_losses(seed_runs, tmp_path):
    report = render_report(ReportInputs(runs=seed_runs, claims_path=str(CLAIMS)), tmp_path / "a").read_text()
    assert "| v2 | 1 (0, 100] | 1.9088 @ 10 | 1.2358 @ 100 | ↓35.3% | 1.2388 @ 100 |" in report
    assert "| v2 | 0.8717 | ↓21.3% | 1.1771 | ↓3.1% |" in report
    assert "1.2166e-04 @ 200" in report and "4.3902e-05 @ 10" in report and "2.9663e-07 @ 400" in report
    assert re.search(r"\| grad_norm_min \|.*\*\*不成立\*\*", report)
    assert re.search(r"\| term_recognition \|.*\*\*无数据\*\*", report)

    scaled = render_report(
        ReportInputs(runs=scaled_copy(tmp_path, 1.1), claims_path=str(CLAIMS), lang="en"), tmp_path / "b"
    ).read_text()
    # 1.9088 × 1.1 = 2.09968, 1.2358 × 1.1 = 1.35938, eval 1.2388 × 1.1 = 1.36268; the drop is unchanged.
    assert "| v2 | 1 (0, 100] | 2.0997 @ 10 | 1.3594 @ 100 | ↓35.3% | 1.3627 @ 100 |" in scaled
    assert "| v2 | 0.9589 | ↓21.3% | 1.2948 | ↓3.1% |" in scaled
    assert re.search(r"\| final_train_loss \|.*\*\*does not hold\*\*", scaled)
    assert re.search(r"\| phase_1 \|.*\*\*does not hold\*\*", scaled)


def test_report_stage_on_imported_runs(tmp_path):
    from stages.report import main

    out = tmp_path / "rep"
    assert (
        main(
            [
                f"report.runs.v1={PUBLISHED}/v1",
                f"report.runs.v2={PUBLISHED}/v2/trainer_state.json",
                f"report.out_dir={out}",
                f"output_roots=[{tmp_path}]",
                "report.lang=en",
            ]
        )
        == 0
    )
    text = (out / "report.md").read_text()
    assert "## 1. Overview" in text and "## 8. Reproducibility" in text and "Claims audit" in text
    assert "`training.lr_scheduler_type` | `linear` | `cosine`" in text
    assert (out / "figures/grad_norm.png").exists()


def seed_report_outline(out_dir: Path) -> dict[str, dict[str, list[str]]]:
    """Per language, the headings and every number (sorted) of the report on the seed's runs
    v1–v3 with the claims audit; the repository's path is left out of the text first.

    ``tests/fixtures/seed_report_outline.json`` holds what this gave before the report was
    rendered from templates. After an intended change to what the report shows, rewrite it:
    ``python -c "from tests.test_report_reference import write_outline; write_outline()"``.
    """
    runs = {v: load_imported_run(v, PUBLISHED / v) for v in ("v1", "v2", "v3")}
    outline = {}
    for lang in ("zh", "en"):
        inputs = ReportInputs(runs=runs, claims_path=str(CLAIMS), lang=lang)
        text = render_report(inputs, out_dir / lang).read_text(encoding="utf-8").replace(str(ROOT), "")
        outline[lang] = {
            "headings": [line for line in text.splitlines() if line.startswith("#")],
            "numbers": sorted(NUMBER.findall(text)),
        }
    return outline


def write_outline() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        outline = seed_report_outline(Path(tmp))
    SEED_REPORT_OUTLINE.parent.mkdir(exist_ok=True)
    SEED_REPORT_OUTLINE.write_text(json.dumps(outline, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def test_the_seed_report_keeps_its_sections_and_every_number(tmp_path):
    expected = json.loads(SEED_REPORT_OUTLINE.read_text(encoding="utf-8"))
    got = seed_report_outline(tmp_path)
    for lang in ("zh", "en"):
        assert got[lang]["headings"] == expected[lang]["headings"], lang
        missing = Counter(expected[lang]["numbers"]) - Counter(got[lang]["numbers"])
        assert not missing, f"{lang}: numbers no longer in the report: {sorted(missing.elements())}"
