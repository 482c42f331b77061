"""The ledger as chapters show it: a chapter's table of its claims, the verdicts as Markdown,
and the whole ledger for reading (a chapter never computes a verdict of its own)."""
from __future__ import annotations

import math

import pandas as pd

from .definitions import claim_quantities, evaluate_claims

__all__ = ["claims_table", "verdict_text", "ledger_view", "verdict_cell"]


def verdict_cell(row) -> str:
    if row["verdict"] != "inconclusive":
        return row["verdict"]
    return "inconclusive (no leaning)" if row["leaning"] == "—" else f"inconclusive (leaning {row['leaning']})"


def claims_table(records: dict, ids) -> pd.DataFrame:
    """A chapter's table of its claims: per number, the report's value, ours (mean ± sd, finite
    seeds, profile) and the ledger's verdict (on each claim's first row), from
    :func:`evaluate_claims` and :func:`claim_quantities`."""
    ledger = evaluate_claims(records, ids).set_index("claim")
    q = claim_quantities(records, ids)
    rows, seen = [], set()
    for _, r in q.iterrows():
        digits = 2 if abs(r["report"]) >= 2 or (not math.isfinite(r["report"]) and abs(r["ours"]) >= 2) else 3
        ours = "n/a" if r["n"] == 0 else (f"{r['ours']:.{digits}f}" + (f" ± {r['sd']:.{digits}f}" if r["n"] > 1 else ""))
        first = r["label"] not in seen
        seen.add(r["label"])
        rows.append({
            "claim": r["label"] if first else "",
            "quantity": r["quantity"],
            "report": "—" if not math.isfinite(r["report"]) else f"{r['report']:g}",
            "ours": ours,
            "seeds": int(r["n"]),
            "profile": r["profile"],
            "verdict": verdict_cell(ledger.loc[r["label"]]) if first else "",
        })
    return pd.DataFrame(rows, columns=["claim", "quantity", "report", "ours", "seeds", "profile", "verdict"])


def verdict_text(records: dict, ids) -> str:
    """The ledger's verdicts on claims ``ids`` as Markdown, one paragraph per claim: verdict,
    leaning, the tests (Δ, t, p) and what kept it inconclusive, with any run labels."""
    parts = []
    for _, row in evaluate_claims(records, ids).iterrows():
        text = f"**Claim {row['claim']}**: {verdict_cell(row)}."
        if row["tests"]:
            text += f" Tests: {row['tests']}."
        if row["why"]:
            text += f" Why not decided: {row['why']}."
        if row["runs"]:
            text += f" Runs: {row['runs']}."
        parts.append(text)
    return "\n\n".join(parts)


def ledger_view(ledger: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The ledger (:func:`evaluate_claims`) for reading: four columns (claim, the report, ours,
    verdict, evidence) and no empty cells, plus the reasons every row shares, which a page states
    once above the table instead of in each row."""
    reasons = [set(filter(None, w.split("; "))) for w in ledger["why"]]
    common = sorted(set.intersection(*reasons), key=lambda r: ledger["why"].iloc[0].find(r)) if reasons else []
    rows = []
    for (_, r), own in zip(ledger.iterrows(), reasons):
        seeds = f"{r['seeds']} seed{'s' if r['seeds'] != 1 else ''}"
        evidence = [f"Tests: {r['tests']}."]
        specific = [w for w in r["why"].split("; ") if w and w not in common]
        if specific:
            evidence.append(f"Not decided: {'; '.join(specific)}.")
        if r["runs"]:
            evidence.append(f"Runs: {r['runs']}.")
        rows.append({
            "claim": r["claim"],
            "the report": f"{r['report statement']} Report: {r['report value']}.",
            "ours": f"{r['our value']} ({r['profile']} profile, {seeds})",
            "verdict": verdict_cell(r),
            "evidence": " ".join(evidence),
        })
    return pd.DataFrame(rows, columns=["claim", "the report", "ours", "verdict", "evidence"]), common
