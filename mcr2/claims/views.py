"""The ledger as pages show it: the verdict table that opens the book, one ledger line per claim,
a chapter's table of its claims, the verdicts as Markdown, and the whole ledger for reading (a
page never computes a verdict of its own).

Markdown from here is MyST (render it with ``{glue:md}`` and ``:format: myst``): the verdict
table links each claim to its ledger line (label ``claim-LABEL`` on the claims page) and to the
chapter section whose figures show the evidence.
"""
from __future__ import annotations

import math

import pandas as pd

from .definitions import claim, claim_quantities, evaluate_claims

__all__ = ["claims_table", "verdict_text", "verdict_cell", "verdict_table", "verdict_markdown",
           "ledger_line", "ledger_target", "section_anchor"]


def ledger_target(label: str) -> str:
    """The MyST target of a claim's ledger line on the claims page (``(claim-4b)=``)."""
    return f"claim-{label}"


def section_anchor(section: str) -> str:
    """The HTML id Sphinx gives a section heading (docutils' ``make_id`` of its text; inline maths
    reads as its LaTeX source). docutils comes with the book's tools (the ``book`` extra), which
    render these links; the library itself does not need it."""
    from docutils.nodes import make_id

    return make_id(section.replace("$", ""))


def _evidence(label: str) -> tuple[str, str, str]:
    """(page, section or "", href) of the chapter that shows a claim's numbers."""
    page, section = claim(label).evidence
    return page, section or "", f"{page}.html" + (f"#{section_anchor(section)}" if section else "")


def _where(page: str, section: str) -> str:
    """How a reader names a claim's evidence: the chapter's number (``03_classification`` → ch. 03,
    the number its file and take-home command carry) and the section."""
    number = page.split("_")[0]
    return (f"ch. {number}" if number.isdigit() else page) + (f" § {section}" if section else "")


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def verdict_table(ledger: pd.DataFrame) -> pd.DataFrame:
    """One row per ledger line, as the book opens with it: claim, the report's sentence in a few
    words, the verdict (with its leaning when inconclusive), whether the report's own numbers lie
    inside our 95 % t-intervals, and the chapter and section that show the evidence."""
    rows = []
    for _, r in ledger.iterrows():
        page, section, _ = _evidence(r["claim"])
        rows.append({"claim": r["claim"], "the report says": claim(r["claim"]).short, "verdict": verdict_cell(r),
                     "consistent with the report": r["consistent"],
                     "evidence": _where(page, section)})
    return pd.DataFrame(rows, columns=["claim", "the report says", "verdict", "consistent with the report", "evidence"])


def verdict_markdown(ledger: pd.DataFrame) -> str:
    """:func:`verdict_table` as a MyST table: the claim links to its ledger line on the claims page,
    the evidence to its chapter's section."""
    head = "| claim | the report says | verdict | consistent with the report | evidence |\n|:--|:--|:--|:--|:--|"
    lines = [head]
    for _, r in ledger.iterrows():
        page, section, href = _evidence(r["claim"])
        where = _where(page, section)
        lines.append(f"| {{ref}}`{r['claim']} <{ledger_target(r['claim'])}>` | {_cell(claim(r['claim']).short)} | "
                     f"{_cell(verdict_cell(r))} | {_cell(r['consistent'])} | <a href=\"{href}\">{_cell(where)}</a> |")
    return "\n".join(lines)


def ledger_line(row) -> str:
    """One ledger line (a row of :func:`mcr2.claims.evaluate_claims`) as MyST Markdown: the report's
    sentence with its section, the report's value, ours with every seed's, the rule, the tests, the
    verdict and why, whether the report's numbers are consistent with ours, and the runs."""
    seeds = f"{row['seeds']} seed{'s' if row['seeds'] != 1 else ''}"
    verdict = f"**{verdict_cell(row)}**" + (f" — not decided: {row['why']}" if row["why"] else "")
    items = [
        f"**The report**: {row['report statement']}",
        f"**The report's value**: {row['report value']}",
        f"**Ours** ({row['profile']} profile, {seeds}): {row['our value']}",
        f"**Per seed**: {row['per seed'] or '—'}",
        f"**Rule**: {row['rule']}",
        f"**Tests**: {row['tests']}",
        f"**Verdict**: {verdict}",
        f"**Consistent with the report**: {row['consistent']} ({row['consistency']})",
    ]
    if row["runs"]:
        items.append(f"**Runs**: {row['runs']}")
    page, section, href = _evidence(row["claim"])
    items.append(f"**Evidence**: <a href=\"{href}\">{_where(page, section)}</a>")
    return "\n".join(f"- {item}" for item in items)


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
        report = "—" if not math.isfinite(r["report"]) else ("≥ " if r["bound"] else "") + f"{r['report']:g}"
        first = r["label"] not in seen
        seen.add(r["label"])
        rows.append({
            "claim": r["label"] if first else "",
            "quantity": r["quantity"],
            "report": report,
            "ours": ours,
            "per seed": r["per seed"],
            "seeds": int(r["n"]),
            "profile": r["profile"],
            "verdict": verdict_cell(ledger.loc[r["label"]]) if first else "",
        })
    return pd.DataFrame(rows, columns=["claim", "quantity", "report", "ours", "per seed", "seeds", "profile", "verdict"])


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

