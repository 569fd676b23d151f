"""`dvc repro` end to end on a temporary copy of the repository, as a user runs it."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT, ran_stages, run, tool_env

pytestmark = pytest.mark.e2e


def readme_exp_show() -> list[str]:
    """The options of README's compact `dvc exp show` line."""
    import shlex

    (line,) = [x for x in (ROOT / "README.md").read_text(encoding="utf-8").splitlines() if "dvc exp show --md --" in x]
    return shlex.split(line.split("dvc exp show --md", 1)[1].split("#")[0])


README_EXP_SHOW = readme_exp_show()


@pytest.fixture
def repo(pipeline) -> Path:
    return pipeline.path


def test_repro_writes_the_report_and_is_then_up_to_date(pipeline):
    repo, out = pipeline.path, pipeline.output
    variants = ("v1", "v2", "v3")
    expected = {"prepare", "pretrain", "import", "sweep", "seeds", "report"}
    expected |= {f"{s}@{v}" for s in ("augment", "train", "evaluate") for v in variants}
    assert ran_stages(out) == expected
    report = (repo / "reports/report.md").read_text(encoding="utf-8")
    assert "最终训练损失" in report and "lora.lora_dropout" in report  # the zh report (report.lang)
    # Timings as timing.json defines them: training apart from the evaluations inside it.
    metrics_v1 = json.loads((repo / "runs/v1/train/timing.json").read_text())
    row = next(line for line in report.splitlines() if line.startswith("| v1 | `runs/v1/train/history.csv`"))
    assert f"| {metrics_v1['train_seconds']:.1f} | {metrics_v1['eval_seconds']:.1f} |" in row, row
    # The default run shows an experiment: the report opens with the published runs and
    # judges the seed's claims on them; the tiny runs learn from a pretrained base.
    published, local = report.split("## 2. 本地运行")
    assert "## 1. 已发表的运行" in published and "**成立**" in published and "不适用" in local
    for v in variants:
        metrics = json.loads((repo / f"runs/{v}/train/metrics.json").read_text())
        assert metrics["final_eval_loss"] <= 8.0, (v, metrics["final_eval_loss"])
        outputs = [json.loads(line)["output"] for line in (repo / f"runs/{v}/eval/generations.jsonl").open()]
        assert all(re.search(r"[\u4e00-\u9fff]", o) for o in outputs), (v, outputs)
    # What the variants learn from: a base that predicts text (its loss well below the
    # uniform ln 5,194 = 8.6 of the trimmed vocabulary it started near).
    base = json.loads((repo / "models/tiny-base/base.json").read_text())
    assert base["final_loss"] < base["first_loss"] - 2, base
    for fig in ("loss", "eval_loss", "learning_rate", "grad_norm"):
        assert (repo / "reports/figures" / f"{fig}.png").exists()
    assert "up to date" in run(["dvc", "status"], repo)
    assert ran_stages(run(["dvc", "repro"], repo)) == set()
    # Everything the run left for git is a pipeline output (nothing stray: dvc_plots/, job
    # folders, checkpoints), and the report tells a regenerated result from uncommitted code.
    from medsft.report.provenance import pipeline_outputs

    outputs = pipeline_outputs(repo)
    stray = [line for line in pipeline.git_status if not any(line[3:].startswith(o) for o in outputs | {"dvc.lock"})]
    assert not stray, stray
    assert "结果在本机重新生成" in report and "未提交改动" not in report


# The pipeline's sweep (tests/test_sweep.py holds the sweep's unit tests).
def ci_grid_size() -> int:
    """The number of points in conf/sweep/ci.yaml's grid (the product of its values' counts)."""
    grid = yaml.safe_load((ROOT / "conf/sweep/ci.yaml").read_text())["hydra"]["sweeper"]["params"]
    return math.prod(len(str(v).split(",")) for v in grid.values())


@pytest.fixture
def finished(pipeline) -> Path:
    """The pipeline's sweep stage (`+sweep=ci variant=v2`), run by the shared `dvc repro`."""
    return pipeline.path / "sweeps/ci/v2"


def test_the_sweep_summary_has_one_row_per_point_equal_to_its_metrics(finished):
    sweep_dir = finished
    summary = pd.read_csv(sweep_dir / "summary.csv")
    assert len(summary) == ci_grid_size() and set(summary["status"]) == {"complete"}
    assert summary["final_eval_loss"].is_monotonic_increasing
    for _, row in summary.iterrows():
        job = sweep_dir / row["point"]
        train_m = json.loads((job / "train/metrics.json").read_text())
        eval_m = json.loads((job / "eval/metrics.json").read_text())
        assert row["final_eval_loss"] == pytest.approx(train_m["final_eval_loss"])
        assert row["final_train_loss"] == pytest.approx(train_m["final_train_loss"])
        assert row["eval_loss_token_weighted"] == pytest.approx(eval_m["eval_loss_token_weighted"])
        config = (job / "train/run_config.yaml").read_text()
        assert f"lora_dropout: {row['variant.lora.lora_dropout']}" in config
        assert "variant: v2" in config and row["base_variant"] == "v2"
        assert (job / "train/adapter/adapter_model.safetensors").exists()
    assert (sweep_dir / "heatmap.png").stat().st_size > 1000 and (sweep_dir / "summary.md").exists()


def test_the_default_run_shows_the_experiment(pipeline):
    """On the embedded default, V1 and V2 differ by more than their seeds do (the variants'
    own runs and the seeds stage's two further seeds), the sweep's cells differ by more than
    0.01, and V2 replies in the reasoning format with words, not punctuation (issue: a default
    run that shows the experiment)."""
    import unicodedata

    repo = pipeline.path
    means, spreads = {}, {}
    for variant in ("v1", "v2"):
        summary = pd.read_csv(repo / f"sweeps/seeds/{variant}/summary.csv")
        assert sorted(summary["variant.training.seed"]) == [43, 44]
        assert (summary["status"] == "complete").all()
        own = json.loads((repo / f"runs/{variant}/train/metrics.json").read_text())["final_eval_loss"]
        losses = pd.Series([own, *summary["final_eval_loss"]])
        means[variant], spreads[variant] = losses.mean(), losses.max() - losses.min()
    difference = abs(means["v2"] - means["v1"])
    assert difference > 0.01 and difference > max(spreads.values())
    v2 = json.loads((repo / "runs/v2/eval/metrics.json").read_text())
    assert v2["think_format_validity"] >= 0.5
    replies = [json.loads(line)["output"] for line in (repo / "runs/v2/eval/generations.jsonl").open()]
    text = "".join(replies)
    assert sum(unicodedata.category(c).startswith("P") for c in text) / len(text) < 0.3
    sweep = pd.read_csv(repo / "sweeps/ci/v2/summary.csv")["final_eval_loss"]
    assert sweep.max() - sweep.min() > 0.01
    report = (repo / "reports/report.md").read_text(encoding="utf-8")
    assert "种子间波动" in report and "差值大于种子间噪声" in report and "各扫描键的主效应" in report


def test_rerunning_a_finished_sweep_trains_nothing(pipeline, finished):
    summary = (finished / "summary.csv").read_bytes()
    cmd = [sys.executable, "-m", "stages.sweep", "-m", "+sweep=ci", "variant=v2"]  # the stage's command
    proc = subprocess.run(cmd, cwd=pipeline.path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = proc.stdout + proc.stderr  # Hydra logs to stdout
    assert output.count("complete with this config, skipped") == ci_grid_size()
    assert "trainable of" not in output
    assert (finished / "summary.csv").read_bytes() == summary


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
    timing = "runs/v1/train/timing.json"  # wall time and throughput: expected to change (metrics.json not)
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


# Slow: an experiment run on top of the baseline (about 90 s), kept out of the default run's
# 8-minute budget; `pytest -m slow` and .ci/run run it.
@pytest.mark.slow
def test_exp_run_on_v2_reruns_only_v2_and_the_report(repo):
    baseline(repo)
    out = run(["dvc", "exp", "run", "-S", "variants.v2.lora.lora_dropout=0.3"], repo)
    assert ran_stages(out) == {"train@v2", "evaluate@v2", "report"}
    shown = run(["dvc", "exp", "show", "--md"], repo)
    assert "0.3" in shown and "final_eval_loss" in shown
    # README's comparison line: the settings that matter and the final eval losses, on a screen.
    compact = run(["dvc", "exp", "show", "--md", "--no-pager", *README_EXP_SHOW], repo)
    assert "0.3" in compact and "final_eval_loss" in compact and "lora_dropout" in compact
    assert max(map(len, compact.splitlines())) <= 240, compact
    assert "lora_dropout" in run(["dvc", "params", "diff"], repo)
    assert "final_train_loss" in run(["dvc", "metrics", "show"], repo)
    run(["dvc", "plots", "show", "--json"], repo)
    # Histories and metrics are git-tracked: diffs against HEAD need no DVC remote.
    assert "runs/v2/train/history.csv" in run(["dvc", "plots", "diff", "HEAD", "--json"], repo)
    assert "final_eval_loss" in run(["dvc", "metrics", "diff", "HEAD"], repo)


def start_queue_workers(repo: Path, *args: str) -> None:
    """`dvc queue start ARGS`. The workers outlive the command: give them no pipe to hold open."""
    env = tool_env()
    subprocess.run(
        ["dvc", "queue", "start", *args],
        cwd=repo,
        env=env,
        check=True,
        timeout=120,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_queued_experiments_run_and_are_listed(repo):
    baseline(repo)
    import time

    out = run(["dvc", "exp", "run", "--queue", "-S", "variants.v2.lora.lora_dropout=0.15,0.25"], repo)
    assert out.count("Queued experiment") == 2
    # Two workers: each experiment runs in its own temporary copy of the workspace (its own
    # runs/, checkpoints and swanlog/), so concurrent runs share no folder.
    start_queue_workers(repo, "--jobs", "2")
    deadline = time.time() + 900
    while True:
        status = run(["dvc", "queue", "status"], repo)
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        if "Queued" in status and "Running" not in status and "0 active" in status:
            # DVC's worker stopped on its known race (treeverse/dvc#10428): README's remedy.
            start_queue_workers(repo)
        assert time.time() < deadline, status
        time.sleep(5)
    assert status.count("Success") == 2, status
    # Each queued run reran only what its params change; the run cache restored the rest.
    for task in re.findall(r"^(\w+)\s.*Success", status, flags=re.M):
        assert ran_stages(run(["dvc", "queue", "logs", task], repo)) <= {"train@v2", "evaluate@v2", "report"}
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


def git(repo: Path, *args: str) -> str:
    return run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], repo)


@pytest.mark.slow
def test_a_second_clone_pulls_the_artifacts_and_has_nothing_to_run(repo, tmp_path):
    baseline(repo)
    storage = tmp_path / "dvc-storage"  # stands for s3://…, gs://… or ssh://…: same commands
    run(["dvc", "remote", "add", "-f", "-d", "team", str(storage)], repo)
    git(repo, "commit", "-qam", "DVC remote")
    assert "pushed" in run(["dvc", "push"], repo)
    other = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(other))
    run(["dvc", "pull"], other)
    assert "up to date" in run(["dvc", "status"], other)
    assert ran_stages(run(["dvc", "repro"], other)) == set()
    assert (other / "runs/v2/train/adapter/adapter_model.safetensors").exists()


@pytest.mark.slow
def test_an_experiment_travels_to_another_clone_through_a_git_remote(repo, tmp_path):
    baseline(repo)
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(repo, "remote", "add", "team-git", str(origin))
    git(repo, "push", "-q", "team-git", "HEAD:refs/heads/main")
    run(["dvc", "exp", "run", "-n", "dropout-015", "-S", "variants.v2.lora.lora_dropout=0.15"], repo)
    # Params and metrics travel in git refs (metrics are git-tracked); the adapter would go to a
    # DVC remote (`dvc exp push` without --no-cache, as in the test above).
    run(["dvc", "exp", "push", "--no-cache", "team-git", "dropout-015"], repo)
    other = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "-b", "main", str(origin), str(other))
    run(["dvc", "exp", "pull", "--no-cache", "origin", "dropout-015"], other)
    shown = run(["dvc", "exp", "show", "--md", "--no-pager", *README_EXP_SHOW], other)
    row = next(line for line in shown.splitlines() if "dropout-015" in line)
    assert "0.15" in row
    params = run(["dvc", "params", "diff", "main", "dropout-015", "--md"], other)
    assert "variants.v2.lora.lora_dropout" in params and "0.15" in params
    metrics = run(["dvc", "metrics", "show", "--md"], other)
    assert "final_eval_loss" in metrics


def changed_stages(repo: Path) -> set[str]:
    """The stages `dvc status` finds changed (by params, deps or outputs)."""
    return set(json.loads(run(["dvc", "status", "--json"], repo) or "{}"))


def compose(repo: Path, *overrides: str) -> None:
    run([sys.executable, "-m", "stages.compose", *overrides], repo)


def test_settings_that_cannot_change_a_model_retrain_nothing(repo):
    baseline(repo)
    variants = {"v1", "v2", "v3"}
    compose(repo, "generation.repetition_penalty=1.2", "generation.max_new_tokens=32")
    assert changed_stages(repo) == {f"evaluate@{v}" for v in variants}
    compose(repo, "tracking=disabled")
    assert changed_stages(repo) <= {"report"}  # the report names the tracking mode; nothing trains
    compose(repo)
    assert changed_stages(repo) == set()


def test_a_failed_exp_run_leaves_params_yaml_as_it_was(repo):
    baseline(repo)
    # A workspace that differs from the commit: what was there must come back, byte for byte.
    compose(repo, "generation.repetition_penalty=1.3")
    before = (repo / "params.yaml").read_bytes()
    failing = {
        "misspelt key": "+variants.v2.training.learnig_rate=1",
        "bad type": "variants.v2.training.learning_rate=abc",
        "a stage that raises": "data.path=conf",  # prepare: a folder where a file belongs
    }
    env = tool_env()
    for case, override in failing.items():
        proc = subprocess.run(["dvc", "exp", "run", "-S", override], cwd=repo, env=env, capture_output=True, text=True)
        assert proc.returncode != 0, case
        assert "params.yaml is back as it was before it" in proc.stderr, (case, proc.stderr[-2000:])
        assert (repo / "params.yaml").read_bytes() == before, case
    compose(repo)


def test_a_corrupted_cache_file_is_refused_naming_it(repo):
    """64 bytes of v1's adapter flipped in the DVC cache, then `dvc checkout`: DVC restores
    the damaged file without noticing; evaluate refuses it against train's SHA-256."""
    baseline(repo)
    cache = repo / ".dvc" / "cache" / "files" / "md5"
    manifest = lock_outs(repo, "train@v1")["runs/v1/train/adapter"].removesuffix(".dir")
    entries = json.loads((cache / manifest[:2] / f"{manifest[2:]}.dir").read_text(encoding="utf-8"))
    md5 = next(e["md5"] for e in entries if e["relpath"] == "adapter_model.safetensors")
    blob = cache / md5[:2] / md5[2:]
    original = blob.read_bytes()
    damaged = original[:-64] + bytes(b ^ 0xFF for b in original[-64:])
    weights = repo / "runs/v1/train/adapter/adapter_model.safetensors"
    env = tool_env(MEDSFT_DEBUG="")
    try:
        blob.chmod(0o644)
        blob.write_bytes(damaged)
        shutil.rmtree(weights.parent)
        run(["dvc", "checkout", "train@v1"], repo)
        assert weights.read_bytes() == damaged
        proc = subprocess.run(
            [sys.executable, "-m", "stages.evaluate", "v1"], cwd=repo, env=env, capture_output=True, text=True
        )
        assert proc.returncode == 1, proc.stderr[-2000:]
        (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
        assert line.startswith("error: runs/v1/train/adapter/adapter_model.safetensors: its SHA-256 differs"), line
    finally:
        blob.write_bytes(original)
        shutil.rmtree(weights.parent, ignore_errors=True)
        run(["dvc", "checkout", "train@v1"], repo)
    assert changed_stages(repo) == set()  # the earlier evaluation was left whole


PLAIN_PEFT = """
import json, sys
sys.modules["medsft"] = None  # the project's package is not importable here
import torch
from peft import AutoPeftModelForCausalLM
model = AutoPeftModelForCausalLM.from_pretrained("runs/v2/train/adapter")  # its base from adapter_config.json
# The tiny base's vocabulary is trimmed: its rows are the ids of models/tiny-base/token_map.json.
kept = json.load(open("models/tiny-base/token_map.json"))["kept"]
rows = {t: i + 1 for i, t in enumerate(kept)}
ids = torch.tensor([[rows.get(t, 0) for t in json.loads(sys.argv[1])]])
with torch.no_grad():
    print(json.dumps(model(input_ids=ids).logits[0, -1, 1:9].tolist()))  # the rows of kept[:8]
"""


def test_an_adapter_loads_with_peft_alone_from_the_repository(pipeline, monkeypatch):
    """adapter_config.json names a base peft can load (the pretrain stage's folder), and the
    model is the one evaluate loads."""
    import torch

    from medsft.core.spec import RunSpec
    from medsft.modeling.loading import load_adapter

    repo = pipeline.path
    config = json.loads((repo / "runs/v2/train/adapter/adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "models/tiny-base"
    monkeypatch.chdir(repo)
    spec = RunSpec.read(repo / "runs/v2/train")
    model, tok = load_adapter(spec.model, repo / "runs/v2/train/adapter", spec.artifacts)
    ids = tok("糖尿病的诊断标准是什么？", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        kept = list(model.get_base_model().token_map.kept[:8])
        ours = model(input_ids=torch.tensor([ids])).logits[0, -1, kept].tolist()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", PLAIN_PEFT, json.dumps(ids)],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == pytest.approx(ours, abs=1e-5)
