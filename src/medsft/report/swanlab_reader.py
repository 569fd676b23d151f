"""Reading a SwanLab offline run folder (``swanlog/<variant>/run-…``) back into a history.

SwanLab stores a run's records in ``run-<id>.swanlab`` (a LevelDB-style log of protobuf
records). It has no public reader, so this uses the one its ``swanlab sync`` command uses;
a SwanLab release that moves it fails here with a message naming the version.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from medsft.core.history import history_rows, normalise_history

# The swanlab release whose private log reader (below) this was checked against; a test fails
# when the installed one differs, so a bump re-checks it.
CHECKED_WITH_SWANLAB = "0.10.3"

# SwanLab keys, as our callback and transformers' SwanLab integration log them -> history columns.
KEYS = {
    "train/loss": "loss",
    "train/grad_norm": "grad_norm",
    "train/learning_rate": "learning_rate",
    "train/epoch": "epoch",
    "eval/loss": "eval_loss",
}


def _column(key: str) -> str | None:
    """The history column of a SwanLab key (``train/grad_norm_lora`` → ``grad_norm_lora``)."""
    if key in KEYS:
        return KEYS[key]
    if key.startswith("train/grad_norm_"):
        return key.removeprefix("train/")
    return None


def is_swanlab_run(path: Path) -> bool:
    """A folder holding a ``*.swanlab`` file."""
    return path.is_dir() and any(path.glob("*.swanlab"))


def read_swanlab_run(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``(history, config)`` of a SwanLab offline run folder."""
    path = Path(path)
    files = sorted(path.glob("*.swanlab"))
    if not files:
        raise FileNotFoundError(f"{path}: no *.swanlab file (not a SwanLab run folder)")
    entries: dict[tuple[int, bool], dict[str, Any]] = {}
    for record in _records(files[0]):
        column = _column(record.scalar.key) if record.HasField("scalar") else None
        if column is None:
            continue
        is_eval = column == "eval_loss"
        entry = entries.setdefault((record.scalar.step, is_eval), {"step": record.scalar.step})
        entry[column] = record.scalar.value.number
    # history_rows merges a step's training and evaluation entries, like a Trainer log.
    rows = history_rows(e for _, e in sorted(entries.items()))
    return normalise_history(pd.DataFrame(rows)), _run_config(path / "files" / "config.yaml")


def _records(path: Path) -> Iterator[Any]:
    """The protobuf records of a ``*.swanlab`` file. SwanLab has no public reader of its
    local logs: this is the one place that imports the private one ``swanlab sync`` uses."""
    try:
        from swanlab.proto.swanlab.record.v1.record_pb2 import Record
        from swanlab.sdk.internal.core_python.store import DataStoreReader
    except ImportError as err:
        import swanlab

        raise ImportError(
            f"{path}: cannot read SwanLab logs with swanlab {swanlab.__version__} "
            f"(checked with {CHECKED_WITH_SWANLAB}): {err}"
        ) from err
    reader = DataStoreReader()
    reader.open(str(path))
    for blob in reader:
        record = Record()
        record.ParseFromString(blob)
        yield record


def _run_config(path: Path) -> dict[str, Any]:
    """The logged config, unwrapped from SwanLab's ``{key: {desc, sort, value}}`` layout.

    For a run of this pipeline (which logs ``variant`` beside the full config) it is the
    variant's own section, so the report compares like with like.
    """
    if not path.exists():
        return {}
    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh) or {}
    config = {k: v["value"] if isinstance(v, dict) and "value" in v else v for k, v in raw.items()}
    variant = config.get("variant")
    if isinstance(variant, str) and variant in (config.get("variants") or {}):
        return config["variants"][variant]
    return config
