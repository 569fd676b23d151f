"""The report's seed spread and the sweep's noise floor (medsft.report.sections)."""

from __future__ import annotations

import pandas as pd

from medsft.report.runs import RunFiles
from medsft.report.sections import seed_spread, sweep, within_noise


def write_seeds(root, variant, losses, status=None, seeds=(43, 44)):
    folder = root / variant
    folder.mkdir(parents=True)
    pd.DataFrame(
        {
            "variant.training.seed": list(seeds),
            "status": status or ["complete"] * len(seeds),
            "final_eval_loss": losses,
        }
    ).to_csv(folder / "summary.csv", index=False)


def run(name, final_eval_loss, seed=42):
    metrics = {"final_eval_loss": final_eval_loss}
    config = {"training": {"seed": seed}}
    return RunFiles(name=name, history=pd.DataFrame(), history_path="", config=config, train_metrics=metrics)


def test_the_own_run_and_the_further_seeds_make_the_spread_and_a_larger_difference_is_an_effect(tmp_path):
    write_seeds(tmp_path, "v1", [6.29, 6.31])
    write_seeds(tmp_path, "v2", [6.35, 6.365])
    table = seed_spread(tmp_path, {"v1": run("v1", 6.30), "v2": run("v2", 6.36)})
    assert table["table"].rows[0] == ["v1", "42, 43, 44", "6.3000 / 6.2900 / 6.3100", "6.3000", "0.0200"]
    assert table["table"].rows[1][1] == "42, 43, 44" and table["table"].rows[1][4] == "0.0150"
    assert table["pair"] == {"a": "v1", "b": "v2", "difference": "0.0583", "floor": "0.0200", "exceeds": True}


def test_a_difference_within_the_spread_tells_nothing_and_failed_seeds_are_left_out(tmp_path):
    write_seeds(tmp_path, "v1", [6.25, 6.35])
    write_seeds(tmp_path, "v2", [6.32, 9.99], status=["complete", "failed"])
    table = seed_spread(tmp_path, {"v1": run("v1", 6.30), "v2": run("v2", 6.31)})
    assert table["table"].rows[1][1] == "42, 43"
    assert table["pair"]["exceeds"] is False and table["pair"]["floor"] == "0.1000"
    # Without the variants' own runs, the sweep's seeds alone.
    assert seed_spread(tmp_path, {})["table"].rows[0][1] == "43, 44"
    assert seed_spread(tmp_path / "none", {}) is None and seed_spread(None, {}) is None


def test_sweep_cells_closer_than_the_seeds_are_noise(tmp_path):
    write_seeds(tmp_path / "seeds", "v2", [6.30, 6.31, 6.32], seeds=(42, 43, 44))
    seeds = seed_spread(tmp_path / "seeds", {})
    grid = tmp_path / "grid"
    grid.mkdir()
    pd.DataFrame(
        {
            "rank": [1, 2, 3],
            "variant.lora.lora_dropout": [0.05, 0.2, 0.5],
            "status": ["complete", "complete", "failed"],
            "final_eval_loss": [6.300, 6.305, None],
        }
    ).to_csv(grid / "summary.csv", index=False)
    table = sweep(grid)
    assert table["losses"] == [6.300, 6.305]
    noise = within_noise(table, seeds, "v2", "en")
    assert noise == {"span": "0.0050", "floor": "0.0200", "exceeds": False, "variant": "v2", "effects": None}
    assert within_noise(table, seeds, "v1", "en") is None
    # Within the floor the points are listed in grid order with no rank; beyond it, ranked.
    unranked = sweep(grid, noise_floor=0.02)
    assert unranked["ranked"] is False and "rank" not in unranked["table"].columns
    assert [row[0] for row in unranked["table"].rows] == ["0.0500", "0.2000", "0.5000"]
    ranked = sweep(grid, noise_floor=0.001)
    assert ranked["ranked"] is True and ranked["table"].columns[0] == "rank"


def test_each_swept_key_has_its_main_effect_beside_the_seed_spread(tmp_path):
    """2 dropouts x 3 schedules: the schedule moves the loss by 0.03 (means over the dropouts),
    the dropout by 0.002 (means over the schedules); with a failed point, no main effects."""
    write_seeds(tmp_path / "seeds", "v2", [6.35, 6.36], seeds=(43, 44))
    seeds = seed_spread(tmp_path / "seeds", {})
    grid = tmp_path / "grid"
    grid.mkdir()
    frame = pd.DataFrame(
        {
            "rank": [1, 2, 3, 4, 5, 6],
            "variant.lora.lora_dropout": [0.05, 0.05, 0.05, 0.2, 0.2, 0.2],
            "variant.training.lr_scheduler_type": ["constant", "linear", "cosine"] * 2,
            "status": ["complete"] * 6,
            "final_eval_loss": [6.39, 6.36, 6.37, 6.392, 6.362, 6.372],
        }
    )
    frame.to_csv(grid / "summary.csv", index=False)
    noise = within_noise(sweep(grid), seeds, "v2", "zh")
    assert noise["span"] == "0.0320" and noise["exceeds"] is True
    effects = noise["effects"]
    assert effects.header("en")[::2] == ["swept key", "effect (max − min)"]
    (dropout, schedule) = effects.rows
    assert dropout[0] == "lora.lora_dropout" and dropout[2] == "0.0020" and dropout[3] == "不超过（噪声）"
    assert schedule[1] == "constant: 6.3910 · linear: 6.3610 · cosine: 6.3710"
    assert schedule[2] == "0.0300" and schedule[3] == "更大"
    # A point with no value for a key (an empty cell) counts as a value of its own, not dropped.
    frame.loc[[0, 3], "variant.lora.lora_dropout"] = None
    frame.to_csv(grid / "summary.csv", index=False)
    (dropout, _) = within_noise(sweep(grid), seeds, "v2", "en")["effects"].rows
    assert dropout[1] == "—: 6.3910 · 0.05: 6.3650 · 0.2: 6.3670"
    frame.loc[5, ["status", "final_eval_loss"]] = ["failed", None]
    frame.to_csv(grid / "summary.csv", index=False)
    assert within_noise(sweep(grid), seeds, "v2", "zh")["effects"] is None


def test_the_eval_loss_axis_spans_at_least_the_seed_spread():
    import matplotlib.pyplot as plt

    from medsft.report.plots import _span_at_least

    fig, ax = plt.subplots()
    ax.plot([10, 20], [7.426, 7.430])  # 0.004 apart, the seeds 0.02: the axis must not magnify it
    note = _span_at_least(ax, [7.426, 7.430], 0.02, "en")
    low, high = ax.get_ylim()
    assert high - low >= 0.02 and low < 7.426 and high > 7.430
    assert "seed spread 0.0200" in note
    fig2, ax2 = plt.subplots()
    ax2.plot([10, 20], [6.30, 6.36])  # wider than the floor: left as matplotlib draws it
    before = ax2.get_ylim()
    assert "种子间波动" in _span_at_least(ax2, [6.30, 6.36], 0.0146, "zh")
    assert ax2.get_ylim() == before
    plt.close(fig)
    plt.close(fig2)
