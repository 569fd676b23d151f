"""lm-eval benchmarks in the evaluate stage: the local task end to end on a tiny trained adapter,
the record's layout, and the one-line errors for an unknown task and for data that cannot be
fetched. And the scripts of benchmarks/: the memory model's seed comparison and the GPU
check's dry run on CPU."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import datasets
import huggingface_hub
import lm_eval
import pytest

import stages.evaluate
from medsft.core.cli import run_stage
from medsft.core.config import ConfigError, load_config
from medsft.core.io import write_jsonl
from medsft.evaluate import run as evaluate_module
from medsft.evaluate.benchmarks import BenchmarkError, Benchmarks, benchmark_record, load_tasks, run_benchmarks
from medsft.train.trainer import train_variant
from tests.conftest import ROOT, tool_env
from tests.test_training import FAST, RECORDS

QUICK_EVAL = ["evaluate.num_generations=1", "generation.max_new_tokens=2", "evaluate.probes=null"]
LOCAL_TASK = "medsft_clinical_mc"
QUESTIONS = len((ROOT / "conf/benchmarks/medsft_clinical_mc.jsonl").read_text(encoding="utf-8").splitlines())


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A repository-like folder holding params.yaml, conf/, the prepared data and v2 trained
    for 4 steps (v2: its modules_to_save hold the tied embedding and output layer)."""
    ws = tmp_path_factory.mktemp("ws")
    shutil.copy(ROOT / "params.yaml", ws / "params.yaml")
    shutil.copytree(ROOT / "conf", ws / "conf")
    write_jsonl(ws / "data/prepared/train.jsonl", RECORDS[:10])
    write_jsonl(ws / "data/prepared/val.jsonl", RECORDS[10:])
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ROOT)
        cfg = load_config(FAST, path=ROOT / "params.yaml")
        train_variant(cfg, "v2", RECORDS[:10], RECORDS[10:], ws / "runs/v2/train")
    return ws


@pytest.fixture
def in_workspace(workspace, monkeypatch) -> Path:
    monkeypatch.chdir(workspace)
    return workspace


def files_under(folder: Path) -> set[str]:
    """Files under ``folder``, but Python's bytecode caches (the local task's data loader,
    conf/benchmarks/local_data.py, is imported by lm-eval; git and DVC ignore them)."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_local_task_end_to_end_through_the_stage(in_workspace, monkeypatch, capfd, caplog):
    secret = "hf_medsftTestTokenThatMustNotBePrinted"
    monkeypatch.setenv("HF_TOKEN", secret)
    before = files_under(in_workspace)
    argv = ["v2", *QUICK_EVAL, f"evaluate.benchmarks=[{LOCAL_TASK}]"]
    started = time.perf_counter()
    assert stages.evaluate.main(argv) == 0
    first_seconds = time.perf_counter() - started
    path = in_workspace / "runs/v2/eval/benchmarks.json"
    record = json.loads(path.read_text(encoding="utf-8"))
    assert record["lm_eval_version"] == lm_eval.__version__
    assert list(record) == ["lm_eval_version", "limit", "num_fewshot", "apply_chat_template", "tasks"] + [
        "versions",
        "n-samples",
        "n-shot",
    ]
    scores = record["tasks"][LOCAL_TASK]
    assert list(scores) == ["acc", "acc_norm", "acc_norm_stderr", "acc_stderr"]
    assert 0 <= scores["acc"] <= 1 and 0 <= scores["acc_norm"] <= 1
    # Accuracy over 12 questions is a multiple of 1/12.
    assert scores["acc"] * QUESTIONS == pytest.approx(round(scores["acc"] * QUESTIONS))
    assert record["n-samples"][LOCAL_TASK] == {"effective": QUESTIONS, "original": QUESTIONS}
    assert record["versions"][LOCAL_TASK] == 1.0 and record["n-shot"][LOCAL_TASK] == 0
    assert (record["limit"], record["num_fewshot"], record["apply_chat_template"]) == (None, None, False)
    text = path.read_text(encoding="utf-8")
    assert str(in_workspace) not in text and str(Path.home()) not in text
    # lm-eval wrote nothing but the stage's outputs: no cache, results or samples in the tree.
    assert {f for f in files_under(in_workspace) - before if not f.startswith("runs/v2/eval/")} == set()
    # Same run, same bytes.
    assert stages.evaluate.main(argv) == 0
    assert path.read_text(encoding="utf-8") == text
    out, err = capfd.readouterr()
    assert secret not in out + err + caplog.text + text
    print(f"evaluate with {LOCAL_TASK}: {first_seconds:.1f} s")


def test_no_benchmarks_still_write_the_declared_output(in_workspace):
    assert stages.evaluate.main(["v2", *QUICK_EVAL]) == 0
    record = json.loads((in_workspace / "runs/v2/eval/benchmarks.json").read_text(encoding="utf-8"))
    assert record["tasks"] == {} and record["lm_eval_version"] is None


def test_an_unknown_task_fails_in_one_line_before_the_model_loads(in_workspace, monkeypatch, capsys):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the task names were checked")

    monkeypatch.setattr(evaluate_module, "load_adapter", no_model)
    monkeypatch.delenv("MEDSFT_DEBUG", raising=False)
    argv = ["v2", *QUICK_EVAL, f"evaluate.benchmarks=[{LOCAL_TASK},cmmlu_clinical_knowlege]"]
    with pytest.raises(SystemExit) as exit_info:
        run_stage(lambda: stages.evaluate.main(argv))
    assert exit_info.value.code == 1
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert line.startswith("error: evaluate.benchmarks: 'cmmlu_clinical_knowlege' is no lm-eval")
    assert "did you mean 'cmmlu_clinical_knowledge'" in line


def test_hub_data_offline_fails_in_one_line_without_a_traceback(workspace, tmp_path):
    """The real stage in a process of its own, offline as HF_HUB_OFFLINE / HF_DATASETS_OFFLINE
    set it (read when huggingface_hub and datasets are imported), with an empty cache."""
    secret = "hf_medsftTestTokenThatMustNotBePrinted"
    env = {k: v for k, v in os.environ.items() if k != "MEDSFT_DEBUG"}
    env |= {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_DATASETS_CACHE": str(tmp_path / "hf/datasets"),
        "HF_TOKEN": secret,
        "PYTHONPATH": str(ROOT),
    }
    argv = [sys.executable, "-m", "stages.evaluate", "v2", "evaluate.benchmarks=[cmmlu_clinical_knowledge]"]
    done = subprocess.run(argv, cwd=workspace, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and secret not in done.stdout + done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith("error: evaluate.benchmarks: cmmlu_clinical_knowledge: its data cannot be loaded")
    assert "HF_HUB_OFFLINE" in line


def test_an_unreachable_hub_fails_in_one_line_at_once(monkeypatch):
    """Online but the hub does not answer: one look-up, not datasets' five retries."""
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens
    started = time.perf_counter()
    with pytest.raises(BenchmarkError) as err:
        load_tasks(["cmmlu_clinical_knowledge"], "conf/benchmarks")
    message = str(err.value)
    assert message.startswith("evaluate.benchmarks: cmmlu_clinical_knowledge: its data (haonan-li/cmmlu)")
    assert "http://127.0.0.1:9" in message and "\n" not in message
    assert time.perf_counter() - started < 60  # the task index takes seconds; the look-up none


def test_the_model_goes_to_lm_eval_as_loaded_with_the_think_end_token(monkeypatch):
    """HFLM gets the loaded model and tokenizer, </think> as a token id (it decodes replies
    without special tokens before a string split), and the weights are not re-tied."""
    seen = {}

    class FakeHFLM:
        def __init__(self, **kwargs):
            seen["hflm"] = kwargs
            kwargs["pretrained"].tie_weights()  # as HFLM does; must not reach the model's own

    def fake_evaluate(**kwargs):
        seen["evaluate"] = kwargs
        return {"results": {"t": {"acc,none": 0.5}}, "versions": {"t": 1.0}}

    class Model:
        def tie_weights(self):
            raise AssertionError("re-tied the adapter's embedding and output copies")

    # benchmarks imports them where it runs lm-eval: patched where they live.
    monkeypatch.setattr("lm_eval.models.huggingface.HFLM", FakeHFLM)
    monkeypatch.setattr("lm_eval.evaluator.simple_evaluate", fake_evaluate)
    model, tokenizer = Model(), SimpleNamespace(get_added_vocab=lambda: {"<think>": 151667, "</think>": 151668})
    tasks = Benchmarks(manager="manager", tasks=["task"])
    settings = {"limit": 3, "num_fewshot": 2, "apply_chat_template": True}
    record = run_benchmarks(model, tokenizer, tasks, settings, batch_size=4)
    assert seen["hflm"] == {"pretrained": model, "tokenizer": tokenizer, "batch_size": 4, "think_end_token": 151668}
    assert {k: seen["evaluate"][k] for k in ("tasks", "task_manager", *settings, "log_samples")} == {
        "tasks": ["task"],
        "task_manager": "manager",
        **settings,
        "log_samples": False,
    }
    assert record["tasks"] == {"t": {"acc": 0.5}} and "tie_weights" not in vars(model)
    # No tasks: lm-eval is not run.
    seen.clear()
    assert run_benchmarks(model, tokenizer, Benchmarks(), settings, batch_size=4)["tasks"] == {} and not seen


def test_benchmark_record_layout():
    results = {
        "results": {
            "b_task": {"alias": "b_task", "acc,none": 0.5, "acc_stderr,none": "N/A", "sample_len": 2},
            "a_task": {"exact_match,strict-match": 1, "exact_match_stderr,strict-match": 0.0, "alias": " - a"},
        },
        "versions": {"b_task": 2.0, "a_task": 1.0},
        "n-samples": {"b_task": {"original": 10, "effective": 2}, "a_task": {"effective": 3, "original": 3}},
        "n-shot": {"b_task": 0, "a_task": 5},
        "date": 1700000000.0,
        "config": {"model_args": "pretrained=/abs/path"},
    }
    record = benchmark_record(results, {"limit": 2, "num_fewshot": None, "apply_chat_template": False})
    assert record == {
        "lm_eval_version": lm_eval.__version__,
        "limit": 2,
        "num_fewshot": None,
        "apply_chat_template": False,
        "tasks": {
            "a_task": {"exact_match,strict-match": 1.0, "exact_match_stderr,strict-match": 0.0},
            "b_task": {"acc": 0.5, "acc_stderr": None},
        },
        "versions": {"a_task": 1.0, "b_task": 2.0},
        "n-samples": {"a_task": {"effective": 3, "original": 3}, "b_task": {"effective": 2, "original": 10}},
        "n-shot": {"a_task": 5, "b_task": 0},
    }
    assert list(record["tasks"]) == ["a_task", "b_task"]
    empty = benchmark_record(None, {"limit": None})
    assert empty["tasks"] == {} and empty["lm_eval_version"] is None


def test_the_config_checks_benchmark_settings():
    cfg = load_config([f"evaluate.benchmarks=[{LOCAL_TASK}]", "evaluate.lm_eval.limit=0.5"], libraries=False)
    assert list(cfg.evaluate.benchmarks) == [LOCAL_TASK] and cfg.evaluate.lm_eval.limit == 0.5
    assert list(load_config(libraries=False).evaluate.benchmarks) == []  # none by default
    with pytest.raises(ConfigError, match="evaluate.benchmarks: 'a' is listed more than once"):
        load_config(["evaluate.benchmarks=[a,b,a]"], libraries=False)
    with pytest.raises(ConfigError, match="evaluate.lm_eval.limit: 0 is not null or a positive number"):
        load_config(["evaluate.lm_eval.limit=0"], libraries=False)
    with pytest.raises(ConfigError, match="evaluate.lm_eval.num_fewshot"):
        load_config(["evaluate.lm_eval.num_fewshot=many"], libraries=False)


# --- benchmarks/ scripts: the memory model's seed comparison, the GPU check's dry run ------------


def test_memory_estimate_prints_the_seed_peak_beside_v2_by_default(tmp_path):
    """With no arguments and no ../shared: v2's prediction at the seed's batch 4 x length 2048
    and the seed report's 14.2 GB peak on one line, the report named as its source."""
    env = tool_env(MEDSFT_SHARED=str(tmp_path / "no-shared"))
    argv = [sys.executable, "benchmarks/memory_estimate.py"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("v2 at batch 4 x length 2048: predicted ")]
    assert re.search(r"predicted \d+\.\d\d GB with all logits .*; seed report: 14\.2 GB peak$", line), line
    assert "the seed report's §7: v2, batch 4, max_length 2048, a 16 GB GPU" in done.stdout
    assert "seed/000_6609f41e1f332f88.txt: not here, the figure is quoted" in done.stdout


def test_memory_estimate_checks_the_quoted_peak_against_the_report(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("memory_estimate", ROOT / "benchmarks/memory_estimate.py")
    mem = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "memory_estimate", mem)  # dataclasses look their module up
    spec.loader.exec_module(mem)
    report = tmp_path / mem.SEED_REPORT_NAME
    monkeypatch.setattr(mem, "SEED_REPORT", report)
    assert mem.seed_report_check() is None  # absent: the quoted figure stands
    report.parent.mkdir(parents=True)
    report.write_text("4. **资源利用**：16GB显存高效利用（峰值14.2GB）\n", encoding="utf-8")
    assert mem.seed_report_check() is True
    report.write_text("4. **资源利用**：16GB显存高效利用（峰值15.0GB）\n", encoding="utf-8")
    assert mem.seed_report_check() is False


@pytest.mark.slow  # about 45 s: a whole dry run; .ci/run runs it with `pytest -m slow`
def test_gpu_check_dry_run_on_cpu(tmp_path):
    """benchmarks/gpu_check.sh --dry-run: no GPU, no install; a tiny random Qwen3 through the
    qwen3-1.7b profile's v2 with the chunked loss, tokens/s and peak RSS printed; --liger is
    skipped on CPU, not an error."""
    started = time.perf_counter()
    argv = ["bash", "benchmarks/gpu_check.sh", "--dry-run", "--no-install", "--liger", "--work", str(tmp_path)]
    done = subprocess.run(argv, cwd=ROOT, env=tool_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    out = done.stdout
    assert "--liger: skipped on CPU (Liger's Triton kernels need a CUDA GPU)" in out
    assert "would run" not in out and "install:" not in out  # --no-install: nothing to show
    # The profile's chunked loss (model.loss_chunk_size: a number, not null).
    settings = r"^  liger False, loss_chunk_size \d+, packing False, attention sdpa, max_length 128$"
    assert re.search(settings, out, re.MULTILINE)
    assert re.search(r"^v2 on \S+/tiny-random: 1 steps in \d+ s", out, re.MULTILINE)
    assert re.search(r"^  non-padding tokens/s of training: [\d,]+$", out, re.MULTILINE)
    assert re.search(r"^  peak memory \(no CUDA: CPU resident set size, RSS\): \d+\.\d\d GB$", out, re.MULTILINE)
    assert re.search(r"^  memory model at batch 4 x \d+ .*: \d+\.\d\d GB", out, re.MULTILINE)
    assert re.search(r"^  final train loss \d+\.\d+, eval loss \d+\.\d+$", out, re.MULTILINE)
    print(f"gpu_check.sh --dry-run: {time.perf_counter() - started:.0f} s")
