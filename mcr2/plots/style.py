"""One look for every figure of the book, drawn for the width the page shows it at, and the check
that its text can be read there. Chapters call :func:`use_style` once and make their figures
with :func:`page_figure`; importing ``mcr2`` never changes matplotlib's global state by itself.

Sizes are set here and nowhere else. The book's theme (sphinx-book-theme) shows a figure in a
column about 700 CSS px wide and never enlarges it; its body text is 16 px and its caption text
0.9 em of that, 14.4 px. A figure ``PAGE_WIDTH_IN`` inches wide at ``DPI`` (plus the 0.1-inch
margin the notebook's tight crop adds on each side) is 700 px: shown at its own size, a point of
text is ``DPI / 72`` px, so the smallest font below (10.5 pt) is 14.6 px at 100 % zoom.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "use_style",
    "METHOD_COLORS",
    "PAGE_WIDTH_IN",
    "PAGE_WIDTH_PX",
    "DPI",
    "CAPTION_PX",
    "FONT_PT",
    "SMALL_PT",
    "page_figure",
    "page_mosaic",
    "Legibility",
    "legibility",
    "legible",
]

#: One colour per method, the same in every chapter (CE brown as in the report's Figure 5).
METHOD_COLORS = {
    "mcr2": "#1f77b4",
    "mcr2_masked": "#1f77b4",
    "mcr2_unmasked": "#e6b422",
    "ce": "#8c564b",
    "mnist": "#7b3294",
    "cifar_bg": "#7f7f7f",
}

PAGE_WIDTH_PX = 700  # CSS px of the page's content column at 100 % zoom (the narrowest a desktop shows)
DPI = 100  # figure and PNG resolution: 1 PNG px = 1 CSS px when a figure is shown at its own size
PAD_IN = 0.1  # margin the notebook's tight crop (bbox_inches="tight") adds on each side, inches
PAGE_WIDTH_IN = PAGE_WIDTH_PX / DPI - 2 * PAD_IN  # 6.8: a figure this wide is a 700 px PNG
CAPTION_PX = 14.4  # the floor: the theme's caption text, 0.9 em of its 16 px body, CSS px
FONT_PT = 11.0  # axis labels, tick labels, titles' base, text on figures
SMALL_PT = 10.5  # legends and annotations, the smallest text a figure may draw (14.6 px at DPI 100)
PANEL_HEIGHT_IN = 2.9  # height of one row of plot panels, inches


def use_style() -> None:
    """Seaborn's whitegrid theme with the book's figure width, resolution and font sizes."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", rc={
        "figure.dpi": DPI, "savefig.dpi": DPI, "figure.figsize": (PAGE_WIDTH_IN, PANEL_HEIGHT_IN),
        "font.size": FONT_PT, "axes.labelsize": FONT_PT, "axes.titlesize": FONT_PT + 1,
        "xtick.labelsize": FONT_PT, "ytick.labelsize": FONT_PT, "legend.fontsize": SMALL_PT,
        "legend.title_fontsize": SMALL_PT, "figure.titlesize": FONT_PT + 1,
    })


def page_figure(nrows: int = 1, ncols: int = 1, height: float | None = None, width: float = PAGE_WIDTH_IN, **kw):
    """``plt.subplots`` at the page's width: ``height`` inches (default one ``PANEL_HEIGHT_IN`` per
    row), constrained layout. Put panels in rows rather than more than two in one row of plots."""
    import matplotlib.pyplot as plt

    kw.setdefault("layout", "constrained")
    return plt.subplots(nrows, ncols, figsize=(width, height or PANEL_HEIGHT_IN * nrows), **kw)


def page_mosaic(layout, height: float, width: float = PAGE_WIDTH_IN, **kw):
    """``subplot_mosaic`` at the page's width (constrained layout), for panels of unequal size,
    e.g. ``[["a", "b"], ["c", "c"]]``: two panels above one as wide as the page. Returns (fig, axes dict)."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplot_mosaic(layout, **kw)


@dataclass(frozen=True)
class Legibility:
    """How a figure's text reads on the page: the smallest text as shown, in CSS px."""

    smallest_px: float  # the smallest font's em height as the page shows it, CSS px
    text: str  # the text drawn at that size
    png_width_px: float  # width of the PNG the notebook stores (tight crop), px
    shown_width_px: float  # width the page shows it at, CSS px
    texts: int  # how many texts were drawn

    @property
    def scale(self) -> float:
        return self.shown_width_px / self.png_width_px


def legibility(fig, page_width_px: float = PAGE_WIDTH_PX) -> Legibility:
    """Draw ``fig`` and measure every text it draws, as the page shows it: the notebook stores a
    PNG of the tight bounding box (plus ``PAD_IN`` a side) at the figure's dpi, the page shows it at
    most ``page_width_px`` wide, so a font of s points is ``s / 72 · dpi · shown / png`` px."""
    renderer = fig.canvas.get_renderer()
    drawn: list[tuple[float, str]] = []
    draw_text = renderer.draw_text

    def record(gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if s.strip():
            drawn.append((prop.get_size_in_points(), s))
        return draw_text(gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)

    renderer.draw_text = record  # this renderer only, for one draw
    try:
        fig.draw(renderer)
    finally:
        del renderer.draw_text
    box = fig.get_tightbbox(renderer)  # inches
    png = (box.width + 2 * PAD_IN) * fig.dpi
    shown = min(png, page_width_px)
    if not drawn:
        return Legibility(math.inf, "", png, shown, 0)
    size, text = min(drawn, key=lambda t: t[0])
    return Legibility(size / 72 * fig.dpi * shown / png, text, png, shown, len(drawn))


def legible(fig, floor_px: float = CAPTION_PX, name: str = "figure"):
    """``fig`` itself if its smallest text is at least ``floor_px`` CSS px tall as the page shows
    it (:func:`legibility`); else a ValueError naming the text, its size and the fix."""
    m = legibility(fig)
    if m.smallest_px < floor_px:
        raise ValueError(
            f"{name}: the text {m.text[:40]!r} is {m.smallest_px:.1f} px tall on the page (floor {floor_px} px; "
            f"the PNG is {m.png_width_px:.0f} px wide, shown at {m.shown_width_px:.0f}): make the figure with "
            f"mcr2.plots.page_figure (width {PAGE_WIDTH_IN:g} in) and fonts of at least {SMALL_PT:g} pt")
    return fig
