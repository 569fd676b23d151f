"""evaluate: eval loss, perplexity, answer-quality metrics and probe answers of one variant.

    python -m stages.evaluate VARIANT [key=value ...]

Reads the run train wrote (runs/VARIANT/train/run_config.yaml and adapter/),
prepare.out_dir/{train,val}.jsonl, the lexicon, the probes and the lm-eval tasks of
evaluate.benchmarks; writes runs/VARIANT/eval/metrics.json, generations.jsonl (question,
reference, output, per-item scores), probes.jsonl and benchmarks.json (lm-eval scores).
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import OmegaConf

from medsft.core.cli import parse_variant_args, require_inputs, run_stage
from medsft.core.io import read_jsonl
from medsft.core.paths import eval_dir, train_dir
from medsft.core.spec import SPEC_FILE, RunSpec
from medsft.evaluate.run import evaluate_run

log = logging.getLogger("evaluate")


def main(argv: list[str] | None = None) -> int:
    variant, cfg = parse_variant_args(argv, usage=__doc__, check=False)
    run = train_dir(variant)
    prepared = Path(cfg.prepare.out_dir)
    require_inputs(
        (run / SPEC_FILE, f"train@{variant}"),
        (run / "adapter" / "adapter_config.json", f"train@{variant}"),
        (prepared / "val.jsonl", "prepare"),
    )
    metrics = evaluate_run(
        RunSpec.read(run / SPEC_FILE),
        run / "adapter",
        read_jsonl(prepared / "val.jsonl"),
        read_jsonl(prepared / "train.jsonl"),
        OmegaConf.to_container(cfg.evaluate, resolve=True),
        OmegaConf.to_container(cfg.generation, resolve=True),
        cfg.augment.lexicon,
        eval_dir(variant),
    )
    log.info(
        "%s: token-weighted eval loss %.4f, perplexity %.2f",
        variant,
        metrics["eval_loss_token_weighted"],
        metrics["perplexity"],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
