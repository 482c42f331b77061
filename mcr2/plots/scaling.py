"""Cost and accuracy of MCR² against the resolution it is computed at (the report's future work:
MCR² on features pooled to fewer cells, :func:`mcr2.loss.pooled_rows`).

Cost tables are DataFrames with one row per measurement and the columns of
:func:`mcr2.profiling.measure_loss`: ``size`` (cells per side), ``rows`` (m), ``pixels`` (B·H·W),
``time_s`` and ``memory_mib``, plus ``share`` (the loss's share of a training step) and
``speedup`` where a plot needs them. A column ``<c>_lo`` / ``<c>_hi`` beside ``<c>`` (the range of
interleaved repeats) is drawn as an error bar. Runs are ``{size: [RunRecord per seed]}``. Each
``plot_*`` draws on the Axes it is given and returns it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, NullFormatter

__all__ = [
    "resolution_label",
    "plot_cost_vs_resolution",
    "plot_speedup_vs_resolution",
    "plot_cost_vs_pixels",
    "plot_share_vs_pixels",
    "final_run_values",
    "plot_accuracy_vs_resolution",
    "plot_throughput_vs_resolution",
]

_COST = {"time_s": ("forward+backward time (ms)", 1e3), "memory_mib": ("peak memory (MiB)", 1.0)}


def resolution_label(size: int, full: int = 28) -> str:
    """``"28×28 (full)"`` or ``"14×14"``: the name of a resolution on axes and in legends."""
    return f"{size}×{size}" + (" (full)" if size == full else "")


def _resolution_axis(ax, sizes, full: int = 28):
    sizes = sorted(set(int(s) for s in sizes))
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes)
    ax.set_xticklabels([resolution_label(s, full) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("resolution MCR² is computed at")


def _line(ax, t: pd.DataFrame, x: str, column: str, scale: float = 1.0, shift: float = 1.0, **kw):
    """A line through ``t[column]``, with error bars from ``<column>_lo`` / ``_hi`` if present;
    ``shift`` multiplies x (on a log axis, lines side by side keep their bars apart)."""
    xs, y = t[x].to_numpy(float) * shift, t[column].to_numpy(float) * scale
    if f"{column}_lo" in t and f"{column}_hi" in t:
        lo, hi = t[f"{column}_lo"].to_numpy(float) * scale, t[f"{column}_hi"].to_numpy(float) * scale
        return ax.errorbar(xs, y, yerr=[y - lo, hi - y], capsize=3, marker="o", **kw)
    return ax.plot(xs, y, marker="o", **kw)


def _shift(i: int, n: int) -> float:
    """x factor of line i of n on a log axis: ±4 % steps around the true position."""
    return 1.04 ** (i - (n - 1) / 2)


def _size_colors(sizes) -> dict:
    return {s: f"C{i}" for i, s in enumerate(sorted(set(int(s) for s in sizes), reverse=True))}


def plot_cost_vs_resolution(ax, table: pd.DataFrame, column: str = "time_s", full: int = 28):
    """MCR² cost (``time_s`` in ms or ``memory_mib``) against resolution, for one batch size.

    With several batch sizes in ``table`` (column ``pixels``) one line per batch size.
    """
    if column not in _COST:
        raise KeyError(f"column {column!r}: choose one of {', '.join(_COST)}")
    ylabel, scale = _COST[column]
    groups = table.groupby("pixels") if table["pixels"].nunique() > 1 else [(None, table)]
    for i, (pixels, t) in enumerate(groups):
        t = t.sort_values("size")
        label = None if pixels is None else f"{int(pixels):,} pixels"
        _line(ax, t, "size", column, scale, color=f"C{i}", label=label)
    _resolution_axis(ax, table["size"], full)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    if table["pixels"].nunique() > 1:
        ax.legend()
    return ax


def plot_speedup_vs_resolution(ax, table: pd.DataFrame, full: int = 28, color="C0"):
    """How many times faster than at full resolution the loss runs, per resolution, for one batch
    size: ``speedup`` (median of paired ratios) with its range (``speedup_lo`` / ``_hi``); the dotted
    line at 1 is "no difference". A bar that crosses it is no resolved difference."""
    t = table.sort_values("size")
    _line(ax, t, "size", "speedup", color=color)
    ax.axhline(1.0, color="0.4", ls=":", lw=1)
    _resolution_axis(ax, table["size"], full)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel("× faster than full resolution")
    return ax


def plot_cost_vs_pixels(ax, table: pd.DataFrame, column: str = "time_s", full: int = 28):
    """MCR² cost against pixels per batch (B·28·28), one line per resolution, log-log axes (the
    lines nudged apart along x so that their bars do not cover each other)."""
    if column not in _COST:
        raise KeyError(f"column {column!r}: choose one of {', '.join(_COST)}")
    ylabel, scale = _COST[column]
    colors = _size_colors(table["size"])
    groups = sorted(table.groupby("size"), key=lambda kv: -kv[0])
    for i, (size, t) in enumerate(groups):
        t = t.sort_values("pixels")
        _line(ax, t, "pixels", column, scale, shift=_shift(i, len(groups)), color=colors[int(size)],
              label=resolution_label(int(size), full))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("pixels per batch")
    ax.set_ylabel(ylabel)
    ax.legend(title="MCR² at")
    return ax


def plot_share_vs_pixels(ax, table: pd.DataFrame, negligible: float | None = 0.05, full: int = 28):
    """The loss's share of a training step (column ``share``, 0–1) against pixels per batch, one line
    per resolution; ``negligible`` draws the threshold below which we call the loss negligible."""
    colors = _size_colors(table["size"])
    groups = sorted(table.groupby("size"), key=lambda kv: -kv[0])
    for i, (size, t) in enumerate(groups):
        t = t.sort_values("pixels")
        _line(ax, t, "pixels", "share", 100.0, shift=_shift(i, len(groups)), color=colors[int(size)],
              label=resolution_label(int(size), full))
    if negligible is not None:
        ax.axhline(100 * negligible, color="0.4", ls=":", lw=1, label=f"{100 * negligible:g}%")
    ax.set_xscale("log")
    ax.set_xlabel("pixels per batch")
    ax.set_ylabel("MCR² share of a step (%)")
    ax.set_ylim(0, 100)
    ax.legend(title="MCR² at")
    return ax


def _as_list(records) -> list:
    return list(records) if isinstance(records, (list, tuple)) else [records]


def final_run_values(runs: dict, column: str = "mnist_foreground_acc") -> pd.DataFrame:
    """Per resolution: mean, sd and n over seeds of the last evaluated ``column`` of the histories
    (or, if ``column`` is not a history column, of the run record's field, e.g. ``train_images_per_s``)."""
    rows = []
    for size, records in runs.items():
        values = []
        for r in _as_list(records):
            if column in r.history.columns:
                values.append(float(r.history[column].dropna().iloc[-1]))
            elif column in r.record:
                values.append(float(r.record[column]))
            else:
                raise KeyError(f"run {r.config.name} has no history column or record field {column!r}")
        v = np.asarray(values)
        rows.append({"size": int(size), "mean": v.mean(), "sd": v.std(ddof=1) if len(v) > 1 else np.nan, "n": len(v)})
    return pd.DataFrame(rows).sort_values("size").reset_index(drop=True)


def _plot_final(ax, runs, column, ylabel, color, full):
    s = final_run_values(runs, column)
    ax.errorbar(s["size"].to_numpy(float), s["mean"].to_numpy(float), yerr=s["sd"].fillna(0).to_numpy(float),
                marker="o", color=color, capsize=3)
    _resolution_axis(ax, s["size"], full)
    ax.set_ylabel(ylabel + ("\n(mean ± sd over seeds)" if (s["n"] > 1).any() else ""))
    return ax


def plot_accuracy_vs_resolution(ax, runs: dict, column: str = "mnist_foreground_acc",
                                ylabel: str = "final non-background pixel acc.", color="C0", full: int = 28):
    """Final validation accuracy (last evaluated epoch) of runs trained with MCR² at each resolution."""
    _plot_final(ax, runs, column, ylabel, color, full)
    ax.set_ylim(0, 1)
    return ax


def plot_throughput_vs_resolution(ax, runs: dict, color="C1", full: int = 28):
    """Training throughput (``train_images_per_s`` of the run records) against resolution."""
    _plot_final(ax, runs, "train_images_per_s", "training images/s", color, full)
    ax.set_ylim(bottom=0)
    return ax
