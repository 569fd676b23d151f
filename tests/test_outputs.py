"""No stage writes or deletes outside its own outputs, and nothing trusts a changed artifact."""

from __future__ import annotations

import errno
import importlib
import json
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from medsft.core.artifacts import ArtifactMismatch
from medsft.core.cli import run_stage
from medsft.core.config import load_config
from medsft.core.outputs import MARKER, OutputPathError, check_output_dir
from medsft.core.spec import RunSpec
from medsft.evaluate.run import OUTPUTS, EvaluateInputError, evaluate_run
from medsft.modeling.loading import AdapterFormatError, load_adapter
from medsft.train.trainer import train_variant
from tests.conftest import ROOT
from tests.test_training import FAST, RECORDS

# Each stage's out_dir key: (stage module, the key, positional arguments).
STAGE_OUTPUTS = [
    ("stages.prepare", "prepare.out_dir", []),
    ("stages.augment", "augment.out_dir", ["v1"]),
    ("stages.pretrain", "model.pretrain.output_dir", []),
    ("stages.import_published", "published.out_dir", []),
    ("stages.report", "report.out_dir", []),
]


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A copy of the files the stages read, as the working directory, and a $HOME of a user's
    own files."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("params.yaml", "conf", "data/raw", "data/published"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, repo / name)
    home = tmp_path / "home"
    (home / "notes").mkdir(parents=True)
    (home / "report.md").write_text("mine\n", encoding="utf-8")
    (home / "train.jsonl").write_text("mine\n", encoding="utf-8")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))  # matplotlib's cache is not an output
    monkeypatch.chdir(repo)
    return repo, home


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("target", ["home", "root", "repo", "user folder", "outside"])
@pytest.mark.parametrize(("module", "key", "args"), STAGE_OUTPUTS, ids=[s[1] for s in STAGE_OUTPUTS])
def test_no_stage_writes_over_what_it_does_not_own(workspace, capsys, module, key, args, target):
    repo, home = workspace
    user = repo / "mine"
    (user / "v1").mkdir(parents=True)  # as augment.out_dir: its v1/ folder is the user's too
    for name in ("stats.json", "notes.txt", "v1/notes.txt"):
        (user / name).write_text("mine\n", encoding="utf-8")
    path = {"home": home, "root": Path("/"), "repo": repo, "user folder": user, "outside": home.parent / "elsewhere"}
    where = path[target]
    before_home, before_user = snapshot(home), snapshot(user)
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as stop:
        run_stage(lambda: main([*args, f"{key}={where}"]))
    assert stop.value.code == 1
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert line.startswith(f"error: {key}={where}"), line
    assert snapshot(home) == before_home and snapshot(user) == before_user
    assert not (home.parent / "elsewhere").exists()


def test_a_folder_the_stage_wrote_is_replaced_and_output_roots_opt_in(tmp_path):
    out = tmp_path / "scratch" / "prepared"
    with pytest.raises(OutputPathError, match="outside the repository; list its folder in output_roots"):
        check_output_dir("prepare.out_dir", out, "prepare", root=tmp_path / "repo")
    assert check_output_dir("prepare.out_dir", out, "prepare", [str(tmp_path / "scratch")], root=tmp_path / "repo")
    out.mkdir(parents=True)
    (out / MARKER).write_text(json.dumps({"stage": "augment"}), encoding="utf-8")
    with pytest.raises(OutputPathError, match="written by the augment stage"):
        check_output_dir("prepare.out_dir", out, "prepare", [str(tmp_path / "scratch")], root=tmp_path / "repo")
    (out / MARKER).write_text(json.dumps({"stage": "prepare"}), encoding="utf-8")
    assert check_output_dir("prepare.out_dir", out, "prepare", [str(tmp_path / "scratch")], root=tmp_path / "repo")


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".hidden", ""])
def test_variant_and_sweep_names_are_plain_folder_names(name):
    from medsft.core.config import ConfigError

    with pytest.raises(ConfigError, match="not a plain name"):
        load_config([f"sweep_name={name!r}" if name else "sweep_name=''"], libraries=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("v1")
    train_variant(load_config(FAST), "v1", RECORDS[:4], RECORDS[4:6], out)
    return out


def test_train_records_the_adapter_and_a_changed_byte_is_refused_naming_the_file(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    spec = RunSpec.read(run)
    assert set(spec.artifacts) == {
        "adapter/adapter_model.safetensors",
        "adapter/adapter_config.json",
        "adapter/README.md",
    }
    weights = run / "adapter" / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-64:] = bytes(64)  # 64 bytes of a weight zeroed, as a corrupted cache file would be
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactMismatch, match=rf"{weights}: its SHA-256 differs from the one .*run_config.yaml"):
        load_adapter(spec.model, run / "adapter", spec.artifacts)
    weights.unlink()
    with pytest.raises(ArtifactMismatch, match=rf"{weights}: missing"):
        load_adapter(spec.model, run / "adapter", spec.artifacts)


def test_adapters_load_from_safetensors_only(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    spec = RunSpec.read(run)
    (run / "adapter" / "adapter_model.bin").write_bytes(b"not a pickle anyone should open")
    with pytest.raises(AdapterFormatError, match=r"holds \['adapter_model.bin'\]; adapters load from safetensors only"):
        load_adapter(spec.model, run / "adapter")
    (run / "adapter" / "adapter_model.bin").unlink()
    weights = run / "adapter" / "adapter_model.safetensors"
    weights.write_bytes((2**63).to_bytes(8, "little") + b"{}")  # a header length no file can hold
    with pytest.raises(AdapterFormatError, match="not readable as safetensors"):
        load_adapter(spec.model, run / "adapter")


def test_a_failing_evaluation_leaves_no_outputs_of_an_earlier_one(trained, tmp_path):
    cfg = load_config(FAST)
    spec = RunSpec.read(trained)
    settings = {**OmegaConf.to_container(cfg.evaluate), "num_generations": 1, "probes": None}
    generation = {"max_new_tokens": 2, "do_sample": False}
    out = tmp_path / "eval"
    args = (spec, trained / "adapter", RECORDS[4:6], RECORDS[:4])
    evaluate_run(*args, settings, generation, cfg.augment.lexicon, out)
    before = snapshot(out)
    assert set(before) == set(OUTPUTS)
    # An input missing: found before the model loads; the earlier evaluation stays whole.
    bad = {**settings, "probes": "conf/nonexistent.yaml"}
    with pytest.raises(EvaluateInputError, match=r"^evaluate.probes=conf/nonexistent.yaml: not found$"):
        evaluate_run(*args, bad, generation, cfg.augment.lexicon, out)
    assert snapshot(out) == before
    # A failure once the work has begun: none of the earlier outputs is left beside new ones.
    with pytest.raises(ValueError, match="no target tokens"):
        evaluate_run(spec, trained / "adapter", [], RECORDS[:4], settings, generation, cfg.augment.lexicon, out)
    assert snapshot(out) == {}


def test_a_full_disk_is_one_line(monkeypatch, capsys, tmp_path):
    from medsft.core import cli

    def full(*_args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "train.jsonl"))

    with pytest.raises(SystemExit) as stop:
        cli.run_stage(full)
    assert stop.value.code == 1
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'out' / 'train.jsonl'}: No space left on device"


def test_a_chat_prompt_beyond_the_context_is_refused(trained):
    from medsft.serve.chat import ChatInputError, ChatSession

    spec = RunSpec.read(trained)
    model, tok = load_adapter(spec.model, trained / "adapter", spec.artifacts)
    session = ChatSession(model, tok, "system", generation={"max_new_tokens": 8})
    context = model.config.max_position_embeddings
    with pytest.raises(ChatInputError, match=f"exceeds the model's context of {context} tokens"):
        session.ask("病" * context)
