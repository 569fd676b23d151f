"""export: merge a variant's adapter into its base model as a standalone safetensors model.

    python -m stages.export VARIANT [export_dir=DIR] [key=value ...]

Writes DIR (default exports/VARIANT): model weights (safetensors), config, tokenizer and a
model card; loadable with AutoModelForCausalLM.from_pretrained, without peft. A QLoRA
adapter is merged into the base reloaded unquantized (see medsft.export). Not a stage of the
default pipeline, so that `dvc repro` stays fast and `dvc status` clean; to version exports:
    dvc stage add -n export -d runs/v2/train/adapter -o exports/v2 python -m stages.export v2
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from medsft.chat import ChatError, check_adapter
from medsft.cli import parse_variant_args
from medsft.export import merge_adapter, model_card, write_model_card
from medsft.modeling import base_model_id
from medsft.paths import eval_dir, train_dir
from medsft.runs import read_json

log = logging.getLogger("export")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    out = next((a.split("=", 1)[1] for a in args if a.startswith("export_dir=")), None)
    variant, cfg = parse_variant_args([a for a in args if not a.startswith("export_dir=")], usage=__doc__)
    adapter = train_dir(variant) / "adapter"
    try:
        check_adapter(adapter, base_model_id(cfg.model), variant)
    except ChatError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out_dir = merge_adapter(cfg, adapter, Path(out or f"exports/{variant}"))
    card = model_card(
        variant,
        cfg,
        read_json(train_dir(variant) / "metrics.json"),
        read_json(eval_dir(variant) / "metrics.json"),
        read_json(Path(cfg.prepare.out_dir) / "stats.json"),
        merged=True,
    )
    write_model_card(out_dir, card)
    log.info("%s: merged model written to %s", variant, out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
