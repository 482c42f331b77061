"""Training curves of run records: validation accuracy (report Figures 1a, 1b and 5 right),
R and Rc per epoch (Figures 3 and 5 left), and the background head's accuracy with the epoch
masking switched on (the claim of Figure 4).

``runs`` is always a dict ``{label: [RunRecord per seed]}`` (a single record or a list is
accepted too); every curve is the mean over seeds, with a band of ± one standard deviation when
there is more than one seed. Each ``plot_*`` draws on the Axes it is given and returns it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from .style import METHOD_COLORS

__all__ = [
    "DOMAIN_STYLES",
    "epoch_stats",
    "plot_metric_curves",
    "plot_accuracy_curves",
    "plot_rate_curves_over_training",
    "plot_foreground_accuracy",
    "plot_background_head",
]

#: One line style per validation domain, the same wherever domains share an Axes.
DOMAIN_STYLES = {"mnist": "-", "usps": "--"}
_DOMAIN_NAMES = {"mnist": "MNIST", "usps": "USPS"}


def _as_list(records) -> list:
    return list(records) if isinstance(records, (list, tuple)) else [records]


def _color(label: str, colors: dict | None, i: int):
    if colors and label in colors:
        return colors[label]
    if label in METHOD_COLORS:
        return METHOD_COLORS[label]
    return f"C{i}"


def epoch_stats(records, column: str) -> pd.DataFrame:
    """Per epoch: mean, sd (NaN with one seed) and number of seeds of ``column`` of the histories.

    Epochs where a record did not evaluate (``eval.every`` > 1) are skipped for that record.
    Raises a KeyError naming the column and the columns that exist if no record has it.
    """
    frames = []
    for r in _as_list(records):
        if column in r.history.columns:
            frames.append(r.history[["epoch", column]].dropna())
    if not frames:
        have = sorted(set().union(*(r.history.columns for r in _as_list(records))))
        raise KeyError(f"no record has the history column {column!r}; columns: {', '.join(have)}")
    stats = pd.concat(frames).groupby("epoch")[column].agg(["mean", "std", "count"]).reset_index()
    return stats.rename(columns={"std": "sd", "count": "n"})


def _curve(ax, records, column, color, ls="-", label=None, marker=None):
    s = epoch_stats(records, column)
    ax.plot(s["epoch"], s["mean"], color=color, ls=ls, marker=marker, ms=3, label=label)
    if (s["n"] > 1).any():
        ax.fill_between(s["epoch"], s["mean"] - s["sd"].fillna(0), s["mean"] + s["sd"].fillna(0),
                        color=color, alpha=0.2, lw=0)
    return s


def _epoch_axis(ax, runs):
    epochs = max(int(r.history["epoch"].max()) for recs in runs.values() for r in _as_list(recs))
    ax.set_xlabel("epoch")
    ax.set_xlim(0.8, epochs + 0.2)
    if epochs <= 12:
        ax.set_xticks(range(1, epochs + 1))


def _seed_note(runs) -> str:
    n = {len(_as_list(v)) for v in runs.values()}
    return "" if n == {1} else "\n(mean ± sd over seeds)"  # a second line: one would outgrow a short axis


def plot_metric_curves(ax, runs: dict, column: str, ylabel: str | None = None, colors: dict | None = None,
                       title: str | None = None, legend: bool = True):
    """One history column over epochs for several runs: ``runs`` = ``{label: [records]}``."""
    runs = {k: _as_list(v) for k, v in runs.items()}
    for i, (label, recs) in enumerate(runs.items()):
        _curve(ax, recs, column, _color(label, colors, i), label=label, marker="o")
    _epoch_axis(ax, runs)
    ax.set_ylabel((ylabel or column) + _seed_note(runs))
    if title:
        ax.set_title(title)
    if legend:
        ax.legend(frameon=True)
    return ax


def plot_accuracy_curves(ax, runs: dict, domains=("mnist", "usps"), colors: dict | None = None,
                         title: str | None = None, ylim=(0, 1.0)):
    """Validation accuracy ``<domain>_acc`` over epochs, colour per run, line style per domain
    (report Figure 1a: trained on DIGITS; Figure 1b: trained on MNIST only)."""
    runs = {k: _as_list(v) for k, v in runs.items()}
    handles = []
    for i, (label, recs) in enumerate(runs.items()):
        color = _color(label, colors, i)
        for dom in domains:
            _curve(ax, recs, f"{dom}_acc", color, ls=DOMAIN_STYLES.get(dom, ":"), marker="o")
        handles.append(Line2D([], [], color=color, label=label))
    handles += [Line2D([], [], color="0.3", ls=DOMAIN_STYLES.get(d, ":"), label=f"{_DOMAIN_NAMES.get(d, d)} val")
                for d in domains]
    _epoch_axis(ax, runs)
    ax.set_ylim(*ylim)
    ax.set_ylabel("validation accuracy" + _seed_note(runs))
    if title:
        ax.set_title(title)
    ax.legend(handles=handles, frameon=True, loc="best")
    return ax


def plot_rate_curves_over_training(ax, runs: dict, colors: dict | None = None, title: str | None = None,
                                   delta_r: bool = False):
    """R (discriminative, solid) and Rc (compressive, dashed), the per-epoch mean over training
    steps, for several runs (report Figures 3 and 5 left). ``delta_r`` adds ΔR = R − Rc dotted."""
    runs = {k: _as_list(v) for k, v in runs.items()}
    handles = []
    for i, (label, recs) in enumerate(runs.items()):
        color = _color(label, colors, i)
        _curve(ax, recs, "R", color, ls="-", marker="o")
        _curve(ax, recs, "Rc", color, ls="--", marker="s")
        if delta_r:
            _curve(ax, recs, "delta_r", color, ls=":")
        handles.append(Line2D([], [], color=color, label=label))
    handles += [Line2D([], [], color="0.3", ls="-", marker="o", ms=3, label=r"$R$"),
                Line2D([], [], color="0.3", ls="--", marker="s", ms=3, label=r"$R_c$")]
    if delta_r:
        handles.append(Line2D([], [], color="0.3", ls=":", label=r"$\Delta R$"))
    _epoch_axis(ax, runs)
    ax.set_ylabel("rate (nats)" + _seed_note(runs))
    ax.set_ylim(bottom=0)
    if title:
        ax.set_title(title)
    ax.legend(handles=handles, frameon=True, ncol=2)
    return ax


def plot_foreground_accuracy(ax, runs: dict, domain: str = "mnist", colors: dict | None = None,
                             title: str | None = None):
    """Non-background pixel accuracy (``<domain>_foreground_acc``: truth-foreground pixels
    labelled with the right digit) over epochs, e.g. masked vs unmasked MCR² vs CE (Figure 5 right)."""
    return plot_metric_curves(ax, runs, f"{domain}_foreground_acc", ylabel="non-background pixel accuracy",
                              colors=colors, title=title)


def plot_background_head(ax, records, threshold: float | None = None, color: str | None = None,
                         domain: str | None = "mnist", title: str | None = None, collapsed_epochs=None):
    """Background-head accuracy over epochs (report §2.2.1, the claim of Figure 4).

    Solid: ``bg_check_acc``, on the fixed check images that drive the switch; dotted (if
    ``domain`` is given and recorded): ``<domain>_bg_head_acc`` on the whole validation split.
    The threshold (default: the record's ``loss.mask_threshold``) is a horizontal line, and each
    seed's ``events.mask_switch_epoch`` a vertical one (MCR² is on from the next epoch).
    ``collapsed_epochs``: epochs at which the head called (almost) every pixel background, shaded
    grey. The legend sits below the Axes, where it covers no curve.
    """
    records = _as_list(records)
    color = color or METHOD_COLORS["mcr2_masked"]
    _curve(ax, records, "bg_check_acc", color, marker="o", label="switch check images")
    col = f"{domain}_bg_head_acc" if domain else None
    if col and any(col in r.history.columns for r in records):
        _curve(ax, records, col, color, ls=":", label=f"all {_DOMAIN_NAMES.get(domain, domain)} validation pixels")
    if threshold is None:
        threshold = records[0].config.loss.mask_threshold
    ax.axhline(threshold, color="0.4", lw=1, ls="--", label=f"threshold {threshold:g}")
    switches = sorted({r.record.get("events", {}).get("mask_switch_epoch") for r in records} - {None})
    for j, e in enumerate(switches):
        ax.axvline(e, color="#d62728", lw=1.2, ls="-.", label="masking switched on after" if j == 0 else None)
    for j, e in enumerate(sorted(set(collapsed_epochs or ()))):
        ax.axvspan(e - 0.5, e + 0.5, color="0.85", zorder=0,
                   label="head calls all pixels background" if j == 0 else None)
    _epoch_axis(ax, {"": records})
    lo = min(float(np.nanmin(epoch_stats(records, "bg_check_acc")["mean"])), threshold)
    ax.set_ylim(max(0.0, lo - 0.05), 1.005)
    ax.set_ylabel("background-head accuracy" + _seed_note({"": records}))
    if title:
        ax.set_title(title)
    # Below the Axes: inside, any corner covers a curve (at paper scale the head falls after the switch).
    ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    return ax
