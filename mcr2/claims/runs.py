"""What the claims ledger reads off run records beyond a final value: per-seed values, the
digit-class cosine blocks of report Figure 7, and what happened to a masked run's switch and its
background head (report §2.2.1), as data and in sentences."""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from ..summary import DIGIT_CLASSES, cosine_summary, final_value, record_cosine_blocks

__all__ = ["COLLAPSE_ACC", "seed_values", "digit_cosine", "MaskingEvents", "masking_events", "masking_story",
           "run_notes", "span_text"]

COLLAPSE_ACC = 0.01  # non-background accuracy below this (a tenth of guessing among 10 digits) after
#                      the switch: the head calls (almost) every pixel background


def seed_values(records: dict, name: str, column: str) -> list[float]:
    """One final value of ``column`` per seed of experiment ``name`` (NaN where it has none)."""
    return [final_value(r, column) for r in records.get(name, [])]


def digit_cosine(rec) -> tuple[float, float, str]:
    """(between, within, source) mean |cos| of a record's digit pixels (report Figure 7):
    :func:`mcr2.summary.cosine_summary` of :func:`mcr2.summary.record_cosine_blocks` over the
    digit classes 1..10 (background left out: the masked model learns no feature for it).
    ``source`` says which pixels (all sampled, or the stored subset of an older record); a record
    without either (a run that failed before its end) gives NaN, which counts as no seed."""
    try:
        blocks = record_cosine_blocks(rec)
    except KeyError:
        return math.nan, math.nan, "no feature statistics"
    s = cosine_summary(blocks.means, DIGIT_CLASSES)
    return s["between"], s["within"], blocks.describe()


@dataclass(frozen=True)
class MaskingEvents:
    """What happened to a masked run's switch and its background head (report §2.2.1)."""

    seed: int
    threshold: float  # the run's switch threshold (loss.mask_threshold)
    epochs: int  # epochs trained
    switch_epoch: int | None  # epoch after which MCR² was on; None: the head never reached the threshold
    collapsed: tuple[int, ...]  # epochs after the switch at which the head called every pixel background
    final_foreground_acc: float

    @property
    def mcr2_trained(self) -> bool:
        """MCR² trained for at least one epoch (a switch after the last epoch trains nothing)."""
        return self.switch_epoch is not None and self.switch_epoch < self.epochs

    @property
    def recovered(self) -> bool:
        return bool(self.collapsed) and self.collapsed[-1] < self.epochs

    def label(self) -> str:
        """"" for a run that switched and never collapsed, else what went wrong, in words."""
        if self.switch_epoch is None:
            return (f"seed {self.seed}: MCR² never switched on (the head never reached {self.threshold:g} "
                    f"in {self.epochs} epochs): masked MCR² was not trained")
        if not self.mcr2_trained:
            return (f"seed {self.seed}: the head reached {self.threshold:g} only after the last epoch "
                    f"({self.switch_epoch}): masked MCR² was not trained")
        if not self.collapsed:
            return ""
        span = span_text(self.collapsed)
        if self.recovered:
            return (f"seed {self.seed}: after the switch the head called (almost) every pixel background at {span} "
                    f"(non-background accuracy < {COLLAPSE_ACC:g}), then recovered")
        return (f"seed {self.seed}: the head collapsed after the switch ({span}) and never recovered: it calls "
                f"(almost) every pixel background, non-background accuracy {self.final_foreground_acc:.3f}")


def span_text(epochs: tuple[int, ...]) -> str:
    """"epoch 4", "epochs 4–6", or "epochs 4–6, 9" for runs of consecutive epochs."""
    groups: list[list[int]] = []
    for e in epochs:
        if groups and e == groups[-1][-1] + 1:
            groups[-1].append(e)
        else:
            groups.append([e])
    text = ", ".join(str(g[0]) if len(g) == 1 else f"{g[0]}–{g[-1]}" for g in groups)
    return ("epoch " if len(epochs) == 1 else "epochs ") + text


def masking_events(rec) -> MaskingEvents:
    """:class:`MaskingEvents` of a masked run from its record and history."""
    h = rec.history
    epochs = int(h["epoch"].max()) if "epoch" in h.columns and len(h) else 0
    switch = rec.record.get("events", {}).get("mask_switch_epoch")
    dom = rec.config.data.val_domains[0]
    fg_col, bg_col = f"{dom}_foreground_acc", f"{dom}_background_acc"
    collapsed: list[int] = []
    if switch is not None and fg_col in h.columns:
        after = h[(h["epoch"] > switch) & pd.to_numeric(h[fg_col], errors="coerce").notna()]
        for _, row in after.iterrows():
            all_background = row[fg_col] < COLLAPSE_ACC and (bg_col not in h.columns or row[bg_col] >= 1 - COLLAPSE_ACC)
            if all_background:
                collapsed.append(int(row["epoch"]))
    return MaskingEvents(rec.config.seed, rec.config.loss.mask_threshold, epochs,
                         None if switch is None else int(switch), tuple(collapsed), final_value(rec, fg_col))


def masking_story(rec) -> str:
    """What happened in one masked run, in sentences whose every number is read off its record:
    when the head reached the switch threshold, whether MCR² trained, whether the head then
    collapsed to calling every pixel background (and for which epochs), and how it ended."""
    ev = masking_events(rec)
    h = rec.history.set_index("epoch")
    dom = rec.config.data.val_domains[0]
    fg = pd.to_numeric(h.get(f"{dom}_foreground_acc"), errors="coerce") if f"{dom}_foreground_acc" in h else None
    head_all = f"{dom}_bg_head_acc" if f"{dom}_bg_head_acc" in h else None
    check = pd.to_numeric(h["bg_check_acc"], errors="coerce") if "bg_check_acc" in h else None
    n_check = rec.config.loss.mask_check_images
    lead = f"Seed {ev.seed} ({rec.config.profile} profile, {ev.epochs} epochs)"
    if check is None or check.dropna().empty:
        return f"{lead}: the record holds no background-check accuracy."
    first = f"the background head's accuracy on {n_check} fixed validation images was {check.iloc[0]:.3f} after epoch 1"
    if ev.switch_epoch is None:
        best = check.idxmax()
        return (f"{lead}: {first} and at best {check.max():.3f} (epoch {best}), below this run's threshold "
                f"{ev.threshold:g}. MCR² never switched on: this run trained the background head alone, and its digit "
                f"predictions come from features MCR² never trained (final non-background accuracy "
                f"{ev.final_foreground_acc:.3f}).")
    at = check.get(ev.switch_epoch, math.nan)
    text = f"{lead}: {first} and reached the threshold {ev.threshold:g} after epoch {ev.switch_epoch} ({at:.3f})"
    if not ev.mcr2_trained:
        return (text + f", the last epoch: MCR² never trained, and the final non-background accuracy "
                f"({ev.final_foreground_acc:.3f}) is that of features MCR² never trained.")
    text += f", so MCR² trained from epoch {ev.switch_epoch + 1} on."
    if ev.collapsed:
        span = span_text(ev.collapsed)
        low = check.loc[list(ev.collapsed)].min()
        text += (f" At {span} the head called (almost) every pixel background: non-background accuracy "
                 f"{fg.loc[list(ev.collapsed)].max():.3f}, check accuracy down to {low:.3f}")
        if head_all is not None:
            text += f" ({h.loc[list(ev.collapsed), head_all].min():.3f} over all validation pixels, the share of background)"
        text += "."
        if ev.recovered:
            back = ev.collapsed[-1] + 1
            text += (f" From epoch {back} it recovered: non-background accuracy {fg.loc[back]:.3f} at epoch {back}, "
                     f"{ev.final_foreground_acc:.3f} after epoch {ev.epochs}.")
        else:
            text += " It never recovered before the run ended."
    else:
        after = check[check.index > ev.switch_epoch]
        text += (f" After the switch the head's check accuracy stayed between {after.min():.3f} and {after.max():.3f}; "
                 f"the final non-background accuracy is {ev.final_foreground_acc:.3f}.")
    return text


def _seeds_text(seeds) -> str:
    seeds = list(seeds)
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


def run_notes(records: dict, names) -> list[str]:
    """What a reader must know about the runs behind a verdict, one line per experiment: masked
    runs in which MCR² never trained, or whose head collapsed to calling (almost) every pixel
    background after the switch (with the seeds and epochs)."""
    notes = []
    for name in names:
        groups: dict[str, list[MaskingEvents]] = {}
        for r in records.get(name, []):
            if r.config.loss.background_mask is None:
                continue
            ev = masking_events(r)
            if ev.switch_epoch is None:
                kind = "MCR² never switched on (the head never reached its threshold)"
            elif not ev.mcr2_trained:
                kind = "the head reached its threshold only after the last epoch: MCR² never trained"
            elif ev.collapsed:
                kind = ("after the switch the head called (almost) every pixel background, then recovered"
                        if ev.recovered else "after the switch the head collapsed to calling (almost) every pixel "
                                             "background and never recovered")
            else:
                continue
            groups.setdefault(kind, []).append(ev)
        for kind, evs in groups.items():
            spans: dict[str, list[int]] = {}
            for ev in evs:
                spans.setdefault(span_text(ev.collapsed) if ev.collapsed else "", []).append(ev.seed)
            detail = "; ".join(f"{_seeds_text(seeds)}: {span}" if span else _seeds_text(seeds)
                               for span, seeds in spans.items())
            notes.append(f"{name}: {kind} ({detail})")
    return notes
