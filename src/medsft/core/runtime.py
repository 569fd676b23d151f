"""Process-level settings: bit-reproducible CPU math, and the allocator of a small CPU.

Why each setting, found by experiment (``benchmarks/first_step_gradients.py``, and the same
step run under ``qemu-x86_64 -cpu Haswell-v4`` and ``-cpu EPYC-Rome``, which emulate an Intel
and an AMD CPU on one machine):

- ``MKL_CBWR=AVX2,STRICT``: MKL (torch's CPU BLAS and vector math) picks its code path from
  the CPU it finds, unless told one (Conditional Numerical Reproducibility). Its AVX2 path
  gives the same matrix products on Intel and AMD; ``AUTO`` gives AVX-512 products on an
  AVX-512 Intel CPU and AVX2 ones on AMD. STRICT makes them independent of the thread count.
- ``ATEN_CPU_CAPABILITY=avx2``: torch's own kernels are compiled for several instruction
  sets and pick one at run time (AVX-512 and AVX2 kernels round differently).
- MKL's vector math (``exp``, ``log``, ``sqrt`` of a tensor) takes an Intel-only branch that
  no ``MKL_CBWR`` short of ``COMPATIBLE`` removes (that one makes training 1.5x slower), so
  the training step avoids it: the chunked loss uses torch's softmax kernels
  (``medsft.modeling.loss``) and the optimizer is the fused AdamW.
- ``torch.use_deterministic_algorithms(True, warn_only=True)``: torch's deterministic
  implementations wherever it has one (e.g. index_put_ with accumulation on CPU, cuBLAS
  workspaces on CUDA), with a warning where it has none.

With these, a step gives the same bytes on any x86-64 CPU with AVX2, at the same thread count
(torch's reductions split their work by thread: ``OMP_NUM_THREADS=2`` reproduces the 2-core
runs committed here on a bigger machine). A value the user set in the environment is kept.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import re
import sys
import warnings
from typing import Any

log = logging.getLogger(__name__)

# Read once, when MKL and torch's dispatcher load: set before torch is imported.
REPRODUCIBLE_ENV = {
    "MKL_CBWR": "AVX2,STRICT",
    "MKL_DYNAMIC": "FALSE",
    # cuBLAS's deterministic workspace, required by deterministic algorithms on CUDA.
    "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
}
if platform.machine().lower() in ("x86_64", "amd64"):
    REPRODUCIBLE_ENV["ATEN_CPU_CAPABILITY"] = "avx2"

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_applied: dict[str, Any] | None = None


def reproducible_math() -> dict[str, str]:
    """Set :data:`REPRODUCIBLE_ENV` in the environment (values already set are kept) and
    return the settings now in force. Call it before torch is imported."""
    for key, value in REPRODUCIBLE_ENV.items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in REPRODUCIBLE_ENV}


def reproducibility_settings() -> dict[str, Any]:
    """Turn on torch's deterministic algorithms and return what decides a run's bits: the
    environment of :func:`reproducible_math`, the kernels torch dispatches to, its thread
    count. Logged once per process; train records it in ``run_config.yaml``."""
    global _applied
    import torch

    torch.use_deterministic_algorithms(True, warn_only=True)
    settings = {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "num_threads": torch.get_num_threads(),
        **{key: os.environ.get(key) for key in REPRODUCIBLE_ENV if key != "CUBLAS_WORKSPACE_CONFIG"},
    }
    if settings != _applied:
        log.info("reproducibility: %s", ", ".join(f"{k}={v}" for k, v in settings.items()))
        _applied = settings
    return dict(settings)


# Library log messages that tell a user nothing they can act on, by logger: (logger, start).
# bitsandbytes, on a CPU with AVX512-BF16, tries to fetch a 4-bit matmul kernel from the
# Hugging Face Hub through the `kernels` package and warns when it cannot; it then uses its
# own CPU kernel. Installing `kernels` would only move the failure to the download (offline
# here), and no profile runs 4-bit layers on a CPU outside one slow test.
# transformers' Trainer copies the tokenizer's end and padding ids into a model config that
# lacks them and says so: the tiny base is saved with them unset (its trimmed rows are not
# token ids) and, like the model, they are the tokenizer's real ids, so the copy is right.
QUIET_MESSAGES = (
    ("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward from kernels-community"),
    ("transformers.trainer_utils", "The tokenizer has new PAD/BOS/EOS tokens that differ from the model config"),
)
# Python warnings of the same kind, by the start of their message. peft warns, at every
# adapter built or loaded, that a tied layer is part of the adapter without
# `ensure_weight_tying`: V2 trains the embedding and the output layer as two copies on
# purpose (as the real V2 run did; export unties them), so there is nothing to act on.
QUIET_WARNINGS = ("Model has `tie_word_embeddings=True` and a tied layer is part of the adapter",)


class _DropMessages(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def quiet_library_noise() -> None:
    """Drop the messages of :data:`QUIET_MESSAGES` (and only those) at their loggers, and the
    warnings of :data:`QUIET_WARNINGS`. Call it before the libraries are imported; calling it
    again adds nothing."""
    for name, prefix in QUIET_MESSAGES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(_DropMessages(prefix))
    for prefix in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(prefix), category=UserWarning)


def keep_large_allocations() -> bool:
    """Let glibc reuse large freed blocks instead of unmapping them.

    With Qwen3's 152k-token vocabulary every step allocates logits of hundreds of MB. By
    default glibc serves and frees each with mmap/munmap, and the page faults of touching
    fresh pages cost more than the arithmetic on a small CPU (a step of the tiny profile ran
    1.7x faster with this, measured with /usr/bin/time). Set MEDSFT_KEEP_MALLOC=0 to skip.
    Returns whether the setting was applied.
    """
    if os.environ.get("MEDSFT_KEEP_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl, …): leave the allocator alone
        return False
    limit = ctypes.c_int(2**30)
    ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, limit)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, limit))
    if not ok:
        log.debug("mallopt refused the thresholds; allocator unchanged")
    return ok
