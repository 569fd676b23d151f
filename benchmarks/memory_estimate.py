"""Peak training memory of a model profile and variant, predicted term by term.

    python benchmarks/memory_estimate.py [--profile qwen3-1.7b] [--variants v1 v2] [--batch 4] [--length 2048]
        [--cpu-run runs/v2/train] [--cpu-rss BYTES --cpu-batch 1 --cpu-length 128]

Prints, for each variant, the memory its QLoRA training holds at its peak: what PyTorch
allocates (``torch.cuda.max_memory_allocated``), not the CUDA context (~0.5 GB) nor what the
caching allocator keeps reserved beyond it (a system monitor such as nvidia-smi or SwanLab's
shows both). Then, whatever the batch and length asked for, v2's prediction at the seed's batch
4 x length 2048 beside the seed report's measured 14.2 GB peak (§7: v2, batch 4, max_length 2048,
a 16 GB GPU; quoted in ``SEED_REPORT_PEAK_GB``, and checked against the report itself,
``../shared/seed/000_6609f41e1f332f88.txt``, where that is present) and, when given a CPU run of
the same profile (``timing.json``'s ``peak_cpu_rss_bytes``), the prediction at that run's batch,
length and optimizer beside its measured peak resident set.

Notation: V vocabulary, H hidden size, I MLP size, N layers, d head size, q/kv attention and
key-value heads, r LoRA rank, B batch size, L padded sequence length, T = B * L tokens.
Bytes per element: fp32 4, bf16 2. The terms (bytes):

- **4-bit weights** (the seven projections of every layer, P4 = N (H q d + 2 H kv d + q d H
  + 3 H I) weights): NF4 codes, 1/2 byte each; with double quantization one 8-bit absmax per
  block of 64 weights and one fp32 constant per 256 of those: P4 (1/2 + 1/64 + 4/(64*256));
  without it one fp32 absmax per 64: P4 (1/2 + 4/64).
- **unquantized weights**: what bitsandbytes leaves alone, the embedding (V H; its tied output
  layer is the same tensor) and the RMSNorm weights (N (2 H + 2 d) + H), loaded in bf16 and cast
  to fp32 by peft's ``prepare_model_for_kbit_training``: 4 (V H + N (2 H + 2 d) + H).
- **LoRA weights, gradients, optimizer state**: PL = N r (sum over the targeted projections of
  in + out) parameters, fp32 (peft keeps adapters in fp32): weights 4 PL, gradients 4 PL, Adam
  state 2 PL + 8 PL / 256 for 8-bit Adam (two 8-bit moments, an fp32 absmax per block of 256;
  paged or not, the same bytes), 8 PL for 32-bit Adam (``adamw_torch``).
- **modules_to_save copies**: peft trains a copy of each listed module; copies of the fp32
  embedding and output layer: C = k V H parameters, k = 2 untied (the default, what the seed's
  v2 ran), k = 1 with ``ensure_weight_tying``. Weights 4 C, gradients 4 C (a dense embedding
  gradient), Adam state as for LoRA.
- **activation checkpoints** (gradient checkpointing on): each decoder layer's input, the fp32
  residual stream (the embedding is fp32 after the cast above): 4 N T H. Off: every layer
  keeps its working set, N times the next term.
- **one layer's working set**: during a layer's recompute and backward, what it saves for
  backward (norm inputs and outputs, q/k/v with their norms and rotary copies, attention
  inputs and output, LoRA's dropout copies of each projection's input, the MLP's gate, up,
  activation and product): about 4 T (18 H + 5 I).
- **logits and loss**: the logits over the vocabulary, T V values: bf16 from the output
  layer (autocast), upcast to fp32 by transformers' ``ForCausalLMLoss``, whose cross-entropy
  saves its fp32 log-softmax: 2 + 4 + 4 bytes a logit while the loss is computed; in backward
  the saved log-softmax and the fp32 gradients take their place. 10 T V: measured 10.1 bytes a
  logit on CPU at T = 2048 with this transformers' loss under bf16 autocast (peak RSS above a
  baseline, fp32 output weight, frozen). At the seed's 4 x 2048 this term is 12.4 GB: it is the
  one a fused output layer + loss removes (Liger's, ``benchmarks/gpu_check.sh --liger``, or the
  profile's ``model.loss_chunk_size``, ``medsft.modeling.loss``).
  With ``model.loss_chunk_size`` = c: one chunk's logits, c V values of 2 (bf16 from the
  layer) + 4 (fp32 softmax) + 2 (bf16 gradient) bytes, the fp32 gradient of the hidden states
  kept from the forward pass (4 T H) and, when the output layer is trained (v2's copy), the
  fp32 gradient of its weight, 4 V H, held until backward.

Peak = static (weights, gradients, optimizer state) + checkpoints + max(working set, logits):
the logits peak comes first in backward, then the layers are recomputed one at a time.
Gradients are counted as held through the whole step (gradient accumulation keeps them
between micro-batches). The estimate leaves out the CUDA context, allocator fragmentation,
dequantized weight transients (one projection at a time, 2 H I bytes at most) and the
optimizer step's temporaries.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GB = 1e9  # decimal gigabytes, as GPU memory is quoted
FP32, BF16 = 4, 2
SEED_REPORT_PEAK_GB = 14.2  # the seed report's §7: "16GB显存高效利用（峰值14.2GB）", v2
SEED_REPORT_QUOTE = "峰值14.2GB"  # what the report says, checked where the report is present
SEED_BATCH, SEED_LENGTH = 4, 2048  # the seed's v2: per-device batch 4, max_length 2048
SEED_REPORT_NAME = "seed/000_6609f41e1f332f88.txt"
# The project's shared material (not in the repository): ../shared, or $MEDSFT_SHARED.
SEED_REPORT = Path(os.environ.get("MEDSFT_SHARED", Path(__file__).resolve().parents[2] / "shared")) / SEED_REPORT_NAME
# Bytes of optimizer state per trainable parameter.
OPTIMIZER_STATE_BYTES = {
    "adamw_8bit": 2 + 2 * FP32 / 256,
    "paged_adamw_8bit": 2 + 2 * FP32 / 256,
    "adamw_torch": 2 * FP32,
    "paged_adamw_32bit": 2 * FP32,
}
LAYER_WORKING_SET = (18, 5)  # (multiple of H, multiple of I) saved per token by one layer, fp32
LOGIT_BYTES = 10  # per logit while the loss is computed and differentiated (measured, see above)


@dataclass(frozen=True)
class Architecture:
    """The shapes the estimate needs, from ``Qwen3Config`` fields."""

    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Architecture:
        head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
        return cls(
            vocab=config["vocab_size"],
            hidden=config["hidden_size"],
            intermediate=config["intermediate_size"],
            layers=config["num_hidden_layers"],
            heads=config["num_attention_heads"],
            kv_heads=config["num_key_value_heads"],
            head_dim=head_dim,
            tied=bool(config.get("tie_word_embeddings", False)),
        )

    def projections(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each projection of one decoder layer."""
        h, i, q, kv = self.hidden, self.intermediate, self.heads * self.head_dim, self.kv_heads * self.head_dim
        return {
            "q_proj": (h, q),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (q, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    def projection_params(self) -> int:
        return self.layers * sum(a * b for a, b in self.projections().values())

    def norm_params(self) -> int:
        return self.layers * (2 * self.hidden + 2 * self.head_dim) + self.hidden


def lora_params(arch: Architecture, lora: dict[str, Any]) -> int:
    """Parameters of the LoRA matrices: r (in + out) for each targeted projection and layer."""
    targets = set(lora.get("target_modules") or [])
    unknown = targets - set(arch.projections())
    if unknown:
        raise ValueError(f"lora.target_modules: {sorted(unknown)} are no Qwen3 projection")
    return arch.layers * int(lora["r"]) * sum(a + b for name, (a, b) in arch.projections().items() if name in targets)


def saved_copies(arch: Architecture, lora: dict[str, Any]) -> int:
    """Parameters of the modules_to_save copies (embedding and/or output layer)."""
    modules = set(lora.get("modules_to_save") or [])
    unknown = modules - {"embed_tokens", "lm_head"}
    if unknown:
        raise ValueError(f"lora.modules_to_save: {sorted(unknown)} (the estimate knows embed_tokens and lm_head)")
    copies = len(modules)
    if copies == 2 and arch.tied and lora.get("ensure_weight_tying"):
        copies = 1  # one trained copy serves both
    return copies * arch.vocab * arch.hidden


CHUNK_LOGIT_BYTES = 2 + 4 + 2  # bf16 logits, their fp32 softmax, its bf16 copy for the products


def estimate(
    arch: Architecture,
    lora: dict[str, Any],
    batch: int,
    length: int,
    optim: str = "paged_adamw_8bit",
    double_quant: bool = True,
    checkpointing: bool = True,
    loss_chunk_size: int | None = None,
) -> dict[str, float]:
    """Bytes of each term at the peak (see the module docstring), and ``peak``;
    ``loss_chunk_size``: the profile's ``model.loss_chunk_size`` (None: all logits at once)."""
    if optim not in OPTIMIZER_STATE_BYTES:
        raise ValueError(f"optim {optim!r}: no state size known (one of {sorted(OPTIMIZER_STATE_BYTES)})")
    state = OPTIMIZER_STATE_BYTES[optim]
    p4 = arch.projection_params()
    constants = 1 / 64 + FP32 / (64 * 256) if double_quant else FP32 / 64
    tokens = batch * length
    pl, copies = lora_params(arch, lora), saved_copies(arch, lora)
    h_mult, i_mult = LAYER_WORKING_SET
    layer = FP32 * tokens * (h_mult * arch.hidden + i_mult * arch.intermediate)
    terms = {
        "4-bit weights": p4 * (0.5 + constants),
        "unquantized weights (fp32)": FP32 * (arch.vocab * arch.hidden + arch.norm_params()),
        "LoRA weights": FP32 * pl,
        "LoRA gradients": FP32 * pl,
        "LoRA optimizer state": state * pl,
        "modules_to_save weights": FP32 * copies,
        "modules_to_save gradients": FP32 * copies,
        "modules_to_save optimizer state": state * copies,
        "activation checkpoints": FP32 * arch.layers * tokens * arch.hidden if checkpointing else 0.0,
        "layer working set": layer if checkpointing else layer * arch.layers,
        "logits and loss": LOGIT_BYTES * tokens * arch.vocab,
    }
    if loss_chunk_size is not None:
        trained_head = FP32 * arch.vocab * arch.hidden if "lm_head" in (lora.get("modules_to_save") or []) else 0
        chunk = min(loss_chunk_size, tokens) * arch.vocab * CHUNK_LOGIT_BYTES
        terms["logits and loss"] = chunk + FP32 * tokens * arch.hidden + trained_head
    transient = max(terms["layer working set"], terms["logits and loss"])
    if not checkpointing:  # every layer's activations are held when the loss peaks
        transient = terms["layer working set"] + terms["logits and loss"]
    static = sum(v for k, v in terms.items() if k not in ("layer working set", "logits and loss"))
    return {**terms, "peak": static + transient}


def tokens_for_peak(arch: Architecture, lora: dict[str, Any], target_bytes: float, **kwargs: Any) -> int:
    """Batch tokens T (batch 1, length T) at which :func:`estimate` reaches ``target_bytes``."""
    low, high = 0, 1
    while estimate(arch, lora, 1, high, **kwargs)["peak"] < target_bytes:
        high *= 2
        if high > 1 << 24:
            return high
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if estimate(arch, lora, 1, mid, **kwargs)["peak"] < target_bytes else (low, mid)
    return low


def seed_report_check() -> bool | None:
    """Whether the seed report states the quoted peak (``SEED_REPORT_QUOTE``): None where the
    report is not here (users do not have ../shared), so the quoted figure stands unchecked."""
    if not SEED_REPORT.exists():
        return None
    return SEED_REPORT_QUOTE in SEED_REPORT.read_text(encoding="utf-8")


def cpu_run(path: Path) -> dict[str, Any]:
    """The peak RSS, batch, length and optimizer of a train run folder (timing.json, or the
    metrics.json of a run from before timing.json, and run_config.yaml)."""
    import yaml

    timing_file, spec_file = path / "timing.json", path / "run_config.yaml"
    if not timing_file.exists() and (path / "metrics.json").exists():
        timing_file = path / "metrics.json"  # older runs kept their run-time figures there
    for f in (timing_file, spec_file):
        if not f.exists():
            raise SystemExit(f"error: {f}: missing (--cpu-run takes a finished train run's folder)")
    metrics = json.loads(timing_file.read_text(encoding="utf-8"))
    if "peak_cpu_rss_bytes" not in metrics:
        raise SystemExit(f"error: {timing_file}: no peak_cpu_rss_bytes (a GPU run? compare peak_cuda_allocated_bytes)")
    spec = yaml.safe_load(spec_file.read_text(encoding="utf-8"))
    return {
        "rss": metrics["peak_cpu_rss_bytes"],
        "batch": spec["training"]["per_device_train_batch_size"],
        "length": spec["model"]["max_length"],
        "optim": spec["training"]["optim"],
        "variant": spec["variant"],
        "lora": spec["lora"],
        "loss_chunk_size": spec["model"].get("loss_chunk_size"),
    }


def main(argv: list[str] | None = None) -> int:
    from omegaconf import OmegaConf

    from medsft.core.config import load_config
    from medsft.modeling.architecture import profile_architecture

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="qwen3-1.7b")
    parser.add_argument("--variants", nargs="+", default=["v1", "v2"])
    parser.add_argument("--batch", type=int, default=4, help="per-device batch size (the seed's: 4)")
    parser.add_argument("--length", type=int, default=2048, help="padded length of the batch (the seed's max: 2048)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--cpu-run", type=Path, help="a finished CPU train run folder of this profile")
    parser.add_argument("--cpu-rss", type=float, help="or: its measured peak RSS in bytes")
    parser.add_argument("--cpu-batch", type=int, default=1)
    parser.add_argument("--cpu-length", type=int, default=128)
    parser.add_argument("--cpu-variant", default="v2")
    args = parser.parse_args(argv)

    arch = Architecture.from_config(profile_architecture(args.profile))
    cfg = load_config(["tracking.mode=disabled", f"model={args.profile}"], path=args.params, libraries=False)
    loras = {v: OmegaConf.to_container(cfg.variants[v].lora, resolve=True) for v in args.variants}
    optims = {v: cfg.variants[v].training.get("optim", "paged_adamw_8bit") for v in args.variants}
    chunk = cfg.model.loss_chunk_size
    results = {
        v: estimate(arch, loras[v], args.batch, args.length, optims[v], loss_chunk_size=chunk) for v in args.variants
    }

    print(
        f"{args.profile}, batch {args.batch} x length {args.length}, QLoRA (NF4, double quant), checkpointing, "
        f"model.loss_chunk_size {chunk}"
    )
    width = max(len(k) for k in next(iter(results.values())))
    print(f"{'term (GB)':<{width}}  " + "  ".join(f"{v:>8}" for v in args.variants))
    for term in next(iter(results.values())):
        print(f"{term:<{width}}  " + "  ".join(f"{results[v][term] / GB:8.2f}" for v in args.variants))
    # All logits at once: model.loss_chunk_size=null, and what the seed's own loop held.
    full = {v: estimate(arch, loras[v], args.batch, args.length, optims[v])["peak"] for v in args.variants}
    if chunk is not None:
        print(
            "with all logits at once (model.loss_chunk_size=null): "
            + ", ".join(f"{v} {b / GB:.2f} GB" for v, b in full.items())
        )
    if "v2" in results:
        tied = estimate(
            arch,
            {**loras["v2"], "ensure_weight_tying": True},
            args.batch,
            args.length,
            optims["v2"],
            loss_chunk_size=chunk,
        )
        saved = results["v2"]["peak"] - tied["peak"]
        print(f"v2 with ensure_weight_tying (one trained copy): {tied['peak'] / GB:.2f} GB ({saved / GB:.2f} GB less)")
    if "v2" in cfg.variants:  # the seed report's peak, beside v2 at the seed's batch and length
        lora = OmegaConf.to_container(cfg.variants.v2.lora, resolve=True)
        optim = cfg.variants.v2.training.get("optim", "paged_adamw_8bit")
        seed_full = estimate(arch, lora, SEED_BATCH, SEED_LENGTH, optim)["peak"]
        seed_chunked = estimate(arch, lora, SEED_BATCH, SEED_LENGTH, optim, loss_chunk_size=chunk)["peak"]
        chunked = f"; {seed_chunked / GB:.2f} GB with model.loss_chunk_size {chunk}" if chunk is not None else ""
        print(
            f"\nv2 at batch {SEED_BATCH} x length {SEED_LENGTH}: predicted {seed_full / GB:.2f} GB with all logits "
            f"(as the seed's loop held them{chunked}); seed report: {SEED_REPORT_PEAK_GB:.1f} GB peak"
        )
        checked = seed_report_check()
        status = {
            None: "not here, the figure is quoted",
            True: "present, states it",
            False: "present, DOES NOT state it: check SEED_REPORT_PEAK_GB",
        }[checked]
        print(
            f"  (the seed report's §7: v2, batch {SEED_BATCH}, max_length {SEED_LENGTH}, a 16 GB GPU; "
            f"../shared/{SEED_REPORT_NAME}: {status})"
        )
        if checked is False:
            print(f"warning: {SEED_REPORT}: the quoted {SEED_REPORT_PEAK_GB} GB peak is not in it", file=sys.stderr)
        tokens = tokens_for_peak(arch, lora, SEED_REPORT_PEAK_GB * GB, optim=optim)
        print(
            f"  with all logits the model reaches {SEED_REPORT_PEAK_GB:.1f} GB at {tokens:,} tokens per batch "
            f"(batch {SEED_BATCH} x length {tokens // SEED_BATCH:,})"
        )

    if args.cpu_run or args.cpu_rss:
        run = cpu_run(args.cpu_run) if args.cpu_run else {
            "rss": args.cpu_rss, "batch": args.cpu_batch, "length": args.cpu_length,
            "optim": "adamw_8bit", "variant": args.cpu_variant, "lora": loras[args.cpu_variant],
            "loss_chunk_size": chunk,
        }  # fmt: skip
        predicted = estimate(
            arch, run["lora"], run["batch"], run["length"], run["optim"], loss_chunk_size=run["loss_chunk_size"]
        )["peak"]
        print(
            f"\nCPU run ({run['variant']}, batch {run['batch']} x length {run['length']}, {run['optim']}): "
            f"predicted {predicted / GB:.2f} GB of tensors, measured peak RSS {run['rss'] / GB:.2f} GB "
            f"(RSS also holds the interpreter, libraries, tokenizer and mapped checkpoint pages)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
