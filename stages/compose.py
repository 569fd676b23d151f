"""compose: write params.yaml from the Hydra tree in conf/ (what `dvc exp run` does first).

    python -m stages.compose [hydra overrides ...]     e.g.  model=qwen3-1.7b

Run it after editing conf/ so that `dvc repro` and the stages see the change.
"""

from __future__ import annotations

import sys

from omegaconf import OmegaConf

from medsft.core.cli import fail, run_stage
from medsft.core.config import PARAMS_FILE, ConfigError, compose_conf, validate
from medsft.core.io import atomic_write_text


def main(argv: list[str] | None = None) -> int:
    overrides = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in overrides):
        print(__doc__)
        return 0
    try:
        cfg = compose_conf(overrides)
        validate(cfg, source="conf/")
    except ConfigError as err:
        fail(str(err))
    atomic_write_text(PARAMS_FILE, OmegaConf.to_yaml(cfg, resolve=True))
    print(f"wrote {PARAMS_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
