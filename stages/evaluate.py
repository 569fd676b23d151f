"""evaluate: eval loss, perplexity, answer-quality metrics and probe answers of one variant.

    python -m stages.evaluate VARIANT [key=value ...]

Reads runs/VARIANT/train/adapter, prepare.out_dir/{train,val}.jsonl, the lexicon and the
probes; writes runs/VARIANT/eval/metrics.json, generations.jsonl (question, reference,
output, per-item scores) and probes.jsonl.
"""

from __future__ import annotations

import logging

from medsft.cli import parse_variant_args
from medsft.evaluation import evaluate_variant
from medsft.paths import eval_dir, train_dir

log = logging.getLogger("evaluate")


def main(argv: list[str] | None = None) -> int:
    variant, cfg = parse_variant_args(argv, usage=__doc__)
    adapter = train_dir(variant) / "adapter"
    if not (adapter / "adapter_config.json").exists():
        raise SystemExit(f"error: {adapter}: no trained adapter (run: dvc repro train@{variant})")
    metrics = evaluate_variant(cfg, variant, adapter, eval_dir(variant))
    log.info("%s: eval_loss %.4f, perplexity %.2f", variant, metrics["eval_loss"], metrics["perplexity"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
