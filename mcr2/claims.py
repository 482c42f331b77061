"""The report's six claims (FACTS.md, "Claims to check") as data, each with an evaluator that turns
run records into our value and a verdict.

``evaluate_claims(records)`` gives the claims ledger, one row per claim; ``claim_quantities(records)``
the numbers behind it next to the values read off the report's figures (FACTS.md, "Figures").
``records`` is what :func:`mcr2.engine.run_all` returns: ``{experiment name: [RunRecord per seed]}``.

Verdict rules (one place, used by every claim):

* **Comparing two methods** (:func:`compare`): Δ = mean(a) − mean(b) over seeds; the spread is
  s = √(sd_a² + sd_b²), the seed-to-seed standard deviation (ddof = 1) of one run of each. a is
  *better* when Δ > s, *worse* when Δ < −s, a *tie* otherwise. With one seed s = 0 (one seed has
  no sd: :func:`mcr2.summary.mean_sd` gives NaN, which the rules read as 0), so the sign of Δ
  decides.
* **A claim's rule** combines such comparisons into ✓, ✗ or inconclusive (each :class:`Claim`'s
  ``rule`` says how). This outcome on the given runs is the ledger's ``leaning``.
* **The gate** (:func:`evaluate_claims`): ``verdict`` = ``leaning`` only when every record the
  claim needs is complete, was run at the paper profile and has ≥ :data:`MIN_SEEDS` seeds.
  Otherwise the verdict is "inconclusive" and ``why`` says which: the smoke profile's toy models
  (a few hundred images, a few epochs) can show a direction but say nothing about the report's
  numbers, and one seed cannot tell an effect from seed noise. A claim can add its own gate
  (claim 4: a run whose masking threshold is not the report's 0.99).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from .summary import cosine_summary, final_value, mean_sd, mean_sd_text

__all__ = [
    "VERDICTS",
    "MIN_SEEDS",
    "R_SAME_FRACTION",
    "COSINE_NEAR_ZERO",
    "REPORT_MASK_THRESHOLD",
    "REPORT_MASK_EPOCHS",
    "Claim",
    "Outcome",
    "CLAIMS",
    "compare",
    "seed_values",
    "digit_cosine",
    "evaluate_claims",
    "claim_quantities",
]

VERDICTS = ("✓", "✗", "inconclusive")
MIN_SEEDS = 2  # fewer seeds than this per experiment: no spread, so no ✓/✗
VERDICT_PROFILE = "paper"  # the only profile whose runs may confirm or refute the report
R_SAME_FRACTION = 0.05  # claim 3: R "about the same" when |ΔR| ≤ 5 % of the mean R (report: 45 vs 46, 2 %)
COSINE_NEAR_ZERO = 0.1  # claim 6: between-class blocks "near 0" when their mean |cosine| ≤ 0.1
REPORT_MASK_THRESHOLD = 0.99  # claim 4: background-head accuracy the report's switch waits for
REPORT_MASK_EPOCHS = 5  # claim 4: ... reached within this many epochs

DIGIT_CLASSES = range(1, 11)  # segmentation classes 1..10 are digits 0..9; 0 is background


# --------------------------------------------------------------------------- statistics


def _mean_spread(values) -> tuple[float, float, int]:
    """:func:`mcr2.summary.mean_sd` with the verdict rules' reading of one seed: spread 0, not NaN."""
    mean, sd, n = mean_sd(values)
    return mean, sd if math.isfinite(sd) else 0.0, n


def compare(a, b) -> int:
    """+1 if a's seeds beat b's beyond the spread, −1 if they fall below it, 0 for a tie.

    Δ = mean(a) − mean(b), spread s = √(sd_a² + sd_b²) (0 with one seed each): +1 if Δ > s,
    −1 if Δ < −s, else 0. NaN values count as missing; no values at all give 0.
    """
    ma, sa, na = _mean_spread(a)
    mb, sb, nb = _mean_spread(b)
    if na == 0 or nb == 0:
        return 0
    delta, spread = ma - mb, math.hypot(sa, sb)
    if delta > spread:
        return 1
    if delta < -spread:
        return -1
    return 0


def _within(values, bound: float) -> int:
    """+1 if the seeds' mean stays ≤ bound even after adding one sd, −1 if it exceeds the bound
    by more than one sd, 0 in between (or with no values)."""
    mean, sd, n = _mean_spread(values)
    if n == 0:
        return 0
    if mean + sd <= bound:
        return 1
    if mean - sd > bound:
        return -1
    return 0


# --------------------------------------------------------------------------- reading records


def seed_values(records: dict, name: str, column: str) -> list[float]:
    """One final value of ``column`` per seed of experiment ``name``."""
    return [final_value(r, column) for r in records.get(name, [])]


def digit_cosine(rec) -> tuple[float, float]:
    """(between, within) cosine similarity of digit pixels from a record's artefacts (Figure 7).

    :func:`mcr2.summary.cosine_summary` of ``cosine_block_sums`` / ``cosine_block_pairs`` over the
    digit classes 1..10 (background left out: the masked model learns no feature for it).
    ``between`` is the mean *absolute* block mean over the 90 off-diagonal blocks, so that
    positive and negative blocks cannot cancel; ``within`` the mean of the 10 diagonal block
    means. Blocks without pairs (a class absent from the pixel sample) are skipped.
    """
    s = cosine_summary(rec.artefacts["cosine_block_sums"], rec.artefacts["cosine_block_pairs"],
                       classes=DIGIT_CLASSES, absolute_between=True)
    return s["between"], s["within"]


# --------------------------------------------------------------------------- claims


@dataclass
class Outcome:
    """What an evaluator found on the given runs."""

    our_value: str  # our numbers as text (mean ± sd over seeds when several)
    leaning: str  # the claim's rule on these runs: "✓" | "✗" | "inconclusive"
    quantities: dict[str, list[float]] = field(default_factory=dict)  # per-seed values of the report_numbers keys
    gate: str | None = None  # a claim-specific reason that keeps the verdict inconclusive


@dataclass(frozen=True)
class Claim:
    id: int
    statement: str  # the report's claim (FACTS.md "Claims to check", with the report's section)
    report_value: str  # what the report shows, as read off its figures (FACTS.md "Figures")
    report_numbers: dict[str, float]  # the same as numbers, keyed like Outcome.quantities
    experiments: tuple[str, ...]  # the run records it needs
    rule: str  # how the leaning is decided, in words
    evaluate: Callable[[dict], Outcome]  # records -> Outcome

    def __call__(self, records: dict) -> Outcome:
        return self.evaluate(records)


def _both_better(cmps: list[int]) -> str:
    """✓ if every comparison is +1, ✗ if any is −1, inconclusive otherwise."""
    if any(c < 0 for c in cmps):
        return "✗"
    if all(c > 0 for c in cmps):
        return "✓"
    return "inconclusive"


def _claim1(records) -> Outcome:
    q = {f"{m} · {d}": seed_values(records, f"cls_digits_{e}", f"{d.lower()}_acc")
         for m, e in (("MCR²", "mcr2"), ("CE", "ce")) for d in ("MNIST", "USPS")}
    cmps = [compare(q[f"MCR² · {d}"], q[f"CE · {d}"]) for d in ("MNIST", "USPS")]
    text = "; ".join(f"{d}: MCR² {mean_sd_text(q[f'MCR² · {d}'])} vs CE {mean_sd_text(q[f'CE · {d}'])}"
                     for d in ("MNIST", "USPS"))
    return Outcome(text, _both_better(cmps), q)


def _claim2(records) -> Outcome:
    q = {f"{m} · {d}": seed_values(records, f"cls_mnist_{e}", f"{d.lower()}_acc")
         for m, e in (("MCR²", "mcr2"), ("CE", "ce")) for d in ("MNIST", "USPS")}
    c = compare(q["MCR² · USPS"], q["CE · USPS"])
    leaning = {-1: "✓", 1: "✗", 0: "inconclusive"}[c]
    text = (f"USPS: MCR² {mean_sd_text(q['MCR² · USPS'])} vs CE {mean_sd_text(q['CE · USPS'])} "
            f"(MNIST: {mean_sd_text(q['MCR² · MNIST'])} vs {mean_sd_text(q['CE · MNIST'])})")
    return Outcome(text, leaning, q)


def _claim3(records) -> Outcome:
    q = {f"{t} · {d}": seed_values(records, e, t)
         for t in ("R", "Rc") for d, e in (("MNIST", "seg_mnist_mcr2"), ("backgrounds", "seg_bg_mcr2"))}
    rc = compare(q["Rc · backgrounds"], q["Rc · MNIST"])
    r_bg, r_mn = _mean_spread(q["R · backgrounds"]), _mean_spread(q["R · MNIST"])
    tol = R_SAME_FRACTION * (r_bg[0] + r_mn[0]) / 2
    diff, spread = abs(r_bg[0] - r_mn[0]), math.hypot(r_bg[1], r_mn[1])
    if not (math.isfinite(diff) and math.isfinite(tol)):
        same = 0
    elif diff + spread <= tol:
        same = 1
    elif diff - spread > tol:
        same = -1
    else:
        same = 0
    leaning = "✗" if rc < 0 or same < 0 else "✓" if rc > 0 and same > 0 else "inconclusive"
    text = (f"R {mean_sd_text(q['R · MNIST'], 2)} (MNIST) vs {mean_sd_text(q['R · backgrounds'], 2)} (backgrounds), "
            f"|ΔR| = {diff:.2f} vs 5 % = {tol:.2f}; "
            f"Rc {mean_sd_text(q['Rc · MNIST'], 2)} vs {mean_sd_text(q['Rc · backgrounds'], 2)}")
    return Outcome(text, leaning, q)


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


def _acc_at_epoch(rec, epoch: int) -> float:
    h = rec.history
    if "bg_check_acc" not in getattr(h, "columns", ()):
        return math.nan
    rows = h[h["epoch"] <= epoch]
    return float(rows["bg_check_acc"].iloc[-1]) if len(rows) else math.nan


def _claim4(records) -> Outcome:
    recs = records.get("seg_bg_mcr2_masked", [])
    first = [_first_epoch_at(r, REPORT_MASK_THRESHOLD) for r in recs]
    acc5 = [_acc_at_epoch(r, REPORT_MASK_EPOCHS) for r in recs]
    q = {f"bg-head accuracy at epoch {REPORT_MASK_EPOCHS}": acc5}
    passed, failed = 0, 0
    for r, e in zip(recs, first):
        if math.isfinite(e) and e <= REPORT_MASK_EPOCHS:
            passed += 1
        elif _epochs_run(r) >= REPORT_MASK_EPOCHS:
            failed += 1  # ran at least 5 epochs and never reached 0.99 by then
    if recs and passed == len(recs):
        leaning = "✓"
    elif recs and failed == len(recs):
        leaning = "✗"
    else:
        leaning = "inconclusive"  # seeds disagree, or a run stopped before epoch 5
    reached = ", ".join("never" if not math.isfinite(e) else f"epoch {int(e)}" for e in first) or "n/a"
    thresholds = sorted({r.config.loss.mask_threshold for r in recs})
    switches = ", ".join(str(r.record.get("events", {}).get("mask_switch_epoch")) for r in recs)
    text = (f"{REPORT_MASK_THRESHOLD:g} reached: {reached}; accuracy at epoch {REPORT_MASK_EPOCHS}: {mean_sd_text(acc5)}; "
            f"MCR² switched on after epoch {switches} (threshold {', '.join(f'{t:g}' for t in thresholds)})")
    gate = None
    if any(t != REPORT_MASK_THRESHOLD for t in thresholds):
        gate = (f"masking threshold {', '.join(f'{t:g}' for t in thresholds)}, not the report's "
                f"{REPORT_MASK_THRESHOLD:g}: MCR² switched on at another time, so the head trained differently")
    return Outcome(text, leaning, q, gate)


def _claim5(records) -> Outcome:
    q = {label: seed_values(records, name, "mnist_foreground_acc")
         for label, name in (("masked MCR²", "seg_bg_mcr2_masked"), ("unmasked MCR²", "seg_bg_mcr2"), ("CE", "seg_bg_ce"))}
    cmps = [compare(q["masked MCR²"], q["unmasked MCR²"]), compare(q["masked MCR²"], q["CE"])]
    text = (f"masked {mean_sd_text(q['masked MCR²'])}, unmasked {mean_sd_text(q['unmasked MCR²'])}, "
            f"CE {mean_sd_text(q['CE'])}")
    return Outcome(text, _both_better(cmps), q)


def _claim6(records) -> Outcome:
    blocks = {name: [digit_cosine(r) for r in records.get(name, []) if "cosine_block_sums" in r.artefacts]
              for name in ("seg_bg_mcr2_masked", "seg_bg_mcr2")}
    between = [b for b, _ in blocks["seg_bg_mcr2_masked"]]
    within_m = [w for _, w in blocks["seg_bg_mcr2_masked"]]
    within_u = [w for _, w in blocks["seg_bg_mcr2"]]
    near0 = _within(between, COSINE_NEAR_ZERO)
    brighter = compare(within_m, within_u)
    leaning = "✗" if near0 < 0 or brighter < 0 else "✓" if near0 > 0 and brighter > 0 else "inconclusive"
    text = (f"masked: between {mean_sd_text(between)}, within {mean_sd_text(within_m)}; "
            f"unmasked: between {mean_sd_text([b for b, _ in blocks['seg_bg_mcr2']])}, within {mean_sd_text(within_u)}")
    q = {"masked · between |cos|": between, "masked · within cos": within_m, "unmasked · within cos": within_u}
    return Outcome(text, leaning, q)


_CMP_RULE = "'beats' = the difference of seed means exceeds √(sd_a² + sd_b²), 'loses' = below minus that"

#: The report's claims, in FACTS.md's order.
CLAIMS: list[Claim] = [
    Claim(
        1, "Trained on DIGITS, MCR² beats CE on both MNIST and USPS validation (§2.1, Fig. 1a).",
        "MCR² 0.989 MNIST / 0.978 USPS; CE 0.987 / 0.972",
        {"MCR² · MNIST": 0.989, "MCR² · USPS": 0.978, "CE · MNIST": 0.987, "CE · USPS": 0.972},
        ("cls_digits_mcr2", "cls_digits_ce"),
        f"✓ if MCR² beats CE on both domains, ✗ if it loses on either, else inconclusive ({_CMP_RULE}).",
        _claim1,
    ),
    Claim(
        2, "Trained on MNIST only, MCR² does not generalise to USPS better than CE (§2.1, Fig. 1b).",
        "USPS: MCR² 0.29 vs CE 0.52 (MNIST: 0.93 vs 0.98)",
        {"MCR² · MNIST": 0.93, "MCR² · USPS": 0.29, "CE · MNIST": 0.98, "CE · USPS": 0.52},
        ("cls_mnist_mcr2", "cls_mnist_ce"),
        f"✓ if MCR² loses to CE on USPS (the report's reading: worse), ✗ if it beats CE there, "
        f"inconclusive for a tie ({_CMP_RULE}).",
        _claim2,
    ),
    Claim(
        3, "With CIFAR backgrounds, Rc is higher than on plain MNIST while R is about the same (§2.2.1, Fig. 3).",
        "R ≈ 45–46 on both; Rc ≈ 34.5 (MNIST) vs 37.5 (backgrounds)",
        {"R · MNIST": 45.5, "R · backgrounds": 45.5, "Rc · MNIST": 34.5, "Rc · backgrounds": 37.5},
        ("seg_mnist_mcr2", "seg_bg_mcr2"),
        f"Last epoch's training R and Rc. 'About the same': |ΔR| plus its spread ≤ {R_SAME_FRACTION:.0%} of the "
        f"mean R; 'different': |ΔR| minus its spread > {R_SAME_FRACTION:.0%}. ✓ if Rc is higher with backgrounds "
        f"({_CMP_RULE}) and R about the same; ✗ if Rc is lower or R different; else inconclusive.",
        _claim3,
    ),
    Claim(
        4, "The background head passes 99 % accuracy within 5 epochs (§2.2.1, Fig. 4).",
        "> 0.99 background accuracy after 5 epochs",
        {f"bg-head accuracy at epoch {REPORT_MASK_EPOCHS}": REPORT_MASK_THRESHOLD},
        ("seg_bg_mcr2_masked",),
        f"From the per-epoch background-check accuracy (bg_check_acc): ✓ if every seed reaches "
        f"{REPORT_MASK_THRESHOLD:g} by epoch {REPORT_MASK_EPOCHS}, ✗ if no seed does (having run {REPORT_MASK_EPOCHS} "
        f"epochs), else inconclusive. Inconclusive as well when the run's masking threshold is not "
        f"{REPORT_MASK_THRESHOLD:g}.",
        _claim4,
    ),
    Claim(
        5, "Masked MCR² beats unmasked MCR² and CE on non-background pixel accuracy (§2.2.1, Fig. 5).",
        "masked 0.96, unmasked 0.88, CE 0.93",
        {"masked MCR²": 0.96, "unmasked MCR²": 0.88, "CE": 0.93},
        ("seg_bg_mcr2_masked", "seg_bg_mcr2", "seg_bg_ce"),
        f"Final mnist_foreground_acc. ✓ if masked MCR² beats both, ✗ if it loses to either, else "
        f"inconclusive ({_CMP_RULE}).",
        _claim5,
    ),
    Claim(
        6, "With masking, off-diagonal cosine blocks are near 0 and diagonal blocks nearer 1 than without (§2.3, Fig. 7).",
        "masked: off-diagonal blocks ≈ 0, diagonal brighter than unmasked (read off the heatmaps, no numbers)",
        {},
        ("seg_bg_mcr2_masked", "seg_bg_mcr2"),
        f"Digit classes only, from the random validation-pixel sample. 'Near 0': the mean |block mean cosine| "
        f"over the 90 off-diagonal blocks, plus its sd, ≤ {COSINE_NEAR_ZERO:g} ('far': minus its sd > "
        f"{COSINE_NEAR_ZERO:g}). ✓ if near 0 with masking and the mean diagonal block is higher with masking "
        f"than without ({_CMP_RULE}); ✗ if far from 0 or lower; else inconclusive.",
        _claim6,
    ),
]


# --------------------------------------------------------------------------- the ledger


def _gate(claim: Claim, records: dict) -> str | None:
    """Why this claim's verdict must stay inconclusive on these records, or None."""
    missing = [n for n in claim.experiments if not records.get(n)]
    if missing:
        return f"no records of {', '.join(missing)}"
    recs = [r for n in claim.experiments for r in records[n]]
    incomplete = [r.config.name for r in recs if r.record.get("status") != "complete"]
    if incomplete:
        return f"incomplete records of {', '.join(sorted(set(incomplete)))}"
    profiles = sorted({r.config.profile for r in recs})
    if profiles != [VERDICT_PROFILE]:
        return f"{'/'.join(profiles)} scale: the toy runs show a direction, not the report's numbers"
    seeds = min(len(records[n]) for n in claim.experiments)
    if seeds < MIN_SEEDS:
        return f"{seeds} seed: no seed-to-seed spread to judge a difference against"
    return None


def _seeds(claim: Claim, records: dict) -> int:
    return min((len(records.get(n, [])) for n in claim.experiments), default=0)


def evaluate_claims(records: dict) -> pd.DataFrame:
    """The claims ledger: one row per claim of :data:`CLAIMS`.

    Columns: claim, report statement, report value, our value, seeds, verdict (✓ / ✗ /
    inconclusive), leaning (the claim's rule on these runs, before the gate) and why (the
    reason the gate kept the verdict inconclusive, empty when it did not).
    """
    rows = []
    for claim in CLAIMS:
        outcome = claim(records)
        gate = _gate(claim, records) or outcome.gate
        rows.append({
            "claim": claim.id,
            "report statement": claim.statement,
            "report value": claim.report_value,
            "our value": outcome.our_value,
            "seeds": _seeds(claim, records),
            "verdict": "inconclusive" if gate else outcome.leaning,
            "leaning": outcome.leaning,
            "why": gate or "",
        })
    return pd.DataFrame(rows)


def claim_quantities(records: dict) -> pd.DataFrame:
    """Long table of every number a claim rests on: claim, quantity, report (NaN where the report
    gives none), ours (mean over seeds), sd (ddof = 1; NaN for one seed), n (seeds)."""
    rows = []
    for claim in CLAIMS:
        outcome = claim(records)
        for quantity, values in outcome.quantities.items():
            mean, sd, n = mean_sd(values)
            rows.append({"claim": claim.id, "quantity": quantity,
                         "report": claim.report_numbers.get(quantity, math.nan), "ours": mean, "sd": sd, "n": n})
    return pd.DataFrame(rows, columns=["claim", "quantity", "report", "ours", "sd", "n"])
