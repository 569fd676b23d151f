"""Thin stage entry points: ``python -m stages.<name> [args] [key=value ...]``."""
