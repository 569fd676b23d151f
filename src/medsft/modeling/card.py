"""The model card (README.md) of an adapter or merged model, from its run spec alone.

It holds no figure that changes between identical runs (wall time, throughput, memory):
those are in the run's ``metrics.json``, so the same run writes the same card.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from medsft.core.io import atomic_write_text
from medsft.core.spec import RunSpec

INTENDED_USE = (
    "Research and education on fine-tuning methods only. Not a medical device and not for "
    "diagnosis, treatment or any clinical decision: answers can be wrong, incomplete or out of "
    "date. 仅供研究与教学，不可用于诊断、治疗或任何临床决策。"
)


def model_card(spec: RunSpec, merged: bool = False, results: dict[str, dict] | None = None) -> str:
    """A README.md for an adapter (or merged model) folder; ``results`` (name -> a metrics
    file's numbers) adds a results table, for copies made outside the DAG such as exports."""
    base = spec.base_model_source
    model, fmt = spec.model, spec.format
    quant = f", quantization {json.dumps(model.quantization, sort_keys=True)}" if model.quantization else ""
    settings = {"lora": spec.lora, "training": spec.training, "augment": asdict(spec.augment)}
    lines = [
        "---",
        f"base_model: {base}",
        "library_name: " + ("transformers" if merged else "peft"),
        "language: [zh]",
        "tags: [medical, qwen3, lora, sft]",
        "---",
        f"# {spec.variant}: {'merged' if merged else 'LoRA adapter'} of {base} for Chinese medical QA with reasoning",
        "",
        "## Intended use",
        INTENDED_USE,
        "",
        "## Training",
        f"- Base model: `{base}` (profile `{model.name}`, identity `{spec.base_model_id}`{quant})",
        f"- Format: ChatML with the system prompt 「{fmt.system_prompt}」, target style "
        f"`{fmt.target_style}`, max_length {spec.max_length}",
        "- Settings as used (`peft.LoraConfig` and `transformers.TrainingArguments` fields; the run's "
        "`run_config.yaml` holds them all, `metrics.json` its results):",
        "",
        "```json",
        json.dumps(settings, ensure_ascii=False, indent=2, sort_keys=True),
        "```",
        "",
        *_results(results or {}),
        "## How to load",
        "```python",
        *(
            [
                "from transformers import AutoModelForCausalLM, AutoTokenizer",
                'model = AutoModelForCausalLM.from_pretrained("<this folder>")',
                'tokenizer = AutoTokenizer.from_pretrained("<this folder>")',
            ]
            if merged
            else [
                "from peft import PeftModel",
                "from transformers import AutoModelForCausalLM",
                f'base = AutoModelForCausalLM.from_pretrained("{base}", dtype="auto")',
                'model = PeftModel.from_pretrained(base, "<this folder>")',
            ]
        ),
        "```",
        f'Or: `python -m stages.chat --variant {spec.variant} "问题"`.',
    ]
    return "\n".join(lines) + "\n"


def write_model_card(folder: str | Path, text: str) -> None:
    atomic_write_text(Path(folder) / "README.md", text)


def _results(results: dict[str, dict]) -> list[str]:
    rows = [
        f"| {source}: {key} | {value:.6g} |"
        for source, metrics in results.items()
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    ]
    return ["## Results (from the run's metrics files)", "| metric | value |", "|---|---|", *rows, ""] if rows else []
