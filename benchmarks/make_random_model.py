"""A local model directory of a profile's exact architecture with seeded random weights.

    python benchmarks/make_random_model.py [--profile qwen3-1.7b] [--seed 0] [--dtype bfloat16] OUT_DIR

Writes what a hub checkpoint holds: ``config.json`` (for ``qwen3-1.7b`` the fields of
Qwen/Qwen3-1.7B's, ``medsft.modeling.architecture.QWEN3_1_7B``), the weights in safetensors
(bf16 by default: about 3.4 GB for qwen3-1.7b, tied embeddings stored once),
``generation_config.json``, and the offline Qwen3 tokenizer (``medsft.data.tokenizer``: same ids
as the hub's, with Qwen3's chat template) saved as ``Qwen2Tokenizer`` like the hub's. So the
qwen3-1.7b profile runs its real code path (4-bit NF4 loading, modules_to_save on the 151,936 x
2048 tied embedding, checkpointing, the chat template) with no hub and no GPU:

    dvc exp run -S model=qwen3-1.7b -S model.pretrained_model_name_or_path=OUT_DIR ...

(docs/qwen3-1.7b.md: "The qwen3-1.7b path without a GPU"). The weights are noise: normal(0, std) for every
matrix (std = the config's initializer_range, 0.02), ones for the RMSNorm weights, drawn in
parameter-name order from one seeded generator, so a seed gives the same bytes. The model is
built on the meta device and filled in place, so nothing is initialised twice (about a minute
for qwen3-1.7b on two cores, most of it writing).

It then prints the parameter counts of v1 and v2 (the variants' LoRA fields from params.yaml)
on this architecture, counted on the meta device, beside the count the seed's real v2 run
logged (``../shared/reference/seed_runs/v2/run_config.yaml``, ``model_num_parameters``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import OmegaConf
from transformers import GenerationConfig, Qwen3ForCausalLM

from medsft.core.config import load_config
from medsft.data.tokenizer import build_offline_qwen3_tokenizer
from medsft.modeling.architecture import QWEN3_GENERATION, lora_parameter_counts, meta_model, profile_architecture

MARKER = "medsft_random_model.json"  # written last: a directory without it is incomplete
SEED_RUNS = Path(__file__).resolve().parents[2] / "shared" / "reference" / "seed_runs"


def random_model(config: dict[str, Any], seed: int, dtype: torch.dtype) -> Qwen3ForCausalLM:
    """``Qwen3ForCausalLM`` of ``config`` in ``dtype``, filled with seeded noise: normal(0,
    ``initializer_range``) for matrices, ones for norm weights (what a trained RMSNorm is near)."""
    model = meta_model(config).to(dtype)
    model = model.to_empty(device="cpu")  # storage, uninitialised: no init is paid twice
    model.tie_weights()  # to_empty gives each reference of a tied tensor its own storage
    std = float(config.get("initializer_range", 0.02))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):  # name order; a tied tensor appears once
            if param.ndim == 1:  # RMSNorm weights (Qwen3 has no biases)
                param.fill_(1.0)
            else:
                param.normal_(0.0, std, generator=generator)
    # Buffers computed at init (RoPE's inverse frequencies) are not saved: from_pretrained
    # recomputes them. None is persistent in Qwen3.
    assert not [n for n, _ in model.named_buffers() if n in model.state_dict()], "a persistent buffer is unset"
    return model


def generation_config(profile: str) -> GenerationConfig:
    """The checkpoint's generation defaults: Qwen3-1.7B's, else greedy with Qwen3's end tokens."""
    if profile == "qwen3-1.7b":
        return GenerationConfig(**QWEN3_GENERATION)
    return GenerationConfig(bos_token_id=151643, pad_token_id=151643, eos_token_id=[151645, 151643])


def write_random_model(out_dir: Path, profile: str, seed: int, dtype: torch.dtype) -> dict[str, Any]:
    """Write the model directory (see the module docstring); returns what the marker records."""
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MARKER).exists():
        raise SystemExit(f"error: {out_dir}: exists and is not a directory this script wrote; choose a new one")
    config = profile_architecture(profile)
    model = random_model(config, seed, dtype)
    model.generation_config = generation_config(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER).unlink(missing_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True, max_shard_size="2GB")
    tokenizer = build_offline_qwen3_tokenizer()
    tokenizer.save_pretrained(out_dir)
    # The hub's tokenizer class (a fast BPE tokenizer read from tokenizer.json, like ours).
    tok_config = out_dir / "tokenizer_config.json"
    fields = json.loads(tok_config.read_text(encoding="utf-8"))
    fields["tokenizer_class"] = "Qwen2Tokenizer"
    tok_config.write_text(json.dumps(fields, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    info = {"profile": profile, "seed": seed, "dtype": str(dtype).removeprefix("torch."), "config": config}
    (out_dir / MARKER).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


def variant_counts(config: dict[str, Any], params: Path) -> dict[str, dict[str, int]]:
    """Parameter counts of every variant's LoRA (from ``params``) on ``config``, on meta."""
    cfg = load_config(["tracking.mode=disabled"], path=params, libraries=False)
    out = {"base": lora_parameter_counts(config, None)}
    for name in ("v1", "v2"):
        lora = OmegaConf.to_container(cfg.variants[name].lora, resolve=True)
        out[name] = lora_parameter_counts(config, lora)
    return out


def logged_count(seed_runs: Path, variant: str) -> int | None:
    """``model_num_parameters`` of a seed run's ``run_config.yaml``, or None where absent."""
    path = seed_runs / variant / "run_config.yaml"
    if not path.exists():
        return None
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("model_num_parameters")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path, help="the model directory to write (new, or one this script wrote)")
    parser.add_argument("--profile", default="qwen3-1.7b", help="model profile whose architecture to build")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="where the variants' LoRA fields are")
    parser.add_argument("--seed-runs", type=Path, default=SEED_RUNS, help="the seed runs' logs (for the cross-check)")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    info = write_random_model(args.out_dir, args.profile, args.seed, getattr(torch, args.dtype))
    size = sum(p.stat().st_size for p in args.out_dir.glob("*.safetensors"))
    print(
        f"wrote {args.out_dir} ({args.profile}, seed {args.seed}, {info['dtype']}): "
        f"{size / 2**30:.2f} GiB of safetensors in {time.perf_counter() - start:.0f} s"
    )

    counts = variant_counts(info["config"], args.params)
    for name, c in counts.items():
        print(f"{name:>4}: {c['total_params']:>13,} parameters, {c['trainable_params']:>13,} trainable")
    logged = logged_count(args.seed_runs, "v2")
    if args.profile == "qwen3-1.7b" and logged is not None:
        same = counts["v2"]["total_params"] == logged
        print(f"v2 as the seed run logged it: {logged:,} -> {'equal' if same else 'DIFFERENT'}")
        if not same:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
