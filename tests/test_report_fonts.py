"""The CJK font of the report's zh figures: it covers every figure label, drawing with it
leaves no glyph missing, and it ships with its licence as package data."""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import re
import warnings

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from fontTools.ttLib import TTFont

from medsft.report import labels, plots
from tests.conftest import ROOT

FONTS = ROOT / "src/medsft/report/fonts"
HISTORY = pd.DataFrame(
    {
        "step": [10, 20, 30, 40],
        "loss": [2.0, 1.5, 1.2, 1.1],
        "eval_loss": [None, 1.6, None, 1.3],
        "learning_rate": [1e-5, 2e-5, -1e-6, 0.0],
        "grad_norm": [1.0, 0.8, 0.7, 0.6],
    }
)


def languages() -> list[str]:
    """Every language a label is written in."""
    return sorted({lang for texts in labels.LABELS.values() for lang in texts if lang != "*"})


def missing_glyph_warnings(draw) -> list[str]:
    """The "Glyph ... missing from font(s)" warnings ``draw()`` raises."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        draw()
    return [str(w.message) for w in caught if re.search(r"Glyph .* missing from font", str(w.message))]


def draw_zh_figures(out) -> None:
    plots.plot_histories({"v1": HISTORY, "v2": HISTORY.assign(loss=HISTORY["loss"] * 1.1)}, out, lang="zh")
    plots.plot_length_histogram({"train": [3, 5, 8, 13], "validation": [4, 6]}, 10, out / "lengths.png", lang="zh")


def test_zh_figures_need_the_cjk_font_and_en_figures_do_not():
    assert plots.needs_cjk_font("zh")
    assert not plots.needs_cjk_font("en")
    assert "zh" in [lang for lang in languages() if plots.needs_cjk_font(lang)]


@pytest.mark.parametrize("lang", [lang for lang in languages() if plots.needs_cjk_font(lang)])
def test_the_cjk_font_has_every_character_of_the_figure_labels(lang):
    cmap = TTFont(plots.CJK_FONT).getBestCmap()
    missing = {
        key: "".join(sorted({c for c in labels.label(key, lang) if ord(c) not in cmap}))
        for key in labels.LABELS
        if key.startswith("fig_")
    }
    missing = {key: chars for key, chars in missing.items() if chars}
    assert not missing, (
        f"{plots.CJK_FONT.name} has no glyph for these characters of the {lang!r} figure labels: {missing}. "
        f"Run `bash {plots.CJK_FONT_SCRIPT}` to subset the font again."
    )


def test_zh_figures_leave_no_glyph_missing(tmp_path):
    assert missing_glyph_warnings(lambda: draw_zh_figures(tmp_path)) == []
    assert {p.name for p in tmp_path.iterdir()} == {
        "loss.png",
        "eval_loss.png",
        "learning_rate.png",
        "grad_norm.png",
        "lengths.png",
    }
    # The font is set only while drawing.
    assert plots.cjk_font_family() not in plt.rcParams["font.family"]


def test_without_the_cjk_font_the_zh_figures_miss_glyphs(tmp_path, monkeypatch):
    """The check above sees a missing glyph: drawn in matplotlib's own font, the zh labels warn."""
    monkeypatch.setattr(plots, "figure_style", lambda lang: contextlib.nullcontext())
    warned = missing_glyph_warnings(lambda: draw_zh_figures(tmp_path))
    assert warned and all("DejaVu Sans" in w for w in warned)


def test_a_missing_font_file_is_an_error_naming_the_script(tmp_path, monkeypatch):
    plots.cjk_font_family.cache_clear()
    monkeypatch.setattr(plots, "CJK_FONT", tmp_path / "NotoSansSC-subset.otf")
    try:
        with pytest.raises(FileNotFoundError, match=r"NotoSansSC-subset\.otf is missing.*scripts/fetch_cjk_font\.sh"):
            plots.plot_length_histogram({"train": [1, 2]}, 2, tmp_path / "lengths.png", lang="zh")
    finally:
        plots.cjk_font_family.cache_clear()
    assert not (tmp_path / "lengths.png").exists()


def test_a_label_the_font_lacks_is_an_error_naming_the_script(tmp_path, monkeypatch):
    monkeypatch.setitem(labels.LABELS, "fig_new", {"en": "new", "zh": "龘"})
    plots._check_cjk_font_covers.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"no glyph for '龘'.*rerun `bash scripts/fetch_cjk_font\.sh`"):
            plots.plot_length_histogram({"train": [1, 2]}, 2, tmp_path / "lengths.png", lang="zh")
    finally:
        plots._check_cjk_font_covers.cache_clear()


def test_the_font_comes_with_its_licence_and_source():
    licence = (FONTS / "OFL.txt").read_text(encoding="utf-8")
    assert "SIL OPEN FONT LICENSE Version 1.1 - 26 February 2007" in licence
    assert "Copyright © 2014, 2015 Adobe Systems Incorporated" in licence
    assert "OTHER DEALINGS IN THE FONT SOFTWARE." in licence
    readme = (FONTS / "README.md").read_text(encoding="utf-8")
    assert "mplfonts==0.0.11" in readme and "scripts/fetch_cjk_font.sh" in readme
    # The README names the bytes the script wrote: a font changed by hand shows here.
    assert hashlib.sha256(plots.CJK_FONT.read_bytes()).hexdigest() in readme
    font = TTFont(plots.CJK_FONT)
    assert "SIL Open Font License, Version 1.1" in font["name"].getDebugName(13)
    assert 10_000 < plots.CJK_FONT.stat().st_size < 200_000


def test_the_font_and_its_licence_are_package_data():
    tomllib = pytest.importorskip("tomllib")
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "medsft.report"
    ]
    package = ROOT / "src/medsft/report"
    files = sorted(p.relative_to(package).as_posix() for p in FONTS.iterdir())
    assert files == ["fonts/NotoSansSC-subset.otf", "fonts/OFL.txt", "fonts/README.md"]
    assert all(any(fnmatch.fnmatch(f, pattern) for pattern in patterns) for f in files)
    assert plots.CJK_FONT == package / files[0]


def test_the_readme_names_the_wheel_the_script_pins():
    """Changing the script's pin without rerunning it shows here."""
    script = (ROOT / plots.CJK_FONT_SCRIPT).read_text(encoding="utf-8")
    pins = dict(re.findall(r"^(WHEEL_\w+)=(\S+)$", script, flags=re.MULTILINE))
    readme = (FONTS / "README.md").read_text(encoding="utf-8")
    assert f"{pins['WHEEL_NAME']}=={pins['WHEEL_VERSION']}" in readme
    assert pins["WHEEL_SHA256"] in readme and pins["WHEEL_MEMBER"] in readme
