"""The summary of a sweep: every grid point ranked, as CSV, markdown and a heatmap."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from hydra.experimental.callback import Callback  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from medsft.analysis import measures as analysis  # noqa: E402
from medsft.analysis.tables import fmt, md_table  # noqa: E402
from medsft.core.history import load_history  # noqa: E402
from medsft.core.io import atomic_write_text, read_json  # noqa: E402
from medsft.sweep.points import STATUS  # noqa: E402

log = logging.getLogger(__name__)


def _override_values(overrides: list[str]) -> dict[str, str]:
    pairs = (o.lstrip("+~").split("=", 1) for o in overrides if "=" in o)
    return {k: v for k, v in pairs if k.startswith("variant.")}


def summarize(sweep_dir: str | Path, points: list[Path] | None = None) -> pd.DataFrame:
    """One row per grid point: those of ``points`` (the jobs of one multirun), else every
    point folder found in ``sweep_dir``; its swept values, status and results.

    Completed points are ranked by final eval loss (lowest first); failed ones follow.
    """
    rows = []
    folders = sorted(points) if points is not None else sorted(p.parent for p in Path(sweep_dir).glob(f"*/{STATUS}"))
    for job in folders:
        status_file = job / STATUS
        status = json.loads(status_file.read_text(encoding="utf-8"))
        row: dict[str, Any] = {
            "point": job.name,
            "base_variant": status.get("base_variant"),
            **_override_values(status.get("overrides", [])),
            "status": status["status"],
            "error": status.get("error"),
        }
        if status["status"] == "complete":
            train_m, eval_m = read_json(job / "train/metrics.json"), read_json(job / "eval/metrics.json")
            history = load_history(job / "train/history.csv")
            grad = analysis.spread(history)
            row.update(
                final_train_loss=train_m.get("final_train_loss"),
                final_eval_loss=train_m.get("final_eval_loss"),
                generalization_gap=analysis.generalization_gap(history),
                grad_norm_cv=grad.cv if grad else None,
                eval_loss_token_weighted=eval_m.get("eval_loss_token_weighted"),
                rouge_l_f1=eval_m.get("rouge_l_f1"),
                term_recall=eval_m.get("term_recall"),
                mechanism_mention_rate=eval_m.get("mechanism_mention_rate"),
            )
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["_failed"] = frame["status"] != "complete"
    sort = ["_failed", "final_eval_loss"] if "final_eval_loss" in frame else ["_failed"]
    frame = frame.sort_values(sort, na_position="last").drop(columns="_failed").reset_index(drop=True)
    frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame


def write_summary(sweep_dir: str | Path, points: list[Path] | None = None) -> pd.DataFrame:
    """Write ``summary.csv``, ``summary.md`` and (two swept keys) ``heatmap.png`` of the
    grid points ``points`` (default: every point folder in ``sweep_dir``)."""
    sweep_dir = Path(sweep_dir)
    frame = summarize(sweep_dir, points)
    if frame.empty:
        return frame
    atomic_write_text(sweep_dir / "summary.csv", frame.to_csv(index=False))
    shown = frame.drop(columns=["point"])
    rows = [[fmt(v) if not isinstance(v, str) else v for v in r] for r in shown.itertuples(index=False)]
    text = (
        f"# Sweep `{sweep_dir.parent.name}` around `{sweep_dir.name}`\n\n"
        "Ranked by final eval loss (the last `eval_loss` logged in training); "
        "failed points last, with their error. generalization_gap = final eval − final train loss; "
        "grad_norm_cv = population std / mean of the logged grad norm.\n\n" + md_table(list(shown.columns), rows) + "\n"
    )
    atomic_write_text(sweep_dir / "summary.md", text)
    keys = [c for c in frame.columns if c.startswith("variant.")]
    done = frame[frame["status"] == "complete"]
    if len(keys) == 2 and not done.empty:
        plot_heatmap(done, keys[0], keys[1], "final_eval_loss", sweep_dir / "heatmap.png")
    return frame


def plot_heatmap(frame: pd.DataFrame, rows: str, cols: str, value: str, path: Path) -> Path:
    """A heatmap of ``value`` over two swept keys, each cell annotated."""
    table = frame.pivot_table(index=rows, columns=cols, values=value, aggfunc="first")
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(table.columns), 1.4 + 0.8 * len(table.index)), dpi=110)
    image = ax.imshow(table.values, cmap="viridis_r", aspect="auto")
    ax.set_xticks(range(len(table.columns)), [str(c) for c in table.columns])
    ax.set_yticks(range(len(table.index)), [str(i) for i in table.index])
    ax.set_xlabel(cols.split(".")[-1])
    ax.set_ylabel(rows.split(".")[-1])
    for (i, j), v in pd.DataFrame(table.values).stack().items():
        light = image.norm(v) < 0.5  # viridis_r is light at low values
        ax.text(j, i, f"{v:.5f}", ha="center", va="center", color="black" if light else "white")
    bar = fig.colorbar(image, ax=ax, label=value)
    bar.formatter.set_useOffset(False)  # plain values, not an offset printed over the title
    bar.update_ticks()
    ax.set_title(value)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


class SummaryCallback(Callback):
    """Hydra callback: write the sweep summary when the multirun ends; fail if a point failed.

    The summary covers the points this multirun ran (collected as each job ends), not point
    folders an earlier grid left in the same place. A launcher that runs the jobs in other
    processes (SLURM) reports none back: then every point folder there is summarised, and
    the log says so."""

    def __init__(self) -> None:
        self.points: list[Path] = []

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        self.points.append(Path(config.hydra.runtime.output_dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # The points of each base variant: <sweep dir>/<variant>/<point>/ (conf/multirun.yaml);
        # a sweep over `variant` itself (conf/sweep/seeds.yaml) has one folder per variant.
        sweep_dir = Path(config.hydra.sweep.dir)
        points = self.points
        if not points:
            points = [status.parent for status in sweep_dir.glob(f"*/*/{STATUS}")]
            log.warning("%s: no job reported back to this process; summarising every point folder there", sweep_dir)
        failures = []
        for folder in sorted({p.parent for p in points}):
            frame = write_summary(folder, [p for p in points if p.parent == folder])
            failed = frame[frame["status"] != "complete"] if not frame.empty else frame
            log.info("sweep summary: %s (%d points, %d failed)", folder, len(frame), len(failed))
            if len(failed):
                failures.append(f"{len(failed)} sweep point(s) failed; see {folder}/summary.md")
        if failures:
            raise SystemExit("; ".join(failures))
