"""Standard benchmarks through lm-evaluation-harness (``lm-eval``) on a trained adapter.

``evaluate.benchmarks`` names lm-eval tasks: lm-eval's own (``cmmlu_clinical_knowledge`` …)
or local task YAMLs under ``evaluate.lm_eval.include_path`` (``medsft_clinical_mc``). The
adapter is scored on its base as :func:`medsft.modeling.loading.load_adapter` loaded it for
the other evaluations, and the scores go to ``runs/<variant>/eval/benchmarks.json``.

The reasoning block: multiple-choice tasks (CMMLU, C-Eval, ours) compare the log-likelihood
of each option after the prompt; the model generates nothing, so there is nothing to strip.
Generative tasks (``generate_until``) get HFLM's ``think_end_token``: a reply is cut after its
last ``</think>`` before the task's filters and metrics read it.

lm-eval writes no files here (no ``output_path``, no request cache, no samples); datasets
keeps downloaded task data in its own cache (``HF_DATASETS_CACHE``), outside the repository.
"""

from __future__ import annotations

import difflib
import functools
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import lm_eval
from huggingface_hub import HfApi

from medsft.core.errors import UserError

if TYPE_CHECKING:
    from lm_eval.api.group import Group
    from lm_eval.api.task import Task
    from lm_eval.tasks import TaskManager

# lm-eval's evaluator, model and task modules (and scikit-learn, scipy, … behind them) take
# about a second to import: they are imported where a benchmark runs, so an evaluate stage
# with no benchmarks listed does not pay for them.

log = logging.getLogger(__name__)
FIELD = "evaluate.benchmarks"
THINK_END = "</think>"
# datasets' builders that read local files (dataset_path: json + data_files): no hub involved.
LOCAL_BUILDERS = ("json", "csv", "parquet", "text", "arrow")
# One look-up of a task's dataset on the hub before datasets' own download, which retries an
# unreachable hub five times (about 25 s and a warning per try).
HUB_TIMEOUT_S = 10


class BenchmarkError(UserError, ValueError):
    """A benchmark that cannot run: an unknown task name, or task data that cannot be fetched."""


@dataclass
class Benchmarks:
    """The lm-eval tasks of ``evaluate.benchmarks``, built (their data loaded) and ready to run."""

    manager: TaskManager | None = None
    tasks: list[Task | Group] = field(default_factory=list)


def load_tasks(names: Sequence[str], include_path: str) -> Benchmarks:
    """Build the lm-eval tasks ``names`` (lm-eval's own, or task YAMLs under ``include_path``),
    loading their data; run before the model loads, so a mistake costs no model load.

    Raises :class:`BenchmarkError` (one line naming ``evaluate.benchmarks`` and the task) for an
    unknown name, or for data that cannot be fetched: the hub unreachable, or not in the local
    cache with ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE`` set.
    """
    if not names:
        return Benchmarks()
    if not Path(include_path).is_dir():
        raise BenchmarkError(f"evaluate.lm_eval.include_path={include_path}: no such folder of lm-eval task YAMLs")
    folder = str(Path(include_path).resolve())
    manager = _task_manager(folder, include_defaults=False)
    if any(name not in manager.task_index for name in names):
        manager = _task_manager(folder, include_defaults=True)
    for name in names:
        if name not in manager.task_index:
            close = [repr(n) for n in difflib.get_close_matches(name, manager.all_tasks, n=3, cutoff=0.75)]
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            raise BenchmarkError(
                f"{FIELD}: {name!r} is no lm-eval {lm_eval.__version__} task, nor a task of {include_path}/{hint}"
            )
    tasks: list[Task | Group] = []
    for name in names:
        _check_hub_dataset(name, manager.task_index[name].cfg or {})
        try:
            with _without_metadata_note():
                built = manager.load([name])
        except OSError as err:  # datasets' ConnectionError, DatasetNotFoundError, a missing data file
            raise BenchmarkError(f"{FIELD}: {name}: its data cannot be loaded: {_data_error(err)}") from err
        # A group is passed whole (lm-eval aggregates it); a task or a tag as its tasks.
        tasks += [built["groups"][name]] if name in built["groups"] else list(built["tasks"].values())
    return Benchmarks(manager=manager, tasks=tasks)


def run_benchmarks(
    model: Any, tokenizer: Any, benchmarks: Benchmarks, settings: Mapping[str, Any], batch_size: int
) -> dict[str, Any]:
    """Score ``model`` (a loaded adapter on its base) on ``benchmarks`` with
    ``lm_eval.simple_evaluate``; return what ``benchmarks.json`` holds (:func:`benchmark_record`).

    ``settings``: the ``evaluate.lm_eval`` section (``limit``, ``num_fewshot``,
    ``apply_chat_template`` as simple_evaluate takes them). With no tasks, lm-eval does not run
    and the record lists none.
    """
    if not benchmarks.tasks:
        return benchmark_record(None, settings)
    from lm_eval.evaluator import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    # An id, not the string: HFLM decodes replies without special tokens before a string split.
    think_end = tokenizer.get_added_vocab().get(THINK_END)
    with _weights_as_loaded(model):
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, think_end_token=think_end)
    results = simple_evaluate(
        model=lm,
        tasks=benchmarks.tasks,
        task_manager=benchmarks.manager,
        limit=settings.get("limit"),
        num_fewshot=settings.get("num_fewshot"),
        apply_chat_template=bool(settings.get("apply_chat_template")),
        log_samples=False,
    )
    record = benchmark_record(results, settings)
    for task, scores in record["tasks"].items():
        shown = (f"{k} {v:.4f}" for k, v in scores.items() if v is not None and "_stderr" not in k)
        log.info("%s: %s", task, ", ".join(shown))
    return record


def benchmark_record(results: Mapping[str, Any] | None, settings: Mapping[str, Any]) -> dict[str, Any]:
    """``benchmarks.json`` from ``simple_evaluate``'s results (``None``: no benchmark ran).

    ``tasks``: task (or group) -> metric -> value, lm-eval's ``acc,none`` written ``acc`` (a
    filter other than ``none`` stays: ``exact_match,strict-match``), a standard error lm-eval
    could not compute as null; ``versions``, ``n-samples`` and ``n-shot`` per task as lm-eval
    names them; the lm-eval version and the settings. Sorted keys, no paths, no timestamps:
    the same run gives the same bytes.
    """
    results = results or {}
    return {
        "lm_eval_version": lm_eval.__version__ if results else None,
        "limit": settings.get("limit"),
        "num_fewshot": settings.get("num_fewshot"),
        "apply_chat_template": bool(settings.get("apply_chat_template")),
        "tasks": {
            task: {_metric(key): _number(value) for key, value in sorted(row.items()) if "," in key}
            for task, row in sorted(results.get("results", {}).items())
        },
        "versions": dict(sorted(results.get("versions", {}).items())),
        "n-samples": {task: dict(sorted(n.items())) for task, n in sorted(results.get("n-samples", {}).items())},
        "n-shot": dict(sorted(results.get("n-shot", {}).items())),
    }


# --- helpers ------------------------------------------------------------------------------


@functools.cache
def _task_manager(include_path: str, include_defaults: bool) -> TaskManager:
    """lm-eval's task index of the folder ``include_path`` (an absolute path) alone (instant),
    or with lm-eval's ~15,000 task YAMLs too (seconds), built once a process."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include_path, include_defaults=include_defaults)


def _check_hub_dataset(name: str, cfg: Mapping[str, Any]) -> None:
    """Raise :class:`BenchmarkError` when the hub dataset of task ``name`` cannot be reached:
    one look-up with a timeout instead of datasets' retries. Offline (``HF_HUB_OFFLINE`` or
    ``HF_DATASETS_OFFLINE``), local data, and groups are left to datasets."""
    path = cfg.get("dataset_path")
    if datasets.config.HF_HUB_OFFLINE or not isinstance(path, str) or cfg.get("custom_dataset"):
        return
    if path in LOCAL_BUILDERS or Path(path).exists():
        return
    api = HfApi()
    try:
        api.dataset_info(path, timeout=HUB_TIMEOUT_S)
    except Exception as err:  # noqa: BLE001 - any failure means the same to the user
        raise BenchmarkError(
            f"{FIELD}: {name}: its data ({path}) cannot be fetched from the Hugging Face Hub ({api.endpoint}): "
            f"{type(err).__name__}: {_first_line(err)}; run once where the hub is reachable, or set "
            "HF_DATASETS_OFFLINE=1 to use data already in the local cache"
        ) from None


def _data_error(err: BaseException) -> str:
    # datasets reports a hub dataset missing from the cache in offline mode as a ConnectionError.
    if datasets.config.HF_HUB_OFFLINE and isinstance(err, ConnectionError):
        return (
            f"not in the local cache ({datasets.config.HF_DATASETS_CACHE}) and HF_HUB_OFFLINE or "
            "HF_DATASETS_OFFLINE is set; run once where the Hugging Face Hub is reachable to cache it"
        )
    return f"{type(err).__name__}: {_first_line(err)}"


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0]


def _metric(key: str) -> str:
    """lm-eval's ``metric,filter`` result key, without the default filter ``none``."""
    metric, _, filter_name = key.partition(",")
    return metric if filter_name == "none" else key


def _number(value: Any) -> float | None:
    """A score as a float; lm-eval's ``"N/A"`` (a standard error it did not compute) as None."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# lm-eval's warning, on loading any task with a custom_dataset (ours: conf/benchmarks/
# local_data.py), that --metadata can pass it keywords: nothing a stage's user can act on.
METADATA_NOTE = "Custom kwargs can be passed to `--metadata`"


@contextmanager
def _without_metadata_note() -> Iterator[None]:
    """Leave out :data:`METADATA_NOTE` while tasks load."""
    logger = logging.getLogger("lm_eval.api.task")

    def keep(record: logging.LogRecord) -> bool:
        return METADATA_NOTE not in record.getMessage()

    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


@contextmanager
def _weights_as_loaded(model: Any) -> Iterator[None]:
    """Keep ``model``'s weights as loaded while HFLM wraps it: HFLM calls ``tie_weights()``,
    which fails on an adapter whose ``modules_to_save`` hold the tied embedding and output
    layer (v2 trains both, as separate copies on purpose: they must stay untied)."""
    model.tie_weights = lambda *args, **kwargs: None
    try:
        yield
    finally:
        del model.tie_weights
