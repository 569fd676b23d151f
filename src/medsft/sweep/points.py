"""Hydra multirun sweeps: one train + evaluate per grid point.

Each job runs in its own folder ``sweeps/<name>/<overrides>/`` and writes its run spec,
history, metrics and adapter there, plus ``status.json`` (complete or failed, with the
error). A failing point is recorded and the sweep goes on. A rerun skips points already
complete with the same spec, settings and code. :mod:`medsft.sweep.summary` ranks the points when the
multirun ends.
"""

from __future__ import annotations

import json
import logging
import traceback
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medsft.core.config import validate
from medsft.core.io import atomic_write_json, read_jsonl
from medsft.core.spec import RunSpec, code_fingerprint, fingerprint, resolve_spec
from medsft.evaluate.run import evaluate_run
from medsft.train.trainer import train_run

log = logging.getLogger(__name__)
STATUS = "status.json"


def job_dirname(override_dirname: str) -> str:
    """A grid point's folder name from its overrides, with path separators made safe."""
    return override_dirname.replace("/", "%2F") or "default"


def point_spec(cfg: DictConfig, base_variant: str) -> tuple[RunSpec, DictConfig]:
    """The run spec of one grid point (the swept ``variant`` section, named after its base
    variant) and the validated pipeline config it was resolved from."""
    raw = OmegaConf.to_container(cfg, resolve=True)
    raw.pop("hydra", None)
    raw.pop("sweep_name", None)
    raw["variants"] = {base_variant: raw.pop("variant")}
    point = validate(OmegaConf.create(raw), source="sweep point")
    return resolve_spec(point, base_variant), point


def run_point(cfg: DictConfig, job_dir: Path, overrides: list[str], base_variant: str) -> dict[str, Any]:
    """Train and evaluate one grid point in ``job_dir``; never raises (the error is recorded).

    Returns the point's status record.
    """
    job_dir = Path(job_dir)
    status_path = job_dir / STATUS
    try:
        spec, point = point_spec(cfg, base_variant)
        evaluation = [OmegaConf.to_container(point[s], resolve=True) for s in ("evaluate", "generation")]
        # The code too: after a change that DVC reruns the sweep for, every point runs again.
        config_id = fingerprint(spec.to_dict(), *evaluation, code_fingerprint())
        if status_path.exists():
            previous = json.loads(status_path.read_text(encoding="utf-8"))
            if previous.get("status") == "complete" and previous.get("config_id") == config_id:
                log.info("%s: complete with this config, skipped", job_dir.name)
                return previous
        train = read_jsonl(Path(point.prepare.out_dir) / "train.jsonl")
        val = read_jsonl(Path(point.prepare.out_dir) / "val.jsonl")
        train_run(
            spec,
            train,
            val,
            job_dir / "train",
            tracking=OmegaConf.to_container(point.tracking, resolve=True),
            divergence=OmegaConf.to_container(point.divergence, resolve=True),
        )
        # Evaluate the spec train wrote: the settings as used.
        evaluate_run(
            RunSpec.read(job_dir / "train"),
            job_dir / "train" / "adapter",
            val,
            train,
            *evaluation,
            point.augment.lexicon,
            job_dir / "eval",
        )
        record = {"status": "complete", "config_id": config_id, "base_variant": base_variant, "overrides": overrides}
    except Exception as err:  # a failed point is a result of the sweep, not the end of it
        log.error("%s failed: %s", job_dir.name, err)
        record = {
            "status": "failed",
            "base_variant": base_variant,
            "overrides": overrides,
            "error": f"{type(err).__name__}: {err}",
            "traceback": traceback.format_exc(),
        }
    atomic_write_json(status_path, record)
    return record
