"""Why this reproduction differs from the report (chapter 11): three questions, the candidate
causes of each, the experiment that tests each cause, and a verdict from run records.

Each :class:`Cause` compares one quantity per seed between two experiments (usually a variant of
:data:`mcr2.experiments.DIFFERENCE_EXPERIMENTS` against the report's own experiment) with the
claims ledger's rule (:mod:`mcr2.claims`): a one-sided Welch test, decided only with
``MIN_SEEDS`` finite seeds in each arm, p < ``ALPHA`` and paper-profile records; anything less
leaves the cause undecided and says why. ``records`` is ``{experiment name: [RunRecord per seed]}``
(what :func:`mcr2.engine.run_all` returns).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .claims import ALPHA, MIN_SEEDS, VERDICT_PROFILE, Test, masking_events, welch
from .costs import load_costs
from .experiments import PROFILE_SEEDS
from .paper import plan_runs
from .records import default_runs_dir
from .summary import final_value

__all__ = ["QUESTIONS", "CAUSES", "LATE_EPOCHS", "Cause", "head_low_after_switch", "head_best_after_switch",
           "late_mean", "error_split", "grad_ratio_at_switch", "cause_test", "cause_verdicts", "decide_command",
           "question_experiments", "closing_text"]

LATE_EPOCHS = 5  # "instability": a run's non-background accuracy averaged over its last this many evaluations

#: The three questions (issue "Why this reproduction differs from the report").
QUESTIONS = {
    1: "Why does the background head collapse as soon as MCR² switches on?",
    2: "Why is MCR² on plain MNIST worse than over backgrounds, and far from CE?",
    3: "Why does masked MCR² trail CE when the report has it ahead?",
}


# --------------------------------------------------------------------------- per-record quantities


def _dom(rec) -> str:
    return rec.config.data.val_domains[0]


def _after_switch(rec, column: str) -> pd.Series:
    """``column`` at the evaluations after the epoch MCR² switched on (empty if it never did)."""
    switch = rec.record.get("events", {}).get("mask_switch_epoch")
    h = rec.history
    if switch is None or column not in h.columns:
        return pd.Series(dtype=float)
    return pd.to_numeric(h.loc[h["epoch"] > switch, column], errors="coerce").dropna()


def head_low_after_switch(rec) -> float:
    """The background head's lowest accuracy on all validation pixels after MCR² switched on
    (a head that calls every pixel background scores the background share); NaN if it never did."""
    after = _after_switch(rec, f"{_dom(rec)}_bg_head_acc")
    return float(after.min()) if len(after) else math.nan


def head_best_after_switch(rec) -> float:
    """The head's best accuracy on all validation pixels after the switch; NaN if none."""
    after = _after_switch(rec, f"{_dom(rec)}_bg_head_acc")
    return float(after.max()) if len(after) else math.nan


def late_mean(rec, column: str | None = None, last: int = LATE_EPOCHS) -> float:
    """Mean of ``column`` (default: non-background accuracy) over the last ``last`` evaluations."""
    column = column or f"{_dom(rec)}_foreground_acc"
    if column not in rec.history.columns:
        return math.nan
    values = pd.to_numeric(rec.history[column], errors="coerce").dropna()
    return float(values.iloc[-last:].mean()) if len(values) else math.nan


def final_foreground(rec) -> float:
    return final_value(rec, f"{_dom(rec)}_foreground_acc")


def error_split(rec) -> dict:
    """The two kinds of digit-pixel error after the last epoch, as shares of the true digit pixels:
    ``as_background`` (called background) and ``wrong_digit`` (given another digit), with their
    ``source``: the history columns over all validation pixels where the record has them, else its
    preview images (older records, written before those columns existed)."""
    dom = _dom(rec)
    cols = (f"{dom}_digit_as_background", f"{dom}_digit_wrong_digit")
    if all(c in rec.history.columns for c in cols):
        return {"as_background": final_value(rec, cols[0]), "wrong_digit": final_value(rec, cols[1]),
                "source": "all validation pixels"}
    masks, pred = rec.artefacts.get("preview_masks"), rec.artefacts.get("preview_pred")
    if masks is None or pred is None:
        return {"as_background": math.nan, "wrong_digit": math.nan, "source": "none"}
    masks, pred = np.asarray(masks).astype(np.int64), np.asarray(pred).astype(np.int64)
    digit = masks > 0
    total = int(digit.sum())
    if not total:
        return {"as_background": math.nan, "wrong_digit": math.nan, "source": "none"}
    return {"as_background": float((digit & (pred == 0)).sum() / total),
            "wrong_digit": float((digit & (pred > 0) & (pred != masks)).sum() / total),
            "source": f"{len(masks)} preview images"}


def grad_ratio_at_switch(rec) -> float:
    """‖∇ λ·MCR²‖ / ‖∇ CE(head)‖ at the shared U-Net layers after the epoch the switch happened (the
    gradient MCR² was about to add); NaN where the record has no such columns or never switched."""
    switch = rec.record.get("events", {}).get("mask_switch_epoch")
    h = rec.history
    if switch is None or not {"grad_ce_shared", "grad_mcr2_shared"} <= set(h.columns):
        return math.nan
    row = h[h["epoch"] == switch]
    if row.empty:
        return math.nan
    ce, mcr2 = float(row["grad_ce_shared"].iloc[0]), float(row["grad_mcr2_shared"].iloc[0])
    return mcr2 / ce if ce > 0 else math.nan


# --------------------------------------------------------------------------- causes and verdicts

#: How a test's result reads for a cause that a variant tests: (−1, 0, +1) with the test oriented
#: so that +1 is "the change removes the symptom".
_FIXES = ("contradicted: the change makes it worse", "not supported: no significant effect", "supported")


@dataclass(frozen=True)
class Cause:
    question: int  # key of QUESTIONS
    cause: str  # the candidate cause, as a reader states it
    arm: str  # the experiment whose seeds are compared ...
    baseline: str  # ... with this one's
    quantity: str  # what is compared, per seed
    measure: Callable  # record -> that quantity (NaN: no value)
    sign: int = 1  # +1: the cause is supported when arm > baseline; −1 when arm < baseline
    readings: tuple[str, str, str] = _FIXES  # the verdict for an oriented result of −1, 0, +1

    @property
    def experiments(self) -> tuple[str, str]:
        return self.arm, self.baseline


_HEAD = "the head's lowest accuracy on validation pixels after the switch"
_FG = "final non-background accuracy"

CAUSES: list[Cause] = [
    Cause(1, "MCR²'s gradient overwhelms the head's through the shared U-Net (λ = 1)",
          "seg_bg_mcr2_masked_lam01", "seg_bg_mcr2_masked", _HEAD, head_low_after_switch),
    Cause(1, "background pixels the head calls foreground enter masked MCR² as class 0",
          "seg_bg_mcr2_masked_nobg", "seg_bg_mcr2_masked", _HEAD, head_low_after_switch),
    Cause(1, "the mask itself: the head's predictions rather than the ground truth (the authors' code)",
          "seg_bg_mcr2_masked_gt", "seg_bg_mcr2_masked", _HEAD, head_low_after_switch),
    Cause(2, "background, most of the pixels, dominates R and Rc",
          "seg_mnist_mcr2_masked", "seg_mnist_mcr2", _FG, final_foreground),
    Cause(2, "the nearest-subspace classifier keeps too few components per class (r = d // k; the variant: 30)",
          "seg_mnist_mcr2_r30", "seg_mnist_mcr2", _FG, final_foreground),
    Cause(2, "instability: the last epoch's value is one draw from a swing between epochs",
          "seg_mnist_mcr2", "seg_mnist_ce", f"non-background accuracy averaged over the last {LATE_EPOCHS} evaluations",
          late_mean, sign=1,
          readings=("not the explanation: CE stays ahead after averaging",
                    "cannot be excluded: after averaging the gap to CE is not significant",
                    "supported: after averaging MCR² is ahead of CE")),
    Cause(3, "the authors' data faults (each digit three times, the same batches every epoch) held their CE back",
          "seg_bg_ce_faults", "seg_bg_ce", _FG, final_foreground, sign=-1),
    Cause(3, "against a CE with those faults, masked MCR² is ahead, as in the report",
          "seg_bg_mcr2_masked", "seg_bg_ce_faults", _FG, final_foreground),
    Cause(3, "the head's mask costs masked MCR² digit pixels (ground-truth mask instead)",
          "seg_bg_mcr2_masked_gt", "seg_bg_mcr2_masked", _FG, final_foreground),
]


def question_experiments(question: int) -> list[str]:
    """The experiments the causes of ``question`` compare, each once, arms first."""
    out: list[str] = []
    for c in CAUSES:
        if c.question == question:
            out += [n for n in c.experiments if n not in out]
    return out


def cause_test(cause: Cause, records: dict) -> Test:
    """The ledger's one-sided Welch test of arm against baseline, oriented so that +1 supports the cause."""
    a = [cause.measure(r) for r in records.get(cause.arm, [])]
    b = [cause.measure(r) for r in records.get(cause.baseline, [])]
    t = welch(a, b, f"{cause.arm} − {cause.baseline}")
    return dataclasses.replace(t, lean=t.lean * cause.sign)


def _profiles(cause: Cause, records: dict) -> list[str]:
    return sorted({r.config.profile for n in cause.experiments for r in records.get(n, [])})


def _gate(cause: Cause, records: dict, test: Test) -> list[str]:
    """Why the records cannot decide this cause (empty: they can), as the ledger gates a claim."""
    missing = [n for n in cause.experiments if not records.get(n)]
    if missing:
        return [f"no records of {', '.join(missing)}"]
    why = []
    profiles = _profiles(cause, records)
    if profiles != [VERDICT_PROFILE]:
        why.append(f"{' + '.join(profiles)} profile")
    untrained = sorted({n for n in cause.experiments for r in records[n]
                        if r.config.loss.background_mask is not None and not masking_events(r).mcr2_trained})
    if untrained:
        why.append(f"MCR² never switched on in some seeds of {', '.join(untrained)}")
    if min(test.n, default=0) < MIN_SEEDS:
        why.append(f"{'/'.join(map(str, test.n))} finite seeds (≥ {MIN_SEEDS} per arm needed)")
    return why


def _values(values) -> str:
    shown = [f"{v:.3f}" for v in values if v is not None and math.isfinite(v)]
    return ", ".join(shown) if shown else "—"


def cause_verdicts(records: dict, question: int) -> pd.DataFrame:
    """One row per cause of ``question``: the experiments compared, their per-seed values, the
    test, the verdict ("undecided" with its reason where the records cannot bear one)."""
    rows = []
    for c in (c for c in CAUSES if c.question == question):
        test = cause_test(c, records)
        gate = _gate(c, records, test)
        verdict = "undecided" if gate else c.readings[test.result + 1]
        rows.append({
            "cause": c.cause,
            "compared": f"{c.arm} vs {c.baseline}: {c.quantity}",
            "arm": _values(c.measure(r) for r in records.get(c.arm, [])),
            "baseline": _values(c.measure(r) for r in records.get(c.baseline, [])),
            "test": test.text() if len(_profiles(c, records)) <= 1 else "none: runs of different profiles are not compared",
            "verdict": verdict,
            "why": "; ".join(gate) if gate else (f"p = {test.p:.3g} ≥ {ALPHA:g}" if test.result == 0 else ""),
        })
    return pd.DataFrame(rows)


def decide_command(question: int, runs_dir: Path | None = None, seeds: list[int] | None = None) -> tuple[str, float]:
    """The command that trains the paper records still missing for ``question``'s causes, and its
    estimated GPU seconds (mcr2/paper_costs.json, one run at a time); ("", 0) when none is missing."""
    seeds = PROFILE_SEEDS["paper"] if seeds is None else seeds
    plan = plan_runs(seeds, Path(runs_dir or default_runs_dir("paper")), load_costs(), 1, question_experiments(question))
    todo = [p for p in plan if not p.done]
    if not todo:
        return "", 0.0
    seconds = sum(p.seconds for p in todo)
    names = " ".join(dict.fromkeys(p.name for p in todo))
    budget = int(math.ceil(seconds / 60.0) * 60 + 60)  # whole minutes, one spare for the start and the pack
    return f"python -m mcr2 paper --only {names} --budget {budget}", seconds


def closing_text(records: dict, question: int, runs_dir: Path | None = None) -> str:
    """The end of a question in the chapter, as Markdown: what the records decide, what they do not
    (and why), and the command that would train what is missing, with its estimated GPU minutes."""
    table = cause_verdicts(records, question)
    decided = table[table["verdict"] != "undecided"]
    open_ = table[table["verdict"] == "undecided"]
    lines = ["**Decided.** " + ("; ".join(f"{r.cause}: {r.verdict} ({r.test})" for r in decided.itertuples()) + "."
                                if len(decided) else "Nothing yet.")]
    lines.append("**Not decided.** " + ("; ".join(f"{r.cause} ({r.why})" for r in open_.itertuples()) + "."
                                        if len(open_) else "Nothing: every cause has a verdict."))
    command, seconds = decide_command(question, runs_dir)
    if command:
        lines.append(f"**To decide it**, on a GPU (about {seconds / 60:.0f} GPU-minutes on the cost table's "
                     f"device, one run at a time): `{command}`, then import the pack and render this chapter again.")
    elif len(open_):
        lines.append("**To decide it**: every paper record is there; what stays open needs more seeds "
                     "(`python -m mcr2 paper --seeds 0 1 2 3 4 --only "
                     + " ".join(question_experiments(question)) + " --budget SECONDS`).")
    return "\n\n".join(lines)
