"""report: reports/report.md and its figures, from logged runs.

    python -m stages.report [report.lang=en] [key=value ...]
    python -m stages.report report.runs.v1=PATH report.runs.v2=PATH report.out_dir=DIR

Without report.runs it reports on the DAG's variants (runs/<variant>/); with it, on those runs
alone (a trainer_state.json, or a folder holding one and its run_config.yaml).
"""

from __future__ import annotations

import hashlib
import logging
import sys
from pathlib import Path

from omegaconf import OmegaConf

from medsft import provenance
from medsft.cli import parse_args
from medsft.report import ReportInputs, render_report
from medsft.runs import load_dag_run, load_imported_run, read_json

log = logging.getLogger("report")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    _, cfg = parse_args(args, usage=__doc__)
    imported = dict(cfg.report.runs)
    if imported:
        runs = {name: load_imported_run(name, path) for name, path in imported.items()}
        data_stats, augment_stats, profile, logdir, lock = None, {}, None, None, {}
        command = "python -m stages.report " + " ".join(args)
        seeds = {f"{n}.seed": r.config.get("training", {}).get("seed") for n, r in runs.items() if r.config}
    else:
        runs = {n: load_dag_run(n, OmegaConf.to_container(v, resolve=True)) for n, v in cfg.variants.items()}
        data_stats = read_json(Path(cfg.prepare.out_dir) / "stats.json") or None
        augment_stats = {n: read_json(Path(cfg.augment.out_dir) / n / "stats.json") for n in cfg.variants}
        augment_stats = {n: s for n, s in augment_stats.items() if s}
        profile = OmegaConf.to_container(cfg.model.training, resolve=True)
        logdir = cfg.tracking.logdir if cfg.tracking.mode != "disabled" else None
        lock = provenance.dvc_lock_hashes()
        command = "dvc repro"
        seeds = {f"variants.{n}.training.seed": v.training.get("seed") for n, v in cfg.variants.items()}
        seeds.update({"split.seed": cfg.split.seed, "model.init_seed": cfg.model.init_seed})
    params = Path("params.yaml")
    inputs = ReportInputs(
        runs=runs,
        lang=cfg.report.lang,
        phase_steps=cfg.report.phase_steps,
        plateau_tolerance=cfg.report.plateau_tolerance,
        claims_path=cfg.report.claims,
        profile_training=profile,
        data_stats=data_stats,
        augment_stats=augment_stats,
        sweep_dir=None if imported else f"sweeps/{cfg.sweep_name}",
        tracking_logdir=logdir,
        provenance={
            "git": provenance.git_state(),
            "params_sha256": hashlib.sha256(params.read_bytes()).hexdigest() if not imported else None,
            "seeds": seeds,
            "packages": provenance.package_versions(),
            "hardware": provenance.hardware(),
            "command": command,
            "hashes": lock,
        },
    )
    path = render_report(inputs, cfg.report.out_dir)
    log.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
