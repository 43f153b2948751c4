"""Figures for report plots, samat's and plugins' alike: matplotlib's object API on the Agg
canvas (no pyplot, no display). matplotlib is optional and imported only when a figure is made.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(width: float = 6.4, height: float = 4.8) -> Figure:
    """A figure drawn with the Agg canvas (works without a display)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def wrap_title(text: str, width: float, fontsize: float = 9) -> str:
    """``text`` broken into lines that fit ``width`` inches at ``fontsize`` points (a long
    title would otherwise run off the figure)."""
    chars = max(20, int(width * 72 / (0.6 * fontsize)))
    return "\n".join(textwrap.wrap(text, chars, break_long_words=False,
                                   break_on_hyphens=False)) or text


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG at 100 dpi, cropped to what is drawn (nothing cut off); the path
    written."""
    path = Path(path)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path
