"""samat.figures: report figures keep long titles inside the picture."""

from __future__ import annotations

from pathlib import Path

from samat.figures import new_figure, save_figure, wrap_title

TITLE = "Clean vs robust: image_classification (" + ", ".join(
    f"parameter_{i}=value_{i}" for i in range(12)) + ")"


def _title_fits(title: str) -> bool:
    fig = new_figure()
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=9)
    fig.draw_without_rendering()
    box, page = ax.title.get_window_extent(), fig.bbox
    return page.x0 <= box.x0 and box.x1 <= page.x1


def test_a_wrapped_title_fits_the_figure() -> None:
    wrapped = wrap_title(TITLE, 6.4)
    assert len(wrapped.splitlines()) > 1 and " ".join(wrapped.splitlines()) == TITLE
    assert not _title_fits(TITLE) and _title_fits(wrapped)
    assert wrap_title("short", 6.4) == "short"


def test_saved_figures_hold_everything_drawn(tmp_path: Path) -> None:
    fig = new_figure()  # 6.4 inches at 100 dpi: 640 pixels
    fig.add_subplot()
    fig.text(1.02, 0.5, "a caption beyond the right edge")
    png = save_figure(fig, tmp_path / "f.png").read_bytes()
    assert png[:4] == b"\x89PNG" and int.from_bytes(png[16:20], "big") > 700  # not cut off
