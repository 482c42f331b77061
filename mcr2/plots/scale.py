"""The scale a build of the book renders each experiment at (the introduction's figure): per
experiment, the profile and the number of seeds, against the seeds the paper profile asks for.

``plot_profile_plan`` draws on the Axes it is given and returns it.
"""
from __future__ import annotations

import numpy as np

from .style import SMALL_PT

__all__ = ["PROFILE_COLORS", "plot_profile_plan"]

#: One colour per profile wherever a figure says which scale a number comes from.
PROFILE_COLORS = {"paper": "#1f77b4", "smoke": "#bdbdbd", "custom": "#e6b422"}


def plot_profile_plan(ax, plan: dict, paper_seeds: int | None = None, title: str | None = None):
    """One horizontal bar per experiment: the seeds it is rendered with, coloured by profile.

    plan: ``{name: (profile, [seeds])}``, as :func:`mcr2.engine.profile_plan` returns it (first
    experiment on top). paper_seeds: the seeds the paper profile asks for (a dashed line), e.g.
    ``len(mcr2.experiments.PROFILE_SEEDS["paper"])``.
    """
    if not plan:
        raise ValueError("an empty plan: no experiment to draw")
    names = list(plan)
    y = np.arange(len(names))[::-1]
    counts = [len(seeds) for _, seeds in plan.values()]
    profiles = [p for p, _ in plan.values()]
    ax.barh(y, counts, color=[PROFILE_COLORS.get(p, "0.5") for p in profiles], height=0.7)
    for yi, n, p in zip(y, counts, profiles):
        ax.text(n + 0.05, yi, f"{p}, {n} seed{'s' if n != 1 else ''}", va="center", fontsize=SMALL_PT)
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=SMALL_PT)
    top = max(counts + [paper_seeds or 0])
    if paper_seeds:
        ax.axvline(paper_seeds, color="0.3", ls="--", lw=1)
        ax.text(paper_seeds, y.max() + 0.6, f" paper profile: {paper_seeds} seeds", fontsize=SMALL_PT, va="bottom")
    ax.set_xlim(0, top + 1.6)
    ax.set_ylim(-0.6, len(names) - 0.4 + (0.6 if paper_seeds else 0))
    ax.set_xticks(range(0, top + 1))
    ax.set_xlabel("seeds rendered")
    ax.grid(axis="y", visible=False)
    if title:
        ax.set_title(title)
    return ax
