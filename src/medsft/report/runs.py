"""What the report reads of a run: the DAG's own variants, or runs imported from elsewhere."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from medsft.core.history import load_history
from medsft.core.io import read_json, read_jsonl
from medsft.core.paths import TIMING_FILE, eval_dir, train_dir
from medsft.core.spec import SPEC_FILE, RunSpec
from medsft.report.swanlab_reader import is_swanlab_run, read_swanlab_run


@dataclass
class RunFiles:
    """One run's logged files, loaded; any part but the history may be empty."""

    name: str
    history: pd.DataFrame
    history_path: str
    config: dict[str, Any] = field(default_factory=dict)
    train_metrics: dict[str, Any] = field(default_factory=dict)  # train's metrics.json: its results
    # train's timing.json: seconds, tokens/s, peak memory, device and hardware of the run
    timing: dict[str, Any] = field(default_factory=dict)
    eval_metrics: dict[str, Any] = field(default_factory=dict)
    generations: list[dict[str, Any]] = field(default_factory=list)
    probes: list[dict[str, Any]] = field(default_factory=list)
    config_path: str | None = None
    # TrainingArguments fields the model profile replaced: field -> {"variant", "profile"}
    profile_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    masking: dict[str, Any] = field(default_factory=dict)  # train's masking.json
    benchmarks: dict[str, Any] = field(default_factory=dict)  # evaluate's benchmarks.json (lm-eval)


def load_dag_run(name: str) -> RunFiles:
    """A variant trained by this pipeline: ``runs/<name>/train`` and ``runs/<name>/eval``.

    Its config is the spec train wrote (``run_config.yaml``): the values the run used.
    """
    train, ev = train_dir(name), eval_dir(name)
    hist_path = train / "history.csv"
    if not hist_path.exists():
        raise FileNotFoundError(f"{hist_path}: no history for variant {name!r} (run: dvc repro train@{name})")
    spec = RunSpec.read(train / SPEC_FILE)
    # Where the checkpoints went is no setting of the run.
    training = {k: v for k, v in spec.training.items() if k != "output_dir"}
    config = {"lora": spec.lora, "training": training, "augment": asdict(spec.augment), "model": asdict(spec.model)}
    gens, probes = ev / "generations.jsonl", ev / "probes.jsonl"
    return RunFiles(
        name=name,
        history=load_history(hist_path),
        history_path=str(hist_path),
        config=config,
        train_metrics=read_json(train / "metrics.json"),
        timing=read_json(train / TIMING_FILE),
        eval_metrics=read_json(ev / "metrics.json"),
        generations=read_jsonl(gens) if gens.exists() else [],
        probes=read_jsonl(probes) if probes.exists() else [],
        config_path=str(train / SPEC_FILE),
        profile_overrides=spec.profile_overrides,
        masking=read_json(train / "masking.json"),
        benchmarks=read_json(ev / "benchmarks.json"),
    )


def load_imported_run(name: str, path: str | Path) -> RunFiles:
    """A run made elsewhere: a ``trainer_state.json``, a folder holding one, or a SwanLab
    offline run folder (``swanlog/<variant>/run-…``).

    A ``run_config.yaml`` (or ``config.yaml``), a ``metrics.json`` and a ``timing.json``
    beside the history are read too, for the config comparison and the overview.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"report.runs.{name}: {path} does not exist")
    if is_swanlab_run(path):
        history, config = read_swanlab_run(path)
        return RunFiles(name=name, history=history, history_path=str(path), config=config)
    folder = path if path.is_dir() else path.parent
    history_file = path
    if path.is_dir():
        candidates = [path / "trainer_state.json", path / "history.csv"]
        history_file = next((c for c in candidates if c.exists()), None)
        if history_file is None:
            raise FileNotFoundError(
                f"report.runs.{name}: {path} holds no trainer_state.json, history.csv or *.swanlab file"
            )
    config, config_path = {}, None
    for candidate in ("run_config.yaml", "config.yaml"):
        if (folder / candidate).exists():
            with open(folder / candidate, encoding="utf-8") as fh:
                config = yaml.safe_load(fh) or {}
            config_path = str(folder / candidate)
            break
    return RunFiles(
        name=name,
        history=load_history(history_file),
        history_path=str(history_file),
        config=config,
        train_metrics=read_json(folder / "metrics.json"),
        timing=read_json(folder / TIMING_FILE),
        config_path=config_path,
    )
