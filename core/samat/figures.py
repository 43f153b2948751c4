"""Figures for report plots, samat's and plugins' alike: matplotlib's object API on the Agg
canvas (no pyplot, no display). matplotlib is optional and imported only when a figure is made.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(width: float = 6.4, height: float = 4.8) -> Figure:
    """A figure drawn with the Agg canvas (works without a display)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG at 100 dpi; the path written."""
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path
