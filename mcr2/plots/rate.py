"""Figures of the chapter "Rate reduction in one page": R and Rc along a sweep and the
nearest-subspace accuracy (its cosine heatmap is :func:`mcr2.plots.plot_cosine_similarity`).

Each ``plot_*`` draws on the Axes it is given and returns it; nothing here touches rcParams or
opens a window.
"""
from __future__ import annotations

from .data import _np

__all__ = ["RATE_COLORS", "plot_rate_curves", "plot_subspace_accuracy"]

#: One colour per MCR² term, the same wherever R, Rc and ΔR are drawn.
RATE_COLORS = {"R": "#1f77b4", "Rc": "#d62728", "delta_r": "#2ca02c"}


def plot_rate_curves(ax, x, R, Rc, xlabel: str, title: str | None = None, delta_r: bool = True, legend: bool = True):
    """R (discriminative), Rc (compressive) and, if ``delta_r``, ΔR = R − Rc against a swept x
    (``legend=False``: none, e.g. for the second of two panels that share the first's)."""
    x, R, Rc = _np(x), _np(R).astype(float), _np(Rc).astype(float)
    ax.plot(x, R, marker="o", ms=4, color=RATE_COLORS["R"], label=r"$R$ (discriminative)")
    ax.plot(x, Rc, marker="s", ms=4, color=RATE_COLORS["Rc"], label=r"$R_c$ (compressive)")
    if delta_r:
        ax.plot(x, R - Rc, ls="--", color=RATE_COLORS["delta_r"], label=r"$\Delta R = R - R_c$")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rate (nats)")
    ax.set_ylim(bottom=0)
    if title:
        ax.set_title(title)
    if legend:
        ax.legend(frameon=True)
    return ax


def plot_subspace_accuracy(ax, frame, x: str = "noise", y: str = "accuracy", hue: str | None = "n_components",
                           xlabel: str | None = None, chance: float | None = None):
    """Nearest-subspace accuracy (mean and 95% band over the rows sharing x and hue) against x.

    frame: a pandas DataFrame with one row per (x, hue, repeat); ``chance`` draws 1/k as a line.
    """
    import seaborn as sns

    sns.lineplot(data=frame, x=x, y=y, hue=hue, style=hue, markers=True, dashes=False,
                 palette="viridis" if hue else None, ax=ax, errorbar=("ci", 95), n_boot=200, seed=0)
    if chance is not None:
        ax.axhline(chance, color="0.5", lw=1, ls=":", label="chance")
        ax.legend(title=hue)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(y)
    return ax
