"""Shared fixtures: the repository root, the composed config, the reference material."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# pytest-xdist runs its workers side by side: each takes its share of the cores. Left alone,
# torch starts one thread per core in every worker (and in the stages they spawn), and the
# oversubscribed threads of the two workers on a 2-core machine ran the suite 1.5x slower.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))
# What train writes that a rerun of the same config gives byte for byte (its timings are in
# timing.json), relative to the run folder.
SAME_TRAIN_BYTES = (
    "adapter/adapter_model.safetensors",
    "adapter/adapter_config.json",
    "adapter/README.md",
    "run_config.yaml",
    "history.csv",
    "trainer_state.json",
    "masking.json",
)
# The thread count of the committed runs (run_config.yaml: reproducibility.num_threads): the
# shared pipeline runs with it, so it computes the committed bits on any machine.
COMMITTED_THREADS = "2"

from medsft.core.runtime import quiet_library_noise, reproducible_math  # noqa: E402

# As the stages do, before any test imports torch or bitsandbytes.
reproducible_math()
quiet_library_noise()

from medsft.core.config import load_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDSFT_SHARED", ROOT.parent / "shared"))
REFERENCE = SHARED / "reference"
# Overrides for tests that train or resolve specs without running the pretrain stage first.
NO_PRETRAIN = ["tracking.mode=disabled", "model.pretrain.training=null", "model.pretrain.trim_vocabulary=false"]


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    """Stages resolve params.yaml and data paths from the repository root."""
    monkeypatch.chdir(ROOT)


@pytest.fixture(autouse=True)
def _yield_to_the_pipeline(request):
    """Under pytest-xdist the shared pipeline (a `dvc repro` from nothing, then the e2e tests
    on it) is the longest chain of the run; a worker's other tests run at a lower CPU priority
    so that chain keeps its cores (niceness only rises, so a worker lowers itself once)."""
    global _NICED
    if _WORKERS > 1 and not _NICED and "pipeline" not in request.fixturenames:
        os.nice(10)
        _NICED = True
    yield


_NICED = False


@pytest.fixture
def cfg():
    """params.yaml with tracking off and the seeded init as the base (no pretrained base needed)."""
    return load_config(NO_PRETRAIN, path=ROOT / "params.yaml")


@pytest.fixture
def reference() -> Path:
    """../shared/reference, or a skip where it is absent (users do not have it)."""
    if not (REFERENCE / "delicate_medical_r1_val241.jsonl").exists():
        pytest.skip(f"reference material not found at {REFERENCE} (only on the project's machines)")
    return REFERENCE


def tool_env(**extra: str) -> dict[str, str]:
    """The environment with this interpreter's bin folder first on PATH (dvc, python)."""
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **extra)


def run(cmd: list[str], cwd: Path, **extra_env: str) -> str:
    """Run a command with this interpreter's bin folder first on PATH (dvc, python), at the
    committed runs' thread count (what a stage computes depends on it), and in a copy of the
    repository with that copy's own package (the code its dvc.lock records); fail with its
    output."""
    env = tool_env(**{"OMP_NUM_THREADS": COMMITTED_THREADS, **extra_env})
    if (Path(cwd) / "src" / "medsft").is_dir():
        env["PYTHONPATH"] = str(Path(cwd) / "src")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-4000:]}"
    return out


def ran_stages(output: str) -> set[str]:
    """The stages a `dvc repro` / `dvc exp run` output says it ran."""
    return set(re.findall(r"Running stage '([^']+)'", output))


@dataclass(frozen=True)
class Pipeline:
    """A copy of the repository after one `dvc repro` from nothing."""

    path: Path
    output: str  # what `dvc repro` printed
    git_status: list[str]  # `git status --porcelain --untracked-files=all` right after it


def copy_repository(dest: Path) -> Path:
    """The project's files as git sees them (tracked and not ignored) in a fresh git repo at
    ``dest``, with the pipeline's outputs and dvc.lock removed."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    for d in ("runs", "reports", "data/prepared", "data/augmented"):
        shutil.rmtree(dest / d, ignore_errors=True)  # start from nothing
    (dest / "dvc.lock").unlink(missing_ok=True)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    run(["git", "init", "-q"], dest)
    run([*git, "add", "-A"], dest)
    run([*git, "commit", "-qm", "copy"], dest)
    return dest


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory) -> Pipeline:
    """A copy of the repository (:func:`copy_repository`), then `dvc repro`: the one full run
    the e2e and sweep tests share."""
    dest = copy_repository(tmp_path_factory.mktemp("repo"))
    output = run(["dvc", "repro"], dest)
    status = run(["git", "status", "--porcelain", "--untracked-files=all"], dest).splitlines()
    return Pipeline(dest, output, status)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests on the shared pipeline run first: under pytest-xdist (`--dist loadfile`, their
    file in one worker) the pipeline's `dvc repro` starts at once while the other worker
    takes the rest."""
    items.sort(key=lambda item: "pipeline" not in getattr(item, "fixturenames", ()))
