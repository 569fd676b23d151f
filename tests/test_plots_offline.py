"""`dvc plots show` / `dvc plots diff` pages that draw with no network: the HTML template
.dvc/plots/offline.html (written by scripts/fetch_vega.sh) inlines Vega, Vega-Lite and
Vega-Embed, and .dvc/config names it."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, tool_env

TEMPLATE = ROOT / ".dvc/plots/offline.html"
FETCH = ROOT / "scripts/fetch_vega.sh"
# A src attribute (of any element) whose value is an http(s) URL.
REMOTE_SRC = re.compile(r"""\bsrc\s*=\s*["']?\s*(https?:)?//""", re.IGNORECASE)


def pins() -> dict[str, str]:
    """package -> version, as scripts/fetch_vega.sh pins them."""
    found = re.findall(r'^\s*"(vega[\w-]*) (\d+\.\d+\.\d+) [0-9a-f]{64} build/', FETCH.read_text(), re.MULTILINE)
    assert found, f"{FETCH}: no pins found"
    return dict(found)


def assert_offline_page(html: str) -> None:
    """No remote script or other src, the three libraries inlined, vegaEmbed defined."""
    assert not REMOTE_SRC.search(html), REMOTE_SRC.search(html).group(0)
    assert "cdn.jsdelivr.net" not in html
    tags = re.findall(r"<script\b[^>]*>", html, re.IGNORECASE)
    assert tags.count("<script>") == 3 and not [t for t in tags if re.search(r"\bsrc\b", t, re.IGNORECASE)]
    for name, version in pins().items():
        assert f"/*! {name} {version} (npm)" in html
    assert "Redistribution and use in source and binary forms" in html  # the licenses are kept
    assert ".vegaEmbed=" in html and ".vegaLite={}" in html and ".vega={}" in html  # the UMD builds' globals


def test_the_template_is_self_contained():
    html = TEMPLATE.read_text(encoding="utf-8")
    # DVC replaces {plot_divs} with the plots' divs (each calls vegaEmbed); it would replace a
    # {scripts} placeholder with its CDN <script src=...> tags, so there is none.
    assert html.count("{plot_divs}") == 1 and "{scripts}" not in html
    assert html.index("{plot_divs}") > html.rindex("</script>")  # the libraries load before the plots
    assert_offline_page(html)


def test_dvc_config_names_the_template():
    config = configparser.ConfigParser()
    config.read(ROOT / ".dvc/config", encoding="utf-8")
    name = config["plots"]["html_template"]
    # DVC resolves a relative plots.html_template from the .dvc folder (dvc/commands/plots.py).
    assert (ROOT / ".dvc" / name).resolve() == TEMPLATE.resolve()


@pytest.fixture
def plots_repo(tmp_path) -> Path:
    """A DVC repository (no git) with one history.csv declared as a plot with the project's
    history template (.dvc/plots/history.json)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    env = tool_env(DVC_NO_ANALYTICS="1")
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=repo, env=env, check=True, timeout=60)
    (repo / ".dvc/plots").mkdir()
    shutil.copy(ROOT / ".dvc/plots/history.json", repo / ".dvc/plots/history.json")
    (repo / "history.csv").write_text(
        "step,loss,eval_loss,learning_rate,grad_norm\n2,7.0,,0.0002,0.5\n4,6.5,6.9,0.0001,0.4\n", encoding="utf-8"
    )
    (repo / "dvc.yaml").write_text("plots:\n  - history.csv:\n      x: step\n      template: history\n")
    return repo


def show(repo: Path, *args: str) -> str:
    out = repo / "out"
    done = subprocess.run(
        ["dvc", "plots", "show", *args, "-o", str(out)],
        cwd=repo,
        env=tool_env(DVC_NO_ANALYTICS="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return (out / "index.html").read_text(encoding="utf-8")


def test_dvc_plots_show_writes_a_self_contained_page(plots_repo):
    html = show(plots_repo, "--html-template", str(TEMPLATE))
    assert_offline_page(html)
    assert "vegaEmbed('#" in html and '"eval_loss"' in html  # the plot itself, with its data
    assert html.index("vegaEmbed('#") > html.index("/*! vega-embed ")  # after the libraries


def test_the_project_config_picks_the_template(plots_repo):
    """The project's .dvc/config, no option: the same page."""
    shutil.copy(ROOT / ".dvc/config", plots_repo / ".dvc/config")
    shutil.copy(TEMPLATE, plots_repo / ".dvc/plots/offline.html")
    assert_offline_page(show(plots_repo))
