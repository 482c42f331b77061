"""Figure of the chapter "Claims ledger": each number a claim rests on, ours against the report's.

``plot_claims`` draws on the Axes it is given and returns it; nothing here touches rcParams or
opens a window.
"""
from __future__ import annotations

import numpy as np

from .style import SMALL_PT

__all__ = ["plot_claims"]


def plot_claims(ax, quantities, title: str | None = None):
    """Dot plot of our value ÷ the report's value, one row per quantity, grouped by claim.

    quantities: :func:`mcr2.claims.claim_quantities`'s table (claim, quantity, report, ours, sd, n);
    rows without a report value are left out; the colour and the label's first number give the
    claim. The dotted line at 1 is the report; bars are ± one seed-to-seed sd; each row is
    annotated with both numbers. Accuracies and coding rates (which grow with the feature
    dimension d) share one axis because each is divided by its own report value.
    """
    import matplotlib.pyplot as plt

    q = quantities[np.isfinite(quantities["report"].astype(float)) & (quantities["report"] != 0)].reset_index(drop=True)
    if q.empty:
        raise ValueError("no quantity with a report value to plot")
    ratio = q["ours"] / q["report"]
    err = (q["sd"].fillna(0) / q["report"].abs()).to_numpy()
    y = np.arange(len(q))[::-1]  # first claim on top
    colors = plt.get_cmap("tab10")
    claims = q["claim"].to_numpy()
    for claim in q["claim"].unique():
        sel = claims == claim
        ax.errorbar(ratio[sel], y[sel], xerr=err[sel], fmt="o", ms=6, capsize=3,
                    color=colors((int(claim) - 1) % 10))
    for yi in y[1:][claims[1:] != claims[:-1]]:  # a line between claims (y falls as rows go down)
        ax.axhline(yi + 0.5, color="0.8", lw=0.8)
    ax.axvline(1.0, color="0.3", lw=1, ls=":")
    labels = q["label"] if "label" in q else q["claim"]  # "2a", "2b": the ledger line, not only its claim
    ax.set_yticks(y, [f"{c} · {name}" for c, name in zip(labels, q["quantity"])])
    finite = ratio[np.isfinite(ratio)]
    hi = max(1.2, float(finite.max()) * 1.05) if len(finite) else 1.2
    ax.set_xlim(-0.05 * hi, hi * 2.0)  # room on the right for the annotations at the page's font size
    ticks = ax.get_xticks()
    ax.set_xticks(ticks[(ticks >= 0) & (ticks <= hi)])  # no ratios under the annotations
    for yi, ours, rep in zip(y, q["ours"], q["report"]):
        fmt = ".3f" if abs(rep) < 2 else ".1f"  # accuracies to 3 decimals, rates and epochs to 1
        text = (f"{ours:{fmt}}" if np.isfinite(ours) else "n/a") + f" (report {rep:{fmt}})"
        # Right-aligned at the Axes' right edge: however long the tick labels, the text stays inside.
        ax.annotate(text, xy=(1, yi), xycoords=("axes fraction", "data"), xytext=(-4, 0), textcoords="offset points",
                    ha="right", va="center", fontsize=SMALL_PT, color="0.25")
    ax.set_xlabel("ours ÷ the report's (dotted: equal)")
    ax.grid(axis="y", visible=False)
    if title:
        ax.set_title(title)
    return ax
