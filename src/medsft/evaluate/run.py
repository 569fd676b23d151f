"""Evaluating a trained adapter: token-weighted loss on the validation split, generations,
and the lm-eval benchmarks of ``evaluate.benchmarks``.

The run is described by its spec (``run_config.yaml``, written by train): the base model,
the format and the eval batch size come from there, not from the config again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm.auto import tqdm

from medsft.core.artifacts import verify_run_artifacts
from medsft.core.errors import UserError
from medsft.core.io import atomic_write_json, write_jsonl
from medsft.core.runtime import reproducibility_settings
from medsft.core.spec import RunSpec
from medsft.data.augmentation import load_lexicon
from medsft.data.formatting import IGNORE_INDEX, Encoded, encode_parts, encode_records, prompt_parts
from medsft.evaluate.benchmarks import load_tasks, run_benchmarks
from medsft.evaluate.metrics import score_replies, term_document_frequency
from medsft.modeling.generation import generate_replies
from medsft.modeling.loading import load_adapter
from medsft.modeling.loss import final_hidden_states, linear_cross_entropy, output_layer
from medsft.modeling.vocab import output_rows, unknown_inputs

# What evaluate writes into runs/<variant>/eval/.
OUTPUTS = ("metrics.json", "generations.jsonl", "probes.jsonl", "benchmarks.json")


class EvaluateInputError(UserError, ValueError):
    """An input of evaluate that is not there or not what it should be; names the key."""


@torch.no_grad()
def token_weighted_loss(
    model, encoded: Encoded, batch_size: int, pad_token_id: int, chunk_size: int | None = None
) -> dict[str, float]:
    """Mean cross-entropy over all target tokens of the split (each token weighs the same).

    Uses the training label mask (prompt tokens are -100), so it is the quantity the
    training loss estimates, averaged over tokens rather than over batches. Computed as
    training computes it (:func:`~medsft.modeling.loss.linear_cross_entropy`, ``chunk_size``
    positions at a time; all at once when None), on the rows of the model's output layer.
    """
    device = next(model.parameters()).device
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    total_nll, total_tokens = 0.0, 0
    order = sorted(range(len(encoded)), key=lambda i: len(encoded.input_ids[i]))  # less padding
    for start in tqdm(range(0, len(order), batch_size), desc="eval loss", leave=False):
        idx = order[start : start + batch_size]
        width = max(len(encoded.input_ids[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_token_id, dtype=torch.long)
        labels = torch.full((len(idx), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            n = len(encoded.input_ids[i])
            ids[row, :n] = torch.tensor(encoded.input_ids[i])
            labels[row, :n] = torch.tensor(encoded.labels[i])
            mask[row, :n] = 1
        with final_hidden_states(lm) as captured:
            model(input_ids=ids.to(device), attention_mask=mask.to(device), logits_to_keep=1)
        # The rows training scores and the labels as indices into them, once: a target the
        # model has no row for is left out of the loss and of the count alike.
        weight, rows = output_rows(output_layer(lm), labels)
        total_nll += linear_cross_entropy(captured[-1], weight, rows, 1, chunk_size or width * len(idx)).item()
        total_tokens += int((rows[:, 1:] != IGNORE_INDEX).sum())
    if total_tokens == 0:
        raise ValueError("no target tokens to evaluate (every example truncated away?)")
    loss = total_nll / total_tokens
    return {"eval_loss_token_weighted": loss, "perplexity": math.exp(loss), "eval_target_tokens": total_tokens}


def generate_answers(
    model,
    tokenizer,
    questions: Sequence[str],
    system_prompt: str,
    batch_size: int,
    generation: dict[str, Any],
    seed: int = 42,
    token_counts: list[int] | None = None,
) -> list[str]:
    """Replies to single-turn ``questions`` under ``system_prompt``
    (:func:`~medsft.modeling.generation.generate_replies` with the ``generation`` section)."""
    prompts = encode_parts(tokenizer, [prompt_parts(q, system_prompt) for q in questions])
    return generate_replies(model, tokenizer, prompts, generation, batch_size, seed, token_counts)


@dataclass
class Evaluation:
    """What evaluate computed for one adapter, written together by :func:`write_evaluation`."""

    metrics: dict[str, Any]
    generations: list[dict[str, Any]]  # held-out questions: reference, reply and its scores
    probes: list[dict[str, Any]]  # probe questions with the reply
    benchmarks: dict[str, Any]  # lm-eval scores


def evaluate_run(
    spec: RunSpec,
    adapter_dir: str | Path,
    val: list[dict[str, Any]],
    train: list[dict[str, Any]],
    settings: dict[str, Any],
    generation: dict[str, Any],
    lexicon_path: str | Path,
    out_dir: str | Path,
) -> dict[str, Any]:
    """Evaluate a trained adapter and write ``metrics.json``, ``generations.jsonl``,
    ``probes.jsonl`` and ``benchmarks.json`` under ``out_dir``; return the metrics.

    Eval loss on the validation split (token-weighted), answer-quality metrics of greedy (or
    seeded sampled) replies to the first ``num_generations`` validation questions, replies to
    the probe questions, and the lm-eval scores of ``benchmarks`` (none listed: a
    ``benchmarks.json`` with no tasks). ``settings``: the ``evaluate`` config section;
    ``generation``: the ``generation`` section (GenerationConfig fields).
    """
    reproducibility_settings()
    # What can fail without the model fails first, leaving an earlier evaluation whole: the
    # probes file, an unknown task name or task data that cannot be fetched, an adapter that
    # changed since training.
    probes = load_probes(settings.get("probes"))
    tasks = load_tasks(settings["benchmarks"], settings["lm_eval"]["include_path"])
    verify_run_artifacts(spec.artifacts, adapter_dir)
    out = Path(out_dir)
    # Then the earlier outputs go: a failure from here on leaves none of them beside new ones.
    for name in OUTPUTS:
        (out / name).unlink(missing_ok=True)
    model, tokenizer = load_adapter(spec.model, adapter_dir, spec.artifacts)
    result = evaluate_model(
        spec, model, tokenizer, val, train, probes, tasks, settings, generation, load_lexicon(lexicon_path)
    )
    write_evaluation(out, result)
    return result.metrics


def evaluate_model(
    spec: RunSpec,
    model: Any,
    tokenizer: Any,
    val: list[dict[str, Any]],
    train: list[dict[str, Any]],
    probes: list[dict[str, Any]],
    tasks: Any,
    settings: dict[str, Any],
    generation: dict[str, Any],
    lexicon: Any,
) -> Evaluation:
    """Everything :func:`evaluate_run` measures, on a loaded model."""
    fmt = spec.format
    batch_size = int(spec.training_value("per_device_eval_batch_size"))
    encoded = encode_records(val, tokenizer, fmt.system_prompt, fmt.target_style, spec.max_length)
    metrics: dict[str, Any] = token_weighted_loss(
        model, encoded, batch_size, tokenizer.pad_token_id, spec.model.loss_chunk_size
    )

    def generate(questions: list[str]) -> list[str]:
        return generate_answers(
            model, tokenizer, questions, fmt.system_prompt, settings["generation_batch_size"], generation
        )

    held_out = val[: settings["num_generations"]]
    outputs = generate([r["question"] for r in held_out])
    train_df = term_document_frequency((f"{r['think']}{r['answer']}" for r in train), lexicon)
    items, summary = score_replies(
        outputs, [r["answer"] for r in held_out], lexicon, train_df, settings["rare_term_threshold"]
    )
    answers = generate([p["question"] for p in probes]) if probes else []
    metrics.update(summary)
    metrics.update(num_generations=len(outputs), decoding="sampling" if generation.get("do_sample") else "greedy")
    # Input ids a trimmed vocabulary had no row for (medsft.modeling.vocab); 0 for a full one.
    metrics["unknown_input_tokens"] = unknown_inputs(model)
    return Evaluation(
        metrics=metrics,
        generations=[
            {"question": r["question"], "reference": r["answer"], "output": o, "scores": s}
            for r, o, s in zip(held_out, outputs, items, strict=True)
        ],
        probes=[{**p, "output": a} for p, a in zip(probes, answers, strict=True)],
        benchmarks=run_benchmarks(model, tokenizer, tasks, settings["lm_eval"], batch_size),
    )


def write_evaluation(out: Path, result: Evaluation) -> None:
    """Write an evaluation's four outputs (:data:`OUTPUTS`) into ``out``."""
    write_jsonl(out / "generations.jsonl", result.generations)
    write_jsonl(out / "probes.jsonl", result.probes)
    atomic_write_json(out / "benchmarks.json", result.benchmarks)
    atomic_write_json(out / "metrics.json", result.metrics)


def load_probes(path: str | None) -> list[dict[str, Any]]:
    """The probe questions of ``evaluate.probes`` (a YAML file with a ``probes`` list of
    mappings that hold a ``question``), or none when it is null."""
    if not path:
        return []
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise EvaluateInputError(f"evaluate.probes={path}: not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise EvaluateInputError(f"evaluate.probes={path}: cannot be read ({' '.join(str(err).split())})") from None
    probes = data.get("probes") if isinstance(data, dict) else None
    if not isinstance(probes, list) or not all(
        isinstance(p, dict) and isinstance(p.get("question"), str) for p in probes
    ):
        raise EvaluateInputError(f"evaluate.probes={path}: expected `probes:` a list of entries with a `question`")
    return probes
