"""One look for every figure of the book. Chapters call :func:`use_style` once; importing
``mcr2`` never changes matplotlib's global state by itself."""
from __future__ import annotations

__all__ = ["use_style", "METHOD_COLORS"]

#: One colour per method, the same in every chapter (CE brown as in the report's Figure 5).
METHOD_COLORS = {
    "mcr2": "#1f77b4",
    "mcr2_masked": "#1f77b4",
    "mcr2_unmasked": "#e6b422",
    "ce": "#8c564b",
    "mnist": "#7b3294",
    "cifar_bg": "#7f7f7f",
}


def use_style() -> None:
    """Seaborn's whitegrid theme, figure sizes and resolutions for the HTML book."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", rc={"figure.dpi": 100, "savefig.dpi": 100, "figure.figsize": (7.0, 3.6)})
