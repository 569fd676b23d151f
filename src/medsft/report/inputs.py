"""What the report stage reads: the runs to report on and everything shown beside them.

Two sources: the runs named in ``report.runs`` (trainer_state.json files or folders from
elsewhere), or this pipeline's variants with the published runs, the base, the data and
augment statistics, the sweep and the provenance of the run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from medsft.core.artifacts import verify_run_artifacts
from medsft.core.io import read_json
from medsft.core.paths import train_dir
from medsft.core.spec import BASE_FILE, RunSpec
from medsft.report import provenance
from medsft.report.render import ReportInputs
from medsft.report.runs import load_dag_run, load_imported_run

# The DAG's `seeds` stage (conf/sweep/seeds.yaml): one folder per variant, a point per seed.
SEEDS_DIR = "sweeps/seeds"


def report_inputs(cfg: Any, args: list[str]) -> ReportInputs:
    """The report's inputs from the composed config ``cfg``; ``args`` as given on the
    command line (shown as the command that made the report of imported runs).

    Raises ``FileNotFoundError``/``ValueError`` for a run that cannot be read, and
    :class:`~medsft.core.artifacts.ArtifactMismatch` for an adapter that changed since training.
    """
    fields = imported_runs(cfg, args) if cfg.report.runs else dag_runs(cfg)
    return ReportInputs(
        lang=cfg.report.lang,
        phase_steps=cfg.report.phase_steps,
        plateau_tolerance=cfg.report.plateau_tolerance,
        claims_path=cfg.report.claims,
        published_source=cfg.published.dir,
        published_profile=cfg.published.profile if fields.get("published") else None,
        **fields,
    )


def imported_runs(cfg: Any, args: list[str]) -> dict[str, Any]:
    """``report.runs``: those runs alone, with their seeds as their configs record them."""
    runs = {name: load_imported_run(name, path) for name, path in dict(cfg.report.runs).items()}
    seeds = {f"{n}.seed": r.config.get("training", {}).get("seed") for n, r in runs.items() if r.config}
    return {
        "runs": runs,
        "provenance": run_provenance(cfg, "python -m stages.report " + " ".join(args), seeds, hashes={}),
    }


def dag_runs(cfg: Any) -> dict[str, Any]:
    """This pipeline's variants (their adapters verified against train's hashes), the
    published runs of ``published.out_dir``, and what prepare, augment and pretrain recorded."""
    runs = {n: load_dag_run(n) for n in cfg.variants}
    for name in runs:  # the adapters these metrics describe are still the ones trained
        verify_run_artifacts(RunSpec.read(train_dir(name)).artifacts, train_dir(name) / "adapter")
    data_stats = read_json(Path(cfg.prepare.out_dir) / "stats.json") or None
    augment_stats = {n: read_json(Path(cfg.augment.out_dir) / n / "stats.json") for n in cfg.variants}
    # Seeds as the runs used them (run_config.yaml) and as prepare split the data (stats.json).
    seeds = {f"{n}: training.seed": r.config["training"].get("seed") for n, r in runs.items()}
    seeds.update({f"{n}: model.init_seed": r.config["model"].get("init_seed") for n, r in runs.items()})
    if data_stats:
        seeds["split.seed"] = data_stats["split"]["seed"]
    published_dir = Path(cfg.published.out_dir)
    published = {p.name: load_imported_run(p.name, p) for p in sorted(published_dir.iterdir()) if p.is_dir()}
    params = Path("params.yaml")
    return {
        "runs": runs,
        "published": published,
        "local_profile": ", ".join(sorted({r.config["model"]["name"] for r in runs.values()})),
        "base_info": read_json(Path(cfg.model.pretrain.output_dir) / BASE_FILE) or None,
        "data_stats": data_stats,
        "augment_stats": {n: s for n, s in augment_stats.items() if s},
        "sweep_dir": f"sweeps/{cfg.sweep_name}/{cfg.sweep_variant}",
        "seeds_dir": SEEDS_DIR,
        "tracking_logdir": cfg.tracking.logdir if cfg.tracking.mode != "disabled" else None,
        "provenance": run_provenance(
            cfg,
            "dvc repro",
            seeds,
            hashes=provenance.dvc_lock_hashes(),
            params_sha256=hashlib.sha256(params.read_bytes()).hexdigest(),
        ),
    }


def run_provenance(
    cfg: Any, command: str, seeds: dict[str, Any], hashes: dict[str, Any], params_sha256: str | None = None
) -> dict[str, Any]:
    """The report's provenance block: git state, params hash, seeds, packages, hardware,
    the command and the DVC lock hashes."""
    return {
        "git": provenance.git_state(writing=cfg.report.out_dir),
        "params_sha256": params_sha256,
        "seeds": seeds,
        "packages": provenance.package_versions(),
        "hardware": provenance.hardware(),
        "command": command,
        "hashes": hashes,
    }
