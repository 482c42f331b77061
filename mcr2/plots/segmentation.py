"""Qualitative segmentation figures from run records: input, truth and predictions of the fixed
validation images a run keeps (report Figures 2a, 2b and 6), and the input multiplied by the
background head's predicted foreground mask (Figure 4).

The panels take Axes arrays (rows × images) and return them; masks and predictions are coloured
with :func:`~mcr2.plots.data.mask_to_rgb`, so a class has one colour in every chapter.
"""
from __future__ import annotations

import numpy as np
from matplotlib.patches import Patch

from .data import SEGMENTATION_COLORS, _as_picture, mask_to_rgb
from .style import PAGE_WIDTH_IN, SMALL_PT

__all__ = [
    "class_legend_handles", "plot_segmentation_panels", "segmentation_panels_figure", "image_grid", "label_rows",
    "plot_masked_inputs",
]


def _first(records):
    """The first seed's record: previews are the same fixed validation images for every seed."""
    return records[0] if isinstance(records, (list, tuple)) else records


def _artefact(record, key: str) -> np.ndarray:
    if key not in record.artefacts:
        raise KeyError(f"{record!r} has no artefact {key!r} (has: {', '.join(sorted(record.artefacts)) or 'none'}); "
                       f"segmentation runs write it at the end of training")
    return np.asarray(record.artefacts[key])


def _grid(axes, rows: int):
    grid = np.asarray(axes, dtype=object)
    if grid.ndim == 1:
        grid = grid.reshape(rows, -1)
    if grid.shape[0] != rows:
        raise ValueError(f"need {rows} rows of Axes, got an array of shape {grid.shape}")
    return grid


def _show(ax, picture, ylabel: str | None):
    ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if ylabel:
        ax.set_ylabel(ylabel, rotation=0, ha="right", va="center", fontsize=SMALL_PT)


def class_legend_handles(background: bool = True) -> list:
    """Legend patches of the 11 segmentation colours: "bg" (class 0) and digits 0..9 (classes 1..10)."""
    names = ["bg"] + [str(c) for c in range(10)]
    start = 0 if background else 1
    return [Patch(color=SEGMENTATION_COLORS[i], label=names[i]) for i in range(start, len(names))]


def plot_segmentation_panels(axes, runs: dict, n: int | None = None):
    """Rows: input, ground truth, then one row of predicted classes per run; columns: the fixed
    validation images every run keeps (``preview_*`` artefacts, the first seed's record).

    runs: ``{label: [records]}``; all must share their preview images (same validation data; where
    one run keeps more previews than another, the ones they share), e.g. MCR² and CE on MNIST
    (Figure 2a) or masked and unmasked MCR² on backgrounds (Figure 6).
    axes: an array (2 + len(runs), n) of Axes.
    """
    recs = {label: _first(r) for label, r in runs.items()}
    grid = _grid(axes, 2 + len(recs))
    first = next(iter(recs.values()))
    # Runs of different profiles keep different numbers of previews (the first validation images
    # in each case): the panels show the ones they share.
    shared = min(len(_artefact(rec, "preview_masks")) for rec in recs.values())
    images, masks = _artefact(first, "preview_images")[:shared], _artefact(first, "preview_masks")[:shared]
    for label, rec in recs.items():
        if not np.array_equal(_artefact(rec, "preview_masks")[:shared], masks):
            raise ValueError(f"run {label!r} previews other validation images than {next(iter(recs))!r}: "
                             f"compare runs of the same data only")
    n = min(n or grid.shape[1], grid.shape[1], len(images))
    rows = [("input", [_as_picture(x) for x in images]), ("truth", list(mask_to_rgb(masks)))]
    rows += [(label, list(mask_to_rgb(_artefact(rec, "preview_pred")))) for label, rec in recs.items()]
    for r, (name, pictures) in enumerate(rows):
        for i in range(grid.shape[1]):
            ax = grid[r, i]
            if i >= n:
                ax.set_axis_off()
                continue
            _show(ax, pictures[i], name if i == 0 else None)
    return axes


def segmentation_panels_figure(runs: dict, n: int | None = None):
    """A whole figure of :func:`plot_segmentation_panels` (input, truth, one row per run) with the
    class legend below it (Figures 2a, 2b, 6). Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    n = n or min(len(_artefact(_first(recs), "preview_masks")) for recs in runs.values())
    rows = 2 + len(runs)
    fig, axes = image_grid(rows, n, legend_rows=2)
    plot_segmentation_panels(axes, runs, n)
    fig.legend(handles=class_legend_handles(), loc="lower center", ncol=6, frameon=False,
               title="class (bg = background, else the digit)")
    return fig


def image_grid(rows: int, n: int, legend_rows: int = 0, label_in: float = 1.2, titles: bool = False,
               below_in: float = 0.0):
    """``rows`` × ``n`` image Axes at the page's width: a margin of ``label_in`` inches on the left
    for the row names (:func:`label_rows`), square cells, room above each row for a title line if
    ``titles``, and below for ``legend_rows`` rows of a figure legend (with its title) or
    ``below_in`` inches for a plot of the chapter's. Returns (fig, axes (rows, n))."""
    import matplotlib.pyplot as plt

    cell = (PAGE_WIDTH_IN - label_in) / n
    title_in = 0.25 if titles else 0.0
    legend_in = (0 if legend_rows == 0 else 0.3 * (legend_rows + 1) + 0.1) + below_in
    height = rows * (cell * 1.06 + title_in) + legend_in + 0.05
    fig, axes = plt.subplots(rows, n, figsize=(PAGE_WIDTH_IN, height), squeeze=False)
    fig.subplots_adjust(left=label_in / PAGE_WIDTH_IN, right=0.995, top=1 - (0.03 + title_in) / height,
                        bottom=legend_in / height, wspace=0.06, hspace=0.06 + title_in / cell)
    return fig, axes


def label_rows(axes, names) -> None:
    """Name each row of an image grid, left of its first image (``axes``: the first column)."""
    for ax, name in zip(axes, names):
        ax.text(-0.1, 0.5, name, transform=ax.transAxes, ha="right", va="center", fontsize=SMALL_PT)


def plot_masked_inputs(axes, records, n: int | None = None, threshold: float = 0.5):
    """Row 1: input; row 2: input × predicted foreground mask (the head's foreground probability
    above ``threshold``, i.e. its argmax), as in report Figure 4; row 3, if the Axes have it: the
    foreground probability itself. Needs a masked run (artefact ``preview_fg_prob``)."""
    rec = _first(records)
    images, prob = _artefact(rec, "preview_images").astype(np.float32), _artefact(rec, "preview_fg_prob").astype(np.float32)
    grid = np.asarray(axes, dtype=object)
    rows = grid.shape[0] if grid.ndim == 2 else 2
    grid = _grid(axes, rows)
    if rows not in (2, 3):
        raise ValueError(f"plot_masked_inputs draws 2 or 3 rows, got {rows}")
    n = min(n or grid.shape[1], grid.shape[1], len(images))
    masked = images * (prob > threshold)[:, None]  # (n, C, H, W) × (n, 1, H, W)
    for i in range(grid.shape[1]):
        if i >= n:
            for ax in grid[:, i]:
                ax.set_axis_off()
            continue
        _show(grid[0, i], _as_picture(images[i]), "input" if i == 0 else None)
        _show(grid[1, i], _as_picture(masked[i]), "input ×\npredicted mask" if i == 0 else None)
        if rows == 3:
            _show(grid[2, i], np.clip(prob[i], 0, 1), "P(foreground)" if i == 0 else None)
    return axes
