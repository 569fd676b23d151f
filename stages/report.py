"""report: reports/report.md and its figures, from logged runs.

    python -m stages.report [report.lang=en] [key=value ...]
    python -m stages.report report.runs.v1=PATH report.runs.v2=PATH report.out_dir=DIR

Without report.runs it reports on the published runs (published.out_dir, written by the import
stage) and then on the DAG's variants (runs/<variant>/); with it, on those runs
alone (a trainer_state.json, or a folder holding one and its run_config.yaml).
"""

from __future__ import annotations

import hashlib
import logging
import sys
from pathlib import Path

from medsft.core.artifacts import ArtifactMismatch, verify_run_artifacts
from medsft.core.cli import fail, parse_args, require_inputs, run_stage
from medsft.core.io import read_json
from medsft.core.outputs import check_output_dir
from medsft.core.paths import train_dir
from medsft.core.spec import BASE_FILE, RunSpec
from medsft.report import provenance
from medsft.report.render import ReportInputs, render_report
from medsft.report.runs import load_dag_run, load_imported_run

log = logging.getLogger("report")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    _, cfg = parse_args(args, usage=__doc__, libraries=False)
    check_output_dir("report.out_dir", cfg.report.out_dir, "report", cfg.output_roots, ("report.md", "figures"))
    imported = dict(cfg.report.runs)
    if imported:
        try:
            runs = {name: load_imported_run(name, path) for name, path in imported.items()}
        except (FileNotFoundError, ValueError, ImportError) as err:
            fail(str(err))
        data_stats, augment_stats, logdir, lock = None, {}, None, {}
        published, base_info, local_profile = {}, None, None
        command = "python -m stages.report " + " ".join(args)
        seeds = {f"{n}.seed": r.config.get("training", {}).get("seed") for n, r in runs.items() if r.config}
    else:
        try:
            runs = {n: load_dag_run(n) for n in cfg.variants}
            for name in runs:  # the adapters these metrics describe are still the ones trained
                verify_run_artifacts(RunSpec.read(train_dir(name)).artifacts, train_dir(name) / "adapter")
        except ArtifactMismatch as err:
            fail(str(err), code=1)
        except (FileNotFoundError, ValueError) as err:
            fail(str(err))
        data_stats = read_json(Path(cfg.prepare.out_dir) / "stats.json") or None
        augment_stats = {n: read_json(Path(cfg.augment.out_dir) / n / "stats.json") for n in cfg.variants}
        augment_stats = {n: s for n, s in augment_stats.items() if s}
        logdir = cfg.tracking.logdir if cfg.tracking.mode != "disabled" else None
        lock = provenance.dvc_lock_hashes()
        command = "dvc repro"
        # Seeds as the runs used them (run_config.yaml) and as prepare split the data (stats.json).
        seeds = {f"{n}: training.seed": r.config["training"].get("seed") for n, r in runs.items()}
        seeds.update({f"{n}: model.init_seed": r.config["model"].get("init_seed") for n, r in runs.items()})
        if data_stats:
            seeds["split.seed"] = data_stats["split"]["seed"]
        published_dir = Path(cfg.published.out_dir)
        require_inputs((published_dir, "import"))
        try:
            published = {p.name: load_imported_run(p.name, p) for p in sorted(published_dir.iterdir()) if p.is_dir()}
        except (FileNotFoundError, ValueError) as err:
            fail(str(err))
        base_info = read_json(Path(cfg.model.pretrain.output_dir) / BASE_FILE) or None
        profiles = sorted({r.config["model"]["name"] for r in runs.values()})
        local_profile = ", ".join(profiles)
    params = Path("params.yaml")
    inputs = ReportInputs(
        runs=runs,
        published=published,
        published_source=cfg.published.dir,
        published_profile=cfg.published.profile if published else None,
        local_profile=local_profile,
        base_info=base_info,
        lang=cfg.report.lang,
        phase_steps=cfg.report.phase_steps,
        plateau_tolerance=cfg.report.plateau_tolerance,
        claims_path=cfg.report.claims,
        data_stats=data_stats,
        augment_stats=augment_stats,
        sweep_dir=None if imported else f"sweeps/{cfg.sweep_name}/{cfg.sweep_variant}",
        tracking_logdir=logdir,
        provenance={
            "git": provenance.git_state(writing=cfg.report.out_dir),
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
    raise SystemExit(run_stage(main))
