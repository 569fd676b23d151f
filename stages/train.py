"""train: fine-tune one variant with LoRA (QLoRA when the model profile quantizes).

    python -m stages.train VARIANT [key=value ...]

Reads augment.out_dir/VARIANT/train.jsonl and prepare.out_dir/val.jsonl; writes runs/VARIANT/train/
(adapter/, history.csv, trainer_state.json, metrics.json, checkpoints/). A rerun of an
interrupted run resumes from its last checkpoint. Under accelerate launch it runs on
several processes.
"""

from __future__ import annotations

from pathlib import Path

from medsft.cli import parse_variant_args
from medsft.export import model_card, write_model_card
from medsft.paths import train_dir
from medsft.records import read_jsonl
from medsft.runs import read_json
from medsft.training import train_variant


def main(argv: list[str] | None = None) -> int:
    variant, cfg = parse_variant_args(argv, usage=__doc__)
    train = read_jsonl(Path(cfg.augment.out_dir) / variant / "train.jsonl")
    val = read_jsonl(Path(cfg.prepare.out_dir) / "val.jsonl")
    metrics = train_variant(cfg, variant, train, val, train_dir(variant))
    stats = read_json(Path(cfg.prepare.out_dir) / "stats.json")
    write_model_card(train_dir(variant) / "adapter", model_card(variant, cfg, metrics, {}, stats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
