"""report: reports/report.md and its figures, from logged runs.

    python -m stages.report [report.lang=en] [key=value ...]
    python -m stages.report report.runs.v1=PATH report.runs.v2=PATH report.out_dir=DIR

Without report.runs it reports on the published runs (published.out_dir, written by the import
stage) and then on the DAG's variants (runs/<variant>/); with it, on those runs
alone (a trainer_state.json, or a folder holding one and its run_config.yaml).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from medsft.core.artifacts import ArtifactMismatch
from medsft.core.cli import fail, parse_args, require_inputs, run_stage
from medsft.core.outputs import check_output_dir
from medsft.report.inputs import report_inputs
from medsft.report.render import render_report

log = logging.getLogger("report")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    _, cfg = parse_args(args, usage=__doc__, libraries=False)
    check_output_dir("report.out_dir", cfg.report.out_dir, "report", cfg.output_roots, ("report.md", "figures"))
    if not cfg.report.runs:
        require_inputs((Path(cfg.published.out_dir), "import"))
    try:
        inputs = report_inputs(cfg, args)
    except ArtifactMismatch as err:
        fail(str(err), code=1)
    except (FileNotFoundError, ValueError, ImportError) as err:
        fail(str(err))
    path = render_report(inputs, cfg.report.out_dir)
    log.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
