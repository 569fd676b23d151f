"""compose: write params.yaml from the Hydra tree in conf/ (what `dvc exp run` does first).

    python -m stages.compose [hydra overrides ...]     e.g.  model=qwen3-1.7b

Run it after editing conf/ so that `dvc repro` and the stages see the change.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from medsft.core.cli import run_stage
from medsft.core.config import PARAMS_FILE, ConfigError, validate
from medsft.core.io import atomic_write_text


def main(argv: list[str] | None = None) -> int:
    overrides = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in overrides):
        print(__doc__)
        return 0
    with initialize_config_dir(config_dir=str(Path("conf").resolve()), version_base=None):
        cfg = compose("config", overrides=overrides)
    try:
        validate(cfg, source="conf/")
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    atomic_write_text(PARAMS_FILE, OmegaConf.to_yaml(cfg, resolve=True))
    print(f"wrote {PARAMS_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
