"""Hydra multirun sweep on tiny: summary equals the jobs' metrics, failures, reruns."""

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
            [
                sys.executable,
                "-m",
                "stages.prepare",
                f"prepare.out_dir={tmp_path / 'prep'}",
                f"output_roots=[{tmp_path}]",
            ],
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
        "model.pretrain.trim_vocabulary=false",
        # CI size: the seeded full-vocabulary model, short examples, six steps
        "model.max_length=256",
        "model.training.max_steps=6",
        "model.training.eval_steps=3",
        "model.training.save_steps=3",
        "model.training.logging_steps=1",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        # point folders named by the swept keys alone (all the overrides exceed a file name's 255 bytes)
        "hydra.job.config.override_dirname.exclude_keys=[sweep,sweep_name,variant,model.max_length,"
        "model.pretrain.training,model.pretrain.trim_vocabulary,model.training.max_steps,model.training.eval_steps,"
        "model.training.save_steps,model.training.logging_steps,prepare.out_dir]",
        f"prepare.out_dir={prepared}",
        *overrides,
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


# Slow (a sweep of its own, about 50 s): kept out of the default run's 12-minute budget.
@pytest.mark.slow
def test_a_failing_point_is_recorded_and_the_others_complete(tmp_path):
    proc = sweep(tmp_path, "variant.lora.lora_dropout=0.1,1.5", "variant.training.lr_scheduler_type=cosine")
    assert proc.returncode != 0 and "1 sweep point(s) failed" in proc.stdout + proc.stderr
    summary = pd.read_csv(tmp_path / "sweep/v2/summary.csv")
    by_dropout = summary.set_index("variant.lora.lora_dropout")
    assert by_dropout.loc[0.1, "status"] == "complete" and pd.notna(by_dropout.loc[0.1, "final_eval_loss"])
    assert by_dropout.loc[1.5, "status"] == "failed" and "dropout" in by_dropout.loc[1.5, "error"].lower()


@pytest.mark.parametrize(("overrides", "folder"), [([], "v2"), (["variant=v1"], "v1")])
def test_sweeps_of_different_base_variants_land_in_separate_folders(overrides, folder):
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    import stages.sweep  # noqa: F401  (registers the job_dirname resolver)

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = compose("multirun", overrides=["+sweep=ci", *overrides], return_hydra_config=True)
    # The sweep folder is resolved before any job (no runtime interpolation); each point's
    # subfolder, with its base variant first, when the job runs.
    assert cfg.hydra.sweep.dir == "sweeps/ci"
    HydraConfig.instance().set_config(cfg)
    assert cfg.hydra.sweep.subdir.split("/")[0] == folder
    assert "variant" in cfg.hydra.job.config.override_dirname.exclude_keys  # not repeated in the point's name


@pytest.mark.slow
def test_a_sweep_runs_through_submitit_like_on_a_cluster(tmp_path):
    """submitit's local executor: the code path of `hydra/launcher=submitit_slurm_gpu`, with
    each grid point a pickled job run in its own process."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install hydra-submitit-launcher")
    proc = sweep(tmp_path, "hydra/launcher=submitit_local", "variant.training.lr_scheduler_type=cosine")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = pd.read_csv(tmp_path / "sweep/v2/summary.csv")
    assert len(summary) == 2 and set(summary["status"]) == {"complete"}
    assert set(summary["variant.training.lr_scheduler_type"]) == {"cosine"}
    # submitit kept each job's own log and result: the points ran as submitted jobs.
    assert len(list((tmp_path / "sweep/.submitit").glob("*/*_result.pkl"))) == 2
    assert (tmp_path / "sweep/v2/summary.csv").exists()


def test_the_slurm_launcher_config_sets_only_resources():
    """conf/hydra/launcher/submitit_slurm_gpu.yaml = submitit_slurm + resources: the same
    launcher code path as the submitit_local test above."""
    import yaml

    conf = yaml.safe_load((ROOT / "conf/hydra/launcher/submitit_slurm_gpu.yaml").read_text(encoding="utf-8"))
    assert conf.pop("defaults") == ["submitit_slurm"]
    resources = {"partition", "gpus_per_node", "tasks_per_node", "cpus_per_task", "mem_gb", "timeout_min"}
    assert set(conf) <= resources | {"array_parallelism"}


def test_a_summary_covers_the_points_of_its_multirun_not_an_earlier_grids(tmp_path):
    """A point folder an earlier grid left beside the new ones is not in the new summary."""
    import json

    from medsft.sweep.summary import summarize

    for name, seed in (("variant.training.seed=42", 42), ("variant.training.seed=43", 43)):
        (tmp_path / name).mkdir()
        overrides = [f"variant.training.seed={seed}"]
        status = {"status": "failed", "base_variant": "v1", "overrides": overrides, "error": "x"}
        (tmp_path / name / "status.json").write_text(json.dumps(status))
    this_run = [tmp_path / "variant.training.seed=43"]
    assert summarize(tmp_path, this_run)["variant.training.seed"].tolist() == ["43"]
    assert sorted(summarize(tmp_path)["variant.training.seed"]) == ["42", "43"]  # no multirun: all there
