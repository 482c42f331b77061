"""The report's claims (FACTS.md, "Claims to check") as data, each with an evaluator that turns
run records into our value and tests, and the ledger that turns those into verdicts.

Verdict rules (one place, used by every claim; the tests themselves are :mod:`mcr2.claims.stats`'s):

* **A claim's rule** is the same for all claims: ✓ if every test is +1, ✗ if any is −1, else
  inconclusive. Applied to the results it gives the *verdict*, to the leans the *leaning* (the
  direction the runs point in, shown even when they cannot decide).
* **The gate** keeps the verdict inconclusive, and says why, when the records cannot bear one:
  missing or incomplete records, a profile other than ``paper`` (the smoke profile's toy models
  show a direction, not the report's numbers), fewer than :data:`MIN_SEEDS` finite seeds, a
  masked run in which MCR² never switched on, or a claim's own condition (claim 4: a masking
  threshold other than the report's 0.99). Records of different profiles are never compared:
  their leaning is "—".
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from ..summary import mean_sd, mean_sd_text
from .runs import digit_cosine, masking_events, run_notes, seed_values
from .stats import ALPHA, MIN_SEEDS, Test, below, equivalent, welch

__all__ = [
    "VERDICTS",
    "VERDICT_PROFILE",
    "R_SAME_FRACTION",
    "COSINE_NEAR_ZERO",
    "REPORT_MASK_THRESHOLD",
    "REPORT_MASK_EPOCHS",
    "TEST_RULE",
    "Claim",
    "Outcome",
    "CLAIMS",
    "claim",
    "select",
    "evaluate_claims",
    "claim_quantities",
]

VERDICTS = ("✓", "✗", "inconclusive")
VERDICT_PROFILE = "paper"  # the only profile whose runs may confirm or refute the report
R_SAME_FRACTION = 0.05  # claim 3: R "about the same" when |ΔR| < 5 % of the mean R (report: 45 vs 46, 2 %)
COSINE_NEAR_ZERO = 0.1  # claim 6: between-class blocks "near 0" when their mean |cos| < 0.1
#                         (random directions in d = 128 give ≈ 0.07; one shared 11-dim subspace ≈ 0.25)
REPORT_MASK_THRESHOLD = 0.99  # claim 4: background-head accuracy the report's switch waits for
REPORT_MASK_EPOCHS = 5  # claim 4: ... reached within this many epochs


@dataclass
class Outcome:
    """What an evaluator found on the given runs."""

    our_value: str  # our numbers as text (mean ± sd over seeds when several)
    tests: list[Test]  # the comparisons the claim rests on, +1 = supports the claim
    quantities: dict[str, tuple[str, list[float]]] = field(default_factory=dict)  # key: (experiment, per-seed values)
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


def _claim6(records) -> Outcome:
    per = {name: [digit_cosine(r) for r in records.get(name, [])] for name in ("seg_bg_mcr2_masked", "seg_bg_mcr2")}
    between_m = [b for b, _, _ in per["seg_bg_mcr2_masked"]]
    within_m = [w for _, w, _ in per["seg_bg_mcr2_masked"]]
    between_u = [b for b, _, _ in per["seg_bg_mcr2"]]
    within_u = [w for _, w, _ in per["seg_bg_mcr2"]]
    tests = [below(between_m, COSINE_NEAR_ZERO, f"masked between-class |cos| < {COSINE_NEAR_ZERO:g}"),
             welch(within_m, within_u, "within-class |cos|, masked − unmasked")]
    older = [f"{name} seed {r.config.seed}" for name in per for r, (_, _, src) in zip(records.get(name, []), per[name])
             if "stored pixels" in src]
    text = (f"mean |cos| over digit blocks — masked: between {mean_sd_text(between_m)}, within {mean_sd_text(within_m)}; "
            f"unmasked: between {mean_sd_text(between_u)}, within {mean_sd_text(within_u)}"
            + (f" (from the pixels each run stores, not all it sampled, for {', '.join(older)}: records older than "
               f"that statistic)" if older else ""))
    q = {"masked · between |cos|": ("seg_bg_mcr2_masked", between_m),
         "masked · within |cos|": ("seg_bg_mcr2_masked", within_m),
         "unmasked · between |cos|": ("seg_bg_mcr2", between_u),
         "unmasked · within |cos|": ("seg_bg_mcr2", within_u)}
    return Outcome(text, tests, q)


#: How every comparison of two methods is decided (each claim's ``rule`` names its comparisons).
TEST_RULE = (f"one-sided Welch t-test on the per-seed final values, p < {ALPHA:g} with ≥ {MIN_SEEDS} finite seeds "
             f"per arm")

#: The report's claims, in FACTS.md's order; claim 2 once per USPS layout.
CLAIMS: list[Claim] = [
    Claim(
        1, "1", "Trained on DIGITS, MCR² beats CE on both MNIST and USPS validation (§2.1, Fig. 1a).",
        "MCR² 0.989 MNIST / 0.978 USPS; CE 0.987 / 0.972",
        {"MCR² · MNIST": 0.989, "MCR² · USPS": 0.978, "CE · MNIST": 0.987, "CE · USPS": 0.972},
        ("cls_digits_mcr2", "cls_digits_ce"),
        "Final accuracy: MCR² > CE on MNIST and MCR² > CE on USPS.",
        _claim1,
    ),
    Claim(
        2, "2a", "Trained on MNIST only, MCR² does not generalise to USPS better than CE (§2.1, Fig. 1b); "
                 "USPS resized into MNIST's 20×20 box (this book's default layout).",
        "MNIST: MCR² 0.93 vs CE 0.98; USPS: none for this layout (the report's 0.29 vs 0.52 are claim 2b's)",
        {"MCR² · MNIST [resize]": 0.93, "CE · MNIST [resize]": 0.98},
        ("cls_mnist_mcr2", "cls_mnist_ce"),
        "Final USPS accuracy: CE > MCR² (the report's reading: MCR² is worse).",
        _claim2("resize"),
    ),
    Claim(
        2, "2b", "The same with USPS padded unscaled at a random offset, the authors' layout that produced "
                 "the report's numbers (§2.1, Fig. 1b).",
        "USPS: MCR² 0.29 vs CE 0.52 (MNIST: 0.93 vs 0.98)",
        {"MCR² · MNIST [pad_random]": 0.93, "MCR² · USPS [pad_random]": 0.29,
         "CE · MNIST [pad_random]": 0.98, "CE · USPS [pad_random]": 0.52},
        ("cls_mnist_mcr2_pad", "cls_mnist_ce_pad"),
        "Final USPS accuracy: CE > MCR² (the report's reading: MCR² is worse).",
        _claim2("pad_random"),
    ),
    Claim(
        3, "3", "With CIFAR backgrounds, Rc is higher than on plain MNIST while R is about the same (§2.2.1, Fig. 3).",
        "R ≈ 45–46 on both; Rc ≈ 34.5 (MNIST) vs 37.5 (backgrounds)",
        {"R · MNIST": 45.5, "R · backgrounds": 45.5, "Rc · MNIST": 34.5, "Rc · backgrounds": 37.5},
        ("seg_mnist_mcr2", "seg_bg_mcr2"),
        f"Last epoch's training R and Rc: Rc higher with backgrounds, and R the same within ±{R_SAME_FRACTION:.0%} "
        f"of the mean R (two one-sided Welch tests against that margin).",
        _claim3,
    ),
    Claim(
        4, "4", "The background head passes 99 % accuracy within 5 epochs (§2.2.1, Fig. 4).",
        "> 0.99 background accuracy after 5 epochs",
        {f"best bg-head accuracy by epoch {REPORT_MASK_EPOCHS}": REPORT_MASK_THRESHOLD},
        ("seg_bg_mcr2_masked",),
        f"Per-epoch background-check accuracy (bg_check_acc): every seed (≥ {MIN_SEEDS}) reaches "
        f"{REPORT_MASK_THRESHOLD:g} by epoch {REPORT_MASK_EPOCHS} (✗: no seed does); only with the report's "
        f"threshold {REPORT_MASK_THRESHOLD:g}.",
        _claim4,
    ),
    Claim(
        5, "5", "Masked MCR² beats unmasked MCR² and CE on non-background pixel accuracy (§2.2.1, Fig. 5).",
        "masked 0.96, unmasked 0.88, CE 0.93",
        {"masked MCR²": 0.96, "unmasked MCR²": 0.88, "CE": 0.93},
        ("seg_bg_mcr2_masked", "seg_bg_mcr2", "seg_bg_ce"),
        "Final non-background accuracy (mnist_foreground_acc): masked > unmasked MCR² and masked MCR² > CE.",
        _claim5,
        needs_mcr2_on=("seg_bg_mcr2_masked",),
    ),
    Claim(
        6, "6", "With masking, off-diagonal cosine blocks are near 0 and diagonal blocks nearer 1 than without (§2.3, Fig. 7).",
        "masked: off-diagonal blocks ≈ 0, diagonal brighter than unmasked (read off the heatmaps, no numbers)",
        {},
        ("seg_bg_mcr2_masked", "seg_bg_mcr2"),
        f"Mean |cos| per class block over the sampled validation pixels, digit classes only: masked "
        f"between-class mean < {COSINE_NEAR_ZERO:g} (one-sided one-sample t-test) and within-class mean "
        f"masked > unmasked.",
        _claim6,
        needs_mcr2_on=("seg_bg_mcr2_masked",),
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


def _evaluate(claim: Claim, records: dict) -> dict:
    outcome = claim(records)
    gates = _gates(claim, records, outcome)
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
        "seeds": _seeds(outcome),
        "profile": " + ".join(profiles) or "—",
        "verdict": verdict,
        "leaning": "—" if no_leaning else _rule([t.lean for t in outcome.tests]),
        "tests": tests,
        "why": "; ".join(gates),
        "runs": "; ".join(run_notes(records, claim.experiments)),
    }


def evaluate_claims(records: dict, ids=None) -> pd.DataFrame:
    """The claims ledger: one row per claim of :data:`CLAIMS` (or of the labels/ids in ``ids``).

    Columns: claim (label), report statement, report value, our value, seeds (the fewest finite
    seeds of any arm), profile, verdict (✓ / ✗ / inconclusive), leaning (the rule on the point
    estimates; "—" without values or across profiles), tests (Δ, t, p of each test), why (what
    kept the verdict inconclusive, empty otherwise) and runs (masked runs whose MCR² never
    trained or whose head collapsed). Every verdict in the book comes from here.
    """
    rows = [_evaluate(c, records) for c in select(ids)]
    return pd.DataFrame(rows, columns=["claim", "report statement", "report value", "our value", "seeds", "profile",
                                       "verdict", "leaning", "tests", "why", "runs"])


def claim_quantities(records: dict, ids=None) -> pd.DataFrame:
    """Long table of every number a claim rests on: claim (id), label, quantity, experiment,
    profile, report (NaN where the report gives none), ours (mean over finite seeds), sd (ddof = 1;
    NaN for one seed), n (finite seeds)."""
    rows = []
    for c in select(ids):
        outcome = c(records)
        for quantity, (name, values) in outcome.quantities.items():
            mean, sd, n = mean_sd(values)
            profile = " + ".join(sorted({r.config.profile for r in records.get(name, [])})) or "—"
            rows.append({"claim": c.id, "label": c.label, "quantity": quantity, "experiment": name, "profile": profile,
                         "report": c.report_numbers.get(quantity, math.nan), "ours": mean, "sd": sd, "n": n})
    return pd.DataFrame(rows, columns=["claim", "label", "quantity", "experiment", "profile", "report", "ours", "sd", "n"])
