"""Where a report's numbers come from: code version, data and params hashes, packages, machine."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

import yaml

PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "bitsandbytes",
    "accelerate",
    "datasets",
    "dvc",
    "hydra-core",
    "swanlab",
    "pandas",
    # The evaluation's word segmentation and overlap scores depend on these versions.
    "jieba",
    "rouge-chinese",
    "nltk",
)


def pipeline_outputs(cwd: str | Path = ".") -> set[str]:
    """``dvc.lock`` and the outputs it records: what a ``dvc repro`` itself rewrites."""
    lock_path = Path(cwd) / "dvc.lock"
    if not lock_path.exists():
        return set()
    lock = yaml.safe_load(lock_path.read_text(encoding="utf-8")) or {}
    outs = {"dvc.lock"}
    for stage in (lock.get("stages") or {}).values():
        outs.update(str(entry["path"]).rstrip("/") for entry in stage.get("outs") or [] if "path" in entry)
    return outs


def _within(path: str, roots: set[str]) -> bool:
    """``path`` is one of ``roots`` or lies under one (paths relative to the repository)."""
    parts = Path(path).parts
    return any("/".join(parts[:i]) in roots for i in range(1, len(parts) + 1))


def git_state(cwd: str | Path = ".", writing: str | Path | None = None) -> dict[str, Any]:
    """``{"commit", "dirty", "regenerated"}`` of the working tree: ``dirty`` when code, config
    or data differ from the commit; ``regenerated`` when only the pipeline's own outputs do
    (a run on another machine rewrites dvc.lock, its timings and its float digits).
    ``writing``: the folder being written (the report's own, which DVC has just removed)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None, "regenerated": None}
    changed = [line[3:].strip().strip('"') for line in status.stdout.splitlines() if line.strip()]
    if writing is not None:
        changed = [p for p in changed if not _within(p, {Path(writing).as_posix().rstrip("/")})]
    outputs = pipeline_outputs(cwd)
    own = [p for p in changed if _within(p, outputs)]
    return {"commit": commit.stdout.strip(), "dirty": len(own) < len(changed), "regenerated": bool(own)}


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that shape a run (``not installed`` otherwise)."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def dvc_lock_hashes(lock_path: str | Path = "dvc.lock") -> dict[str, str]:
    """md5 of the data files and folders recorded in ``dvc.lock`` (paths under ``data/``):
    the raw records, the prepared splits and the augmented training sets."""
    path = Path(lock_path)
    if not path.exists():
        return {}
    with open(path, encoding="utf-8") as fh:
        lock = yaml.safe_load(fh) or {}
    hashes: dict[str, str] = {}
    for stage in (lock.get("stages") or {}).values():
        for entry in (stage.get("deps") or []) + (stage.get("outs") or []):
            name = entry.get("path", "")
            if not name.startswith("data/") or "md5" not in entry:
                continue
            hashes[name] = entry["md5"]
    return dict(sorted(hashes.items()))


def hardware() -> str:
    """The machine the report was generated on (runs name their own in timing.json)."""
    return f"{platform.machine()}, {platform.system()} {platform.release()}, Python {platform.python_version()}"
