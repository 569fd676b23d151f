"""Where the stages put their outputs (mirrored by dvc.yaml's deps and outs)."""

from __future__ import annotations

from pathlib import Path

RUNS_DIR = Path("runs")
# Beside a train run's metrics.json (its results, DVC metrics): how the run ran (seconds,
# tokens/s, peak memory, hardware), which changes from run to run; a plain output.
TIMING_FILE = "timing.json"


def train_dir(variant: str) -> Path:
    """``runs/<variant>/train``: adapter, history, trainer state, metrics, checkpoints."""
    return RUNS_DIR / variant / "train"


def eval_dir(variant: str) -> Path:
    """``runs/<variant>/eval``: evaluation metrics and generations."""
    return RUNS_DIR / variant / "eval"
