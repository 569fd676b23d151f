"""LoRA/QLoRA fine-tuning of Qwen3 on Chinese medical QA with reasoning: a DVC + Hydra pipeline."""

__version__ = "0.1.0"
