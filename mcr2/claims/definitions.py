"""The report's claims (FACTS.md, "Claims to check") as data, each with an evaluator that turns
run records into our value and tests, and the ledger that turns those into verdicts.

Verdict rules (one place, used by every claim; the tests themselves are :mod:`mcr2.claims.stats`'s):

* **A claim's rule** is the same for all claims: ✓ if every test is +1, ✗ if any is −1, else
  inconclusive. Applied to the results it gives the *verdict*, to the leans the *leaning* (the
  direction the runs point in, shown even when they cannot decide).
* **The gate** keeps the verdict inconclusive, and says why, when the records cannot bear one:
  missing or incomplete records, a profile other than ``paper`` (the smoke profile's toy models
  show a direction, not the report's numbers), fewer than :data:`MIN_SEEDS` finite seeds, a
  masked run in which MCR² never switched on, or a claim's own condition (claims 4 and 4b: a
  masking threshold other than the report's 0.99; claim 11: fewer than MIN_SEEDS records per arm
  carrying its column). Records of different profiles are never compared: their leaning is "—".
* **Consistent with the report** is read beside the verdict, on records that bear one: whether
  each number the report gives lies inside our 95 % t-interval over seeds (a bound it states,
  "> 0.99": whether the interval reaches it). A direction can agree while the numbers do not.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

import numpy as np
from scipy import special

from ..summary import DIGIT_CLASSES, mean_sd, mean_sd_text, record_cosine_blocks
from .runs import digit_cosine, masking_events, run_notes, seed_values
from .stats import ALPHA, CONFIDENCE, MIN_SEEDS, Test, above, below, equivalent, finite, paired, t_interval, welch

__all__ = [
    "VERDICTS",
    "VERDICT_PROFILE",
    "R_SAME_FRACTION",
    "REPORT_MASK_THRESHOLD",
    "REPORT_MASK_EPOCHS",
    "MATCH_MARGIN",
    "QUICK_EPOCH",
    "HIGH_BACKGROUND_ACC",
    "COSINE_WELL_ABOVE",
    "DIGIT_EDGE_COLUMN",
    "structureless_cosine",
    "TEST_RULE",
    "Claim",
    "Outcome",
    "CLAIMS",
    "claim",
    "select",
    "LEDGER_COLUMNS",
    "evaluate_claims",
    "claim_quantities",
]

VERDICTS = ("✓", "✗", "inconclusive")
VERDICT_PROFILE = "paper"  # the only profile whose runs may confirm or refute the report
R_SAME_FRACTION = 0.05  # claim 3: R "about the same" when |ΔR| < 5 % of the mean R (report: 45 vs 46, 2 %)
REPORT_MASK_THRESHOLD = 0.99  # claims 4, 4b: background-head accuracy the report's switch waits for
REPORT_MASK_EPOCHS = 5  # claim 4: ... reached within this many epochs
MATCH_MARGIN = 0.01  # claim 7: "matched" = non-background accuracies within ±0.01 (TOST): the resolution the
#                      report's accuracy figures are read at
QUICK_EPOCH = 5  # claim 7: "quickly" = matched already at this epoch (the report's own "within 5 epochs", §2.2.1)
HIGH_BACKGROUND_ACC = 0.95  # claim 9: "able to distinguish background" = background-pixel accuracy above 0.95
#                             (at most one background pixel in twenty labelled a digit); the report gives no number
COSINE_WELL_ABOVE = 0.1  # claim 12: "well above" = the largest between-class block's mean |cos| higher by more
#                          than 0.1, more than the whole mean |cos| of structureless features (≈ 0.071 at d = 128)
DIGIT_EDGE_COLUMN = "acc_digit_edge"  # claim 11: history column, per epoch, of segmentation runs: accuracy on digit
#                                       pixels with a background 4-neighbour (runs record it from its introduction on)


@dataclass
class Outcome:
    """What an evaluator found on the given runs."""

    our_value: str  # our numbers as text (mean ± sd over seeds when several)
    tests: list[Test]  # the comparisons the claim rests on, +1 = supports the claim
    quantities: dict[str, tuple[str, list[float]]] = field(default_factory=dict)  # key: (experiment, per-seed values)
    #                                                     one value per record of that experiment, in the records' order
    gate: str | None = None  # a claim-specific reason that keeps the verdict inconclusive


def _rule(signs: list[int]) -> str:
    """The one rule of every claim: ✓ if every test is +1, ✗ if any is −1, else inconclusive."""
    if any(s < 0 for s in signs):
        return "✗"
    if signs and all(s > 0 for s in signs):
        return "✓"
    return "inconclusive"


@dataclass(frozen=True)
class Claim:
    id: int  # FACTS.md's number
    label: str  # as the ledger shows it: "1", "2a", ...
    statement: str  # the report's claim (FACTS.md "Claims to check", with the report's section)
    report_value: str  # what the report shows, as read off its figures (FACTS.md "Figures")
    report_numbers: dict[str, float]  # the same as numbers, keyed like Outcome.quantities
    experiments: tuple[str, ...]  # the run records it needs
    rule: str  # what the tests are, in words
    evaluate: Callable[[dict], Outcome]  # records -> Outcome
    needs_mcr2_on: tuple[str, ...] = ()  # masked experiments whose MCR² must have trained
    short: str = ""  # the report's sentence in a few words (the verdict table's)
    evidence: tuple[str, str | None] = ("09_claims", None)  # (chapter, section heading) that shows the numbers
    report_bounds: dict[str, float] = field(default_factory=dict)  # quantities the report states only as a
    #                                                   lower bound ("> 0.99"): consistent when our interval reaches it

    def __call__(self, records: dict) -> Outcome:
        return self.evaluate(records)


def _claim1(records) -> Outcome:
    q = {f"{m} · {d}": (f"cls_digits_{e}", seed_values(records, f"cls_digits_{e}", f"{d.lower()}_acc"))
         for m, e in (("MCR²", "mcr2"), ("CE", "ce")) for d in ("MNIST", "USPS")}
    tests = [welch(q[f"MCR² · {d}"][1], q[f"CE · {d}"][1], f"MCR² − CE · {d}") for d in ("MNIST", "USPS")]
    text = "; ".join(f"{d}: MCR² {mean_sd_text(q[f'MCR² · {d}'][1])} vs CE {mean_sd_text(q[f'CE · {d}'][1])}"
                     for d in ("MNIST", "USPS"))
    return Outcome(text, tests, q)


def _claim2(layout: str) -> Callable[[dict], Outcome]:
    suffix = "" if layout == "resize" else "_pad"

    def evaluate(records) -> Outcome:
        q = {f"{m} · {d} [{layout}]": (f"cls_mnist_{e}{suffix}",
                                       seed_values(records, f"cls_mnist_{e}{suffix}", f"{d.lower()}_acc"))
             for m, e in (("MCR²", "mcr2"), ("CE", "ce")) for d in ("MNIST", "USPS")}
        usps = {m: q[f"{m} · USPS [{layout}]"][1] for m in ("MCR²", "CE")}
        mnist = {m: q[f"{m} · MNIST [{layout}]"][1] for m in ("MCR²", "CE")}
        tests = [welch(usps["CE"], usps["MCR²"], "CE − MCR² · USPS")]
        text = (f"USPS: MCR² {mean_sd_text(usps['MCR²'])} vs CE {mean_sd_text(usps['CE'])} "
                f"(MNIST: {mean_sd_text(mnist['MCR²'])} vs {mean_sd_text(mnist['CE'])})")
        return Outcome(text, tests, q)

    return evaluate


def _claim3(records) -> Outcome:
    q = {f"{t} · {d}": (e, seed_values(records, e, t))
         for t in ("R", "Rc") for d, e in (("MNIST", "seg_mnist_mcr2"), ("backgrounds", "seg_bg_mcr2"))}
    r_bg, r_mn = q["R · backgrounds"][1], q["R · MNIST"][1]
    m_bg, m_mn = mean_sd(r_bg)[0], mean_sd(r_mn)[0]
    tol = R_SAME_FRACTION * (m_bg + m_mn) / 2  # NaN without values: the test then has none either
    tests = [welch(q["Rc · backgrounds"][1], q["Rc · MNIST"][1], "Rc backgrounds − MNIST"),
             equivalent(r_bg, r_mn, tol, f"R backgrounds − MNIST within ±{tol:.2f}")]
    text = (f"R {mean_sd_text(r_mn, 2)} (MNIST) vs {mean_sd_text(r_bg, 2)} (backgrounds), "
            f"|ΔR| = {abs(m_bg - m_mn):.2f} vs {R_SAME_FRACTION:.0%} = {tol:.2f}; "
            f"Rc {mean_sd_text(q['Rc · MNIST'][1], 2)} vs {mean_sd_text(q['Rc · backgrounds'][1], 2)}")
    return Outcome(text, tests, q)


def _first_epoch_at(rec, threshold: float) -> float:
    """First epoch whose background-check accuracy is ≥ threshold; the recorded switch epoch if
    the history lacks the column and the run's own threshold was at least as strict; else NaN."""
    h = rec.history
    if "bg_check_acc" in getattr(h, "columns", ()):
        hit = h.loc[pd.to_numeric(h["bg_check_acc"], errors="coerce") >= threshold, "epoch"]
        return float(hit.iloc[0]) if len(hit) else math.nan
    switch = rec.record.get("events", {}).get("mask_switch_epoch")
    if switch is not None and rec.config.loss.mask_threshold >= threshold:
        return float(switch)
    return math.nan


def _epochs_run(rec) -> int:
    h = rec.history
    return int(h["epoch"].max()) if "epoch" in getattr(h, "columns", ()) and len(h) else 0


def _acc_at_epoch(rec, epoch: int, best: bool = False) -> float:
    """Background-check accuracy after ``epoch`` (``best``: the highest up to that epoch)."""
    h = rec.history
    if "bg_check_acc" not in getattr(h, "columns", ()):
        return math.nan
    acc = pd.to_numeric(h.loc[h["epoch"] <= epoch, "bg_check_acc"], errors="coerce").dropna()
    if not len(acc):
        return math.nan
    return float(acc.max() if best else acc.iloc[-1])


def _claim4(records) -> Outcome:
    recs = records.get("seg_bg_mcr2_masked", [])
    first = [_first_epoch_at(r, REPORT_MASK_THRESHOLD) for r in recs]
    best5 = [_acc_at_epoch(r, REPORT_MASK_EPOCHS, best=True) for r in recs]
    acc5 = [_acc_at_epoch(r, REPORT_MASK_EPOCHS) for r in recs]
    q = {f"best bg-head accuracy by epoch {REPORT_MASK_EPOCHS}": ("seg_bg_mcr2_masked", best5)}
    decided = []  # per seed: True passed, False failed; a seed that stopped before epoch 5 decides nothing
    for r, e in zip(recs, first):
        if math.isfinite(e) and e <= REPORT_MASK_EPOCHS:
            decided.append(True)
        elif _epochs_run(r) >= REPORT_MASK_EPOCHS:
            decided.append(False)
    passed = sum(decided)
    lean = 0 if not decided else 1 if passed == len(decided) else -1 if passed == 0 else 0
    detail = f"{passed} of {len(decided)} seeds reached {REPORT_MASK_THRESHOLD:g} by epoch {REPORT_MASK_EPOCHS}"
    tests = [Test(f"head ≥ {REPORT_MASK_THRESHOLD:g} by epoch {REPORT_MASK_EPOCHS}", math.nan, math.nan, math.nan,
                  (len(decided),), lean, detail)]
    reached = ", ".join("never" if not math.isfinite(e) else f"epoch {int(e)}" for e in first) or "n/a"
    thresholds = sorted({r.config.loss.mask_threshold for r in recs})
    switches = ", ".join(str(r.record.get("events", {}).get("mask_switch_epoch")) for r in recs)
    text = (f"{REPORT_MASK_THRESHOLD:g} reached: {reached}; best accuracy by epoch {REPORT_MASK_EPOCHS}: "
            f"{mean_sd_text(best5)}, at epoch {REPORT_MASK_EPOCHS}: {mean_sd_text(acc5)}; "
            f"MCR² switched on after epoch {switches} (threshold {', '.join(f'{t:g}' for t in thresholds)})")
    gate = None
    if any(t != REPORT_MASK_THRESHOLD for t in thresholds):
        gate = (f"masking threshold {', '.join(f'{t:g}' for t in thresholds)}, not the report's "
                f"{REPORT_MASK_THRESHOLD:g}: MCR² switched on at another time, so the head trained differently")
    return Outcome(text, tests, q, gate)


def _claim5(records) -> Outcome:
    q = {label: (name, seed_values(records, name, "mnist_foreground_acc"))
         for label, name in (("masked MCR²", "seg_bg_mcr2_masked"), ("unmasked MCR²", "seg_bg_mcr2"), ("CE", "seg_bg_ce"))}
    tests = [welch(q["masked MCR²"][1], q["unmasked MCR²"][1], "masked − unmasked MCR²"),
             welch(q["masked MCR²"][1], q["CE"][1], "masked MCR² − CE")]
    text = (f"masked {mean_sd_text(q['masked MCR²'][1])}, unmasked {mean_sd_text(q['unmasked MCR²'][1])}, "
            f"CE {mean_sd_text(q['CE'][1])}")
    return Outcome(text, tests, q)


def structureless_cosine(feature_dim: int) -> float:
    """Mean |cos| of two independent uniformly random unit vectors in ``feature_dim`` dimensions,
    E|z₁| on the unit sphere = Γ(d/2) / (√π Γ((d+1)/2)) (≈ 0.0707 at d = 128): what features with no
    class structure at all give between classes, the bar claim 6's "near 0" must clear."""
    d = float(feature_dim)
    return float(np.exp(special.gammaln(d / 2) - special.gammaln((d + 1) / 2)) / np.sqrt(np.pi))


def _feature_dim(records, name: str) -> int | None:
    dims = sorted({r.config.model.feature_dim for r in records.get(name, [])})
    return dims[0] if len(dims) == 1 else None


def _claim6(records) -> Outcome:
    per = {name: [digit_cosine(r) for r in records.get(name, [])] for name in ("seg_bg_mcr2_masked", "seg_bg_mcr2")}
    between_m = [b for b, _, _ in per["seg_bg_mcr2_masked"]]
    within_m = [w for _, w, _ in per["seg_bg_mcr2_masked"]]
    between_u = [b for b, _, _ in per["seg_bg_mcr2"]]
    within_u = [w for _, w, _ in per["seg_bg_mcr2"]]
    d = _feature_dim(records, "seg_bg_mcr2_masked")
    bar = structureless_cosine(d) if d else math.nan
    tests = [below(between_m, bar, f"masked between-class |cos| below structureless {bar:.3f} (d = {d})"),
             welch(within_m, within_u, "within-class |cos|, masked − unmasked")]
    older = [f"{name} seed {r.config.seed}" for name in per for r, (_, _, src) in zip(records.get(name, []), per[name])
             if "stored pixels" in src]
    text = (f"mean |cos| over digit blocks — masked: between {mean_sd_text(between_m)}, within {mean_sd_text(within_m)}; "
            f"unmasked: between {mean_sd_text(between_u)}, within {mean_sd_text(within_u)}; structureless features "
            f"in d = {d}: {bar:.3f}"
            + (f" (from the pixels each run stores, not all it sampled, for {', '.join(older)}: records older than "
               f"that statistic)" if older else ""))
    q = {"masked · between |cos|": ("seg_bg_mcr2_masked", between_m),
         "masked · within |cos|": ("seg_bg_mcr2_masked", within_m),
         "unmasked · between |cos|": ("seg_bg_mcr2", between_u),
         "unmasked · within |cos|": ("seg_bg_mcr2", within_u)}
    gate = None if d else "masked runs of different feature dimensions (or none): no structureless bar"
    return Outcome(text, tests, q, gate)


def _claim2c(records) -> Outcome:
    q = {f"{m} · MNIST": (f"cls_mnist_{e}", seed_values(records, f"cls_mnist_{e}", "mnist_acc"))
         for m, e in (("MCR²", "mcr2"), ("CE", "ce"))}
    tests = [welch(q["CE · MNIST"][1], q["MCR² · MNIST"][1], "CE − MCR² · MNIST")]
    text = f"MNIST: MCR² {mean_sd_text(q['MCR² · MNIST'][1])} vs CE {mean_sd_text(q['CE · MNIST'][1])}"
    return Outcome(text, tests, q)


def _after_switch(rec) -> list[float]:
    """Background-check accuracies of the epochs MCR² trained on the head's mask (after the switch)."""
    switch = rec.record.get("events", {}).get("mask_switch_epoch")
    h = rec.history
    if switch is None or "bg_check_acc" not in getattr(h, "columns", ()):
        return []
    return list(pd.to_numeric(h.loc[h["epoch"] > switch, "bg_check_acc"], errors="coerce").dropna())


def _claim4b(records) -> Outcome:
    recs = records.get("seg_bg_mcr2_masked", [])
    after = [_after_switch(r) for r in recs]
    lowest = [min(a) if a else math.nan for a in after]
    decided = [v >= REPORT_MASK_THRESHOLD for v in lowest if math.isfinite(v)]
    held = sum(decided)
    lean = 0 if not decided else 1 if held == len(decided) else -1 if held == 0 else 0
    detail = f"{held} of {len(decided)} seeds stayed ≥ {REPORT_MASK_THRESHOLD:g} after the switch"
    tests = [Test(f"head ≥ {REPORT_MASK_THRESHOLD:g} after the switch", math.nan, math.nan, math.nan,
                  (len(decided),), lean, detail)]
    below_at = []
    for r, a in zip(recs, after):
        switch = r.record.get("events", {}).get("mask_switch_epoch")
        n_below = sum(v < REPORT_MASK_THRESHOLD for v in a)
        if a:
            below_at.append(f"seed {r.config.seed}: {n_below} of {len(a)} epochs after epoch {switch} below")
    q = {"lowest bg-head accuracy after the switch": ("seg_bg_mcr2_masked", lowest)}
    text = (f"lowest background-check accuracy after the switch {mean_sd_text(lowest)}"
            + (f" ({'; '.join(below_at)})" if below_at else ""))
    thresholds = sorted({r.config.loss.mask_threshold for r in recs})
    gate = None
    if any(t != REPORT_MASK_THRESHOLD for t in thresholds):
        gate = (f"masking threshold {', '.join(f'{t:g}' for t in thresholds)}, not the report's "
                f"{REPORT_MASK_THRESHOLD:g}: MCR² switched on at another time, so the head trained differently")
    return Outcome(text, tests, q, gate)


def _value_at(rec, column: str, epoch: int) -> float:
    """``column`` after ``epoch`` (NaN where the history has no such value)."""
    h = rec.history
    if column not in getattr(h, "columns", ()) or "epoch" not in h.columns:
        return math.nan
    v = pd.to_numeric(h.loc[h["epoch"] == epoch, column], errors="coerce").dropna()
    return float(v.iloc[0]) if len(v) else math.nan


def _claim7(records) -> Outcome:
    col = "mnist_foreground_acc"
    q = {}
    for m, e in (("MCR²", "seg_mnist_mcr2"), ("CE", "seg_mnist_ce")):
        q[f"{m} · epoch {QUICK_EPOCH}"] = (e, [_value_at(r, col, QUICK_EPOCH) for r in records.get(e, [])])
        q[f"{m} · final"] = (e, seed_values(records, e, col))
    tests = [equivalent(q[f"MCR² · epoch {QUICK_EPOCH}"][1], q[f"CE · epoch {QUICK_EPOCH}"][1], MATCH_MARGIN,
                        f"MCR² − CE at epoch {QUICK_EPOCH} within ±{MATCH_MARGIN:g}"),
             equivalent(q["MCR² · final"][1], q["CE · final"][1], MATCH_MARGIN,
                        f"MCR² − CE at the end within ±{MATCH_MARGIN:g}")]
    text = (f"non-background accuracy at epoch {QUICK_EPOCH}: MCR² {mean_sd_text(q[f'MCR² · epoch {QUICK_EPOCH}'][1])} "
            f"vs CE {mean_sd_text(q[f'CE · epoch {QUICK_EPOCH}'][1])}; at the end: MCR² "
            f"{mean_sd_text(q['MCR² · final'][1])} vs CE {mean_sd_text(q['CE · final'][1])}")
    return Outcome(text, tests, q)


def _claim8(records) -> Outcome:
    q = {"MCR² · MNIST": ("seg_mnist_mcr2", seed_values(records, "seg_mnist_mcr2", "mnist_foreground_acc")),
         "MCR² · backgrounds": ("seg_bg_mcr2", seed_values(records, "seg_bg_mcr2", "mnist_foreground_acc"))}
    tests = [welch(q["MCR² · MNIST"][1], q["MCR² · backgrounds"][1], "MNIST − backgrounds")]
    text = (f"non-background accuracy: plain MNIST {mean_sd_text(q['MCR² · MNIST'][1])}, "
            f"with backgrounds {mean_sd_text(q['MCR² · backgrounds'][1])}")
    return Outcome(text, tests, q)


def _claim9(records) -> Outcome:
    bg = seed_values(records, "seg_bg_mcr2", "mnist_background_acc")
    fg = seed_values(records, "seg_bg_mcr2", "mnist_foreground_acc")
    q = {"background accuracy": ("seg_bg_mcr2", bg), "non-background accuracy": ("seg_bg_mcr2", fg)}
    tests = [above(bg, HIGH_BACKGROUND_ACC, f"background accuracy above {HIGH_BACKGROUND_ACC:g}"),
             paired(bg, fg, "background − non-background accuracy, per run")]
    text = f"unmasked MCR² over backgrounds: background accuracy {mean_sd_text(bg)}, non-background {mean_sd_text(fg)}"
    return Outcome(text, tests, q)


def _claim10(records) -> Outcome:
    q = {f"{t} · {arm}": (e, seed_values(records, e, t))
         for t in ("R", "Rc") for arm, e in (("masked", "seg_bg_mcr2_masked"), ("unmasked", "seg_bg_mcr2"))}
    tests = [welch(q["Rc · unmasked"][1], q["Rc · masked"][1], "Rc unmasked − masked"),
             welch(q["R · masked"][1], q["R · unmasked"][1], "R masked − unmasked")]
    text = (f"last epoch's training Rc: masked {mean_sd_text(q['Rc · masked'][1], 2)} vs unmasked "
            f"{mean_sd_text(q['Rc · unmasked'][1], 2)}; R: masked {mean_sd_text(q['R · masked'][1], 2)} vs unmasked "
            f"{mean_sd_text(q['R · unmasked'][1], 2)}")
    return Outcome(text, tests, q)


def _claim11(records) -> Outcome:
    q = {arm: (e, seed_values(records, e, DIGIT_EDGE_COLUMN))
         for arm, e in (("masked MCR²", "seg_bg_mcr2_masked"), ("unmasked MCR²", "seg_bg_mcr2"))}
    tests = [welch(q["masked MCR²"][1], q["unmasked MCR²"][1], "masked − unmasked, digit-edge pixels")]
    text = (f"accuracy on digit pixels with a background 4-neighbour: masked {mean_sd_text(q['masked MCR²'][1])}, "
            f"unmasked {mean_sd_text(q['unmasked MCR²'][1])}")
    carrying = {arm: len(finite(v)) for arm, (_, v) in q.items()}
    gate = None
    if min(carrying.values()) < MIN_SEEDS:
        gate = (f"the records lack {DIGIT_EDGE_COLUMN} (accuracy on digit pixels that touch background), which runs "
                f"record from its introduction on: " + ", ".join(f"{n} {arm} seed{'s' if n != 1 else ''} carry it"
                                                                   for arm, n in carrying.items())
                + f"; ≥ {MIN_SEEDS} per arm needed")
    return Outcome(text, tests, q, gate)


def _digit_blocks(rec) -> tuple[float, float, float]:
    """(largest between-class, mean digit within-class, background within-class) mean |cos| of a
    record's blocks (NaN where it has no feature statistics)."""
    try:
        means = record_cosine_blocks(rec).means
    except KeyError:
        return math.nan, math.nan, math.nan
    digits = list(DIGIT_CLASSES)
    sub = means[np.ix_(digits, digits)]
    off = sub[~np.eye(len(digits), dtype=bool)]
    off = off[np.isfinite(off)]
    diag = np.diag(sub)
    diag = diag[np.isfinite(diag)]
    return (float(off.max()) if off.size else math.nan, float(diag.mean()) if diag.size else math.nan,
            float(means[0, 0]))


def _claim12(records) -> Outcome:
    q = {f"{arm} · largest between-class |cos|": (e, [_digit_blocks(r)[0] for r in records.get(e, [])])
         for arm, e in (("unmasked", "seg_bg_mcr2"), ("masked", "seg_bg_mcr2_masked"))}
    u, m = q["unmasked · largest between-class |cos|"][1], q["masked · largest between-class |cos|"][1]
    tests = [welch(u, m, f"unmasked − masked − {COSINE_WELL_ABOVE:g}", margin=COSINE_WELL_ABOVE)]
    text = f"largest between-class block over digit classes: unmasked {mean_sd_text(u)}, masked {mean_sd_text(m)}"
    return Outcome(text, tests, q)


def _claim13(records) -> Outcome:
    blocks = [_digit_blocks(r) for r in records.get("seg_bg_mcr2", [])]
    digits, background = [b[1] for b in blocks], [b[2] for b in blocks]
    q = {"unmasked · digit within-class |cos|": ("seg_bg_mcr2", digits),
         "unmasked · background within-class |cos|": ("seg_bg_mcr2", background)}
    tests = [paired(digits, background, "digit − background within-class |cos|, per run")]
    text = (f"unmasked within-class mean |cos|: background {mean_sd_text(background)}, digit classes "
            f"{mean_sd_text(digits)}")
    return Outcome(text, tests, q)


#: How every comparison is decided (each claim's ``rule`` names its comparisons).
TEST_RULE = (f"one-sided t-test on the per-seed final values (Welch for two experiments, paired for two numbers "
             f"of the same runs, one-sample against a bound) in the direction the means point, at "
             f"p < {ALPHA:g} with ≥ {MIN_SEEDS} finite seeds per arm; each direction is tested at {ALPHA:.0%}, so "
             f"with no true difference about {2 * ALPHA:.0%} of tests come out decisive, one way or the other")

_ACC = ("03_classification", "Accuracy over training")
_MASKED = ("06_masking", "Masked against unmasked MCR² and CE")

#: The report's claims, in FACTS.md's order; claim 2 once per USPS layout and once for its MNIST half.
CLAIMS: list[Claim] = [
    Claim(
        1, "1", "Trained on DIGITS, MCR² beats CE on both MNIST and USPS validation (§2.1, Fig. 1a).",
        "MCR² 0.989 MNIST / 0.978 USPS; CE 0.987 / 0.972",
        {"MCR² · MNIST": 0.989, "MCR² · USPS": 0.978, "CE · MNIST": 0.987, "CE · USPS": 0.972},
        ("cls_digits_mcr2", "cls_digits_ce"),
        "Final accuracy: MCR² > CE on MNIST and MCR² > CE on USPS (Welch).",
        _claim1, short="DIGITS: MCR² beats CE on MNIST and USPS", evidence=_ACC,
    ),
    Claim(
        2, "2a", "Trained on MNIST only, MCR² does not generalise to USPS better than CE (§2.1, Fig. 1b); "
                 "USPS resized into MNIST's 20×20 box (this book's default layout).",
        "MNIST: MCR² 0.93 vs CE 0.98; USPS: none for this layout (the report's 0.29 vs 0.52 are claim 2b's)",
        {"MCR² · MNIST [resize]": 0.93, "CE · MNIST [resize]": 0.98},
        ("cls_mnist_mcr2", "cls_mnist_ce"),
        "Final USPS accuracy: CE > MCR² (the report's reading: MCR² is worse; Welch).",
        _claim2("resize"), short="MNIST only: MCR² no better than CE on USPS (resized)", evidence=_ACC,
    ),
    Claim(
        2, "2b", "The same with USPS padded unscaled at a random offset, the authors' layout that produced "
                 "the report's numbers (§2.1, Fig. 1b).",
        "USPS: MCR² 0.29 vs CE 0.52 (MNIST: 0.93 vs 0.98)",
        {"MCR² · MNIST [pad_random]": 0.93, "MCR² · USPS [pad_random]": 0.29,
         "CE · MNIST [pad_random]": 0.98, "CE · USPS [pad_random]": 0.52},
        ("cls_mnist_mcr2_pad", "cls_mnist_ce_pad"),
        "Final USPS accuracy: CE > MCR² (the report's reading: MCR² is worse; Welch).",
        _claim2("pad_random"), short="MNIST only: MCR² no better than CE on USPS (padded, the authors' layout)",
        evidence=_ACC,
    ),
    Claim(
        2, "2c", "Trained on MNIST only, \"MCR² has worse accuracy over both validation sets\": its MNIST half "
                 "(§2.1, Fig. 1b).",
        "MNIST: MCR² 0.93 vs CE 0.98",
        {"MCR² · MNIST": 0.93, "CE · MNIST": 0.98},
        ("cls_mnist_mcr2", "cls_mnist_ce"),
        "Final MNIST accuracy: CE > MCR² (Welch).",
        _claim2c, short="MNIST only: MCR² worse than CE on MNIST", evidence=_ACC,
    ),
    Claim(
        3, "3", "With CIFAR backgrounds, Rc is higher than on plain MNIST while R is about the same (§2.2.1, Fig. 3).",
        "R ≈ 45–46 on both; Rc ≈ 34.5 (MNIST) vs 37.5 (backgrounds)",
        {"R · MNIST": 45.5, "R · backgrounds": 45.5, "Rc · MNIST": 34.5, "Rc · backgrounds": 37.5},
        ("seg_mnist_mcr2", "seg_bg_mcr2"),
        f"Last epoch's training R and Rc: Rc higher with backgrounds (Welch), and R the same within "
        f"±{R_SAME_FRACTION:.0%} of the mean R (two one-sided Welch tests against that margin).",
        _claim3, short="Backgrounds raise Rc, R about the same", evidence=("05_backgrounds", "$R$ and $R_c$ during training"),
    ),
    Claim(
        4, "4", "The background head passes 99 % accuracy within 5 epochs (§2.2.1, Fig. 4).",
        "> 0.99 background accuracy after 5 epochs",
        {f"best bg-head accuracy by epoch {REPORT_MASK_EPOCHS}": REPORT_MASK_THRESHOLD},
        ("seg_bg_mcr2_masked",),
        f"Per-epoch background-check accuracy (bg_check_acc): every seed (≥ {MIN_SEEDS}) reaches "
        f"{REPORT_MASK_THRESHOLD:g} by epoch {REPORT_MASK_EPOCHS} (✗: no seed does); only with the report's "
        f"threshold {REPORT_MASK_THRESHOLD:g}.",
        _claim4, short=f"Background head reaches {REPORT_MASK_THRESHOLD:g} by epoch {REPORT_MASK_EPOCHS}",
        evidence=("06_masking", "When masking switches on"),
        report_bounds={f"best bg-head accuracy by epoch {REPORT_MASK_EPOCHS}": REPORT_MASK_THRESHOLD},
    ),
    Claim(
        4, "4b", "Once the head reaches 99 %, its mask \"reduces the problem to one similar to the vanilla MNIST "
                 "dataset\": the head stays at or above 0.99 while MCR² trains on its mask (§2.2.1).",
        "≥ 0.99 from the switch on (implied: the mask stands in for the ground truth)",
        {"lowest bg-head accuracy after the switch": REPORT_MASK_THRESHOLD},
        ("seg_bg_mcr2_masked",),
        f"Background-check accuracy (bg_check_acc) at every epoch after the switch: every seed (≥ {MIN_SEEDS}) "
        f"stays ≥ {REPORT_MASK_THRESHOLD:g} (✗: no seed does); only with the report's threshold "
        f"{REPORT_MASK_THRESHOLD:g}.",
        _claim4b, needs_mcr2_on=("seg_bg_mcr2_masked",),
        short=f"Head stays ≥ {REPORT_MASK_THRESHOLD:g} while MCR² trains on its mask",
        evidence=("06_masking", "When masking switches on"),
        report_bounds={"lowest bg-head accuracy after the switch": REPORT_MASK_THRESHOLD},
    ),
    Claim(
        5, "5", "Masked MCR² beats unmasked MCR² and CE on non-background pixel accuracy (§2.2.1, Fig. 5).",
        "masked 0.96, unmasked 0.88, CE 0.93",
        {"masked MCR²": 0.96, "unmasked MCR²": 0.88, "CE": 0.93},
        ("seg_bg_mcr2_masked", "seg_bg_mcr2", "seg_bg_ce"),
        "Final non-background accuracy (mnist_foreground_acc): masked > unmasked MCR² and masked MCR² > CE (Welch).",
        _claim5, needs_mcr2_on=("seg_bg_mcr2_masked",),
        short="Masked MCR² beats unmasked MCR² and CE on digit pixels", evidence=_MASKED,
    ),
    Claim(
        6, "6", "With masking, off-diagonal cosine blocks are near 0 and diagonal blocks nearer 1 than without (§2.2.2, Fig. 7).",
        "masked: off-diagonal blocks ≈ 0, diagonal brighter than unmasked (read off the heatmaps, no numbers)",
        {},
        ("seg_bg_mcr2_masked", "seg_bg_mcr2"),
        f"Mean |cos| per class block over the sampled validation pixels, digit classes only: the masked "
        f"between-class mean below what structureless features give, the mean |cos| of independent random unit "
        f"vectors in the same d ({structureless_cosine(128):.3f} at d = 128; one-sided one-sample t-test), and the "
        f"within-class mean masked > unmasked (Welch).",
        _claim6, needs_mcr2_on=("seg_bg_mcr2_masked",),
        short="Masked: between-class |cos| near 0, within-class higher", evidence=("07_feature_space", None),
    ),
    Claim(
        7, "7", "\"The validation performance of the MCR² objective with Unet backbone on MNIST quickly matched "
                "that of cross entropy\" (§2.2.1).",
        "no number (a sentence)",
        {},
        ("seg_mnist_mcr2", "seg_mnist_ce"),
        f"Non-background accuracy (mnist_foreground_acc) of MCR² and CE on plain MNIST equal within "
        f"±{MATCH_MARGIN:g} (two one-sided Welch tests against that margin) at epoch {QUICK_EPOCH} (\"quickly\") "
        f"and at the end.",
        _claim7, short="Plain MNIST: MCR² quickly matches CE",
        evidence=("04_segmentation", "Predictions on fixed validation images"),
    ),
    Claim(
        8, "8", "\"The qualitative performance on MNIST_CIFAR_BG dataset is far worse\" than on MNIST: \"it struggles "
                "to accurately classify the instance pixels\" (§2.2.1, Fig. 2).",
        "unmasked MCR² over backgrounds 0.88 (Fig. 5); plain MNIST: no number",
        {"MCR² · backgrounds": 0.88},
        ("seg_mnist_mcr2", "seg_bg_mcr2"),
        "Final non-background accuracy of MCR²: plain MNIST > with backgrounds (Welch).",
        _claim8, short="Backgrounds: MCR²'s digit accuracy worse than on plain MNIST",
        evidence=("05_backgrounds", "Predictions over backgrounds"),
    ),
    Claim(
        9, "9", "\"The model is able to distinguish background and instance pixels\"; backgrounds \"are easy to "
                "classify, but hard to represent\" (§2.2.1).",
        "unmasked non-background accuracy 0.88 (Fig. 5); background accuracy: no number",
        {"non-background accuracy": 0.88},
        ("seg_bg_mcr2",),
        f"Unmasked MCR² over backgrounds, final values: background accuracy above {HIGH_BACKGROUND_ACC:g} "
        f"(one-sample t-test) and above the same runs' non-background accuracy (paired t-test).",
        _claim9, short="Unmasked: background pixels easy, digit pixels lag",
        evidence=("05_backgrounds", "Predictions over backgrounds"),
    ),
    Claim(
        10, "10", "\"Background masking allows for the learning of a more within-class compressible feature space. "
                  "Additionally, the discriminative loss is also higher\" (§2.2.1, Fig. 5).",
        "masked R ≈ 51.5, Rc ≈ 12.5; unmasked R ≈ 45, Rc ≈ 31",
        {"R · masked": 51.5, "R · unmasked": 45.0, "Rc · masked": 12.5, "Rc · unmasked": 31.0},
        ("seg_bg_mcr2_masked", "seg_bg_mcr2"),
        "Last epoch's training Rc: masked < unmasked, and R: masked > unmasked (Welch).",
        _claim10, needs_mcr2_on=("seg_bg_mcr2_masked",), short="Masking lowers Rc and raises R", evidence=_MASKED,
    ),
    Claim(
        11, "11", "Masking classifies better \"the pixels on the boundary of the instance\" (§2.2.1, Fig. 6).",
        "no number (read off Fig. 6)",
        {},
        ("seg_bg_mcr2_masked", "seg_bg_mcr2"),
        f"Final accuracy on digit pixels with a background 4-neighbour ({DIGIT_EDGE_COLUMN}): masked > unmasked "
        f"(Welch); runs record it from its introduction on, and the line waits for {MIN_SEEDS} seeds per arm.",
        _claim11, needs_mcr2_on=("seg_bg_mcr2_masked",), short="Masking classifies digit edges better",
        evidence=_MASKED,
    ),
    Claim(
        12, "12", "Without masking \"several of the off-block-diagonal entries have high cosine similarity\" "
                  "(§2.2.2, Fig. 7).",
        "no number (read off the heatmaps)",
        {},
        ("seg_bg_mcr2", "seg_bg_mcr2_masked"),
        f"The largest between-class block's mean |cos| over the digit classes: unmasked above masked by more than "
        f"{COSINE_WELL_ABOVE:g} (\"well above\"; Welch against that margin).",
        _claim12, needs_mcr2_on=("seg_bg_mcr2_masked",), short="Unmasked: some between-class blocks high",
        evidence=("07_feature_space", None),
    ),
    Claim(
        13, "13", "Without masking \"the background class cosine similarities are sparse compared to other classes\" "
                  "(§2.2.2, Fig. 7).",
        "no number (read off the heatmap)",
        {},
        ("seg_bg_mcr2",),
        "Unmasked MCR² over backgrounds: the background block's within-class mean |cos| below the digit classes' "
        "mean within-class |cos| (paired t-test over runs).",
        _claim13, short="Unmasked: background block sparser than the digits'", evidence=("07_feature_space", None),
    ),
]


def claim(label) -> Claim:
    """The claim whose label (or, for a single-variant claim, id) is ``label``."""
    for c in CLAIMS:
        if c.label == str(label):
            return c
    raise KeyError(f"no claim {label!r}; claims: {', '.join(c.label for c in CLAIMS)}")


def select(ids) -> list[Claim]:
    if ids is None:
        return CLAIMS
    wanted = [str(i) for i in ids]
    chosen = [c for c in CLAIMS if c.label in wanted or str(c.id) in wanted]
    unknown = [w for w in wanted if not any(w in (c.label, str(c.id)) for c in CLAIMS)]
    if unknown:
        raise KeyError(f"no claim {', '.join(unknown)}; claims: {', '.join(c.label for c in CLAIMS)}")
    return chosen


# --------------------------------------------------------------------------- the ledger


def _profiles(claim: Claim, records: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for n in claim.experiments:
        for p in sorted({r.config.profile for r in records.get(n, [])}):
            out.setdefault(p, []).append(n)
    return out


def _gates(claim: Claim, records: dict, outcome: Outcome) -> list[str]:
    """Why this claim's verdict must stay inconclusive on these records (empty: it need not)."""
    missing = [n for n in claim.experiments if not records.get(n)]
    if missing:
        return [f"no records of {', '.join(missing)}"]
    why = []
    recs = [r for n in claim.experiments for r in records[n]]
    incomplete = sorted({r.config.name for r in recs if r.record.get("status") != "complete"})
    if incomplete:
        why.append(f"incomplete records of {', '.join(incomplete)}")
    profiles = _profiles(claim, records)
    if len(profiles) > 1:
        why.append("mixed profiles (" + "; ".join(f"{p}: {', '.join(n)}" for p, n in profiles.items()) + ")")
    elif list(profiles) != [VERDICT_PROFILE]:
        why.append(f"{next(iter(profiles))} profile")
    for name in claim.needs_mcr2_on:
        untrained = [e.seed for e in map(masking_events, records.get(name, [])) if not e.mcr2_trained]
        if untrained:
            why.append(f"MCR² never trained in {name} (seed {', '.join(map(str, untrained))})")
    seeds = _seeds(outcome)
    if seeds < MIN_SEEDS:
        why.append(f"{seeds} seed{'s' if seeds != 1 else ''} (≥ {MIN_SEEDS} per arm needed)")
    if outcome.gate:
        why.append(outcome.gate)
    return why


def _seeds(outcome: Outcome) -> int:
    """The fewest finite seeds of any arm of any test (NaN values do not count)."""
    return min((n for t in outcome.tests for n in t.n), default=0)


def _number(v: float, digits: int) -> str:
    return f"{v:.{digits}f}" if math.isfinite(v) else "n/a"


def _digits(values) -> int:
    """Decimals for a quantity: 3 for accuracies and cosines, 2 for coding rates (≥ 2)."""
    return 2 if any(abs(v) >= 2 for v in finite(values)) else 3


def _per_seed(records: dict, outcome: Outcome) -> str:
    """Every quantity's value per seed, with the seeds: "masked MCR²: 0.949, 0.942, 0.944 (seeds 0, 1, 2)"."""
    parts = []
    for quantity, (name, values) in outcome.quantities.items():
        seeds = [r.config.seed for r in records.get(name, [])]
        if not values:
            continue
        digits = _digits(values)
        parts.append(f"{quantity}: {', '.join(_number(v, digits) for v in values)} "
                     f"(seed{'s' if len(seeds) != 1 else ''} {', '.join(map(str, seeds))})")
    return "; ".join(parts)


def _consistency(claim: Claim, outcome: Outcome, gates: list[str]) -> tuple[str, str]:
    """("yes" / "no" / "—", why): whether each number the report gives lies inside our
    :data:`CONFIDENCE` t-interval over seeds (a lower bound the report states: whether the
    interval reaches it). Only where the records could bear a verdict (paper profile, complete,
    ≥ MIN_SEEDS seeds): the smoke profile's numbers are not the report's scale."""
    numbers = {k: v for k, v in claim.report_numbers.items() if k in outcome.quantities}
    if not numbers:
        return "—", "the report gives no number"
    if gates:
        return "—", "not read on records that bear no verdict"
    inside, parts = [], []
    for quantity, report in numbers.items():
        values = outcome.quantities[quantity][1]
        lo, hi = t_interval(values)
        digits = _digits([report, *values])
        if quantity in claim.report_bounds:
            ok = hi >= report
            parts.append(f"{quantity}: report ≥ {report:g}, ours {CONFIDENCE:.0%} interval "
                         f"[{_number(lo, digits)}, {_number(hi, digits)}] {'reaches' if ok else 'stays below'} it")
        else:
            ok = lo <= report <= hi
            parts.append(f"{quantity}: report {report:g} {'inside' if ok else 'outside'} our {CONFIDENCE:.0%} "
                         f"interval [{_number(lo, digits)}, {_number(hi, digits)}]")
        inside.append(ok)
    return ("yes" if all(inside) else "no"), "; ".join(parts)


def _evaluate(claim: Claim, records: dict) -> dict:
    outcome = claim(records)
    gates = _gates(claim, records, outcome)
    consistent, consistency = _consistency(claim, outcome, gates)
    verdict = _rule([t.result for t in outcome.tests])
    if gates:
        verdict = "inconclusive"
    elif verdict == "inconclusive":
        gates = [f"{t.name}: " + ("the seeds disagree" if t.detail else f"p = {t.p:.3g} ≥ {ALPHA:g}")
                 for t in outcome.tests if t.result == 0]
    profiles = _profiles(claim, records)
    no_leaning = any(min(t.n, default=0) == 0 for t in outcome.tests) or len(profiles) > 1
    tests = "; ".join(t.text() for t in outcome.tests)
    if len(profiles) > 1:
        tests = "none: runs of different profiles are not compared"
    return {
        "claim": claim.label,
        "report statement": claim.statement,
        "report value": claim.report_value,
        "our value": outcome.our_value,
        "per seed": _per_seed(records, outcome),
        "seeds": _seeds(outcome),
        "profile": " + ".join(profiles) or "—",
        "rule": claim.rule,
        "verdict": verdict,
        "leaning": "—" if no_leaning else _rule([t.lean for t in outcome.tests]),
        "consistent": consistent,
        "consistency": consistency,
        "tests": tests,
        "why": "; ".join(gates),
        "runs": "; ".join(run_notes(records, claim.experiments)),
    }


LEDGER_COLUMNS = ["claim", "report statement", "report value", "our value", "per seed", "seeds", "profile", "rule",
                  "verdict", "leaning", "consistent", "consistency", "tests", "why", "runs"]


def evaluate_claims(records: dict, ids=None) -> pd.DataFrame:
    """The claims ledger: one row per claim of :data:`CLAIMS` (or of the labels/ids in ``ids``).

    Columns: claim (label), report statement (with its section), report value, our value (mean
    ± sd over seeds), per seed (each value with its seed), seeds (the fewest finite seeds of any
    arm), profile, rule (the tests in words), verdict (✓ / ✗ / inconclusive), leaning (the rule on
    the point estimates; "—" without values or across profiles), consistent ("yes" / "no" / "—":
    the report's own numbers inside our 95 % t-interval over seeds) and consistency (that, per
    number), tests (Δ, t, p of each test), why (what kept the verdict inconclusive, empty
    otherwise) and runs (masked runs whose MCR² never trained or whose head collapsed). Every
    verdict in the book comes from here.
    """
    rows = [_evaluate(c, records) for c in select(ids)]
    return pd.DataFrame(rows, columns=LEDGER_COLUMNS)


def claim_quantities(records: dict, ids=None) -> pd.DataFrame:
    """Long table of every number a claim rests on: claim (id), label, quantity, experiment,
    profile, report (NaN where the report gives none), bound (True where the report states it only
    as a lower bound), ours (mean over finite seeds), sd (ddof = 1; NaN for one seed), n (finite
    seeds), per seed (the values, as text, in the records' seed order)."""
    rows = []
    for c in select(ids):
        outcome = c(records)
        for quantity, (name, values) in outcome.quantities.items():
            mean, sd, n = mean_sd(values)
            profile = " + ".join(sorted({r.config.profile for r in records.get(name, [])})) or "—"
            digits = _digits(values)
            rows.append({"claim": c.id, "label": c.label, "quantity": quantity, "experiment": name, "profile": profile,
                         "report": c.report_numbers.get(quantity, math.nan), "bound": quantity in c.report_bounds,
                         "ours": mean, "sd": sd, "n": n,
                         "per seed": ", ".join(_number(v, digits) for v in values) or "—"})
    return pd.DataFrame(rows, columns=["claim", "label", "quantity", "experiment", "profile", "report", "bound", "ours",
                                       "sd", "n", "per seed"])
