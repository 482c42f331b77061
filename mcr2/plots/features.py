"""The feature space of a segmentation run (report Figure 7): the cosine similarity of random
validation pixel features sorted by label, as a heatmap. The numbers that summarise it (mean
|cos| within a class against between two classes, over all the run's sampled pixels) live in
:mod:`mcr2.summary` (no plotting there); they are re-exported here so that
``from mcr2.plots import cosine_summary`` keeps working.

The heatmap draws the subset of features a run keeps (``feature_sample``, ``feature_labels``).
Class 0 is background, class c + 1 digit c; ``classes=range(1, 11)`` (or
``exclude_background=True``) draws the digits only, as the report's masked panel.
"""
from __future__ import annotations

import numpy as np

from ..summary import cosine_block_means, cosine_blocks, cosine_summary
from .style import SMALL_PT

__all__ = ["cosine_blocks", "cosine_block_means", "cosine_summary", "plot_cosine_similarity", "plot_feature_cosine"]

_NAMES = ["bg"] + [str(c) for c in range(10)]
_MAX_LABELS = 20  # class labels along an axis at most: closer ones would overlap at SMALL_PT on a half-page panel


def plot_cosine_similarity(ax, Z, labels, title: str | None = None, cbar: bool = True, max_samples: int = 1000,
                           absolute: bool = True, class_names=None, xlabel: str | None = None):
    """Cosine similarity between the rows of Z (m, d), sorted by label, class blocks outlined.

    At most ``max_samples`` rows are drawn, an even stride through the label-sorted rows, so each
    class keeps its share. ``absolute`` draws |cos| (0 = orthogonal), else the signed cosine.
    ``class_names[c]`` labels class c's block (default: its number).
    """
    Z = np.asarray(Z.detach().cpu() if hasattr(Z, "detach") else Z, dtype=np.float64)
    labels = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels, dtype=np.int64)
    if len(labels) == 0:
        raise ValueError("no features to draw")
    order = np.argsort(labels, kind="stable")
    if len(order) > max_samples:
        order = order[np.linspace(0, len(order) - 1, max_samples).round().astype(int)]
    Zs, ls = Z[order], labels[order]
    Zs = Zs / np.clip(np.linalg.norm(Zs, axis=1, keepdims=True), 1e-12, None)
    cos = Zs @ Zs.T  # (m, m)
    if absolute:
        cos = np.abs(cos)
    m = len(ls)
    # imshow resamples with anti-aliasing: a 1000×1000 matrix on a few hundred screen pixels
    # shows block averages instead of moiré.
    im = ax.imshow(cos, cmap="magma" if absolute else "RdBu_r", vmin=0 if absolute else -1, vmax=1,
                   interpolation="antialiased", extent=(0, m, m, 0))
    edges = np.flatnonzero(np.diff(ls)) + 1
    for e in edges:
        ax.axhline(e, color="#00e5ff", lw=0.8)
        ax.axvline(e, color="#00e5ff", lw=0.8)
    starts, stops = np.r_[0, edges], np.r_[edges, m]
    names = [class_names[c] if class_names is not None and c < len(class_names) else str(c) for c in ls[starts]]
    # One label per class block, at its centre; a block too narrow to hold one beside its
    # neighbour's label goes unlabelled rather than overprinted.
    centres, shown = (starts + stops) / 2, []
    for i, c in enumerate(centres):
        if not shown or c - centres[shown[-1]] >= m / _MAX_LABELS:
            shown.append(i)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_ticks(centres[shown])
        axis.set_ticklabels([names[i] for i in shown], fontsize=SMALL_PT)
    ax.tick_params(length=0)
    ax.grid(False)
    ax.set_xlabel(xlabel or "class")
    if cbar:
        ax.figure.colorbar(im, ax=ax, shrink=0.8, label="|cos|" if absolute else "cos")
    if title:
        ax.set_title(title)
    return ax


def plot_feature_cosine(ax, records, exclude_background: bool = False, title: str | None = None,
                        cbar: bool = True, max_samples: int = 1000, absolute: bool = True, classes=None):
    """Cosine similarity between the stored validation pixel features of a run, sorted by label,
    class blocks outlined and labelled ("bg", "0".."9"): report Figure 7.

    ``classes``: the classes drawn (default all), e.g. ``range(1, 11)`` for the ten digits.
    ``exclude_background=True`` is the same as every class but 0: the digits only, as the report's
    masked panel (background is most pixels, so it would fill most of the matrix). Uses the first
    seed's record; see :func:`plot_cosine_similarity` for the rest.
    """
    rec = records[0] if isinstance(records, (list, tuple)) else records
    for key in ("feature_sample", "feature_labels"):
        if key not in rec.artefacts:
            raise KeyError(f"{rec!r} has no artefact {key!r}: only segmentation runs store a feature sample")
    Z = np.asarray(rec.artefacts["feature_sample"], dtype=np.float64)
    labels = np.asarray(rec.artefacts["feature_labels"], dtype=np.int64)
    if exclude_background:
        classes = [c for c in (range(rec.config.num_classes) if classes is None else classes) if c != 0]
    if classes is not None:
        keep = np.isin(labels, np.asarray(list(classes), dtype=np.int64))
        Z, labels = Z[keep], labels[keep]
    if len(labels) == 0:
        raise ValueError(f"{rec!r}: no features of classes {classes} to draw")
    shown = min(len(labels), max_samples)
    return plot_cosine_similarity(ax, Z, labels, title=title, cbar=cbar, max_samples=max_samples, absolute=absolute,
                                  class_names=_NAMES, xlabel=f"class ({shown:,} pixels sorted by label)")
