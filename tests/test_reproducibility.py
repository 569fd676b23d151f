"""The same code, data and settings give the same bytes, process after process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from medsft.core import runtime
from medsft.core.config import load_config
from medsft.core.spec import RunSpec
from tests.conftest import ROOT
from tests.test_training import FAST, RECORDS


def test_fresh_processes_compute_the_same_first_step(tmp_path):
    """A smaller run of benchmarks/first_step_gradients.py: 6 processes (2 at a time) each
    build v2's trainer (LoRA plus the trained embedding and output copies) and hash its
    first step's gradients; all must agree."""
    records = tmp_path / "train.jsonl"
    records.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS[:6]), encoding="utf-8")
    cmd = [sys.executable, "benchmarks/first_step_gradients.py", "--variant", "v2", "--runs", "6", "--jobs", "2"]
    proc = subprocess.run(
        [*cmd, "--records", str(records), *FAST], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 distinct gradient hash(es) over 6 processes" in proc.stdout


def test_the_settings_that_decide_the_bits_are_recorded(tmp_path):
    from medsft.train.trainer import train_variant

    train_variant(load_config(FAST), "v1", RECORDS[:4], RECORDS[4:6], tmp_path)
    recorded = RunSpec.read(tmp_path).reproducibility
    assert recorded["deterministic_algorithms"] is True
    assert recorded["num_threads"] >= 1 and recorded["cpu_capability"]
    assert {k: recorded[k] for k in ("MKL_CBWR", "MKL_DYNAMIC")} == {"MKL_CBWR": "AVX2,STRICT", "MKL_DYNAMIC": "FALSE"}


def test_a_setting_the_user_made_is_kept(monkeypatch):
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE,STRICT")  # the portable, slower code path
    assert runtime.reproducible_math()["MKL_CBWR"] == "COMPATIBLE,STRICT"


@pytest.mark.parametrize("noise", [True, False])
@pytest.mark.parametrize("logger_name, message", runtime.QUIET_MESSAGES)
def test_only_the_known_library_message_is_dropped(caplog, noise, logger_name, message):
    import logging

    runtime.quiet_library_noise()
    logger = logging.getLogger(logger_name)
    text = f"{message} (and its particulars)" if noise else "some other message of that library"
    with caplog.at_level(logging.WARNING):
        logger.warning(text)
    assert (text in caplog.text) is not noise


def test_the_trainer_alignment_message_is_the_one_transformers_prints():
    """The dropped transformers message, as transformers words it (a reworded one comes back)."""
    import inspect

    from transformers import trainer_utils

    name, start = runtime.QUIET_MESSAGES[1]
    assert trainer_utils.logger.name == name and start in inspect.getsource(trainer_utils)


@pytest.mark.parametrize("noise", [True, False])
def test_only_the_known_library_warning_is_dropped(noise):
    import warnings

    message = (
        "Model has `tie_word_embeddings=True` and a tied layer is part of the adapter, but `ensure_weight_tying` …"
        if noise
        else "Model has something else to say"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runtime.quiet_library_noise()
        warnings.warn(message, UserWarning, stacklevel=1)
    assert (len(caught) == 0) is noise
