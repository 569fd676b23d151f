"""export: merge a variant's adapter into its base model as a standalone safetensors model.

    python -m stages.export VARIANT [export_dir=DIR]

Writes DIR (default exports/VARIANT): model weights (safetensors), config, tokenizer, a model
card and generation_config.json (params.yaml's generation section and the reply's end
tokens); loadable with AutoModelForCausalLM.from_pretrained, without peft. A trimmed vocabulary
(tiny) adds token_map.json and trimmed_qwen3.py: with trust_remote_code=True the model takes
and gives Qwen3's ids, which is what lm_eval needs
(lm_eval --model hf --model_args pretrained=DIR,trust_remote_code=True). The base model and
settings come from the run's runs/VARIANT/train/run_config.yaml. DIR must be new or an earlier
export (nothing else is ever replaced). A QLoRA adapter is merged into the base
reloaded unquantized (see medsft.serve.export). Not a stage of the default pipeline, so that
`dvc repro` stays fast; to version exports:
    dvc stage add -n export -d runs/v2/train/adapter -o exports/v2 python -m stages.export v2
"""

from __future__ import annotations

import logging
import sys

from omegaconf import OmegaConf

from medsft.core.cli import fail, require_inputs, run_stage, setup_logging
from medsft.core.config import load_config
from medsft.core.io import read_json
from medsft.core.paths import eval_dir, train_dir
from medsft.core.spec import SPEC_FILE, RunSpec
from medsft.modeling.card import model_card, write_model_card
from medsft.modeling.loading import BaseModelMismatch
from medsft.serve.export import ExportTargetError, check_export_target, merge_adapter

log = logging.getLogger("export")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    setup_logging()
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return 0
    names = [a for a in args if "=" not in a]
    options = dict(a.split("=", 1) for a in args if "=" in a)
    unknown = sorted(set(options) - {"export_dir"})
    if len(names) != 1 or unknown:
        fail(f"expected VARIANT [export_dir=DIR], got {args}\n{__doc__}")
    (variant,) = names
    run = train_dir(variant)
    require_inputs((run / SPEC_FILE, f"train@{variant}"), (run / "adapter" / "adapter_config.json", f"train@{variant}"))
    try:
        out = check_export_target(options.get("export_dir") or f"exports/{variant}")
        spec = RunSpec.read(run / SPEC_FILE)
        generation = OmegaConf.to_container(load_config().generation, resolve=True)
        out_dir = merge_adapter(spec, run / "adapter", out, generation)
    except (ExportTargetError, BaseModelMismatch, ValueError) as err:
        fail(str(err))
    results = {"train": read_json(run / "metrics.json"), "eval": read_json(eval_dir(variant) / "metrics.json")}
    write_model_card(out_dir, model_card(spec, merged=True, results=results))
    log.info("%s: merged model written to %s", variant, out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
