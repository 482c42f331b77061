"""The claims ledger: the report's checkable sentences (FACTS.md), each judged from run records.

``evaluate_claims(records)`` gives the ledger, one row per claim; ``claim_quantities(records)``
the numbers behind it next to the values read off the report's figures; ``claims_table`` and
``verdict_text`` are the same verdicts as a chapter shows them (a chapter never computes a verdict
of its own). ``records`` is what :func:`mcr2.engine.run_all` returns:
``{experiment name: [RunRecord per seed]}``.

Three rooms:

* :mod:`~mcr2.claims.stats` — the tests a verdict rests on (one-sided Welch, one-sample bound, TOST);
* :mod:`~mcr2.claims.definitions` — the claims (:data:`CLAIMS`), their evaluators and the ledger's
  rule and gates (:func:`evaluate_claims`), with :mod:`~mcr2.claims.runs` for what they read off
  the records (per-seed values, cosine blocks, a masked run's switch and head);
* :mod:`~mcr2.claims.views` — the tables and text chapters render.
"""
from ..summary import cosine_blocks
from .definitions import (
    CLAIMS,
    COSINE_WELL_ABOVE,
    DIGIT_EDGE_COLUMN,
    HIGH_BACKGROUND_ACC,
    LEDGER_COLUMNS,
    MATCH_MARGIN,
    QUICK_EPOCH,
    REPORT_MASK_EPOCHS,
    REPORT_MASK_THRESHOLD,
    R_SAME_FRACTION,
    TEST_RULE,
    VERDICT_PROFILE,
    VERDICTS,
    Claim,
    Outcome,
    claim,
    claim_quantities,
    evaluate_claims,
    structureless_cosine,
)
from .runs import COLLAPSE_ACC, MaskingEvents, digit_cosine, masking_events, masking_story, run_notes, seed_values
from .stats import ALPHA, CONFIDENCE, MIN_SEEDS, Test, above, below, compare, equivalent, paired, t_interval, welch
from .views import claims_table, ledger_line, verdict_markdown, verdict_table, verdict_text

__all__ = [
    "VERDICTS",
    "ALPHA",
    "MIN_SEEDS",
    "VERDICT_PROFILE",
    "R_SAME_FRACTION",
    "CONFIDENCE",
    "REPORT_MASK_THRESHOLD",
    "REPORT_MASK_EPOCHS",
    "MATCH_MARGIN",
    "QUICK_EPOCH",
    "HIGH_BACKGROUND_ACC",
    "COSINE_WELL_ABOVE",
    "DIGIT_EDGE_COLUMN",
    "LEDGER_COLUMNS",
    "COLLAPSE_ACC",
    "TEST_RULE",
    "Test",
    "welch",
    "below",
    "above",
    "paired",
    "equivalent",
    "t_interval",
    "structureless_cosine",
    "compare",
    "Claim",
    "Outcome",
    "CLAIMS",
    "claim",
    "cosine_blocks",
    "seed_values",
    "digit_cosine",
    "MaskingEvents",
    "masking_events",
    "masking_story",
    "run_notes",
    "evaluate_claims",
    "claim_quantities",
    "claims_table",
    "verdict_text",
    "ledger_line",
    "verdict_table",
    "verdict_markdown",
]
