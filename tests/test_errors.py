"""Common mistakes end in one line naming the cause and the fix; MEDSFT_DEBUG=1 shows more."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from medsft.core.hub import ModelSourceError, check_model_source
from tests.conftest import ROOT


def stage(*args: str, env: dict[str, str] | None = None, cwd=ROOT) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "MEDSFT_DEBUG": "", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300
    )


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    """The ``error:`` lines of stderr (what a library prints around them is not counted)."""
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def test_a_local_model_folder_that_does_not_exist_is_named(tmp_path):
    proc = stage(
        "stages.prepare",
        "model=qwen3-1.7b",
        f"model.pretrained_model_name_or_path={tmp_path}/no-such-model",
        f"prepare.out_dir={tmp_path}/out",
        f"output_roots=[{tmp_path}]",
    )
    assert proc.returncode == 1
    assert error_lines(proc) == [
        f"error: model.pretrained_model_name_or_path={tmp_path}/no-such-model: no such folder "
        "(a local model folder holds config.json)"
    ]
    assert not (tmp_path / "out").exists()


def test_an_unreachable_hub_is_one_line_that_says_what_to_set(tmp_path):
    # A closed loopback port stands for a hub that cannot be reached; an empty cache.
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
    start = time.monotonic()
    proc = stage(
        "stages.prepare", "model=qwen3-1.7b", f"prepare.out_dir={tmp_path}/out", f"output_roots=[{tmp_path}]", env=env
    )
    took = time.monotonic() - start
    assert proc.returncode == 1
    (line,) = error_lines(proc)
    assert "model.pretrained_model_name_or_path=Qwen/Qwen3-1.7B" in line and "cannot be reached" in line
    assert "model.pretrained_model_name_or_path=DIR" in line and "HF_HUB_OFFLINE=1" in line
    assert took < 60, f"{took:.0f} s: the hub's retries were not skipped"


def test_hub_offline_mode_without_the_model_in_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(ModelSourceError, match="not in the local Hugging Face cache and HF_HUB_OFFLINE is set"):
        check_model_source("Qwen/Qwen3-1.7B")


@pytest.mark.parametrize(
    ("name", "message"),
    [("./models/missing", "no such folder"), ("~/no/such/model", "no such folder"), ("src", "holds no config.json")],
)
def test_local_paths_are_checked_as_folders(name, message):
    with pytest.raises(ModelSourceError, match=message):
        check_model_source(name)


def test_a_missing_input_is_one_line_and_debug_shows_the_traceback(tmp_path):
    args = (
        "stages.report",
        f"report.runs.v1={tmp_path}/nowhere",
        f"report.out_dir={tmp_path}/report",
        f"output_roots=[{tmp_path}]",
    )
    proc = stage(*args)
    assert proc.returncode != 0
    (line,) = error_lines(proc)
    assert line.startswith("error: ") and f"{tmp_path}/nowhere" in line
    debug = stage(*args, env={"MEDSFT_DEBUG": "1"})
    assert debug.returncode != 0 and "Traceback (most recent call last)" in debug.stderr


def test_a_variant_setting_on_the_command_line_without_its_variant_gets_a_hint():
    proc = stage("stages.train", "v2", "training.learning_rate=1")
    assert proc.returncode == 2
    assert "variants.v2.training.learning_rate" in proc.stderr


def test_a_failed_exp_run_that_cannot_restore_params_yaml_says_how_to():
    # Under `dvc exp run` (DVC names the experiment) but with no copy taken by that DVC process
    # (medsft.core.exp_guard): the line says how to restore params.yaml by hand.
    proc = stage("stages.train", "v2", "variants.v2.training.learnig_rate=1", env={"DVC_EXP_NAME": "tidy-lark"})
    assert proc.returncode == 2
    (line,) = error_lines(proc)
    assert "did you mean 'learning_rate'" in line
    assert "dvc exp run 'tidy-lark' failed" in line and "git checkout params.yaml" in line
    assert "git checkout" not in error_lines(stage("stages.train", "v2", "variants.v2.training.learnig_rate=1"))[0]


RESTORE = "from medsft.core.exp_guard import restore_params; print(restore_params())"


@pytest.mark.parametrize(
    ("where", "remembered_by", "restored"),
    [
        ("workspace", "an ancestor", True),
        ("workspace", "another process", False),  # an older experiment's copy
        ("elsewhere", "an ancestor", False),  # a queued or --temp experiment's copy of the repo
    ],
)
def test_params_yaml_comes_back_only_in_the_experiment_that_took_the_copy(tmp_path, where, remembered_by, restored):
    from medsft.core.exp_guard import GUARD_FILE, remember_params

    (tmp_path / "params.yaml").write_text("lr: 1\n", encoding="utf-8")
    guard = remember_params(tmp_path)  # as the DVC process does, before it writes params.yaml
    if remembered_by == "another process":
        guard.write_text(guard.read_text().replace(f'"pid": {os.getpid()}', '"pid": -1'), encoding="utf-8")
    (tmp_path / "params.yaml").write_text("lr: abc\n", encoding="utf-8")  # the experiment's
    cwd = tmp_path if where == "workspace" else tmp_path / "copy"
    cwd.mkdir(exist_ok=True)
    env = {**os.environ, "DVC_EXP_NAME": "tidy-lark", "DVC_ROOT": str(tmp_path), "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", RESTORE], cwd=cwd, env=env, capture_output=True, text=True)
    assert out.stdout.strip() == str(restored), out.stderr
    assert (tmp_path / "params.yaml").read_text(encoding="utf-8") == ("lr: 1\n" if restored else "lr: abc\n")
    assert (tmp_path / GUARD_FILE).exists() is not restored
