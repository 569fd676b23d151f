"""dvc.yaml against the code: every stage depends on all the code it runs and declares every
param it reads, and per-variant metrics and plots cover any variant."""

from __future__ import annotations

import ast
import importlib
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from medsft.core import cli
from medsft.core.config import load_config
from tests.conftest import ROOT, SAME_TRAIN_BYTES

INTERPOLATION = re.compile(r"\$\{([^}]+)\}")


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))


def stage_defs() -> dict[str, dict]:
    """Each stage's definition, a foreach stage's ``do`` block with ``${key}`` left in."""
    return {name: spec.get("do", spec) for name, spec in load("dvc.yaml")["stages"].items()}


def dep_paths(definition: dict) -> list[str]:
    return [d if isinstance(d, str) else next(iter(d)) for d in definition.get("deps", [])]


def module_file(name: str) -> Path | None:
    """The project file of a dotted module name (``medsft.*`` under src/, ``stages.*``)."""
    base = ROOT / "src" if name.split(".")[0] == "medsft" else ROOT
    path = base.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Project modules imported anywhere in ``path`` (module top or inside functions), with
    their parent packages (importing ``a.b.c`` runs ``a`` and ``a.b`` first)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # submodules
    out = set()
    for name in names:
        parts = name.split(".")
        if parts[0] in ("medsft", "stages"):
            out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {n for n in out if module_file(n) is not None}


def hydra_targets() -> set[str]:
    """Modules named by ``_target_`` in conf/ (loaded by Hydra, not imported by the code)."""
    found = set()
    for path in (ROOT / "conf").rglob("*.yaml"):
        for target in re.findall(r"_target_:\s*(medsft[\w.]+)", path.read_text(encoding="utf-8")):
            found.add(target.rsplit(".", 1)[0])
    return found


def closure(roots: set[str]) -> set[Path]:
    """Every project file that importing ``roots`` can run."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or module_file(name) is None:
            continue
        seen.add(name)
        todo.extend(imported_modules(module_file(name)) - seen)
    return {module_file(n) for n in seen}


@pytest.mark.parametrize("stage", sorted(stage_defs()))
def test_every_stage_depends_on_all_the_code_it_runs(stage):
    definition = stage_defs()[stage]
    entry = re.search(r"-m (stages\.\w+)", definition["cmd"]).group(1)
    deps = dep_paths(definition)
    roots = {entry} | (hydra_targets() if "conf" in deps else set())
    files = closure(roots)
    assert module_file(entry) in files and any("medsft" in str(f) for f in files)
    uncovered = sorted(
        str(f.relative_to(ROOT))
        for f in files
        if not any(f == ROOT / d or (ROOT / d) in f.parents for d in deps if "$" not in d)
    )
    assert not uncovered, f"{stage}: dvc.yaml does not depend on {uncovered}"


def test_the_closure_sees_imports_inside_functions(tmp_path):
    # The check above must not miss a lazy import: a stage that imports inside main().
    fake = tmp_path / "fake.py"
    fake.write_text("def main():\n    from medsft.report.claims import audit\n", encoding="utf-8")
    assert "medsft.report.claims" in imported_modules(fake)


# --- params -------------------------------------------------------------------------------

# Small and quick settings for running every stage once in-process.
QUICK = [
    "tracking.mode=disabled",
    "model.pretrain.training.max_steps=2",
    "model.max_length=128",
    "model.training.max_steps=2",
    "model.training.eval_steps=2",
    "model.training.save_steps=2",
    "model.training.logging_steps=1",
    "evaluate.num_generations=1",
    "generation.max_new_tokens=2",
]


# Params a stage reads that DVC does not track, each because no output of the stage changes
# with it: train reads where SwanLab logs go (test_tracking_changes_no_trained_byte); the
# stages with an out_dir key read output_roots, which only allows places (the out_dir keys,
# which say where the outputs go, are declared).
ALLOWS_PLACES = {"output_roots"}
UNTRACKED = {
    "train": {"tracking"},
    **dict.fromkeys(("prepare", "pretrain", "import", "augment", "report"), ALLOWS_PLACES),
}


def declared_params(definition: dict, variant: str | None) -> set[str]:
    """What DVC tracks for a stage: its ``params`` and the params interpolated in its fields."""
    text = yaml.safe_dump({k: v for k, v in definition.items() if k != "params"})
    names = set(definition.get("params", [])) | set(INTERPOLATION.findall(text))
    names = {n.replace("${key}", variant or "") for n in names if n not in ("key", "item")}
    return {n for n in names if not n.startswith("item")}


def pruned(cfg, keys: set[str]):
    """``cfg`` holding only ``keys`` (dotted paths), in struct mode: reading anything else raises."""
    full = OmegaConf.to_container(cfg, resolve=True)
    out: dict = {}
    for key in sorted(keys):
        src, dst = full, out
        parts = key.split(".")
        for part in parts[:-1]:
            src = src[part]
            dst = dst.setdefault(part, {})
        dst[parts[-1]] = src[parts[-1]]
    view = OmegaConf.create(out)
    OmegaConf.set_struct(view, True)
    return view


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A folder with the files the stages read, as the working directory."""
    for name in ("params.yaml", "conf", "data/raw", "data/published"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_stage_reads_only_the_params_it_declares(workspace, monkeypatch):
    """Run each stage with a config cut down to its declared params: an undeclared read fails."""
    defs = stage_defs()
    variant = "v3"  # term masking and modules_to_save: the widest variant

    def run(stage: str, *argv: str) -> None:
        keys = declared_params(defs[stage], variant) | UNTRACKED.get(stage, set())

        def view(overrides, libraries=True):
            cfg = load_config([*QUICK, *overrides], libraries=libraries)
            cfg.variants = {variant: cfg.variants[variant]}
            return pruned(cfg, keys)

        monkeypatch.setattr(cli, "load_config", view)
        module = re.search(r"-m (stages\.\w+)", defs[stage]["cmd"]).group(1)
        assert importlib.import_module(module).main(list(argv)) == 0, stage

    run("prepare")
    run("pretrain")
    run("import")
    run("augment", variant)
    run("train", variant)
    run("evaluate", variant)
    run("report")
    assert (workspace / "reports" / "report.md").exists()
    # The declared benchmark output exists with no benchmark configured.
    assert json.loads((workspace / "runs" / variant / "eval/benchmarks.json").read_text())["tasks"] == {}


def test_tracking_changes_no_trained_byte(tmp_path):
    """train reads ``tracking`` without declaring it: SwanLab logging must leave every output
    of the stage as it is (so `-S tracking=disabled` retrains nothing)."""
    from medsft.train.trainer import train_variant
    from tests.test_training import FAST, RECORDS

    runs = {}
    for mode in ("disabled", "offline"):
        cfg = load_config([*FAST, f"tracking.mode={mode}", f"tracking.logdir={tmp_path / 'swanlog'}"])
        train_variant(cfg, "v1", RECORDS[:4], RECORDS[4:6], tmp_path / "run")  # the same folder
        runs[mode] = {name: (tmp_path / "run" / name).read_bytes() for name in SAME_TRAIN_BYTES}
    assert (tmp_path / "swanlog" / "v1").is_dir()  # offline tracking did log
    assert runs["offline"] == runs["disabled"]


def test_pruned_config_rejects_an_undeclared_read():
    view = pruned(load_config(QUICK), {"model.max_length"})
    assert view.model.max_length == 128
    with pytest.raises(Exception, match="tracking"):
        _ = view.tracking.mode


# --- per-variant metrics and plots --------------------------------------------------------


def test_metrics_and_plots_are_declared_per_variant_not_by_hand():
    dvc = load("dvc.yaml")
    assert "metrics" not in dvc and "plots" not in dvc, "list them in the foreach, not by variant"
    train, evaluate = dvc["stages"]["train"], dvc["stages"]["evaluate"]
    assert train["foreach"] == evaluate["foreach"] == "${variants}"
    # git-tracked (cache: false), so metrics and plots diffs against a commit need no remote
    assert train["do"]["metrics"] == [{"runs/${key}/train/metrics.json": {"cache": False}}]
    # Run-time figures (seconds, tokens/s, memory, hardware) are an output, not metrics: `dvc
    # metrics diff` shows results only. Git-tracked too, so the report needs no remote.
    assert {"runs/${key}/train/timing.json": {"cache": False}} in train["do"]["outs"]
    assert "!/runs/*/train/timing.json" in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert evaluate["do"]["metrics"] == [
        {"runs/${key}/eval/metrics.json": {"cache": False}},
        {"runs/${key}/eval/benchmarks.json": {"cache": False}},  # lm-eval scores, no tasks by default
    ]
    (plot,) = train["do"]["plots"]
    assert next(iter(plot)) == "runs/${key}/train/history.csv"
    assert plot["runs/${key}/train/history.csv"]["cache"] is False
    template = (ROOT / ".dvc/plots" / f"{plot['runs/${key}/train/history.csv']['template']}.json").read_text()
    assert all(f'"{c}"' in template for c in ("loss", "eval_loss", "learning_rate", "grad_norm"))


def test_per_variant_stages_read_only_their_own_variant():
    for name in ("augment", "train", "evaluate"):
        params = stage_defs()[name]["params"]
        assert all(not str(p).startswith("variants") or str(p).startswith("variants.${key}") for p in params), name
