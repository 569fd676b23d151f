"""report: reports/report.md and its figures, from the variants' logged files.

python -m stages.report [report.out_dir=DIR] [report.lang=en] [key=value ...]
"""

from __future__ import annotations

import logging

from omegaconf import OmegaConf

from medsft.cli import parse_args
from medsft.history import load_history
from medsft.paths import eval_dir, train_dir
from medsft.records import read_jsonl
from medsft.report import RunFiles, read_json, render_report

log = logging.getLogger("report")


def main(argv: list[str] | None = None) -> int:
    _, cfg = parse_args(argv, usage=__doc__)
    runs = {}
    for name, variant in cfg.variants.items():
        hist_path = train_dir(name) / "history.csv"
        gens = eval_dir(name) / "generations.jsonl"
        runs[name] = RunFiles(
            name=name,
            history=load_history(hist_path),
            history_path=str(hist_path),
            config=OmegaConf.to_container(variant, resolve=True),
            train_metrics=read_json(train_dir(name) / "metrics.json"),
            eval_metrics=read_json(eval_dir(name) / "metrics.json"),
            generations=read_jsonl(gens) if gens.exists() else [],
        )
    stats = read_json(f"{cfg.prepare.out_dir}/stats.json")
    data = (
        {
            "accepted": stats.get("accepted"),
            "rejected": stats.get("rejected"),
            **{k: v["records"] for k, v in stats.get("splits", {}).items()},
        }
        if stats
        else None
    )
    path = render_report(
        runs, cfg.report.out_dir, cfg.report.lang, OmegaConf.to_container(cfg.model.training, resolve=True), data
    )
    log.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
