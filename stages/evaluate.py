"""evaluate: token-weighted eval loss, perplexity and generations of one trained variant.

    python -m stages.evaluate VARIANT [key=value ...]

Reads runs/VARIANT/train/adapter and prepare.out_dir/val.jsonl; writes
runs/VARIANT/eval/metrics.json and runs/VARIANT/eval/generations.jsonl.
"""

from __future__ import annotations

import logging
from pathlib import Path

from medsft.cli import parse_args
from medsft.config import training_arguments
from medsft.evaluation import generate_answers, token_weighted_loss
from medsft.formatting import encode_records
from medsft.io import atomic_write_json
from medsft.modeling import load_adapter
from medsft.paths import eval_dir, train_dir
from medsft.records import read_jsonl, write_jsonl

log = logging.getLogger("evaluate")


def main(argv: list[str] | None = None) -> int:
    (variant,), cfg = parse_args(argv, positional=1, usage=__doc__)
    adapter = train_dir(variant) / "adapter"
    if not (adapter / "adapter_config.json").exists():
        raise SystemExit(f"error: {adapter}: no trained adapter (run: dvc repro train@{variant})")
    val = read_jsonl(Path(cfg.prepare.out_dir) / "val.jsonl")
    batch_size = training_arguments(cfg, variant).get("per_device_eval_batch_size", 8)
    model, tokenizer = load_adapter(cfg.model, str(adapter))

    encoded = encode_records(val, tokenizer, cfg.format.system_prompt, cfg.format.target_style, cfg.model.max_length)
    metrics = token_weighted_loss(model, encoded, batch_size, tokenizer.pad_token_id)
    held_out = val[: cfg.evaluate.num_generations]
    outputs = generate_answers(
        model,
        tokenizer,
        [r["question"] for r in held_out],
        cfg.format.system_prompt,
        batch_size,
        cfg.evaluate.max_new_tokens,
        cfg.evaluate.do_sample,
        cfg.evaluate.temperature,
        cfg.evaluate.top_p,
    )
    out = eval_dir(variant)
    write_jsonl(
        out / "generations.jsonl",
        (
            {"question": r["question"], "reference": r["answer"], "output": o}
            for r, o in zip(held_out, outputs, strict=True)
        ),
    )
    metrics["num_generations"] = len(outputs)
    atomic_write_json(out / "metrics.json", metrics)
    log.info("%s: eval_loss %.4f, perplexity %.2f", variant, metrics["eval_loss"], metrics["perplexity"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
