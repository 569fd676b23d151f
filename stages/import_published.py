"""import: the published runs of the seed experiment as runs of this pipeline.

    python -m stages.import_published [key=value ...]

Reads every run folder of published.dir (trainer_state.json and run_config.yaml: the real
logs, see data/published/README.md), checks them, and writes published.out_dir/<run>/ with
the same files plus history.csv, the history table the report and `dvc plots` read.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from medsft.core.cli import fail, parse_args, run_stage
from medsft.core.history import write_history_csv
from medsft.core.io import atomic_dir, read_json
from medsft.core.outputs import check_output_dir, mark
from medsft.report.runs import load_imported_run

log = logging.getLogger("import")


def main(argv: list[str] | None = None) -> int:
    _, cfg = parse_args(argv, usage=__doc__, libraries=False)
    source = Path(cfg.published.dir)
    runs = tuple(p.name for p in source.iterdir() if p.is_dir()) if source.is_dir() else ()
    out = check_output_dir("published.out_dir", cfg.published.out_dir, "import", cfg.output_roots, runs)
    folders = sorted(p for p in source.iterdir() if p.is_dir()) if source.is_dir() else []
    if not folders:
        fail(f"{source}: no run folders (published.dir); each holds a trainer_state.json and run_config.yaml")
    with atomic_dir(out) as tmp:
        for folder in folders:
            try:
                run = load_imported_run(folder.name, folder)  # checks the files can be read
                state = read_json(folder / "trainer_state.json")
            except (FileNotFoundError, ValueError) as err:
                fail(f"{folder}: {err}")
            if run.history.empty or not run.config:
                fail(f"{folder}: needs a trainer_state.json with a log_history and a run_config.yaml")
            (tmp / folder.name).mkdir()
            for name in ("trainer_state.json", "run_config.yaml"):
                shutil.copyfile(folder / name, tmp / folder.name / name)
            write_history_csv(tmp / folder.name / "history.csv", state["log_history"])
            log.info("%s: %d logged steps, last step %d", folder.name, len(run.history), int(run.history["step"].max()))
        mark(tmp, "import")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
