"""Numbers of run records: final metrics (mean ± sd over seeds) and the feature-space summary of
report Figure 7 (block mean cosine similarities), as values and as tables. Plain numpy and pandas,
no plotting; the chapters, the figures and the claims ledger (:mod:`mcr2.claims`) all use these.

``runs`` is a dict ``{label: [RunRecord per seed]}`` throughout.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = [
    "settings_text",
    "mean_sd",
    "format_mean_sd",
    "mean_sd_text",
    "final_value",
    "final_metric",
    "final_metrics_table",
    "cosine_blocks",
    "cosine_block_means",
    "cosine_summary",
    "cosine_summary_table",
]


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


def mean_sd_text(values, digits: int = 3) -> str:
    """:func:`format_mean_sd` of :func:`mean_sd`: "0.953 ± 0.004" over seeds, "0.953" for one."""
    mean, sd, _ = mean_sd(values)
    return format_mean_sd(mean, sd, digits)


def final_value(record, column: str) -> float:
    """The last logged value of a history column (evaluation may skip epochs); NaN when the
    history has no value of it (the record's summary is the history's last row, so it has none either)."""
    if column not in record.history.columns:
        return math.nan
    col = pd.to_numeric(record.history[column], errors="coerce").dropna()
    return float(col.iloc[-1]) if len(col) else math.nan


def final_metric(records, column: str) -> tuple[float, float, int]:
    """Mean, sd and number of seeds of ``column`` at each record's last evaluated epoch."""
    return mean_sd(final_value(r, column) for r in (records if isinstance(records, (list, tuple)) else [records]))


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


# --------------------------------------------------------------------------- feature space (Figure 7)
#
# A segmentation run records, over its random sample of validation pixels, the exact block sums
# ``cosine_block_sums`` / ``cosine_block_pairs``: the sum and the count of the pairwise cosines
# between pixels of class i and class j, self-pairs excluded. Class 0 is background, c + 1 digit c.


def cosine_blocks(Z, labels, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Block sums and pair counts of the pairwise cosine similarities of Z's rows, per class pair:
    (k, k) float64 each, self-pairs excluded; the slow, obvious float64 version of what a run
    records. Z: (m, d); labels: (m,) in [0, k)."""
    Z = np.asarray(Z, dtype=np.float64)
    Z = Z / np.clip(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12, None)
    labels = np.asarray(labels, dtype=np.int64)
    cos = Z @ Z.T  # (m, m)
    np.fill_diagonal(cos, 0.0)
    onehot = np.eye(num_classes)[labels]  # (m, k)
    counts = onehot.sum(0)
    sums = onehot.T @ cos @ onehot  # (k, k)
    pairs = np.outer(counts, counts) - np.diag(counts)
    return sums, pairs


def cosine_block_means(sums, pairs) -> np.ndarray:
    """(k, k) mean cosine similarity per class pair (NaN where a block has no pairs)."""
    sums, pairs = np.asarray(sums, dtype=np.float64), np.asarray(pairs, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, sums / np.where(pairs > 0, pairs, 1), np.nan)


def cosine_summary(sums, pairs, classes=None, absolute_between: bool = False) -> dict:
    """Mean within-class and mean between-class cosine similarity over ``classes`` (default all).

    Each class, and each pair of distinct classes, counts once (an unweighted mean of block
    means), so the background's many pixels do not outweigh the digits. Classes without pairs
    are skipped. ``absolute_between`` averages |block mean| off the diagonal, so that positive
    and negative blocks cannot cancel (the claims ledger's "near 0"); otherwise the signed mean.
    MCR²'s ideal: within → 1, between → 0 (orthogonal class subspaces). Returns
    ``{"within": w, "between": b, "gap": w - b, "classes": n}``.
    """
    means = cosine_block_means(sums, pairs)
    k = means.shape[0]
    classes = np.arange(k) if classes is None else np.asarray(list(classes), dtype=np.int64)
    block = means[np.ix_(classes, classes)]
    diag = np.diag(block)
    off = block[~np.eye(len(classes), dtype=bool)]
    if absolute_between:
        off = np.abs(off)
    within = float(np.nanmean(diag)) if np.isfinite(diag).any() else math.nan
    between = float(np.nanmean(off)) if np.isfinite(off).any() else math.nan
    return {"within": within, "between": between, "gap": within - between, "classes": int(np.isfinite(diag).sum())}


def cosine_summary_table(runs: dict, digits: int = 3, numeric: bool = False) -> pd.DataFrame:
    """Report Figure 7 in numbers: per run, mean within-class and between-class cosine similarity
    (:func:`cosine_summary` of the recorded block sums, signed) over all 11 classes
    and over the 10 digit classes only; "mean ± sd" over seeds (``numeric=True``: the means as
    floats)."""
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
