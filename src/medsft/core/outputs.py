"""Where a stage may write, and what it may replace: one guard for every stage's outputs.

A stage writes inside the repository, or under a folder listed in ``output_roots`` (params'
opt-in for scratch disks and the like), and never at ``/``, ``$HOME``, the repository root
or a folder above one of them. An output folder that already exists is replaced only when
the same stage wrote it before: its marker file (:data:`MARKER`, inside the folder and so
inside its DVC output) says so. Anything else, a user's folder holding their own files, is
refused in one line before any work.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from medsft.core.errors import UserError

MARKER = ".medsft-output.json"
# Variant and sweep names become folder names (runs/<variant>, sweeps/<sweep_name>).
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class OutputPathError(UserError, ValueError):
    """An output path the stage must not write to; the message names the key."""


def check_name(key: str, name: str) -> str:
    """Refuse a variant or sweep name that is not a plain folder name (``../x``, ``a/b``)."""
    if not NAME.fullmatch(name) or ".." in name:
        raise OutputPathError(f"{key}={name!r}: not a plain name (letters, digits, '_', '.', '-'; it names a folder)")
    return name


def check_output_place(
    key: str, path: str | Path, output_roots: list[str] | tuple[str, ...] = (), root: str | Path = "."
) -> Path:
    """Return ``path`` when it is a place for outputs: inside the repository or an output
    root, and neither ``/``, ``$HOME``, the repository nor a folder above one of them."""
    out = Path(path)
    target = out.resolve()
    repo = Path(root).resolve()
    protected = [Path("/").resolve(), repo]
    if os.environ.get("HOME"):
        protected.append(Path(os.environ["HOME"]).resolve())
    for place in protected:
        if target == place or target in place.parents:
            raise OutputPathError(f"{key}={path}: is {place} or a folder above it; an output needs a folder of its own")
    allowed = [repo, *(Path(r).expanduser().resolve() for r in output_roots)]
    if not any(place in target.parents for place in allowed):
        raise OutputPathError(
            f"{key}={path}: outside the repository; list its folder in output_roots to write there "
            f"(e.g. -S 'output_roots=[{target.parent}]')"
        )
    return out


def check_output_dir(
    key: str,
    path: str | Path,
    stage: str,
    output_roots: list[str] | tuple[str, ...] = (),
    own: tuple[str, ...] = (),
    root: str | Path = ".",
) -> Path:
    """Return ``path`` when ``stage`` may (re)write it as its output folder: a place for
    outputs (:func:`check_output_place`) that is new, empty, holds the stage's marker, or
    holds nothing but the stage's own outputs (``own``: the names it writes, as a DVC
    checkout or an earlier version leaves them); raise :class:`OutputPathError` naming
    ``key`` otherwise."""
    out = check_output_place(key, path, output_roots, root)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise OutputPathError(f"{key}={path}: exists and is not a folder")
    owner = written_by(out) if out.is_dir() else None
    foreign = sorted(p.name for p in out.iterdir() if p.name not in (*own, MARKER)) if out.is_dir() else []
    if owner not in (None, stage) or (owner is None and foreign):
        why = f"written by the {owner} stage" if owner else f"holds {foreign[:5]}, which {stage} did not write"
        raise OutputPathError(f"{key}={path}: {why}; choose a new or empty folder, or remove it yourself")
    return out


def written_by(folder: str | Path) -> str | None:
    """The stage whose marker ``folder`` holds, or ``None``."""
    try:
        return json.loads((Path(folder) / MARKER).read_text(encoding="utf-8")).get("stage")
    except (OSError, ValueError, AttributeError):
        return None


def mark(folder: str | Path, stage: str) -> None:
    """Write ``stage``'s marker into ``folder`` (part of its output, so DVC caches it too)."""
    from medsft.core.io import atomic_write_json

    atomic_write_json(Path(folder) / MARKER, {"stage": stage})
