"""Resume after a kill, NaN guard, 4-bit on CPU, two processes (torchrun, DDP over gloo)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from medsft.core.config import load_config
from medsft.core.spec import resolve_spec
from medsft.train.callbacks import DivergenceError
from medsft.train.trainer import train_variant
from tests.conftest import ROOT
from tests.test_training import FAST, RECORDS

SLOW = FAST + ["model.training.max_steps=8", "model.training.save_steps=2", "model.training.eval_steps=4"]

DRIVER = textwrap.dedent(
    """
    import sys, time
    from transformers import TrainerCallback
    from medsft.core.config import load_config
    from medsft.train import trainer as training
    from tests.test_training import RECORDS

    class Slow(TrainerCallback):  # leave time for the test to kill the process mid-run
        def on_step_end(self, args, state, control, **kw):
            time.sleep(float(sys.argv[2]))

    original = training.train_variant
    cfg = load_config(sys.argv[3:], path="params.yaml")
    import transformers
    init = transformers.Trainer.__init__
    def patched(self, *a, **k):
        k["callbacks"] = [*k.get("callbacks", []), Slow()]
        init(self, *a, **k)
    transformers.Trainer.__init__ = patched
    original(cfg, "v1", RECORDS[:10], RECORDS[10:], sys.argv[1])
    """
)


def test_killed_run_resumes_to_the_same_result(tmp_path):
    full = train_variant(
        load_config(SLOW, path=ROOT / "params.yaml"), "v1", RECORDS[:10], RECORDS[10:], tmp_path / "full"
    )
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(out), "1.0", *SLOW],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while not (out / "checkpoints" / "checkpoint-4" / "trainer_state.json").exists():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline, "no checkpoint within the time limit"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "adapter").exists() and not (out / "metrics.json").exists()
    assert len(pd.read_csv(out / "history.csv")) >= 4  # what was logged before the kill is kept

    resumed = train_variant(load_config(SLOW, path=ROOT / "params.yaml"), "v1", RECORDS[:10], RECORDS[10:], out)
    assert resumed["resumed_from"].endswith(("checkpoint-4", "checkpoint-6"))
    # Every metric but time (and the resume point itself) equals the uninterrupted run's.
    timing = {"wall_seconds", "train_seconds", "eval_seconds", "tokens_per_second", "peak_cpu_rss_bytes"}
    for key in set(full) - timing - {"resumed_from"}:
        assert resumed[key] == full[key], key
    pd.testing.assert_frame_equal(pd.read_csv(out / "history.csv"), pd.read_csv(tmp_path / "full" / "history.csv"))


@pytest.mark.parametrize("loss_chunk_size", ["null", "256"])
def test_non_finite_loss_stops_naming_the_step_and_leaves_no_adapter(tmp_path, monkeypatch, loss_chunk_size):
    from medsft.train import trainer as training

    original = training.add_lora

    def poisoned(*args, **kwargs):
        model = original(*args, **kwargs)
        calls = {"n": 0}

        def hook(module, inputs, output):
            calls["n"] += 1
            if module.training and calls["n"] >= 3:  # the decoder's output, whichever loss follows
                output.last_hidden_state = output.last_hidden_state * float("nan")
            return output

        model.get_base_model().get_decoder().register_forward_hook(hook)
        return model

    monkeypatch.setattr(training, "add_lora", poisoned)
    (tmp_path / "adapter").mkdir()  # a stale adapter from an earlier run
    with pytest.raises(DivergenceError, match=r"diverged at step 3: loss is nan"):
        cfg = load_config([*FAST, f"model.loss_chunk_size={loss_chunk_size}"], path=ROOT / "params.yaml")
        train_variant(cfg, "v1", RECORDS[:10], RECORDS[10:], tmp_path)
    assert not (tmp_path / "adapter").exists() and not (tmp_path / "metrics.json").exists()


def test_qlora_4bit_trains_on_cpu(tmp_path):
    pytest.importorskip("bitsandbytes")
    quant = [
        "+model.quantization.load_in_4bit=true",
        "+model.quantization.bnb_4bit_quant_type=nf4",
        "+model.quantization.bnb_4bit_use_double_quant=true",
        "+model.quantization.bnb_4bit_compute_dtype=float32",
    ]
    cfg = load_config(FAST + [q.lstrip("+") for q in quant], path=ROOT / "params.yaml")
    metrics = train_variant(cfg, "v1", RECORDS[:10], RECORDS[10:], tmp_path)
    assert metrics["steps"] == 4
    from medsft.modeling.loading import load_base_model

    base = load_base_model(resolve_spec(cfg, "v1").model)
    assert getattr(base, "is_loaded_in_4bit", False)
    assert any(type(m).__name__ == "Linear4bit" for m in base.modules())
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()


def test_two_processes_train_one_ddp_job_and_write_one_history_and_one_adapter(tmp_path):
    out = tmp_path / "ddp"
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(f"""
        from medsft.core.config import load_config
        from medsft.train.trainer import train_variant
        from tests.test_training import RECORDS
        cfg = load_config({FAST!r}, path="params.yaml")
        train_variant(cfg, "v1", RECORDS[:10], RECORDS[10:], {str(out)!r})
    """)
    )
    # this checkout's package first, as the tests' own process imports it
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]), OMP_NUM_THREADS="1")
    # torchrun, not `accelerate launch --cpu --num_processes 2`: on a CPU that starts a single
    # process (accelerate's multi-CPU path goes through MPI).
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    hist = pd.read_csv(out / "history.csv")
    assert hist["step"].tolist() == [1, 2, 3, 4]  # one history: written by rank 0 only
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 4
    # One DDP job: 10 records over 2 processes of batch 2 make an epoch of 3 steps (5 for one process).
    assert metrics["epochs"] == pytest.approx(4 / 3)
    # Evaluation's loss is normalised by both processes' tokens like training's: not halved.
    assert metrics["final_eval_loss"] > 0.75 * metrics["final_train_loss"], metrics
    assert sorted(p.name for p in (out / "adapter").iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]


def test_a_diverging_run_fails_naming_the_step_and_writes_no_adapter(tmp_path):
    overrides = [*FAST, "model.training.max_steps=12", "model.training.learning_rate=1e6"]
    cfg = load_config(overrides, path=ROOT / "params.yaml")
    with pytest.raises(DivergenceError, match=r"training diverged at step \d+: loss .* first logged loss"):
        train_variant(cfg, "v2", RECORDS[:10], RECORDS[10:], tmp_path)
    assert not (tmp_path / "adapter").exists() and not (tmp_path / "metrics.json").exists()


def test_zero_gradient_norms_in_a_row_stop_the_run():
    from medsft.train.callbacks import DivergenceCallback

    guard = DivergenceCallback(max_loss_ratio=4.0, zero_grad_norm_logs=3)

    class State:
        log_history: list = []
        global_step = 0

    state = State()
    guard.on_train_begin(None, state, None)
    for step, grad in enumerate([1.0, 0.0, 0.0, 2.0, 0.0, 0.0], 1):
        state.global_step = step
        guard.on_log(None, state, None, logs={"loss": 11.9, "grad_norm": grad})
    state.global_step = 7
    with pytest.raises(DivergenceError, match=r"step 7: grad_norm was 0 in 3 consecutive logs"):
        guard.on_log(None, state, None, logs={"loss": 11.9, "grad_norm": 0.0})


CHECKPOINTED = [*FAST, "model.training.max_steps=4", "model.training.save_steps=2"]


@pytest.fixture(scope="module")
def checkpointed_run(tmp_path_factory):
    """A finished run that kept its checkpoints (a finished run normally drops them)."""
    import medsft.train.trainer as trainer_module

    out = tmp_path_factory.mktemp("checkpointed") / "run"
    original = trainer_module.clear_checkpoints
    trainer_module.clear_checkpoints = lambda path: None
    try:
        metrics = train_variant(
            load_config(CHECKPOINTED, path=ROOT / "params.yaml"), "v1", RECORDS[:10], RECORDS[10:], out
        )
    finally:
        trainer_module.clear_checkpoints = original
    return out, metrics


@pytest.mark.parametrize("damage", ["safetensors", "optimizer", "state", "unmarked"])
def test_a_broken_newest_checkpoint_falls_back_to_the_previous_one(checkpointed_run, tmp_path, damage, caplog):
    import shutil

    from medsft.train.checkpoints import COMPLETE, last_checkpoint

    source, full = checkpointed_run
    out = tmp_path / "run"
    shutil.copytree(source, out)
    newest = out / "checkpoints" / "checkpoint-4"
    assert (newest / COMPLETE).exists() and last_checkpoint(out / "checkpoints") == str(newest)
    if damage == "safetensors":
        target = newest / "adapter_model.safetensors"
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "optimizer":
        target = newest / "optimizer.pt"
        target.write_bytes(target.read_bytes()[:-64])
    elif damage == "state":
        (newest / "trainer_state.json").write_text("")
    else:
        (newest / COMPLETE).unlink()
    with caplog.at_level("WARNING"):
        assert last_checkpoint(out / "checkpoints") == str(out / "checkpoints" / "checkpoint-2")
    assert "checkpoint-4: skipped for resume" in caplog.text
    # The rerun resumes from the intact checkpoint and ends where the first run ended.
    again = train_variant(load_config(CHECKPOINTED, path=ROOT / "params.yaml"), "v1", RECORDS[:10], RECORDS[10:], out)
    assert again["resumed_from"].endswith("checkpoint-2")
    assert again["final_eval_loss"] == full["final_eval_loss"] and again["steps"] == 4


def test_stage_processes_ask_mkl_for_reproducible_results():
    """MKL reads its reproducibility settings once, when torch loads it: the `stages` package
    sets them before any stage module imports torch, and keeps a value the user chose."""
    probe = (
        "import os, sys, stages; e = os.environ; "
        "print(e['MKL_CBWR'], e['MKL_DYNAMIC'], e['ATEN_CPU_CAPABILITY'], 'torch' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MKL_", "ATEN_"))}
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["AVX2,STRICT", "FALSE", "avx2", "False"]
    env["MKL_CBWR"] = "COMPATIBLE"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "COMPATIBLE"
