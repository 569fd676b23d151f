"""Figures of logged histories, runs overlaid (PNG), labelled in the report's language
(:mod:`medsft.report.labels`).

matplotlib's bundled DejaVu Sans has no CJK glyphs, so a language whose figure labels hold
CJK characters is drawn with the subset of Noto Sans CJK SC that the package carries
(``fonts/NotoSansSC-subset.otf``, written by ``scripts/fetch_cjk_font.sh``), DejaVu Sans
second for any other character. A missing font file, or a label character the subset lacks,
is an error naming the script, never boxes in a figure.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import font_manager, ft2font  # noqa: E402

from medsft.report.labels import LABELS, label  # noqa: E402

# The font of CJK figure labels and the script that writes it (its README.md and OFL.txt
# beside it say where it comes from and under which licence).
CJK_FONT = Path(__file__).resolve().parent / "fonts" / "NotoSansSC-subset.otf"
CJK_FONT_SCRIPT = "scripts/fetch_cjk_font.sh"
# The font of every character the CJK font has not (matplotlib's bundled default).
FALLBACK_FAMILY = "DejaVu Sans"


def figure_texts(lang: str) -> list[str]:
    """Every figure label (the ``fig_`` keys of :data:`~medsft.report.labels.LABELS`) in
    ``lang``."""
    return [label(key, lang) for key in LABELS if key.startswith("fig_")]


def is_cjk(char: str) -> bool:
    """Whether ``char`` is drawn wide in East Asian text (CJK ideographs, kana, hangul and
    fullwidth punctuation such as （）): the characters DejaVu Sans has no glyph for."""
    return unicodedata.east_asian_width(char) in ("W", "F")


def needs_cjk_font(lang: str) -> bool:
    """Whether the figure labels in ``lang`` hold CJK characters."""
    return any(is_cjk(c) for text in figure_texts(lang) for c in text)


@functools.cache
def cjk_font_family() -> str:
    """Registers :data:`CJK_FONT` with matplotlib (once) and returns its family name."""
    if not CJK_FONT.is_file():
        raise FileNotFoundError(
            f"{CJK_FONT} is missing: the CJK figure labels are drawn with it. "
            f"Run `bash {CJK_FONT_SCRIPT}` (in the project's .venv) to write it."
        )
    font_manager.fontManager.addfont(CJK_FONT)
    return font_manager.FontProperties(fname=CJK_FONT).get_name()


@functools.cache
def _check_cjk_font_covers(lang: str) -> None:
    covered = ft2font.FT2Font(str(CJK_FONT)).get_charmap()
    missing = sorted({c for text in figure_texts(lang) for c in text if ord(c) not in covered})
    if missing:
        raise ValueError(
            f"{CJK_FONT} has no glyph for {''.join(missing)!r} of the {lang!r} figure labels "
            f"(medsft/report/labels.py): rerun `bash {CJK_FONT_SCRIPT}` to subset it again."
        )


@contextmanager
def figure_style(lang: str) -> Iterator[None]:
    """matplotlib settings to draw ``lang``'s figures in: for a language with CJK figure
    labels, the CJK font first and DejaVu Sans second; for any other, matplotlib's own."""
    if not needs_cjk_font(lang):
        yield
        return
    family = cjk_font_family()
    _check_cjk_font_covers(lang)
    with plt.rc_context({"font.family": [family, FALLBACK_FAMILY]}):
        yield


# figure name -> history.csv column it draws (its axis label is the label "fig_<name>")
FIGURES = {"loss": "loss", "eval_loss": "eval_loss", "learning_rate": "learning_rate", "grad_norm": "grad_norm"}


LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v")


def plot_histories(
    histories: Mapping[str, pd.DataFrame],
    out_dir: str | Path,
    prefix: str = "",
    lang: str = "en",
    noise_floor: float | None = None,
) -> dict[str, Path]:
    """One PNG per history column with every run overlaid (``<prefix><name>.png``), labelled
    in ``lang``; returns name → path. A column no run has logged is skipped; runs whose lines
    coincide stay distinguishable by their line style and marker. With ``noise_floor`` (the
    seed-to-seed spread of the final eval loss), the eval-loss axis spans at least that much
    and says so, so that gaps within the noise do not fill the figure."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    with figure_style(lang):
        for name, column in FIGURES.items():
            series = {run: h.dropna(subset=[column]) for run, h in histories.items() if column in h}
            series = {run: s for run, s in series.items() if not s.empty}
            if not series:
                continue
            fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
            for i, (run, s) in enumerate(series.items()):
                ax.plot(
                    s["step"],
                    s[column],
                    linestyle=LINE_STYLES[i % len(LINE_STYLES)],
                    marker=MARKERS[i % len(MARKERS)],
                    markevery=max(1, len(s) // 12),
                    markersize=4,
                    label=run,
                )
            note = None
            if name == "eval_loss" and noise_floor:
                note = _span_at_least(ax, [v for s in series.values() for v in s[column]], noise_floor, lang)
            ax.set_xlabel(label("fig_step", lang))
            ax.set_ylabel(label(f"fig_{name}", lang))
            ax.set_title(label(f"fig_{name}", lang))
            ax.grid(alpha=0.3)
            ax.legend()
            if note:  # under the x label, clear of the lines
                fig.text(0.5, 0.01, note, ha="center", va="bottom", fontsize=8, alpha=0.8)
            fig.tight_layout(rect=(0, 0.04 if note else 0, 1, 1))
            path = out / f"{prefix}{name}.png"
            fig.savefig(path)
            plt.close(fig)
            written[name] = path
    return written


def _span_at_least(ax: plt.Axes, values: list[float], floor: float, lang: str) -> str:
    """Widen ``ax``'s y range to ``floor`` around ``values`` when they span less; the note
    that says so."""
    low, high = min(values), max(values)
    if high - low < floor:
        middle = (low + high) / 2
        ax.set_ylim(middle - 0.6 * floor, middle + 0.6 * floor)
    return label("fig_noise_floor", lang, floor=f"{floor:.4f}")


def plot_length_histogram(
    lengths: Mapping[str, list[int]], max_length: int, path: str | Path, lang: str = "en"
) -> Path:
    """Histogram of formatted example lengths (prompt + target tokens) per split, with the
    truncation length marked, labelled in ``lang``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with figure_style(lang):
        fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
        for split, values in lengths.items():
            if values:
                ax.hist(values, bins=30, alpha=0.6, label=f"{split} (n={len(values)})")
        ax.axvline(max_length, color="black", linestyle="--", label=f"max_length = {max_length}")
        ax.set_xlabel(label("fig_tokens_per_example", lang))
        ax.set_ylabel(label("fig_examples", lang))
        ax.set_title(label("fig_lengths", lang))
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
    return path
