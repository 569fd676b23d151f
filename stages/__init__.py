"""Thin stage entry points: ``python -m stages.<name> [args] [key=value ...]``."""

from medsft.core.runtime import quiet_library_noise, reproducible_math

# Before any stage module imports torch (and with it MKL) or bitsandbytes.
reproducible_math()
quiet_library_noise()
