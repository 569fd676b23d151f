"""Hydra multirun sweep on tiny: summary equals the jobs' metrics, failures, reruns."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import ROOT


def sweep(tmp_path, *overrides):
    """Run `python -m stages.sweep -m +sweep=ci` into a temporary sweep folder."""
    prepared = ROOT / "data/prepared"
    if not (prepared / "train.jsonl").exists():
        subprocess.run(
            [sys.executable, "-m", "stages.prepare", f"prepare.out_dir={tmp_path / 'prep'}"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        prepared = tmp_path / "prep"
    cmd = [
        sys.executable,
        "-m",
        "stages.sweep",
        "-m",
        "+sweep=ci",
        "model.pretrain.training=null",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        f"prepare.out_dir={prepared}",
        *overrides,
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    proc = sweep(tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "sweep", proc


def test_summary_has_one_row_per_point_equal_to_its_metrics(finished):
    sweep_dir, _ = finished
    summary = pd.read_csv(sweep_dir / "summary.csv")
    assert len(summary) == 4 and set(summary["status"]) == {"complete"}
    assert summary["final_eval_loss"].is_monotonic_increasing
    for _, row in summary.iterrows():
        job = sweep_dir / row["point"]
        train_m = json.loads((job / "train/metrics.json").read_text())
        eval_m = json.loads((job / "eval/metrics.json").read_text())
        assert row["final_eval_loss"] == pytest.approx(train_m["final_eval_loss"])
        assert row["final_train_loss"] == pytest.approx(train_m["final_train_loss"])
        assert row["eval_loss_token_weighted"] == pytest.approx(eval_m["eval_loss"])
        config = (job / "train/run_config.yaml").read_text()
        assert f"lora_dropout: {row['variant.lora.lora_dropout']}" in config
        assert "variant: v2" in config and row["base_variant"] == "v2"
        assert (job / "train/adapter/adapter_model.safetensors").exists()
    assert (sweep_dir / "heatmap.png").stat().st_size > 1000 and (sweep_dir / "summary.md").exists()


def test_rerunning_a_finished_sweep_trains_nothing(finished):
    sweep_dir, _ = finished
    proc = sweep(sweep_dir.parent)
    assert proc.returncode == 0
    output = proc.stdout + proc.stderr  # Hydra logs to stdout
    assert output.count("complete with this config, skipped") == 4
    assert "trainable of" not in output


def test_a_failing_point_is_recorded_and_the_others_complete(tmp_path):
    proc = sweep(tmp_path, "variant.lora.lora_dropout=0.1,1.5", "variant.training.lr_scheduler_type=cosine")
    assert proc.returncode != 0 and "1 sweep point(s) failed" in proc.stdout + proc.stderr
    summary = pd.read_csv(tmp_path / "sweep/summary.csv")
    by_dropout = summary.set_index("variant.lora.lora_dropout")
    assert by_dropout.loc[0.1, "status"] == "complete" and pd.notna(by_dropout.loc[0.1, "final_eval_loss"])
    assert by_dropout.loc[1.5, "status"] == "failed" and "dropout" in by_dropout.loc[1.5, "error"].lower()
