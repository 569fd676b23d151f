"""Artifacts are verified before they are used: train records the SHA-256 of what it wrote
(the adapter's files) and of the base it trained on, when the pipeline made that base; every
consumer (evaluate, chat, export, the report) compares before it reads. A file changed since
(a corrupted DVC cache restored by ``dvc checkout``, an edit, a partial copy) is refused in one
line naming it, instead of giving other numbers with exit status 0."""

from __future__ import annotations

import hashlib
from pathlib import Path

from medsft.core.config import ModelProfile
from medsft.core.errors import UserError

_BLOCK = 1 << 20


class ArtifactMismatch(UserError, ValueError):
    """A file differs from what train recorded; the message names it."""


def sha256(path: str | Path) -> str:
    """The SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def digests(paths: dict[str, Path]) -> dict[str, str]:
    """``{name: sha256}`` of the files ``{name: path}``."""
    return {name: sha256(path) for name, path in sorted(paths.items())}


def verify(recorded: dict[str, str], root: str | Path, where: str) -> None:
    """Check each recorded file (relative to ``root``) against its SHA-256; ``where`` names
    the record (``runs/v1/train/run_config.yaml``). Raise :class:`ArtifactMismatch` for the
    first that is missing or differs."""
    for name, expected in sorted(recorded.items()):
        path = Path(root) / name
        if not path.is_file():
            raise ArtifactMismatch(f"{path}: missing; {where} records it (run: dvc checkout, or dvc repro)")
        if sha256(path) != expected:
            raise ArtifactMismatch(
                f"{path}: its SHA-256 differs from the one {where} records: the file changed after training "
                "(a corrupted DVC cache? `dvc checkout --relink` after `dvc cache` repair, or `dvc repro -f` the stage)"
            )


def base_weight_files(model: ModelProfile) -> dict[str, Path]:
    """The weight files of a base the pipeline made (the ``pretrain`` stage's output), by
    path; none for a hub or local checkpoint, which has its own identity."""
    if model.pretrained_model_name_or_path is not None or not model.pretrain.training:
        return {}
    return {str(p): p for p in sorted(Path(model.pretrain.output_dir).glob("*.safetensors"))}


def run_artifacts(adapter_dir: str | Path, model: ModelProfile) -> dict[str, str]:
    """What train records: the SHA-256 of the adapter's files (``adapter/<name>``) and of
    the pipeline-made base's weights (their paths)."""
    adapter_dir = Path(adapter_dir)
    files = {f"adapter/{f.name}": f for f in sorted(adapter_dir.iterdir()) if f.is_file()}
    return digests({**files, **base_weight_files(model)})


def verify_run_artifacts(artifacts: dict[str, str], adapter_dir: str | Path) -> None:
    """Check the files train recorded in the run's ``run_config.yaml``: the adapter's
    (``adapter/<name>``, looked up in ``adapter_dir`` wherever the folder now is) and the
    base's, by path."""
    adapter_dir = Path(adapter_dir)
    spec = next(
        (d / "run_config.yaml" for d in (adapter_dir, adapter_dir.parent) if (d / "run_config.yaml").exists()), None
    )
    where = str(spec or "run_config.yaml")
    adapter = {k.removeprefix("adapter/"): v for k, v in artifacts.items() if k.startswith("adapter/")}
    verify(adapter, adapter_dir, where)
    verify({k: v for k, v in artifacts.items() if not k.startswith("adapter/")}, ".", where)
