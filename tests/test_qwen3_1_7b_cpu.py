"""The qwen3-1.7b profile's real code path at the real shapes, on CPU (slow: minutes a variant).

A random model of the exact Qwen3-1.7B architecture (benchmarks/make_random_model.py; set
``MEDSFT_QWEN3_RANDOM_DIR`` to one already written to skip the half minute it takes) is trained
for two optimizer steps and evaluated, through the train and evaluate stages' functions, each
in its own process as DVC runs them (a process holds up to 18 GB here and glibc keeps what it
freed): 4-bit NF4 with double quantization, LoRA r=64 on the seven projections,
modules_to_save on the 151,936 x 2048 tied embedding (v2), gradient checkpointing, bf16
autocast, 8-bit Adam in place of the CUDA-only paged one. The same run through DVC is in
docs/qwen3-1.7b.md ("The qwen3-1.7b path without a GPU").
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch

from medsft.core.spec import RunSpec
from tests.conftest import ROOT
from tests.test_qwen3_path import SEED_V2_PARAMETERS, load_script, qwen3_profile

pytestmark = pytest.mark.slow

EXPECTED_TOTAL = {"v1": 1_790_305_280, "v2": SEED_V2_PARAMETERS}  # meta-device counts (tests/test_qwen3_path.py)

STAGES = textwrap.dedent(
    """
    import json, sys
    from omegaconf import OmegaConf
    from medsft.core.config import load_config
    from medsft.core.spec import RunSpec
    from medsft.evaluate.run import evaluate_run
    from medsft.train.trainer import train_variant
    from tests.test_training import RECORDS

    stage, variant, out, overrides = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    cfg = load_config(overrides, path="params.yaml")
    train, val = RECORDS[:4], RECORDS[4:6]
    if stage == "train":
        from medsft.train import trainer as training
        original = training.add_lora
        def spy(model, *args, **kwargs):  # count the 4-bit layers of the loaded base
            n = sum(type(m).__name__ == "Linear4bit" for m in model.modules())
            open(f"{out}/linear4bit", "w").write(str(n))
            return original(model, *args, **kwargs)
        training.add_lora = spy
        train_variant(cfg, variant, train, val, f"{out}/train")
    else:
        settings = OmegaConf.to_container(cfg.evaluate, resolve=True)
        generation = OmegaConf.to_container(cfg.generation, resolve=True)
        spec = RunSpec.read(f"{out}/train")
        evaluate_run(spec, f"{out}/train/adapter", val, train, settings, generation, cfg.augment.lexicon, f"{out}/eval")
    """
)


@pytest.fixture(scope="module")
def qwen3_dir(tmp_path_factory) -> Path:
    given = os.environ.get("MEDSFT_QWEN3_RANDOM_DIR")
    maker = load_script("make_random_model")
    if given:
        path = Path(given)
        info = json.loads((path / maker.MARKER).read_text(encoding="utf-8"))  # a directory the script wrote
        assert info["profile"] == "qwen3-1.7b", f"{path}: written for profile {info['profile']!r}"
        return path
    out = tmp_path_factory.mktemp("qwen3-1.7b-random")
    maker.write_random_model(out, "qwen3-1.7b", seed=0, dtype=torch.bfloat16)
    return out


def run_stage(stage: str, variant: str, out: Path, overrides: list[str]) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", STAGES, stage, variant, str(out), *overrides],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("variant", ["v2", "v1"])
def test_qwen3_1_7b_trains_and_evaluates_on_cpu(qwen3_dir, variant, tmp_path):
    overrides = qwen3_profile(
        qwen3_dir,
        "model.training.gradient_accumulation_steps=1",
        "model.training.per_device_eval_batch_size=2",
        "evaluate.num_generations=1",
        "generation.max_new_tokens=2",
        "evaluate.probes=null",
    )
    run_stage("train", variant, tmp_path, overrides)
    assert (tmp_path / "linear4bit").read_text() == str(28 * 7)  # every projection of every layer in 4-bit
    metrics = json.loads((tmp_path / "train" / "metrics.json").read_text(encoding="utf-8"))
    # Counted on the loaded 4-bit model: the seed run's logged count for v2.
    assert metrics["total_params"] == EXPECTED_TOTAL[variant]
    assert metrics["steps"] == 2 and math.isfinite(metrics["final_eval_loss"])
    assert pd.read_csv(tmp_path / "train" / "history.csv")["step"].tolist() == [1, 2]
    spec = RunSpec.read(tmp_path / "train")
    assert spec.device_fallbacks["optim"]["used"] == "adamw_8bit"
    assert spec.training["activation_checkpointing"] is True
    # v1's fp16 runs as bf16 on CPU (no fast float16 matmul there); v2 asked for bf16.
    assert spec.training["bf16"] is True and spec.training["fp16"] is False
    assert ("fp16" in spec.device_fallbacks) == (variant == "v1")
    assert spec.lora["modules_to_save"] == (["embed_tokens", "lm_head"] if variant == "v2" else None)

    run_stage("evaluate", variant, tmp_path, overrides)
    evaluation = json.loads((tmp_path / "eval" / "metrics.json").read_text(encoding="utf-8"))
    assert math.isfinite(evaluation["eval_loss_token_weighted"]) and evaluation["num_generations"] == 1
    timing = json.loads((tmp_path / "train" / "timing.json").read_text(encoding="utf-8"))
    print(f"{variant}: peak RSS {timing['peak_cpu_rss_bytes'] / 1e9:.2f} GB, {timing['wall_seconds']:.0f} s training")
