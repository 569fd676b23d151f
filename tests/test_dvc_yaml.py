"""dvc.yaml declares every variant of params.yaml, and each stage only the params it reads."""

import yaml

from tests.conftest import ROOT


def load(name):
    return yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))


def test_top_level_metrics_and_plots_cover_every_variant():
    dvc, params = load("dvc.yaml"), load("params.yaml")
    variants = set(params["variants"])
    metrics = set(dvc["metrics"])
    for v in variants:
        assert {f"runs/{v}/train/metrics.json", f"runs/{v}/eval/metrics.json"} <= metrics, v
    for plot in dvc["plots"]:
        (spec,) = plot.values()
        assert {f"runs/{v}/train/history.csv" for v in variants} == set(spec["y"]), plot


def test_per_variant_stages_read_only_their_own_variant():
    stages = load("dvc.yaml")["stages"]
    for name in ("augment", "train", "evaluate"):
        params = stages[name]["do"]["params"]
        assert all(not str(p).startswith("variants") or str(p).startswith("variants.${key}") for p in params), name
