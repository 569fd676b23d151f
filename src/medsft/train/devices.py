"""What a run asks for that only a CUDA GPU has, and what it uses on a machine without one.

The variants are the seed's GPU settings (``optim: paged_adamw_8bit``, ``bf16: true``). On a
machine without CUDA two of them cannot run as asked:

- **paged optimizers** keep their state in CUDA unified memory, paged to the host under memory
  pressure. The same optimizer without paging runs on CPU: ``paged_adamw_8bit`` ->
  ``adamw_8bit`` (bitsandbytes' blockwise 8-bit Adam, same update, same state size).
- **fp16** mixed precision (v1, as the seed ran it): PyTorch's CPU float16 matmul has no fast
  kernel on CPUs without AVX512-FP16 (0.4 GFLOPS measured on this project's 2-core Xeon, 31 in
  bf16): ``fp16`` -> ``bf16``, mixed precision kept.
- **bf16**: ``TrainingArguments(bf16=True)`` refuses a machine with no bf16 GPU unless
  ``use_cpu=True`` (then autocast runs the forward in bf16 on the CPU).
- **several processes** (``train.launcher``: torchrun, accelerate launch): without
  ``use_cpu=True`` the Trainer sees no CUDA device and runs each process alone, every one
  training the whole run and writing as rank 0; with it, the processes form one DDP job over
  gloo, as they do over NCCL on GPUs.

:func:`apply_device_fallbacks` makes these replacements on a machine without CUDA only, logs one
line per replaced field naming what was asked and what is used, and records both in the run's
spec (``device_fallbacks`` in ``run_config.yaml``; ``training`` holds the value used). With
CUDA nothing changes: the GPU path runs the variant as written.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from typing import Any

import torch

from medsft.core.spec import RunSpec

log = logging.getLogger(__name__)

# transformers' optimizer names: a paged bitsandbytes optimizer -> the same one unpaged.
UNPAGED_OPTIMIZERS = {
    "paged_adamw_8bit": "adamw_8bit",
    "paged_adamw_32bit": "adamw_torch",
    "paged_ademamix_8bit": "ademamix_8bit",
    "paged_ademamix_32bit": "ademamix",
    "paged_lion_8bit": "lion_8bit",
    "paged_lion_32bit": "lion_32bit",
}


def launched_processes() -> int:
    """How many processes a launcher started for this run (torchrun and accelerate launch set
    ``WORLD_SIZE``); 1 for a plain ``python``."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def device_fallbacks(
    training: dict[str, Any], cuda: bool | None = None, world_size: int | None = None
) -> dict[str, dict[str, Any]]:
    """The TrainingArguments fields of ``training`` that this machine cannot run as asked:
    field -> ``{"asked", "used", "why"}``. Empty with CUDA (``cuda=None``: ask torch;
    ``world_size=None``: :func:`launched_processes`)."""
    if cuda is None:
        cuda = torch.cuda.is_available()
    if world_size is None:
        world_size = launched_processes()
    if cuda:
        return {}
    out: dict[str, dict[str, Any]] = {}
    optim = training.get("optim")
    if optim in UNPAGED_OPTIMIZERS:
        out["optim"] = {
            "asked": optim,
            "used": UNPAGED_OPTIMIZERS[optim],
            "why": "paged optimizers keep their state in CUDA unified memory; no CUDA here",
        }
    bf16 = bool(training.get("bf16"))
    if training.get("fp16"):
        out["fp16"] = {
            "asked": True,
            "used": False,
            "why": "float16 mixed precision is a GPU technique: CPUs without AVX512-FP16 have no fast "
            "float16 matmul (0.4 GFLOPS against 31 in bf16 and 107 in fp32 on a 2-core Xeon)",
        }
        if not bf16:
            out["bf16"] = {"asked": False, "used": True, "why": "in place of fp16 (mixed precision kept)"}
            bf16 = True
    if bf16 and not training.get("use_cpu"):
        out["use_cpu"] = {
            "asked": training.get("use_cpu", False),
            "used": True,
            "why": "bf16 without a bf16 GPU needs use_cpu=True (bf16 autocast on the CPU)",
        }
    if world_size > 1 and not training.get("use_cpu") and "use_cpu" not in out:
        out["use_cpu"] = {
            "asked": training.get("use_cpu", False),
            "used": True,
            "why": f"{world_size} processes without CUDA form one DDP job (gloo) only with use_cpu=True; "
            "without it each would train the whole run alone",
        }
    return out


def apply_device_fallbacks(spec: RunSpec, cuda: bool | None = None) -> RunSpec:
    """``spec`` with :func:`device_fallbacks` applied to its training fields and recorded in
    its ``device_fallbacks``, each one logged."""
    fallbacks = device_fallbacks(spec.training, cuda)
    for key, change in fallbacks.items():
        log.warning(
            "%s: %s %r asked, %r used on this machine: %s",
            spec.variant,
            key,
            change["asked"],
            change["used"],
            change["why"],
        )
    if not fallbacks:
        return spec
    training = {**spec.training, **{k: v["used"] for k, v in fallbacks.items()}}
    return replace(spec, training=dict(sorted(training.items())), device_fallbacks=fallbacks)
