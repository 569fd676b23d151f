"""train.launcher: the train stage's command prefix (python, torchrun, accelerate launch)."""

from __future__ import annotations

import hashlib
import json
import math
import shlex
import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from medsft.core.config import ConfigError, compose_conf, load_config
from medsft.train.devices import device_fallbacks
from tests.conftest import ROOT, SAME_TRAIN_BYTES, copy_repository, ran_stages, run

TWO_PROCESSES = "torchrun --standalone --nproc_per_node 2"  # --standalone: a free port, no clash


def train_stage() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]["train"]["do"]


def test_the_train_command_takes_the_launcher_param_and_defaults_to_python():
    stage = train_stage()
    assert stage["cmd"] == "${train.launcher} -m stages.train ${key}"
    assert "train.launcher" in stage["params"]
    conf = yaml.safe_load((ROOT / "conf/config.yaml").read_text(encoding="utf-8"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    assert conf["train"]["launcher"] == params["train"]["launcher"] == "python"
    # The default renders to the command the stage always had: dvc.lock keeps its cmd.
    rendered = stage["cmd"].replace("${train.launcher}", params["train"]["launcher"]).replace("${key}", "v1")
    assert rendered == "python -m stages.train v1"


@pytest.mark.parametrize(
    "launcher",
    [
        "python",
        "python3.11 -X faulthandler",
        TWO_PROCESSES,
        "torchrun --nproc_per_node=8",
        "accelerate launch --num_processes 8",
        "accelerate launch --num_machines 2 --machine_rank $RANK --main_process_ip $HEAD_IP --num_processes 16",
    ],
)
def test_launchers_that_take_a_module_are_accepted(launcher):
    assert load_config([f"train.launcher={launcher}"], path=ROOT / "params.yaml").train.launcher == launcher


@pytest.mark.parametrize(
    ("launcher", "message"),
    [
        ("''", "is empty"),  # the empty string
        ("torchrn --nproc_per_node 2", "runs 'torchrn'"),
        ("srun python", "runs 'srun'"),
        ("accelerate config", "is `accelerate launch`"),
        ("python; rm -rf runs", "shell syntax (';')"),
        ("torchrun $(nproc)", "shell syntax ('$(')"),
        ("torchrun -m stages.train", "has '-m'"),
        ("python -m torch.distributed.run", "has '-m'"),
        ("python train.py", "has 'train.py'"),
        ("torchrun --no-python", "has '--no-python'"),
        ("torchrun 'unclosed", "cannot be split into words"),
    ],
)
def test_a_bad_launcher_fails_in_one_line_naming_the_key(launcher, message):
    with pytest.raises(ConfigError) as err:
        load_config([f"train.launcher={launcher}"], path=ROOT / "params.yaml")
    assert "train.launcher=" in str(err.value) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_launcher_with_spaces_is_one_override_of_dvc_exp_run():
    # `dvc exp run -S 'train.launcher=torchrun --standalone --nproc_per_node 2'`: the Hydra
    # override grammar DVC composes with keeps the words as one string.
    assert compose_conf([f"train.launcher={TWO_PROCESSES}"]).train.launcher == TWO_PROCESSES


def test_several_processes_without_cuda_train_as_one_ddp_job():
    """Without use_cpu the Trainer gives each CPU process a run of its own (no DDP, every one
    rank 0): the fallback turns it on when a launcher started several processes."""
    plain = {"optim": "adamw_torch", "bf16": False}
    assert device_fallbacks(plain, cuda=False, world_size=1) == {}
    assert device_fallbacks(plain, cuda=True, world_size=2) == {}
    change = device_fallbacks(plain, cuda=False, world_size=2)["use_cpu"]
    assert change["asked"] is False and change["used"] is True and "2 processes" in change["why"]
    assert device_fallbacks({**plain, "use_cpu": True}, cuda=False, world_size=2) == {}


# --- through dvc repro, and by hand --------------------------------------------------------

# CI size: the seeded full-vocabulary model (no pretraining), short examples, four steps.
SMALL = [
    "tracking=disabled",
    "model.pretrain.training=null",
    "model.pretrain.trim_vocabulary=false",
    "model.max_length=256",
    "model.training.max_steps=4",
    "model.training.eval_steps=2",
    "model.training.save_steps=2",
    "model.training.logging_steps=1",
]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_two_cpu_processes_through_dvc_repro_train_what_the_launcher_trains_by_hand(tmp_path):
    repo = copy_repository(tmp_path / "repo")
    run([sys.executable, "-m", "stages.compose", *SMALL, f"train.launcher={TWO_PROCESSES}"], repo)
    out = run(["dvc", "repro", "train@v1"], repo)
    assert "train@v1" in ran_stages(out)
    assert "v1: process 0 of 2" in out and "v1: process 1 of 2" in out

    # The lock entry: the launcher's command, the param, the outputs of a one-process run.
    lock = yaml.safe_load((repo / "dvc.lock").read_text(encoding="utf-8"))["stages"]["train@v1"]
    assert lock["cmd"] == f"{TWO_PROCESSES} -m stages.train v1"
    assert lock["params"]["params.yaml"]["train.launcher"] == TWO_PROCESSES
    stage = train_stage()
    declared = [o if isinstance(o, str) else next(iter(o)) for k in ("outs", "metrics", "plots") for o in stage[k]]
    declared = sorted(p.replace("${key}", "v1") for p in declared)
    assert sorted(o["path"] for o in lock["outs"]) == declared
    assert "up to date" in run(["dvc", "status", "train@v1"], repo)

    # One DDP job, written once by rank 0: nothing stray from rank 1, every example split
    # between the two (an epoch takes half the steps of one process's), eval loss not halved.
    trained = repo / "runs/v1/train"
    written = [str(Path(p).relative_to("runs/v1/train")) for p in declared]
    assert sorted(p.name for p in trained.iterdir()) == sorted([*written, "checkpoints"])
    assert [p.name for p in (trained / "checkpoints").iterdir()] == ["run_fingerprint.txt"]
    spec = yaml.safe_load((trained / "run_config.yaml").read_text(encoding="utf-8"))
    metrics = json.loads((trained / "metrics.json").read_text(encoding="utf-8"))
    examples = sum(1 for _ in (repo / "data/augmented/v1/train.jsonl").open(encoding="utf-8"))
    batch = spec["training"]["per_device_train_batch_size"]
    accumulation = spec["training"].get("gradient_accumulation_steps", 1)
    steps_per_epoch = math.ceil(math.ceil(examples / 2) / batch) // accumulation
    assert metrics["steps"] == 4 and metrics["epochs"] == pytest.approx(4 / steps_per_epoch)
    assert abs(metrics["final_eval_loss"] - metrics["final_train_loss"]) < 0.5, metrics  # both near ln(vocab)
    if not torch.cuda.is_available():
        assert "2 processes" in spec["device_fallbacks"]["use_cpu"]["why"]

    # The same command by hand, outside DVC, in another folder holding the same inputs.
    by_hand = tmp_path / "by-hand"
    shutil.copytree(repo, by_hand, ignore=shutil.ignore_patterns(".git", "cache", "runs"))
    run(shlex.split(lock["cmd"]), by_hand)
    hashes = {name: (sha256(trained / name), sha256(by_hand / "runs/v1/train" / name)) for name in SAME_TRAIN_BYTES}
    print(json.dumps({name: {"dvc repro": a, "by hand": b} for name, (a, b) in hashes.items()}, indent=1))
    assert all(a == b for a, b in hashes.values()), hashes
    # and the DVC cache holds those bytes (the adapter dvc.lock records is the one compared)
    adapter = next(o for o in lock["outs"] if o["path"] == "runs/v1/train/adapter")
    listing = json.loads((repo / ".dvc/cache/files/md5" / adapter["md5"][:2] / adapter["md5"][2:]).read_text())
    entry = next(e for e in listing if e["relpath"] == "adapter_model.safetensors")
    cached = repo / ".dvc/cache/files/md5" / entry["md5"][:2] / entry["md5"][2:]
    assert sha256(cached) == hashes["adapter/adapter_model.safetensors"][1]
    assert OmegaConf.load(by_hand / "params.yaml").train.launcher == TWO_PROCESSES
