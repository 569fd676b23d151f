"""A SwanLab offline run, logged by the train stage, reads back as the same history."""

import pandas as pd

from medsft.core.config import load_config
from medsft.core.history import load_history
from medsft.report.runs import load_imported_run
from medsft.train.trainer import train_variant
from tests.conftest import ROOT
from tests.test_training import FAST, RECORDS


def test_swanlab_offline_run_imports_as_the_logged_history(tmp_path, capfd):
    logdir = tmp_path / "swanlog"
    overrides = [o for o in FAST if not o.startswith("tracking.")] + [
        "tracking.mode=offline",
        f"tracking.logdir={logdir}",
    ]
    cfg = load_config(overrides, path=ROOT / "params.yaml")
    train_variant(cfg, "v2", RECORDS[:10], RECORDS[10:], tmp_path / "run")
    (run_dir,) = (logdir / "v2").glob("run-*")
    # SwanLab says how to upload the run once, when it has finished (it would say it at the start too).
    out, err = capfd.readouterr()
    console = out + err
    assert console.count("swanlab sync") == 1, console
    tip = console.index("swanlab sync")  # rich folds the path at the terminal's width
    assert run_dir.name in console[tip:].replace("\n", "") and console.index("Run data saved at") < tip
    imported = load_imported_run("v2", run_dir)
    logged = load_history(tmp_path / "run" / "history.csv")
    pd.testing.assert_frame_equal(imported.history, logged, check_dtype=False)
    assert imported.config["lora"]["modules_to_save"] == ["embed_tokens", "lm_head"]


def test_the_private_log_reader_was_checked_against_the_installed_swanlab():
    """The reader imports swanlab internals (no public reader of local logs exists): a new
    swanlab release must be checked, then CHECKED_WITH_SWANLAB moved to it."""
    import swanlab

    from medsft.report.swanlab_reader import CHECKED_WITH_SWANLAB

    assert swanlab.__version__ == CHECKED_WITH_SWANLAB
