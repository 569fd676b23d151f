"""lm-evaluation-harness as a user runs it, on what the project hands over: the `lm_eval` CLI
and plain transformers in a subprocess where medsft is not importable, from a folder other
than the repository.

What works (README, docs/pipeline.md "Plain tools"): the merged export. On a trimmed
vocabulary (tiny) with ``trust_remote_code=True``: the export carries ``trimmed_qwen3.py``,
which takes and gives the tokenizer's ids, so lm-eval scores it as the evaluate stage does.
On the full vocabulary, the export as it is. Not the adapter with ``peft=``: lm-eval resizes
the base's embedding to the tokenizer's length before loading it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import stages.pretrain
from medsft.core.config import load_config
from medsft.core.io import write_jsonl
from medsft.core.spec import RunSpec
from medsft.data.formatting import encode_parts, prompt_parts
from medsft.evaluate.benchmarks import load_tasks, run_benchmarks
from medsft.modeling.generation import REPLY_ENDS, generate_replies
from medsft.modeling.loading import load_adapter
from medsft.serve.export import merge_adapter
from medsft.train.trainer import train_variant
from tests.conftest import ROOT, tool_env
from tests.test_training import FAST, RECORDS

TASK = "medsft_clinical_mc"
TASKS_DIR = ROOT / "conf" / "benchmarks"
SYSTEM = "你是一个医学专家，你需要根据用户的问题，给出带有思考的回答。"
QUESTION = "糖尿病的诊断标准是什么？"
NEW_TOKENS = 24
# The tiny profile as the pipeline runs it (a pretrained base with a trimmed vocabulary), at a
# test's size: 2 pretrain steps, 2 LoRA steps.
TRIMMED = [
    "tracking.mode=disabled",
    "model.max_length=64",
    "model.pretrain.training.max_steps=2",
    "model.pretrain.training.logging_steps=1",
    "model.training.max_steps=2",
    "model.training.logging_steps=1",
    "model.training.eval_steps=2",
    "model.training.save_steps=2",
    "model.training.per_device_train_batch_size=2",
]

# A process in which the project's package cannot be imported: what a user without it runs.
NO_MEDSFT = 'import sys\nsys.modules["medsft"] = None\n'
LM_EVAL_CLI = NO_MEDSFT + "from lm_eval.__main__ import cli_evaluate\nsys.argv[0] = 'lm_eval'\ncli_evaluate()\n"


def plain_env(tmp_path: Path) -> dict[str, str]:
    """Offline, no PYTHONPATH to the repository, transformers' copies of remote code in tmp."""
    env = {k: v for k, v in tool_env().items() if k != "PYTHONPATH"}
    return {**env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}


def plain_lm_eval(model_args: str, cwd: Path) -> dict:
    """`lm_eval --model hf` on the local task, run in ``cwd``; its results JSON."""
    out = cwd / "lm_eval_out"
    cmd = [sys.executable, "-c", LM_EVAL_CLI, "--model", "hf", "--model_args", model_args]
    cmd += ["--tasks", TASK, "--include_path", str(TASKS_DIR), "--device", "cpu", "--output_path", str(out)]
    proc = subprocess.run(cmd, cwd=cwd, env=plain_env(cwd), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    (results,) = out.rglob("results_*.json")
    return json.loads(results.read_text(encoding="utf-8"))["results"][TASK]


def evaluate_scores(spec: RunSpec, adapter: Path) -> dict:
    """The local task's scores as the evaluate stage computes them on the adapter."""
    model, tok = load_adapter(spec.model, adapter)
    record = run_benchmarks(model, tok, load_tasks([TASK], str(TASKS_DIR)), {}, batch_size=1)
    return record["tasks"][TASK]


# Kept in the trimmed test base's vocabulary: the task's answers (" A" … " D": lm-eval puts a
# space before a choice), so its log-likelihoods are finite and the scores mean something.
CHOICES = {"question": "哪一项正确？", "think": "逐项比较。", "answer": "答案： A B C D"}


def train_and_export(overrides: list[str], root: Path, pretrain: bool) -> tuple[dict, RunSpec, Path, Path]:
    """v2 (its embedding and output layer trained) on ``RECORDS``, and its merged export."""
    if pretrain:  # the pretrain stage on RECORDS: its vocabulary is that of train and val
        write_jsonl(root / "prepared/train.jsonl", RECORDS[:10])
        write_jsonl(root / "prepared/val.jsonl", [*RECORDS[10:], CHOICES])
        argv = [*overrides, f"prepare.out_dir={root / 'prepared'}", f"output_roots=[{root}]"]
        assert stages.pretrain.main(argv) == 0
    cfg = load_config(overrides, path=ROOT / "params.yaml")
    run = root / "runs/v2/train"
    train_variant(cfg, "v2", RECORDS[:10], RECORDS[10:], run)
    spec = RunSpec.read(run)
    generation = OmegaConf.to_container(cfg.generation, resolve=True)
    export = merge_adapter(spec, run / "adapter", root / "export", generation)
    return generation, spec, run / "adapter", export


@pytest.fixture(scope="module")
def trimmed(tmp_path_factory):
    root = tmp_path_factory.mktemp("trimmed")
    overrides = [*TRIMMED, f"model.pretrain.output_dir={root / 'base'}"]
    generation, spec, adapter, export = train_and_export(overrides, root, pretrain=True)
    assert (export / "token_map.json").is_file() and (export / "trimmed_qwen3.py").is_file()
    return generation, spec, adapter, export


def test_the_local_task_loads_from_another_folder_without_medsft(tmp_path):
    """Its data file is found beside the task YAML, not in the working directory."""
    script = NO_MEDSFT + (
        "from lm_eval.tasks import TaskManager\n"
        f"tasks = TaskManager(include_path={str(TASKS_DIR)!r}).load([{TASK!r}])['tasks']\n"
        "print(len(list(tasks.values())[0].test_docs()))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=plain_env(tmp_path), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = (TASKS_DIR / f"{TASK}.jsonl").read_text(encoding="utf-8").splitlines()
    assert proc.stdout.split()[-1] == str(len(lines))
    assert not (tmp_path / "conf").exists()


def test_lm_eval_scores_the_trimmed_export_as_evaluate_does(trimmed, tmp_path):
    """`lm_eval --model hf --model_args pretrained=EXPORT,trust_remote_code=True`, from a
    folder that is not the repository: the export's own model class maps the tokenizer's ids."""
    _, spec, adapter, export = trimmed
    _, tok = load_adapter(spec.model, adapter)
    kept = set(json.loads((export / "token_map.json").read_text(encoding="utf-8"))["kept"])
    assert all(tok.convert_tokens_to_ids(f"Ġ{c}") in kept for c in "ABCD")  # finite log-likelihoods
    plain = plain_lm_eval(f"pretrained={export},trust_remote_code=True", tmp_path)
    ours = evaluate_scores(spec, adapter)
    for metric in ("acc", "acc_norm"):
        assert plain[f"{metric},none"] == pytest.approx(ours[metric]), metric


PLAIN_REMOTE_CODE = (
    NO_MEDSFT
    + """
import json, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
path, ids, new_tokens = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
rows = AutoModelForCausalLM.from_pretrained(path)  # no remote code: the plain Qwen3 of the rows
model, tok = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True), AutoTokenizer.from_pretrained(path)
ids = torch.tensor([ids])
with torch.no_grad():
    logits = model(input_ids=ids).logits[0, -1]
out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens)
print(json.dumps({
    "plain_class": type(rows).__name__, "rows": rows.config.vocab_size, "class": type(model).__name__,
    "eos": tok.convert_ids_to_tokens(model.generation_config.eos_token_id),
    "logits": logits.tolist(), "reply": tok.decode(out[0, ids.shape[1]:], skip_special_tokens=False),
}))
"""
)


def test_plain_transformers_with_remote_code_speaks_the_tokenizers_ids(trimmed, tmp_path):
    """trust_remote_code: logits over the tokenizer's ids as evaluate's model gives them, and
    generate replies as evaluate does (end tokens as token ids); without it, the rows as before."""
    generation, spec, adapter, export = trimmed
    model, tok = load_adapter(spec.model, adapter)
    prompt = encode_parts(tok, [prompt_parts(QUESTION, SYSTEM)])
    with torch.no_grad():
        logits = model(input_ids=torch.tensor(prompt)).logits[0, -1]
    (reply,) = generate_replies(model, tok, prompt, {**generation, "max_new_tokens": NEW_TOKENS}, progress=False)
    proc = subprocess.run(
        [sys.executable, "-c", PLAIN_REMOTE_CODE, str(export), json.dumps(prompt[0]), str(NEW_TOKENS)],
        cwd=tmp_path,
        env=plain_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    plain = json.loads(proc.stdout.splitlines()[-1])
    token_map = json.loads((export / "token_map.json").read_text(encoding="utf-8"))
    assert (plain["plain_class"], plain["rows"]) == ("Qwen3ForCausalLM", len(token_map["kept"]) + 1)
    assert plain["class"] == "TrimmedVocabQwen3ForCausalLM"
    assert set(plain["eos"]) == set(REPLY_ENDS)
    theirs = torch.tensor(plain["logits"])
    assert torch.equal(torch.isfinite(theirs), torch.isfinite(logits))
    torch.testing.assert_close(theirs[torch.isfinite(theirs)], logits[torch.isfinite(logits)], atol=1e-4, rtol=0)
    for end in REPLY_ENDS:  # plain generate keeps the end token it stopped at
        plain["reply"] = plain["reply"].split(end)[0]
    assert plain["reply"] == reply


@pytest.mark.slow
def test_lm_eval_scores_a_full_vocabulary_export_as_it_is(tmp_path_factory, tmp_path):
    """A profile without trimming (qwen3-1.7b; here tiny's seeded init at full size): the
    export needs no remote code, and lm-eval scores it as evaluate does."""
    root = tmp_path_factory.mktemp("full")
    _, spec, adapter, export = train_and_export(FAST, root, pretrain=False)
    assert not (export / "trimmed_qwen3.py").exists()
    plain = plain_lm_eval(f"pretrained={export}", tmp_path)
    ours = evaluate_scores(spec, adapter)
    for metric in ("acc", "acc_norm"):
        assert plain[f"{metric},none"] == pytest.approx(ours[metric]), metric


def test_no_test_here_imports_medsft_in_its_subprocesses():
    """The guard every subprocess script starts with: an import of medsft fails there."""
    proc = subprocess.run(
        [sys.executable, "-c", NO_MEDSFT + "import medsft"], env=dict(os.environ), capture_output=True, text=True
    )
    assert proc.returncode != 0 and "medsft" in proc.stderr
