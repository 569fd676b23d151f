"""train: fine-tune one variant with LoRA (QLoRA when the model profile quantizes).

    python -m stages.train VARIANT [key=value ...]

Reads augment.out_dir/VARIANT/train.jsonl and prepare.out_dir/val.jsonl; writes runs/VARIANT/train/
(adapter/, run_config.yaml, history.csv, trainer_state.json, masking.json, metrics.json: the
results, timing.json: seconds, tokens/s, peak memory and hardware, checkpoints/). The model
profile's `model.training` fields replace the variant's (each one replaced is logged and listed
in run_config.yaml). A rerun of an interrupted run resumes from
its last intact checkpoint.

Under torchrun or accelerate launch (``train.launcher``, which dvc.yaml puts before
``-m stages.train``) it runs as one DDP job of several processes; rank 0 writes the outputs.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from medsft.core.cli import parse_variant_args, require_inputs, run_stage
from medsft.core.io import read_jsonl
from medsft.core.paths import train_dir
from medsft.train.devices import launched_processes
from medsft.train.trainer import train_variant

log = logging.getLogger("train")


def main(argv: list[str] | None = None) -> int:
    variant, cfg = parse_variant_args(argv, usage=__doc__)
    train_file = Path(cfg.augment.out_dir) / variant / "train.jsonl"
    val_file = Path(cfg.prepare.out_dir) / "val.jsonl"
    require_inputs((train_file, f"augment@{variant}"), (val_file, "prepare"))
    if launched_processes() > 1:  # one line per process: the launcher did start them all
        log.info("%s: process %s of %d", variant, os.environ.get("RANK", "?"), launched_processes())
    train_variant(cfg, variant, read_jsonl(train_file), read_jsonl(val_file), train_dir(variant))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
