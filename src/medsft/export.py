"""Merging a LoRA adapter into its base model, and the model card of a run.

A QLoRA adapter was trained against 4-bit NF4 weights. Its deltas cannot be folded into
4-bit weights without a second rounding, so the export loads the base model again
unquantized, in the profile's dtype (bf16 for qwen3-1.7b), and merges there: the merged
weights are the dequantised-precision base plus the LoRA deltas, in full precision. Expect
small differences from the 4-bit model the adapter was trained with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medsft.io import atomic_dir, atomic_write_text

INTENDED_USE = (
    "Research and education on fine-tuning methods only. Not a medical device and not for "
    "diagnosis, treatment or any clinical decision: answers can be wrong, incomplete or out of "
    "date. 仅供研究与教学，不可用于诊断、治疗或任何临床决策。"
)


def merge_adapter(cfg: DictConfig, adapter_dir: str | Path, out_dir: str | Path) -> Path:
    """Write a standalone model (safetensors) with its tokenizer: loadable by
    ``AutoModelForCausalLM.from_pretrained`` without peft."""
    from peft import PeftModel

    from medsft.modeling import load_model_and_tokenizer

    full_precision = OmegaConf.merge(cfg.model, {"quantization": None})
    base, tokenizer = load_model_and_tokenizer(full_precision)
    # With modules_to_save, embed_tokens and lm_head were trained as two copies (as the real
    # V2 did); peft unties them on merge (tie_word_embeddings=False), so both are saved.
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return out


def model_card(
    variant: str,
    cfg: DictConfig,
    train_metrics: dict[str, Any],
    eval_metrics: dict[str, Any],
    data_stats: dict[str, Any] | None,
    merged: bool = False,
) -> str:
    """A README.md for an adapter (or merged model) folder, from the run's own files."""
    from medsft.modeling import base_model_id

    variant_cfg = OmegaConf.to_container(cfg.variants[variant], resolve=True)
    base = base_model_id(cfg.model)
    metrics = {k: v for k, v in train_metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    stats = data_stats or {}
    fmt = cfg.format
    lines = [
        "---",
        f"base_model: {base}",
        "library_name: " + ("transformers" if merged else "peft"),
        "language: [zh]",
        "tags: [medical, qwen3, lora, sft]",
        "---",
        f"# {variant}: {'merged' if merged else 'LoRA adapter'} of {base} for Chinese medical QA with reasoning",
        "",
        "## Intended use",
        INTENDED_USE,
        "",
        "## Training",
        f"- Base model: `{base}` (profile `{cfg.model.name}`"
        + (
            f", quantization {json.dumps(OmegaConf.to_container(cfg.model.quantization))}"
            if cfg.model.quantization
            else ""
        )
        + ")",
        f"- Data: `{stats.get('source', cfg.data.path)}`, {stats.get('accepted', '?')} records accepted; ChatML "
        f"with the system prompt 「{fmt.system_prompt}」, target style `{fmt.target_style}`, "
        f"max_length {cfg.model.max_length}",
        "- Variant config (`peft.LoraConfig`, `transformers.TrainingArguments` fields; the model profile's "
        "`training` applies on top):",
        "",
        "```json",
        json.dumps(
            {"variant": variant_cfg, "model.training": OmegaConf.to_container(cfg.model.training)},
            ensure_ascii=False,
            indent=2,
        ),
        "```",
        "",
        "## Results (from the run's logs)",
        "| metric | value |",
        "|---|---|",
        *(f"| train: {k} | {v:.6g} |" for k, v in metrics.items()),
        *(f"| eval: {k} | {v:.6g} |" for k, v in eval_metrics.items() if isinstance(v, (int, float))),
        "",
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
        f'Or: `python -m stages.chat --variant {variant} "问题"`.',
    ]
    return "\n".join(lines) + "\n"


def write_model_card(folder: str | Path, text: str) -> None:
    atomic_write_text(Path(folder) / "README.md", text)
