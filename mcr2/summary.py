"""Tables of run records: final metrics (mean ± sd over seeds) and the feature-space summary of
report Figure 7. Plain pandas, no plotting; the chapters and the claims ledger show them.

``runs`` is a dict ``{label: [RunRecord per seed]}`` throughout.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["settings_text", "mean_sd", "format_mean_sd", "final_metric", "final_metrics_table", "cosine_summary_table"]


def settings_text(runs: dict) -> str:
    """The settings a figure was rendered with, for its caption: profile, seeds, epochs and
    training images, e.g. "profile `smoke`, seed 0, 5 epochs, 300 training images"."""
    recs = [r for v in runs.values() for r in (v if isinstance(v, (list, tuple)) else [v])]
    profiles = sorted({r.config.profile for r in recs})
    seeds = sorted({r.config.seed for r in recs})
    epochs = sorted({r.config.optim.epochs for r in recs})
    images = sorted({r.record.get("data", {}).get("train", {}).get("N") for r in recs} - {None})
    parts = [f"profile {', '.join(f'`{p}`' for p in profiles)}",
             f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}",
             f"{'–'.join(map(str, epochs))} epochs"]
    if images:
        parts.append(f"{'–'.join(f'{n:,}' for n in images)} training images")
    return ", ".join(parts)


def mean_sd(values) -> tuple[float, float, int]:
    """Mean, sample standard deviation (NaN for one value) and count of the finite values."""
    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan, math.nan, 0
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else math.nan, int(x.size)


def format_mean_sd(mean: float, sd: float, digits: int = 3) -> str:
    """"0.912 ± 0.004", or "0.912" when there is no sd (one seed), "n/a" when there is no mean."""
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f}" if not math.isfinite(sd) else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def final_metric(records, column: str) -> tuple[float, float, int]:
    """Mean, sd and number of seeds of ``column`` at each record's last evaluated epoch."""
    values = []
    for r in records if isinstance(records, (list, tuple)) else [records]:
        if column in r.history.columns and r.history[column].notna().any():
            values.append(float(r.history[column].dropna().iloc[-1]))
    return mean_sd(values)


def final_metrics_table(runs: dict, columns: dict, report: dict | None = None, digits: int = 3,
                        numeric: bool = False) -> pd.DataFrame:
    """One row per run, one column per metric: "mean ± sd" of the final value over seeds.

    columns: ``{column name in the table: history column}``, e.g. ``{"MNIST": "mnist_acc"}``.
    report: optional ``{label: {table column: value}}``: the report's numbers (floats, or text
    such as "≈ 45–46"), added as
    "<column> (report)" beside ours for the columns the report gives. ``numeric=True`` gives the means as floats instead (no
    report columns), for computing with them.
    """
    rows, means = [], []
    for label, recs in runs.items():
        row, mean_row = {"run": label, "seeds": len(recs) if isinstance(recs, (list, tuple)) else 1}, {"run": label}
        for name, column in columns.items():
            m, s, _ = final_metric(recs, column)
            row[name] = format_mean_sd(m, s, digits)
            mean_row[name] = m
            if report is not None and any(name in values for values in report.values()):
                value = report.get(label, {}).get(name)
                row[f"{name} (report)"] = "—" if value is None else value if isinstance(value, str) else f"{value:g}"
        rows.append(row)
        means.append(mean_row)
    return pd.DataFrame(means if numeric else rows).set_index("run")


def cosine_summary_table(runs: dict, digits: int = 3, numeric: bool = False) -> pd.DataFrame:
    """Report Figure 7 in numbers: per run, mean within-class and between-class cosine similarity
    (:func:`~mcr2.plots.features.cosine_summary` of the recorded block sums) over all 11 classes
    and over the 10 digit classes only; "mean ± sd" over seeds (``numeric=True``: the means as
    floats)."""
    from .plots.features import cosine_summary

    rows, means = [], []
    for label, recs in runs.items():
        recs = recs if isinstance(recs, (list, tuple)) else [recs]
        row, mean_row = {"run": label, "seeds": len(recs)}, {"run": label}
        for scope, classes in (("all", None), ("digits", range(1, 11))):
            per_seed = [cosine_summary(r.artefacts["cosine_block_sums"], r.artefacts["cosine_block_pairs"], classes)
                        for r in recs]
            for key in ("within", "between", "gap"):
                m, s, _ = mean_sd([p[key] for p in per_seed])
                row[f"{key} ({scope})"] = format_mean_sd(m, s, digits)
                mean_row[f"{key} ({scope})"] = m
        rows.append(row)
        means.append(mean_row)
    return pd.DataFrame(means if numeric else rows).set_index("run")
