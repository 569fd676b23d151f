"""Resumable checkpoints: which ones belong to this run, which are intact, which to resume.

The Trainer writes a ``checkpoint-N`` folder file by file, so a kill can leave it half
written. :class:`CheckpointCommitCallback` marks a folder complete (``COMPLETE``, written
atomically) once the Trainer has saved it; resume only considers complete folders, checks
that their files are readable, and falls back to the newest intact one with a warning that
names each broken folder.
"""

from __future__ import annotations

import json
import logging
import shutil
import zipfile
from pathlib import Path

from safetensors import safe_open
from transformers import TrainerCallback

from medsft.core.io import atomic_write_text

log = logging.getLogger(__name__)

COMPLETE = "COMPLETE"
FINGERPRINT = "run_fingerprint.txt"


class CheckpointCommitCallback(TrainerCallback):
    """Mark each saved checkpoint complete once the Trainer has written all of it."""

    def on_save(self, args, state, control, **kwargs) -> None:
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                atomic_write_text(folder / COMPLETE, f"{state.global_step}\n")


def checkpoint_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be resumed from, or ``None`` when it is intact.

    JSON files must parse (``trainer_state.json`` with a ``global_step``), safetensors must
    open with a header that covers the file, and torch files (zip archives) must pass their
    CRC check. Nothing is unpickled.
    """
    if not (folder / COMPLETE).exists():
        return "not marked complete (interrupted while saving)"
    state_file = folder / "trainer_state.json"
    if not state_file.exists():
        return "no trainer_state.json"
    for path in sorted(folder.iterdir()):
        try:
            if path.suffix == ".json":
                data = json.loads(path.read_text(encoding="utf-8"))
                if path == state_file and "global_step" not in data:
                    return f"{path.name}: no global_step"
            elif path.suffix == ".safetensors":
                with safe_open(str(path), "pt") as fh:
                    fh.keys()
            elif path.suffix in (".pt", ".pth", ".bin"):
                with zipfile.ZipFile(path) as archive:
                    bad = archive.testzip()
                if bad is not None:
                    return f"{path.name}: corrupt member {bad}"
        except Exception as err:  # whatever fails to read makes the folder unusable
            return f"{path.name}: unreadable ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    return None


def step_of(folder: Path) -> int:
    try:
        return int(folder.name.split("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def last_checkpoint(checkpoint_dir: Path) -> str | None:
    """The newest intact ``checkpoint-N`` folder, if any; broken newer ones are named in a warning."""
    if not checkpoint_dir.is_dir():
        return None
    for folder in sorted(checkpoint_dir.glob("checkpoint-*"), key=step_of, reverse=True):
        problem = checkpoint_problem(folder)
        if problem is None:
            return str(folder)
        log.warning("%s: skipped for resume: %s", folder, problem)
    return None


def reset_stale_checkpoints(checkpoint_dir: Path, run_id: str) -> None:
    """Delete checkpoints left by a run of another config or data, so only ours resume."""
    stamp = checkpoint_dir / FINGERPRINT
    if checkpoint_dir.exists() and (not stamp.exists() or stamp.read_text().strip() != run_id):
        if any(checkpoint_dir.glob("checkpoint-*")):
            log.info("%s: checkpoints are from another config or data; starting afresh", checkpoint_dir)
        for path in checkpoint_dir.glob("checkpoint-*"):
            shutil.rmtree(path)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(stamp, run_id + "\n")


def clear_checkpoints(checkpoint_dir: Path) -> None:
    """Remove the ``checkpoint-N`` folders, keeping the folder itself (a declared output)."""
    for path in checkpoint_dir.glob("checkpoint-*"):
        shutil.rmtree(path)
