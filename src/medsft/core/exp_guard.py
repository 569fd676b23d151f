"""A failed ``dvc exp run`` leaves ``params.yaml`` as it was before the experiment.

DVC has no hook for a failed workspace experiment: it writes the experiment's ``params.yaml``
(``conf/`` composed with the ``-S`` overrides) into the workspace, runs the stages, and leaves
the file there when one fails, so the next ``dvc repro`` would fail the same way. What DVC
does offer: it imports the Hydra plugins under ``hydra.plugins_path`` (the repository root by
default) in the process that composes ``params.yaml``, just before it writes the file, and the
same process then runs the stages. ``hydra_plugins/medsft_params_guard.py`` calls
:func:`remember_params` there; a stage that fails calls :func:`restore_params`, which puts the
remembered bytes back when that DVC process is one of its ancestors and the stage runs in the
workspace (not in the copy of a queued or ``--temp`` experiment, which leaves the workspace
alone anyway). Errors DVC raises itself before any stage runs (a missing dependency file)
leave the workspace as DVC leaves it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

GUARD_FILE = Path(".dvc") / "tmp" / "medsft-params-before-exp.json"
PARAMS = "params.yaml"


def remember_params(root: str | Path) -> Path:
    """Save ``root``'s params.yaml (or its absence) with this process's id; return the file."""
    root = Path(root)
    params = root / PARAMS
    record = {"pid": os.getpid(), "params": params.read_text(encoding="utf-8") if params.exists() else None}
    guard = root / GUARD_FILE
    guard.parent.mkdir(parents=True, exist_ok=True)
    tmp = guard.with_suffix(".tmp")
    tmp.write_text(json.dumps(record), encoding="utf-8")
    os.replace(tmp, guard)
    return guard


def _ancestors() -> set[int]:
    import psutil  # a dependency of dvc, which is what starts the processes this serves

    return {p.pid for p in psutil.Process().parents()}


def restore_params() -> bool:
    """In a stage of a failing workspace ``dvc exp run``: put params.yaml back as the DVC
    process found it, drop the saved copy, and return True; otherwise change nothing."""
    root = os.environ.get("DVC_ROOT")
    if not os.environ.get("DVC_EXP_NAME") or not root or Path(root).resolve() != Path.cwd().resolve():
        return False
    guard = Path(root) / GUARD_FILE
    try:
        record = json.loads(guard.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if record.get("pid") not in _ancestors():
        return False  # remembered by another dvc process (an older experiment)
    params = Path(root) / PARAMS
    if record["params"] is None:
        params.unlink(missing_ok=True)
    else:
        tmp = params.with_suffix(".yaml.tmp")
        tmp.write_text(record["params"], encoding="utf-8")
        os.replace(tmp, params)
    guard.unlink(missing_ok=True)
    return True
