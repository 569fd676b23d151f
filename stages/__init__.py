"""Thin stage entry points: ``python -m stages.<name> [args] [key=value ...]``."""

from medsft.core.runtime import reproducible_math

# Before any stage module imports torch (and with it MKL).
reproducible_math()
