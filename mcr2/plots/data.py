"""Figures of the chapter "The datasets": samples with masks, class counts, mean images, digit size.

Each ``plot_*`` draws on the Axes it is given and returns it; nothing here touches rcParams or
opens a window. ``SEGMENTATION_CMAP`` / :func:`mask_to_rgb` fix the colours of the 11
segmentation classes (0 background, c+1 digit c) so every chapter colours masks and
predictions the same way.
"""
from __future__ import annotations

import numpy as np
import torch
from matplotlib.colors import ListedColormap, to_rgb

from .style import SMALL_PT

__all__ = [
    "SEGMENTATION_COLORS",
    "SEGMENTATION_CMAP",
    "mask_to_rgb",
    "digit_extent",
    "plot_samples",
    "plot_class_counts",
    "plot_mean_image",
    "plot_digit_size",
]

_DIGIT_HEX = (  # matplotlib's tab10, one per digit 0..9
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)
# (11, 3) RGB in [0, 1]: row 0 background (near black), row c+1 digit c.
SEGMENTATION_COLORS = np.array([(0.08, 0.08, 0.08)] + [to_rgb(h) for h in _DIGIT_HEX])
SEGMENTATION_CMAP = ListedColormap(SEGMENTATION_COLORS, name="mcr2_segmentation")

_MASK_THRESHOLD = 0.3  # = mcr2.data.MASK_THRESHOLD; repeated so plotting needs no data import


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def mask_to_rgb(mask) -> np.ndarray:
    """Class map (..., H, W) with values 0..10 -> RGB (..., H, W, 3) in SEGMENTATION_CMAP's colours."""
    m = _np(mask).astype(np.int64)
    return SEGMENTATION_COLORS[np.clip(m, 0, len(SEGMENTATION_COLORS) - 1)]


def _as_picture(image) -> np.ndarray:
    """(C, H, W) with C in {1, 3}, or (H, W) -> something imshow draws."""
    x = _np(image).astype(np.float32)
    if x.ndim == 3:
        x = x[0] if x.shape[0] == 1 else np.transpose(x, (1, 2, 0))  # (C, H, W) -> (H, W, C)
    return np.clip(x, 0, 1)


def digit_extent(images) -> torch.Tensor:
    """Bounding-box height in pixels of the digit pixels (>= 0.3) per image: int64 (N,), 0 if none.

    images: digit images (N, 1, H, W) or (N, H, W) in [0, 1] (not composites over backgrounds).
    """
    x = torch.as_tensor(_np(images))
    if x.ndim == 4:
        if x.shape[1] != 1:
            raise ValueError(f"digit_extent needs grayscale digits (N, 1, H, W), got {tuple(x.shape)}")
        x = x[:, 0]
    rows = (x >= _MASK_THRESHOLD).any(dim=-1)  # (N, H, W) -> (N, H)
    h = rows.shape[1]
    first = rows.int().argmax(dim=1)
    last = h - 1 - rows.flip(1).int().argmax(dim=1)
    return torch.where(rows.any(dim=1), last - first + 1, 0).to(torch.int64)


def plot_samples(axes, images, masks=None, labels=None):
    """A row of images and, if ``masks`` is given, their masks in the row below.

    axes: n Axes (images only) or 2 x n Axes (a (2, n) array, or a flat list of 2n: images first).
    images: (N, C, H, W) with C in {1, 3} or (N, H, W); masks: (N, H, W) classes 0..10;
    labels: optional titles (e.g. digit labels), one per image.
    """
    flat = np.asarray(axes, dtype=object).ravel()
    rows = 1 if masks is None else 2
    n = len(flat) // rows
    if n == 0:
        raise ValueError("plot_samples needs at least one Axes per row")
    for i in range(min(n, len(images))):
        ax = flat[i]
        picture = _as_picture(images[i])
        ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
        if labels is not None:
            ax.set_title(str(int(labels[i]) if np.ndim(_np(labels[i])) == 0 else labels[i]), fontsize=SMALL_PT)
        ax.set_axis_off()
        if masks is not None:
            ax = flat[n + i]
            ax.imshow(mask_to_rgb(masks[i]), interpolation="nearest")
            ax.set_axis_off()
    return axes


def plot_class_counts(ax, counts_by_domain: dict):
    """Grouped bars: number of images per class, one bar colour per domain."""
    names = list(counts_by_domain)
    counts = [_np(counts_by_domain[k]).astype(float) for k in names]
    k = max(len(c) for c in counts)
    width = 0.8 / max(len(names), 1)
    x = np.arange(k)
    for j, (name, c) in enumerate(zip(names, counts)):
        ax.bar(x[: len(c)] - 0.4 + width * (j + 0.5), c, width=width, label=name)
    ax.set_xticks(x)
    ax.set_xlabel("class")
    ax.set_ylabel("images")
    ax.legend(frameon=False)
    return ax


def plot_mean_image(ax, images, title):
    """The mean image of a set (N, C, H, W) or (N, H, W)."""
    mean = _np(images).astype(np.float64).mean(axis=0)
    picture = _as_picture(mean)
    ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title)
    ax.set_axis_off()
    return ax


def plot_digit_size(ax, sizes_by_domain: dict):
    """Distribution of digit size (e.g. :func:`digit_extent`) per domain, as step histograms."""
    sizes = {k: _np(v).astype(float).ravel() for k, v in sizes_by_domain.items()}
    top = max([float(np.ceil(s.max())) for s in sizes.values() if s.size] + [1.0])
    bins = np.arange(0, top + 2) - 0.5  # one bin per integer size, shared by all domains
    for name, s in sizes.items():
        ax.hist(s, bins=bins, histtype="step", density=True, linewidth=1.5, label=name)
    ax.set_xlabel("digit height (pixels, bounding box of pixels >= 0.3)")
    ax.set_ylabel("fraction of images")
    ax.legend(frameon=False)
    return ax
