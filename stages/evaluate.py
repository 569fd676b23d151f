"""evaluate: eval loss, perplexity, answer-quality metrics and probe answers of one variant.

    python -m stages.evaluate VARIANT [key=value ...]

Reads runs/VARIANT/train/adapter, prepare.out_dir/{train,val}.jsonl, the lexicon and the
probes; writes runs/VARIANT/eval/metrics.json, generations.jsonl (question, reference,
output, per-item scores) and probes.jsonl.
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from medsft.augmentation import load_lexicon
from medsft.cli import parse_args
from medsft.config import training_arguments
from medsft.evaluation import generate_answers, token_weighted_loss
from medsft.formatting import encode_records
from medsft.io import atomic_write_json
from medsft.metrics import score_replies, term_document_frequency
from medsft.modeling import load_adapter
from medsft.paths import eval_dir, train_dir
from medsft.records import read_jsonl, write_jsonl

log = logging.getLogger("evaluate")


def main(argv: list[str] | None = None) -> int:
    (variant,), cfg = parse_args(argv, positional=1, usage=__doc__)
    adapter = train_dir(variant) / "adapter"
    if not (adapter / "adapter_config.json").exists():
        raise SystemExit(f"error: {adapter}: no trained adapter (run: dvc repro train@{variant})")
    ev = cfg.evaluate
    val = read_jsonl(Path(cfg.prepare.out_dir) / "val.jsonl")
    train = read_jsonl(Path(cfg.prepare.out_dir) / "train.jsonl")
    lexicon = load_lexicon(cfg.augment.lexicon)
    batch_size = training_arguments(cfg, variant).get("per_device_eval_batch_size", 8)
    model, tokenizer = load_adapter(cfg.model, str(adapter))

    fmt = cfg.format
    encoded = encode_records(val, tokenizer, fmt.system_prompt, fmt.target_style, cfg.model.max_length)
    metrics = token_weighted_loss(model, encoded, batch_size, tokenizer.pad_token_id)

    def generate(questions: list[str]) -> list[str]:
        return generate_answers(
            model,
            tokenizer,
            questions,
            fmt.system_prompt,
            batch_size,
            ev.max_new_tokens,
            ev.do_sample,
            ev.temperature,
            ev.top_p,
        )

    held_out = val[: ev.num_generations]
    outputs = generate([r["question"] for r in held_out])
    train_df = term_document_frequency((f"{r['think']}{r['answer']}" for r in train), lexicon)
    items, summary = score_replies(outputs, [r["answer"] for r in held_out], lexicon, train_df, ev.rare_term_threshold)
    out = eval_dir(variant)
    write_jsonl(
        out / "generations.jsonl",
        (
            {"question": r["question"], "reference": r["answer"], "output": o, "scores": s}
            for r, o, s in zip(held_out, outputs, items, strict=True)
        ),
    )
    probes = []
    if ev.probes:
        with open(ev.probes, encoding="utf-8") as fh:
            probes = yaml.safe_load(fh)["probes"]
        answers = generate([p["question"] for p in probes])
        probes = [{**p, "output": a} for p, a in zip(probes, answers, strict=True)]
    write_jsonl(out / "probes.jsonl", probes)
    metrics.update(summary)
    metrics.update(num_generations=len(outputs), decoding="sampling" if ev.do_sample else "greedy")
    atomic_write_json(out / "metrics.json", metrics)
    log.info("%s: eval_loss %.4f, perplexity %.2f", variant, metrics["eval_loss"], metrics["perplexity"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
