"""Numbers of run records: final metrics (mean ± sd over seeds), the settings a figure was made
with (the short :func:`scale_text` for a caption, the page's collapsible provenance block
:func:`runs_behind`), and the feature-space summary of report Figure 7 (mean |cosine similarity|
per class block), as values and as tables (:func:`page_table` styles a table for the page). No
plotting; the chapters, the figures and the claims ledger (:mod:`mcr2.claims`) all use these.

``runs`` is a dict ``{label: [RunRecord per seed]}`` throughout.
"""
from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .metrics import cosine_abs_blocks
from .records import steps_kind, steps_mix_text

__all__ = [
    "settings_text",
    "scale_text",
    "evaluation_text",
    "one_profile",
    "runs_behind",
    "page_table",
    "tag_profiles",
    "records_summary",
    "mean_sd",
    "format_mean_sd",
    "mean_sd_text",
    "final_value",
    "final_metric",
    "final_metrics_table",
    "cosine_blocks",
    "cosine_block_sums",
    "cosine_block_means",
    "CosineBlocks",
    "record_cosine_blocks",
    "cosine_summary",
    "cosine_summary_table",
]


def _as_list(records) -> list:
    return list(records) if isinstance(records, (list, tuple)) else [records]


def _by_experiment(runs: dict) -> dict[str, list]:
    """``{experiment name: [records]}`` from ``{label: records}`` (labels are the chapter's)."""
    out: dict[str, list] = {}
    for recs in runs.values():
        for r in _as_list(recs):
            out.setdefault(r.config.name, []).append(r)
    return out


def _commit(r) -> str:
    prov = r.record.get("provenance", {})
    return (prov.get("git_commit") or "unknown")[:8] + ("+dirty" if prov.get("git_dirty") else "")


def _join(values, fmt=str) -> str:
    return ", ".join(fmt(v) for v in values)


def _describe(recs: list) -> str:
    """profile, seeds, epochs, training images and commit of some records, in words."""
    profiles = sorted({r.config.profile for r in recs})
    seeds = sorted({r.config.seed for r in recs})
    epochs = sorted({r.config.optim.epochs for r in recs})
    images = sorted({r.record.get("data", {}).get("train", {}).get("N") for r in recs} - {None})
    parts = [f"profile {_join(profiles)}",
             f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({_join(seeds)})",
             f"{'–'.join(map(str, epochs))} epochs"]
    if images:
        parts.append(f"{'–'.join(f'{n:,}' for n in images)} training images")
    return ", ".join(parts)


def _commits_text(by_name: dict[str, list]) -> str:
    """"commit 34eed0b3", or each commit with the experiments it trained when they differ."""
    names: dict[str, list[str]] = {}
    for name, recs in by_name.items():
        for c in sorted({_commit(r) for r in recs}):
            names.setdefault(c, []).append(name)
    if len(names) == 1:
        return f"commit {next(iter(names))}"
    return "commits " + ", ".join(f"{c} ({', '.join(n)})" for c, n in names.items())


def evaluation_text(runs: dict) -> str:
    """How the runs were evaluated, in words: the training images on which BatchNorm statistics
    are re-estimated before every evaluation and (MCR²) the nearest subspaces are fitted
    (``EvalConfig.recalibrate_bn``, ``EvalConfig.fit_limit``; the faithfulness appendix lists both)."""
    groups: dict[tuple, list] = {}
    for name, recs in _by_experiment(runs).items():
        r = recs[0]
        n_train = r.record.get("data", {}).get("train", {}).get("N")
        limit = r.config.eval.fit_limit
        if limit is None or (n_train is not None and limit >= n_train):
            images = "all training images"
        else:
            images = f"the first {limit:,} training images"
        groups.setdefault((r.config.eval.recalibrate_bn, images), []).append((name, r.config.loss.kind == "mcr2"))
    texts = []
    for (bn, images), members in groups.items():
        mcr2 = [m for _, m in members]
        what = ["BatchNorm statistics re-estimated"] if bn else []
        if any(mcr2):
            what.append("nearest subspaces fitted" + ("" if all(mcr2) else " (MCR² runs)"))
        if not what:
            continue
        text = f"{' and '.join(what)} on {images} before every evaluation"
        texts.append(text if len(groups) == 1 else f"{', '.join(n for n, _ in members)}: {text}")
    return "; ".join(texts)


def settings_text(runs: dict, evaluation: bool = True) -> str:
    """The settings a figure or table was made with, for its caption: per experiment, the
    profile, seeds, epochs and training images (one clause when all agree, else one per group
    of experiments), the commit(s) that trained the runs, then :func:`evaluation_text`.

    e.g. "profile paper, 1 seed (0), 30 epochs, 60,000 training images; commit 34eed0b3".
    """
    by_name = _by_experiment(runs)
    groups: dict[str, list[str]] = {}
    for name, recs in by_name.items():
        groups.setdefault(_describe(recs), []).append(name)
    if len(groups) == 1:
        text = next(iter(groups))
    else:
        text = "; ".join(f"{', '.join(names)}: {desc}" for desc, names in groups.items())
    text += f"; {_commits_text(by_name)}"
    if evaluation:
        ev = evaluation_text(runs)
        text += f"; {ev}" if ev else ""
    return text


def scale_text(runs: dict) -> str:
    """The scale of the runs behind a figure, short enough for its caption: "profile paper, 3
    seeds", or per experiment when they differ ("cls_mnist_ce: profile paper, 1 seed; ...").
    The rest of their provenance goes in :func:`runs_behind`."""
    groups: dict[str, list[str]] = {}
    for name, recs in _by_experiment(runs).items():
        profiles = " + ".join(sorted({r.config.profile for r in recs}))
        n = len({r.config.seed for r in recs})
        groups.setdefault(f"profile {profiles}, {n} seed{'s' if n != 1 else ''}", []).append(name)
    if len(groups) == 1:
        return next(iter(groups))
    return "; ".join(f"{', '.join(names)}: {desc}" for desc, names in groups.items())


#: Profiles from the largest scale down: where the runs of one figure differ, the largest is drawn.
_PROFILE_ORDER = ("paper", "custom", "smoke")


def one_profile(runs: dict) -> tuple[dict, dict]:
    """The runs of one figure at one scale: where their profiles differ (e.g. a paper CE run of
    100 epochs beside a smoke MCR² run of 4), keep those of the largest profile (paper, then
    custom, then smoke) so that an axis has one scale. Returns (kept, left out), both
    ``{label: records}``; a chapter says what it left out."""
    runs = {label: _as_list(recs) for label, recs in runs.items()}
    profiles = {label: {r.config.profile for r in recs} for label, recs in runs.items()}
    present = set().union(*profiles.values()) if profiles else set()
    if len(present) <= 1:
        return runs, {}
    top = min(present, key=lambda p: _PROFILE_ORDER.index(p) if p in _PROFILE_ORDER else len(_PROFILE_ORDER))
    kept = {label: recs for label, recs in runs.items() if profiles[label] == {top}}
    return kept, {label: recs for label, recs in runs.items() if label not in kept}


# Record fields shown in their own columns of :func:`runs_behind` (or not provenance at all);
# every other scalar field of a record or of its provenance gets a column of the second table.
_SHOWN = {"status", "name", "profile", "seed", "key", "config", "provenance", "started", "data", "summary", "events",
          "wall_time_s", "cuda_graphs", "graphed", "world_size", "gpu_name"}
_SHOWN_PROVENANCE = {"git_commit", "git_dirty", "device"}


def _distinct(values) -> str:
    values = [v for v in values if v is not None and v != ""]
    out = list(dict.fromkeys(f"{v:.4g}" if isinstance(v, float) else str(v) for v in values))
    return ", ".join(out) if out else "—"


def _steps(r) -> str | None:
    """"graphed" (each step replayed as a CUDA graph) or "eager", as the record says; None when
    the record predates the field."""
    flag = r.record.get("graphed", r.record.get("cuda_graphs"))
    return None if flag is None else ("graphed" if flag else "eager")


def _steps_cell(recs: list) -> str:
    """The steps column of one experiment: "eager", "graphed" or "not recorded"; where its seeds
    mix eager and graphed steps (:func:`mcr2.records.steps_kind`), the seeds of each."""
    kinds: dict[str, list[int]] = {}
    for r in recs:
        kinds.setdefault(steps_kind(r), []).append(r.config.seed)
    if len(kinds) < 2:
        return _distinct(s or "not recorded" for s in map(_steps, recs))
    return ", ".join(f"{kind} (seed{'s' * (len(seeds) > 1)} {_join(sorted(seeds))})"
                     for kind, seeds in sorted(kinds.items()))


def _device(r) -> str:
    rec, dev = r.record, r.record.get("provenance", {}).get("device", {})
    name = rec.get("gpu_name") or dev.get("name") or dev.get("type") or "?"
    world = rec.get("world_size")
    return f"{world} × {name}" if isinstance(world, int) and world > 1 else str(name)


def _scalar(v) -> bool:
    return isinstance(v, (str, int, float, bool)) and not isinstance(v, dict)


def _table_html(frame: pd.DataFrame) -> str:
    return ('<div style="overflow-x:auto">' + frame.to_html(index=False, border=0, classes="table", na_rep="—")
            + "</div>")


def runs_behind(runs: dict, title: str = "Runs behind this page") -> str:
    """The provenance of a page's runs as one collapsible HTML block (a chapter shows it once):
    per experiment its profile, seeds, epochs, training images, device, eager or graphed steps,
    commit(s), date(s) and mean wall time; a second table with every other field the records
    carry (software versions, launcher, ... whatever they have); then the evaluation notes
    (BatchNorm re-estimation, nearest-subspace fit and dimension) and the device's
    nondeterminism note. Where an experiment's seeds mix eager and graphed training steps, a
    paragraph above the block says so (:func:`mcr2.records.steps_mix_text`), visible without
    opening it, and the steps column names the seeds of each."""
    by_name = _by_experiment(runs)
    if not by_name:
        raise ValueError("runs_behind needs at least one run record")
    main, extra, notes = [], [], []
    for name, recs in by_name.items():
        images = sorted({r.record.get("data", {}).get("train", {}).get("N") for r in recs} - {None})
        backgrounds = {r.record.get("data", {}).get("train", {}).get("background_source") for r in recs} - {None}
        walls = [r.record.get("wall_time_s") for r in recs if isinstance(r.record.get("wall_time_s"), (int, float))]
        row = {
            "experiment": name,
            "profile": _distinct(sorted({r.config.profile for r in recs})),
            "seeds": _join(sorted({r.config.seed for r in recs})),
            "epochs": _join(sorted({r.config.optim.epochs for r in recs})),
            "train images": _join(images, lambda n: f"{n:,}") or "?",
            "device": _distinct(_device(r) for r in recs),
            "steps": _steps_cell(recs),
            "commit": _distinct(sorted({_commit(r) for r in recs})),
            "date": _distinct(sorted({str(r.record.get("started", ""))[:10] for r in recs})),
            "wall time (s)": f"{np.mean(walls):.0f}" if walls else "?",
        }
        statuses = {r.status for r in recs}
        if statuses != {"complete"}:
            row["status"] = _distinct(sorted(statuses))
        main.append(row)
        more = {"experiment": name}
        if backgrounds:
            more["backgrounds"] = _distinct(sorted(backgrounds))
        for r in recs:
            fields = {k: v for k, v in r.record.items() if k not in _SHOWN and _scalar(v)}
            fields.update({k: v for k, v in r.record.get("provenance", {}).items()
                           if k not in _SHOWN_PROVENANCE and _scalar(v)})
            for k, v in fields.items():
                more.setdefault(k, [])
                if isinstance(more[k], list):
                    more[k].append(v)
        extra.append({k: (_distinct(v) if isinstance(v, list) else v) for k, v in more.items()})
        for r in recs:
            note = r.record.get("provenance", {}).get("device", {}).get("nondeterminism")
            if note and note not in notes:
                notes.append(note)
    frame = pd.DataFrame(main)
    subspace = sorted({r.config.eval.n_components for recs in by_name.values() for r in recs
                       if r.config.loss.kind == "mcr2"}, key=lambda v: -1 if v is None else v)
    texts = []
    ev = evaluation_text(runs)
    if ev:
        texts.append(ev[0].upper() + ev[1:] + ".")
    if subspace:
        texts.append("Nearest-subspace dimension r: " + ", ".join("d // k (the authors' code)" if v is None else str(v)
                                                                  for v in subspace) + ".")
    texts += [f"Device note: {n}." for n in notes]
    n_records = sum(len(recs) for recs in by_name.values())
    summary = f"{html.escape(title)} ({n_records} run record{'s' if n_records != 1 else ''}: {html.escape(scale_text(runs))})"
    body = [_table_html(frame)]
    body += [f"<p>{html.escape(t)}</p>" for t in texts]
    if len(pd.DataFrame(extra).columns) > 1:
        body += ["<p>Every other field the records carry:</p>", _table_html(pd.DataFrame(extra))]
    mix = steps_mix_text(runs)
    above = f"<p>{html.escape(mix)}</p>\n" if mix else ""
    return above + f"<details>\n<summary>{summary}</summary>\n" + "\n".join(body) + "\n</details>"


_NUMBER_LIKE = re.compile(r"^[\s\d.,±+\-−–—%×\[\]()n/a]*$")


def page_table(frame: pd.DataFrame, digits: int | None = None, wrap: tuple = ()):
    """A table as the page shows it (a pandas Styler): the index becomes the first column (no
    index-name row), floats get ``digits`` decimals (default: as given), cells of numbers
    ("0.912 ± 0.004", "[1.2–3.4]") are right-aligned and never broken, text is left-aligned and
    wraps in the columns named in ``wrap``, with room between the columns; a table wider than the
    page scrolls sideways."""
    df = frame.copy()
    if df.index.name is not None or not isinstance(df.index, pd.RangeIndex):
        df = df.reset_index(names=[df.index.name or ""])
    df.columns.name = None
    styler = df.style.hide(axis="index")
    if digits is not None:
        floats = [c for c in df.columns if pd.api.types.is_float_dtype(df[c])]
        styler = styler.format({c: f"{{:.{digits}f}}" for c in floats}, na_rep="—")
    number_like = [c for c in df.columns if df[c].map(lambda v: bool(_NUMBER_LIKE.match(str(v)))).all()]
    styler = styler.set_properties(**{"text-align": "left", "vertical-align": "top", "padding": "0.3em 0.8em",
                                      "white-space": "nowrap"})
    if number_like:
        styler = styler.set_properties(subset=number_like, **{"text-align": "right"})
    wrapped = [c for c in wrap if c in df.columns]
    if wrapped:
        styler = styler.set_properties(subset=wrapped, **{"white-space": "normal", "min-width": "12em"})
    return styler.set_table_attributes('style="display:block; overflow-x:auto; max-width:100%; font-size:0.9em"')


def records_summary(runs: dict) -> pd.DataFrame:
    """What a page was rendered from, one row per experiment (narrow enough for a page, unlike
    :func:`mcr2.records.records_table`'s row per record): profile, seeds, epochs, training
    images, device, commit(s), the mean wall time, and the status where a record is not complete."""
    rows = []
    for name, recs in _by_experiment(runs).items():
        devices = sorted({r.record.get("provenance", {}).get("device", {}).get("name") or "?" for r in recs})
        images = sorted({r.record.get("data", {}).get("train", {}).get("N") for r in recs} - {None})
        walls = [r.record.get("wall_time_s") for r in recs if isinstance(r.record.get("wall_time_s"), (int, float))]
        rows.append({
            "experiment": name,
            "profile": _join(sorted({r.config.profile for r in recs})),
            "seeds": _join(sorted({r.config.seed for r in recs})),
            "epochs": _join(sorted({r.config.optim.epochs for r in recs})),
            "images": _join(images, lambda n: f"{n:,}") or "?",
            "device": _join(devices),
            "commit": _join(sorted({_commit(r) for r in recs})),
            "wall (s)": f"{np.mean(walls):.0f}" if walls else "?",
            "status": _join(sorted({r.status for r in recs})),
        })
    frame = pd.DataFrame(rows, columns=["experiment", "profile", "seeds", "epochs", "images", "device", "commit",
                                        "wall (s)", "status"])
    return frame if (frame["status"] != "complete").any() else frame.drop(columns="status")


def tag_profiles(runs: dict, colors: dict | None = None, always: bool = False) -> tuple[dict, dict | None]:
    """When the runs of a figure come from different profiles (or ``always``, e.g. for one
    panel of a figure whose other panels differ), add each run's profile to its label
    ("CE" -> "CE (paper)"), so a legend says which curve is at which scale. Returns the
    relabelled runs and ``colors`` keyed by the new labels."""
    profiles = {label: " + ".join(sorted({r.config.profile for r in _as_list(recs)})) for label, recs in runs.items()}
    if len(set(profiles.values())) <= 1 and not always:
        return dict(runs), colors
    new = {label: f"{label} ({profiles[label]})" for label in runs}
    tagged = {new[label]: recs for label, recs in runs.items()}
    return tagged, None if colors is None else {new.get(k, k): v for k, v in colors.items()}


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
    """One row per run (with its profile and number of records), one column per metric:
    "mean ± sd" of the final value over the seeds that have one.

    columns: ``{column name in the table: history column}``, e.g. ``{"MNIST": "mnist_acc"}``.
    report: optional ``{label: {table column: value}}``: the report's numbers (floats, or text
    such as "≈ 45–46"), added as
    "<column> (report)" beside ours for the columns the report gives. ``numeric=True`` gives the means as floats instead (no
    report columns), for computing with them.
    """
    rows, means = [], []
    for label, recs in runs.items():
        recs = _as_list(recs)
        profile = " + ".join(sorted({r.config.profile for r in recs}))
        row, mean_row = {"run": label, "profile": profile, "seeds": len(recs)}, {"run": label}
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
# Report Figure 7 shows |cos| between random validation pixels sorted by label. Its summary is the
# mean |cos| per class block (class 0 background, c + 1 digit c), each pixel's similarity with
# itself left out. The absolute value is taken per pair: a class spread symmetrically over its
# subspace has signed pair cosines that average to about 0 within and between classes even when
# every class shares one subspace, so a signed mean can never say "orthogonal".


def cosine_blocks(Z, labels, num_classes: int) -> torch.Tensor:
    """(k, k) float64 mean |cosine similarity| between the rows of class i and of class j, each
    row's similarity with itself excluded, NaN where a block has no pair
    (:func:`mcr2.metrics.cosine_abs_blocks`, which runs record over all their sampled pixels).
    Z: (m, d) features (tensor or array; normalised here); labels: (m,) in [0, k)."""
    Z = Z if isinstance(Z, torch.Tensor) else torch.as_tensor(np.asarray(Z, dtype=np.float64))
    labels = labels if isinstance(labels, torch.Tensor) else torch.as_tensor(np.asarray(labels, dtype=np.int64))
    return cosine_abs_blocks(Z, labels, num_classes)


def cosine_block_sums(Z, labels, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Sums and pair counts of the *signed* pairwise cosines per class block, (k, k) float64 each,
    self-pairs excluded: what records store as ``cosine_block_sums`` / ``cosine_block_pairs``.
    Descriptive only (signed means cancel, see above); no summary or verdict reads them."""
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
    """(k, k) signed mean cosine per class pair from :func:`cosine_block_sums` (NaN without pairs)."""
    sums, pairs = np.asarray(sums, dtype=np.float64), np.asarray(pairs, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, sums / np.where(pairs > 0, pairs, 1), np.nan)


@dataclass(frozen=True)
class CosineBlocks:
    """Mean |cos| per class block of one run, and where it comes from."""

    means: np.ndarray  # (k, k) mean |cos|, NaN where a block has no pair
    counts: np.ndarray  # (k,) pixels of each class behind it
    source: str  # "sampled": all the run's sampled pixels; "kept": recomputed from its stored subset

    @property
    def pixels(self) -> int:
        return int(self.counts.sum())

    def describe(self) -> str:
        if self.source == "sampled":
            return f"all {self.pixels:,} sampled validation pixels"
        return (f"the {self.pixels:,} stored pixels only (this record predates the mean |cos| over "
                f"all sampled pixels)")


def record_cosine_blocks(rec) -> CosineBlocks:
    """A segmentation run's :class:`CosineBlocks`: the recorded ``cosine_abs_mean`` over all its
    sampled validation pixels, or, for records written before that statistic existed,
    :func:`cosine_blocks` of the feature subset they keep (``feature_sample``), which is
    smaller (e.g. 2 000 of 25 000 pixels, about 30 per digit at paper scale) and says so."""
    art = rec.artefacts
    k = rec.config.num_classes
    if "cosine_abs_mean" in art:
        means = np.asarray(art["cosine_abs_mean"], dtype=np.float64)
        counts = np.asarray(art["cosine_class_counts"], dtype=np.float64)
        source = "sampled"
    elif "feature_sample" in art and "feature_labels" in art:
        labels = np.asarray(art["feature_labels"], dtype=np.int64)
        means = cosine_blocks(np.asarray(art["feature_sample"], dtype=np.float64), labels, k).numpy()
        counts = np.bincount(labels, minlength=k).astype(np.float64)
        source = "kept"
    else:
        raise KeyError(f"{rec!r} has neither 'cosine_abs_mean' nor a 'feature_sample': only segmentation "
                       f"runs record their feature space")
    pairs = np.outer(counts, counts) - np.diag(counts)
    means = np.where(pairs > 0, means, np.nan)  # a block without pairs has no mean
    return CosineBlocks(means, counts, source)


def cosine_summary(blocks, classes=None) -> dict:
    """Mean within-class (diagonal blocks) and between-class (off-diagonal blocks) |cos| over
    ``classes`` (default all) of a (k, k) block matrix (:func:`cosine_blocks`).

    Each class, and each pair of distinct classes, counts once (an unweighted mean of block
    means), so the background's many pixels do not outweigh the digits; blocks without pairs
    are skipped. MCR²'s ideal: between → 0 (orthogonal class subspaces), within high. Returns
    ``{"within": w, "between": b, "gap": w - b, "classes": n}``.
    """
    means = np.asarray(blocks.detach().cpu() if isinstance(blocks, torch.Tensor) else blocks, dtype=np.float64)
    k = means.shape[0]
    classes = np.arange(k) if classes is None else np.asarray(list(classes), dtype=np.int64)
    block = means[np.ix_(classes, classes)]
    diag = np.diag(block)
    off = block[~np.eye(len(classes), dtype=bool)]
    within = float(np.nanmean(diag)) if np.isfinite(diag).any() else math.nan
    between = float(np.nanmean(off)) if np.isfinite(off).any() else math.nan
    return {"within": within, "between": between, "gap": within - between, "classes": int(np.isfinite(diag).sum())}


DIGIT_CLASSES = range(1, 11)  # segmentation classes of the ten digits (0 is background)


def cosine_summary_table(runs: dict, digits: int = 3, numeric: bool = False) -> pd.DataFrame:
    """Report Figure 7 in numbers: per run, mean within-class and between-class |cos|
    (:func:`cosine_summary` of :func:`record_cosine_blocks`) over all 11 classes and over the 10
    digit classes only; "mean ± sd" over seeds (``numeric=True``: the means as floats), and the
    pixels behind them."""
    rows, means = [], []
    for label, recs in runs.items():
        recs = _as_list(recs)
        blocks = [record_cosine_blocks(r) for r in recs]
        row, mean_row = {"run": label, "seeds": len(recs)}, {"run": label}
        for scope, classes in (("all", None), ("digits", DIGIT_CLASSES)):
            per_seed = [cosine_summary(b.means, classes) for b in blocks]
            for key in ("within", "between"):
                m, s, _ = mean_sd([p[key] for p in per_seed])
                row[f"{key} ({scope})"] = format_mean_sd(m, s, digits)
                mean_row[f"{key} ({scope})"] = m
        row["pixels"] = "; ".join(sorted({b.describe() for b in blocks}))
        rows.append(row)
        means.append(mean_row)
    return pd.DataFrame(means if numeric else rows).set_index("run")
