"""The claims ledger: every evaluator on hand-made run records (no training) gives ✓, ✗ and
inconclusive where it should, and the ledger's verdicts follow the records, never constants."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from mcr2.claims import CLAIMS, VERDICTS, claim_quantities, compare, digit_cosine, evaluate_claims  # noqa: E402
from mcr2.experiments import EXPERIMENTS, experiment  # noqa: E402
from mcr2.plots import plot_claims  # noqa: E402
from mcr2.records import RunRecord  # noqa: E402

CLAIM = {c.id: c for c in CLAIMS}


def fake(name, seed=0, profile="paper", history=None, artefacts=None, events=None, status="complete", **overrides):
    """A RunRecord built in memory: ``history`` is {column: per-epoch list}."""
    exp = experiment(name, profile, seed)
    if overrides:
        exp = exp.replace(**overrides)
    hist = pd.DataFrame(history or {})
    if len(hist) and "epoch" not in hist:
        hist.insert(0, "epoch", np.arange(1, len(hist) + 1))
    summary = {k: v for k, v in hist.iloc[-1].items() if k != "epoch"} if len(hist) else {}
    record = {"status": status, "summary": summary, "events": events or {"mask_switch_epoch": None},
              "provenance": {}, "wall_time_s": 1.0}
    return RunRecord(Path(f"/nonexistent/{name}/seed{seed}"), exp, record, hist, pd.DataFrame(), artefacts or {})


def per_seed(name, columns: dict[str, list[float]], **kw):
    """One record per seed; columns maps a history column to its final value per seed."""
    n = len(next(iter(columns.values())))
    return [fake(name, s, history={c: [0.1, v[s]] for c, v in columns.items()}, **kw) for s in range(n)]


def leaning(claim_id, records):
    return CLAIM[claim_id](records).leaning


# --------------------------------------------------------------------------- the comparison rule


def test_compare_uses_the_seed_spread():
    assert compare([0.9, 0.91, 0.92], [0.80, 0.81, 0.82]) == 1
    assert compare([0.80, 0.81, 0.82], [0.9, 0.91, 0.92]) == -1
    assert compare([0.80, 0.90, 0.85], [0.84, 0.86, 0.85]) == 0  # Δ = 0 within the spread
    assert compare([0.86, 0.88, 0.90], [0.85, 0.87, 0.89]) == 0  # Δ = 0.01 < s ≈ 0.028
    assert compare([0.9], [0.8]) == 1  # one seed: the sign decides
    assert compare([], [0.8]) == 0


# --------------------------------------------------------------------------- claims 1 and 2


def cls(kind, mcr2_mnist, mcr2_usps, ce_mnist, ce_usps):
    return {
        f"cls_{kind}_mcr2": per_seed(f"cls_{kind}_mcr2", {"mnist_acc": mcr2_mnist, "usps_acc": mcr2_usps}),
        f"cls_{kind}_ce": per_seed(f"cls_{kind}_ce", {"mnist_acc": ce_mnist, "usps_acc": ce_usps}),
    }


def test_claim1_digits_mcr2_beats_ce_on_both_domains():
    good = [0.99, 0.991, 0.989]
    worse = [0.97, 0.971, 0.969]
    assert leaning(1, cls("digits", good, good, worse, worse)) == "✓"
    assert leaning(1, cls("digits", good, worse, worse, good)) == "✗"  # loses on USPS
    assert leaning(1, cls("digits", good, [0.96, 0.98, 0.97], worse, [0.965, 0.975, 0.97])) == "inconclusive"
    out = CLAIM[1](cls("digits", good, good, worse, worse))
    assert "0.990 ± 0.001" in out.our_value and "USPS" in out.our_value


def test_claim2_mnist_only_mcr2_not_better_on_usps():
    mn = [0.98, 0.981, 0.979]
    assert leaning(2, cls("mnist", mn, [0.29, 0.30, 0.31], mn, [0.52, 0.50, 0.51])) == "✓"
    assert leaning(2, cls("mnist", mn, [0.62, 0.60, 0.61], mn, [0.52, 0.50, 0.51])) == "✗"
    assert leaning(2, cls("mnist", mn, [0.45, 0.55, 0.50], mn, [0.52, 0.48, 0.50])) == "inconclusive"


# --------------------------------------------------------------------------- claim 3


def rates(R_mnist, Rc_mnist, R_bg, Rc_bg):
    return {
        "seg_mnist_mcr2": per_seed("seg_mnist_mcr2", {"R": R_mnist, "Rc": Rc_mnist}),
        "seg_bg_mcr2": per_seed("seg_bg_mcr2", {"R": R_bg, "Rc": Rc_bg}),
    }


def test_claim3_rc_higher_r_about_the_same():
    R = [45.0, 45.5, 46.0]
    assert leaning(3, rates(R, [34.4, 34.5, 34.6], R, [37.4, 37.5, 37.6])) == "✓"
    assert leaning(3, rates(R, [37.4, 37.5, 37.6], R, [34.4, 34.5, 34.6])) == "✗"  # Rc lower
    assert leaning(3, rates(R, [34.4, 34.5, 34.6], [36.0, 36.1, 36.2], [37.4, 37.5, 37.6])) == "✗"  # R 20 % lower
    assert leaning(3, rates(R, [34.0, 36.0, 35.0], R, [35.5, 34.5, 35.0])) == "inconclusive"  # Rc tie
    # |ΔR| = 2.2 against a 5 % tolerance of 2.2 with a spread: neither same nor different.
    assert leaning(3, rates([44.0, 45.0, 46.0], [34.4, 34.5, 34.6], [46.2, 47.2, 48.2], [37.4, 37.5, 37.6])) == "inconclusive"


# --------------------------------------------------------------------------- claim 4


def masked(accs_per_seed, threshold=None):
    recs = []
    for s, accs in enumerate(accs_per_seed):
        kw = {} if threshold is None else {"loss.mask_threshold": threshold}
        switch = next((i + 1 for i, a in enumerate(accs) if a >= (threshold or 0.99)), None)
        recs.append(fake("seg_bg_mcr2_masked", s, history={"bg_check_acc": accs}, events={"mask_switch_epoch": switch}, **kw))
    return {"seg_bg_mcr2_masked": recs}


def test_claim4_background_head_within_five_epochs():
    fast = [0.9, 0.97, 0.993, 0.995, 0.996]
    slow = [0.8, 0.9, 0.95, 0.97, 0.98, 0.992]
    assert leaning(4, masked([fast, fast, fast])) == "✓"
    assert leaning(4, masked([slow, slow, slow])) == "✗"  # reaches 0.99 only at epoch 6
    assert leaning(4, masked([fast, slow, fast])) == "inconclusive"  # seeds disagree
    assert leaning(4, masked([[0.9, 0.95, 0.97]])) == "inconclusive"  # stopped before epoch 5
    out = CLAIM[4](masked([fast]))
    assert "epoch 3" in out.our_value and out.gate is None


def test_claim4_lowered_threshold_keeps_the_verdict_inconclusive():
    recs = masked([[0.9, 0.97, 0.993, 0.995, 0.996]] * 3, threshold=0.9)
    out = CLAIM[4](recs)
    assert out.leaning == "✓" and out.gate and "0.9" in out.gate
    ledger = evaluate_claims(recs).set_index("claim")
    assert ledger.loc[4, "verdict"] == "inconclusive"
    assert "threshold" in ledger.loc[4, "why"]


# --------------------------------------------------------------------------- claim 5


def test_claim5_masked_beats_unmasked_and_ce():
    def recs(m, u, c):
        return {n: per_seed(n, {"mnist_foreground_acc": v})
                for n, v in (("seg_bg_mcr2_masked", m), ("seg_bg_mcr2", u), ("seg_bg_ce", c))}

    assert leaning(5, recs([0.96, 0.961, 0.959], [0.88, 0.881, 0.879], [0.93, 0.931, 0.929])) == "✓"
    assert leaning(5, recs([0.90, 0.901, 0.899], [0.88, 0.881, 0.879], [0.93, 0.931, 0.929])) == "✗"
    assert leaning(5, recs([0.93, 0.94, 0.92], [0.88, 0.881, 0.879], [0.93, 0.931, 0.929])) == "inconclusive"


# --------------------------------------------------------------------------- claim 6


def cosine_record(name, seed, between, within, background=0.3):
    """Artefacts whose block mean cosines are ``within`` on the digit diagonal, ±``between`` off it."""
    means = np.full((11, 11), float(between))
    means[1::2, :] *= -1  # alternate signs: the evaluator must not let them cancel
    np.fill_diagonal(means, within)
    means[0, :] = means[:, 0] = background
    pairs = np.full((11, 11), 400.0) - np.diag(np.full(11, 20.0))
    return fake(name, seed, artefacts={"cosine_block_sums": means * pairs, "cosine_block_pairs": pairs})


def cos_recs(masked_between, masked_within, unmasked_within):
    return {
        "seg_bg_mcr2_masked": [cosine_record("seg_bg_mcr2_masked", s, b, w) for s, (b, w) in enumerate(zip(masked_between, masked_within))],
        "seg_bg_mcr2": [cosine_record("seg_bg_mcr2", s, 0.4, w) for s, w in enumerate(unmasked_within)],
    }


def test_digit_cosine_digits_only_and_absolute_off_diagonal():
    between, within = digit_cosine(cosine_record("seg_bg_mcr2_masked", 0, 0.05, 0.8, background=0.9))
    assert between == pytest.approx(0.05) and within == pytest.approx(0.8)


def test_claim6_masked_blocks():
    assert leaning(6, cos_recs([0.02, 0.03, 0.025], [0.85, 0.86, 0.84], [0.5, 0.52, 0.48])) == "✓"
    assert leaning(6, cos_recs([0.30, 0.31, 0.29], [0.85, 0.86, 0.84], [0.5, 0.52, 0.48])) == "✗"  # not near 0
    assert leaning(6, cos_recs([0.02, 0.03, 0.025], [0.45, 0.46, 0.44], [0.5, 0.52, 0.48])) == "✗"  # dimmer
    assert leaning(6, cos_recs([0.02, 0.03, 0.025], [0.50, 0.55, 0.45], [0.5, 0.52, 0.48])) == "inconclusive"
    assert leaning(6, cos_recs([0.05, 0.15, 0.10], [0.85, 0.86, 0.84], [0.5, 0.52, 0.48])) == "inconclusive"  # |mean| at 0.1 ± sd


# --------------------------------------------------------------------------- the ledger


def full_records(profile="paper", seeds=3, flip=False):
    """Records of every experiment; ``flip`` swaps the winners so every claim's outcome changes."""
    hi, lo = [0.95 + 0.001 * s for s in range(seeds)], [0.85 + 0.001 * s for s in range(seeds)]
    a, b = (lo, hi) if flip else (hi, lo)
    out = {}
    for name in EXPERIMENTS:
        recs = []
        for s in range(seeds):
            hist = {"mnist_acc": [a[s] if name.endswith("mcr2") else b[s]],
                    "usps_acc": [(b if name.startswith("cls_mnist") else a)[s] if name.endswith("mcr2") else
                                 (a if name.startswith("cls_mnist") else b)[s]],
                    "mnist_foreground_acc": [a[s] if name == "seg_bg_mcr2_masked" else b[s]],
                    "R": [45.0 + 0.1 * s], "Rc": [(37.5 if (name == "seg_bg_mcr2") != flip else 34.5) + 0.1 * s],
                    "bg_check_acc": [0.995 if not flip else 0.9]}
            hist = {k: v * 5 for k, v in hist.items()}
            rec = fake(name, s, profile=profile, history=hist)
            if name.startswith("seg_bg_mcr2"):
                between = 0.02 if (name.endswith("masked") and not flip) else 0.4
                within = 0.9 if (name.endswith("masked") != flip) else 0.5
                rec.artefacts.update(cosine_record(name, s, between, within + 0.01 * s).artefacts)
            recs.append(rec)
        out[name] = recs
    return out


def test_ledger_has_one_row_per_claim_and_the_promised_columns():
    ledger = evaluate_claims(full_records())
    assert list(ledger["claim"]) == [c.id for c in CLAIMS] == [1, 2, 3, 4, 5, 6]
    for col in ("claim", "report statement", "report value", "our value", "verdict"):
        assert col in ledger.columns
    assert set(ledger["verdict"]) <= set(VERDICTS)
    assert (ledger["seeds"] == 3).all()
    assert all("±" in v for v in ledger["our value"])  # mean ± sd over three seeds


def test_ledger_verdicts_follow_the_records():
    good = evaluate_claims(full_records())
    bad = evaluate_claims(full_records(flip=True))
    assert list(good["verdict"]) == ["✓"] * 6, good[["claim", "verdict", "our value"]]
    assert list(bad["verdict"]) == ["✗"] * 6, bad[["claim", "verdict", "our value"]]
    assert (good["why"] == "").all()


def test_smoke_scale_or_one_seed_or_missing_records_is_inconclusive():
    smoke = evaluate_claims(full_records(profile="smoke", seeds=1))
    assert (smoke["verdict"] == "inconclusive").all()
    assert smoke["why"].str.contains("smoke scale").all()
    assert list(smoke["leaning"]) == ["✓"] * 6  # the rule still ran: the direction is shown
    one = evaluate_claims(full_records(seeds=1))
    assert (one["verdict"] == "inconclusive").all() and one["why"].str.contains("1 seed").all()
    empty = evaluate_claims({})
    assert (empty["verdict"] == "inconclusive").all() and empty["why"].str.contains("no records").all()
    assert len(empty) == len(CLAIMS)


def test_quantities_and_plot():
    q = claim_quantities(full_records())
    assert {"claim", "quantity", "report", "ours", "sd", "n"} <= set(q.columns)
    assert set(q["claim"]) == {1, 2, 3, 4, 5, 6}
    assert q.loc[q["report"].notna(), "ours"].notna().all()
    fig, ax = plt.subplots()
    plot_claims(ax, q)
    assert len(ax.get_yticklabels()) == int(q["report"].notna().sum())
    plt.close(fig)
