"""sweep: Hydra multirun over a variant's LoRA and TrainingArguments fields.

    python -m stages.sweep -m variant.lora.lora_dropout=0.05,0.1,0.2 variant.training.lr_scheduler_type=linear,cosine
    python -m stages.sweep -m +sweep=dropout_schedule [variant=v1] [model=…] [hydra/launcher=submitit_slurm_gpu]

Each grid point trains and evaluates in sweeps/<sweep_name>/<overrides>/ on the prepared data
(run `dvc repro prepare` first); the summary (summary.csv, summary.md, heatmap.png) is
written when the multirun ends.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from medsft.core.runtime import keep_large_allocations
from medsft.sweep.points import job_dirname, run_point

# Job folders are named by their overrides; a path among them (prepare.out_dir=…) must not
# nest folders.
OmegaConf.register_new_resolver("job_dirname", job_dirname, replace=True)


@hydra.main(version_base=None, config_path="../conf", config_name="multirun")
def main(cfg: DictConfig) -> None:
    keep_large_allocations()
    runtime = HydraConfig.get()
    base_variant = runtime.runtime.choices["variant"]  # the base variant of `variant=…` (default v2)
    run_point(cfg, Path(runtime.runtime.output_dir), list(runtime.overrides.task), base_variant)


if __name__ == "__main__":
    main()
