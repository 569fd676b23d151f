"""`dvc repro` end to end on a temporary copy of the repository, as a user runs it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


def run(cmd: list[str], cwd: Path) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-4000:]}"
    return out


def ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """The project's files as git sees them (tracked and not ignored), in a fresh git repo."""
    dest = tmp_path_factory.mktemp("repo")
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    for d in ("runs", "reports", "data/prepared", "data/augmented"):  # start from nothing
        shutil.rmtree(dest / d, ignore_errors=True)
    (dest / "dvc.lock").unlink(missing_ok=True)
    run(["git", "init", "-q"], dest)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], dest)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"], dest)
    return dest


def test_repro_writes_the_report_and_is_then_up_to_date(repo):
    out = run(["dvc", "repro"], repo)
    variants = ("v1", "v2", "v3")
    expected = {"prepare", "pretrain", "import", "sweep", "report"}
    expected |= {f"{s}@{v}" for s in ("augment", "train", "evaluate") for v in variants}
    assert ran_stages(out) == expected
    report = (repo / "reports/report.md").read_text(encoding="utf-8")
    assert "final train loss" in report and "lora.lora_dropout" in report
    # The default run shows an experiment: the report opens with the published runs and
    # judges the seed's claims on them; the tiny runs learn from a pretrained base.
    published, local = report.split("## 2. 本地运行")
    assert "## 1. 已发表的运行" in published and "**成立**" in published and "不适用" in local
    for v in variants:
        metrics = json.loads((repo / f"runs/{v}/train/metrics.json").read_text())
        assert metrics["final_eval_loss"] <= 8.0, (v, metrics["final_eval_loss"])
        outputs = [json.loads(line)["output"] for line in (repo / f"runs/{v}/eval/generations.jsonl").open()]
        assert all(re.search(r"[\u4e00-\u9fff]", o) for o in outputs), (v, outputs)
    evals = pd.read_csv(repo / "runs/v1/train/history.csv")["eval_loss"].dropna()
    assert evals.iloc[-1] < evals.iloc[0], evals.tolist()
    for fig in ("loss", "eval_loss", "learning_rate", "grad_norm"):
        assert (repo / "reports/figures" / f"{fig}.png").exists()
    assert "up to date" in run(["dvc", "status"], repo)
    assert ran_stages(run(["dvc", "repro"], repo)) == set()


def lock_outs(repo: Path, stage: str) -> dict[str, str]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text(encoding="utf-8"))
    return {o["path"]: o["md5"] for o in lock["stages"][stage]["outs"]}


def baseline(repo: Path) -> None:
    """The pipeline reproduced and committed (each slow test also runs alone: `pytest -m slow`)."""
    run(["dvc", "repro"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline", "--allow-empty"], repo)


@pytest.mark.slow
def test_a_forced_rerun_writes_the_same_bytes(repo):
    baseline(repo)
    timing = "runs/v1/train/metrics.json"  # wall time and throughput: a metric, expected to change
    before = {s: lock_outs(repo, s) for s in ("train@v1", "evaluate@v1")}
    for stage in before:
        run(["dvc", "repro", "-f", "-s", stage], repo)
    after = {s: lock_outs(repo, s) for s in before}
    assert before["train@v1"].pop(timing) and after["train@v1"].pop(timing)
    assert after == before
    # Nothing downstream of the adapter is stale: only the report, which shows the timings.
    status = run(["dvc", "status"], repo)
    assert "evaluate@v1" not in status and "report" in status
    assert ran_stages(run(["dvc", "repro"], repo)) == {"report"}
    assert "up to date" in run(["dvc", "status"], repo)


def test_exp_run_on_v2_reruns_only_v2_and_the_report(repo):
    baseline(repo)
    out = run(["dvc", "exp", "run", "-S", "variants.v2.lora.lora_dropout=0.3"], repo)
    assert ran_stages(out) == {"train@v2", "evaluate@v2", "report"}
    shown = run(["dvc", "exp", "show", "--md"], repo)
    assert "0.3" in shown and "final_eval_loss" in shown
    assert "lora_dropout" in run(["dvc", "params", "diff"], repo)
    assert "final_train_loss" in run(["dvc", "metrics", "show"], repo)
    run(["dvc", "plots", "show", "--json"], repo)


@pytest.mark.slow
def test_queued_experiments_run_and_are_listed(repo):
    baseline(repo)
    import time

    out = run(["dvc", "exp", "run", "--queue", "-S", "variants.v2.lora.lora_dropout=0.15,0.25"], repo)
    assert out.count("Queued experiment") == 2
    # The workers it starts outlive the command: give them no pipe to hold open.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    subprocess.run(
        ["dvc", "queue", "start", "--jobs", "1"],
        cwd=repo,
        env=env,
        check=True,
        timeout=120,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 900
    while True:
        status = run(["dvc", "queue", "status"], repo)
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        assert time.time() < deadline, status
        time.sleep(5)
    assert status.count("Success") == 2, status
    shown = run(["dvc", "exp", "show", "--md", "--no-pager"], repo)
    assert "0.15" in shown and "0.25" in shown


@pytest.mark.slow
def test_a_variant_added_in_conf_shows_in_metrics_plots_and_report(repo):
    baseline(repo)
    out = run(["dvc", "exp", "run", "-S", "+variant@variants.v2_reported=v2_reported"], repo)
    assert {"augment@v2_reported", "train@v2_reported", "evaluate@v2_reported", "report"} <= ran_stages(out)
    metrics = run(["dvc", "metrics", "show", "--json"], repo)
    assert "runs/v2_reported/train/metrics.json" in metrics and "runs/v2_reported/eval/metrics.json" in metrics
    assert "runs/v2_reported/train/history.csv" in run(["dvc", "plots", "show", "--json"], repo)
    report = (repo / "reports/report.md").read_text(encoding="utf-8")
    assert "| v2_reported |" in report
