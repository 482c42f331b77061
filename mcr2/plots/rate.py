"""Figures of the chapter "Rate reduction in one page": R and Rc along a sweep, nearest-subspace
accuracy, the cosine similarity of features sorted by label (the report's Figure 7 layout).

Each ``plot_*`` draws on the Axes it is given and returns it; nothing here touches rcParams or
opens a window.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["RATE_COLORS", "plot_rate_curves", "plot_subspace_accuracy", "plot_cosine_similarity"]

#: One colour per MCR² term, the same wherever R, Rc and ΔR are drawn.
RATE_COLORS = {"R": "#1f77b4", "Rc": "#d62728", "delta_r": "#2ca02c"}


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def plot_rate_curves(ax, x, R, Rc, xlabel: str, title: str | None = None, delta_r: bool = True):
    """R (discriminative), Rc (compressive) and, if ``delta_r``, ΔR = R − Rc against a swept x."""
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
    ax.legend(frameon=True, fontsize="small")
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
        ax.legend(title=hue, fontsize="small")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(y)
    return ax


def plot_cosine_similarity(ax, Z, labels, title: str | None = None, cbar: bool = True, max_samples: int = 400):
    """|cos| between rows of Z (m, d), rows sorted by label; class blocks outlined.

    Keeps at most ``max_samples`` rows, an equal stride through each class (deterministic).
    """
    import seaborn as sns

    Z, labels = _np(Z).astype(np.float64), _np(labels).astype(np.int64)
    order = np.argsort(labels, kind="stable")
    if len(order) > max_samples:
        order = order[np.linspace(0, len(order) - 1, max_samples).round().astype(int)]
    Zs, ls = Z[order], labels[order]
    Zs = Zs / np.clip(np.linalg.norm(Zs, axis=1, keepdims=True), 1e-12, None)
    cos = np.abs(Zs @ Zs.T)  # (m, m)
    sns.heatmap(cos, ax=ax, vmin=0, vmax=1, cmap="magma", square=True, cbar=cbar,
                xticklabels=False, yticklabels=False, cbar_kws={"label": "|cos|", "shrink": 0.8} if cbar else None)
    edges = np.flatnonzero(np.diff(ls)) + 1
    for e in edges:
        ax.axhline(e, color="w", lw=0.8)
        ax.axvline(e, color="w", lw=0.8)
    ticks = [(a + b) / 2 for a, b in zip(np.r_[0, edges], np.r_[edges, len(ls)])]
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(c) for c in np.unique(ls)])
    ax.set_xlabel("class")
    if title:
        ax.set_title(title)
    return ax

