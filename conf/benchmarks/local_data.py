"""Data of the local lm-eval tasks in this folder, found beside this file.

A task YAML names it with ``custom_dataset: !function local_data.jsonl_beside`` and lists its
files under ``dataset_kwargs.data_files`` relative to this folder. lm-eval resolves the
``!function`` relative to the YAML and datasets would resolve a plain ``data_files`` path
relative to the working directory, so this is what lets
``lm_eval --include_path conf/benchmarks`` run from any folder. Plain datasets and lm-eval
only: no project code is imported, so the folder works with lm-eval alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

HERE = Path(__file__).resolve().parent


def jsonl_beside(data_files: dict[str, str] | None = None, **_metadata: Any) -> datasets.DatasetDict:
    """Load ``data_files`` (split -> JSON Lines file name, relative to this folder) with
    datasets' packaged JSON builder; nothing is downloaded. lm-eval also passes the task's
    ``metadata`` (and ``--metadata``) as keywords: they are not about the data, and ignored."""
    if not data_files:
        raise ValueError(f"{HERE}: a task using local_data.jsonl_beside needs dataset_kwargs.data_files")
    paths = {split: HERE / name for split, name in data_files.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)}: no such task data file")
    return datasets.load_dataset("json", data_files={split: str(p) for split, p in paths.items()})
