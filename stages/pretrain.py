"""pretrain: the base model the variants start from, for a profile without a checkpoint.

    python -m stages.pretrain [key=value ...]

With model.pretrain.training set (the tiny profile), trains the seeded architecture in full on
prepare.out_dir/train.jsonl and writes model.pretrain.output_dir (safetensors, tokenizer,
history.csv, base.json); with model.pretrain.trim_vocabulary, its vocabulary rows are the token
ids of train.jsonl and val.jsonl (token_map.json). With it null (a pretrained checkpoint such as
qwen3-1.7b), writes only a note there: the profile's base is loaded as it is.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import OmegaConf

from medsft.core.cli import parse_args, require_inputs, run_stage
from medsft.core.config import FormatConfig, ModelConfig, as_schema
from medsft.core.io import atomic_dir, atomic_write_json, read_jsonl
from medsft.core.outputs import check_output_dir, mark
from medsft.train.pretrain import pretrain_base

log = logging.getLogger("pretrain")

# A saved base (transformers' checkpoint and tokenizer files, ours) or the note of a profile without one.
OUTPUTS = (
    *("model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"),
    *("chat_template.jinja", "special_tokens_map.json", "history.csv", "base.json", "NO_PRETRAINING.json"),
    "token_map.json",
)


def main(argv: list[str] | None = None) -> int:
    _, cfg = parse_args(argv, usage=__doc__)
    model = as_schema(ModelConfig, cfg.model, "model")
    out = check_output_dir(
        "model.pretrain.output_dir", model.pretrain.output_dir, "pretrain", cfg.output_roots, OUTPUTS
    )
    if not model.pretrain.training:
        with atomic_dir(out) as tmp:
            atomic_write_json(
                tmp / "NO_PRETRAINING.json",
                {"profile": model.name, "base": model.pretrained_model_name_or_path or "the seeded init"},
            )
            mark(tmp, "pretrain")
        log.info("profile %s: no pretraining (model.pretrain.training is null)", model.name)
        return 0
    train_file, val_file = (Path(cfg.prepare.out_dir) / f"{split}.jsonl" for split in ("train", "val"))
    require_inputs((train_file, "prepare"), (val_file, "prepare"))
    pretrain_base(
        model,
        as_schema(FormatConfig, cfg.format, "format"),
        read_jsonl(train_file),
        out,
        divergence=OmegaConf.to_container(cfg.divergence, resolve=True),
        vocabulary_records=read_jsonl(val_file) if model.pretrain.trim_vocabulary else (),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
