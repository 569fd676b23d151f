"""Shared fixtures: the repository root, the composed config, the reference material."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medsft.core.runtime import quiet_library_noise, reproducible_math

# As the stages do, before any test imports torch or bitsandbytes.
reproducible_math()
quiet_library_noise()

from medsft.core.config import load_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDSFT_SHARED", ROOT.parent / "shared"))
REFERENCE = SHARED / "reference"
# Overrides for tests that train or resolve specs without running the pretrain stage first.
NO_PRETRAIN = ["tracking.mode=disabled", "model.pretrain.training=null"]


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    """Stages resolve params.yaml and data paths from the repository root."""
    monkeypatch.chdir(ROOT)


@pytest.fixture
def cfg():
    """params.yaml with tracking off and the seeded init as the base (no pretrained base needed)."""
    return load_config(NO_PRETRAIN, path=ROOT / "params.yaml")


@pytest.fixture
def reference() -> Path:
    """../shared/reference, or a skip where it is absent (users do not have it)."""
    if not (REFERENCE / "delicate_medical_r1_val241.jsonl").exists():
        pytest.skip(f"reference material not found at {REFERENCE} (only on the project's machines)")
    return REFERENCE
