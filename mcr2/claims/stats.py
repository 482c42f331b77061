"""The tests the claims ledger rests on (:mod:`mcr2.claims`).

* **A test** (:class:`Test`) is one comparison a claim rests on, oriented so that +1 supports the
  claim. Two methods are compared with a one-sided Welch t-test on their per-seed final values
  (:func:`welch`): Δ = mean(a) − mean(b), t and the one-sided p of the observed direction. A
  bound ("near 0") uses a one-sided one-sample t-test (:func:`below`), "about the same" two
  one-sided tests (TOST) against a tolerance (:func:`equivalent`). Only finite values count as
  seeds (a NaN seed is no seed). Two quantities of the same runs are compared per run
  (:func:`paired`).
* Each test is one-sided in the direction its point estimate points, at :data:`ALPHA` each way:
  under no difference about 2 × ALPHA of tests decide, one way or the other.
* A test's **result** is ±1 only with ≥ :data:`MIN_SEEDS` finite seeds in every arm and
  p < :data:`ALPHA`; otherwise 0. Its **lean** is the sign of the point estimate alone.
* :func:`t_interval` is the :data:`CONFIDENCE` Student-t interval of a mean over seeds, against which
  the report's own number is read ("consistent with the report").
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["ALPHA", "MIN_SEEDS", "CONFIDENCE", "Test", "welch", "below", "above", "paired", "equivalent", "compare",
           "finite", "t_interval"]

ALPHA = 0.05  # one-sided significance level of every test
MIN_SEEDS = 3  # finite seeds per arm below which no test decides (2 seeds: t ≈ 1.4 is p ≈ 0.15)
CONFIDENCE = 0.95  # level of the t-interval over seeds that the report's own number is checked against


def finite(values) -> np.ndarray:
    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    return x[np.isfinite(x)]


@dataclass(frozen=True)
class Test:
    """One comparison a claim rests on, oriented so that +1 supports the claim."""

    name: str  # what is compared, e.g. "MCR² − CE · MNIST"
    delta: float  # the observed difference (a − b, or mean − bound)
    t: float  # Welch (or one-sample) t statistic; NaN where no t-test applies
    p: float  # one-sided p of the direction the test reports (see `lean`)
    n: tuple[int, ...]  # finite seeds per arm
    lean: int  # +1 / −1 from the point estimate alone, 0 without values
    detail: str = ""  # replaces Δ, t, p in the text where no t-test applies (claim 4)

    @property
    def enough_seeds(self) -> bool:
        return bool(self.n) and min(self.n) >= MIN_SEEDS

    @property
    def result(self) -> int:
        """The lean when it is significant (p < ALPHA) with ≥ MIN_SEEDS finite seeds per arm, else 0."""
        if not self.enough_seeds or self.lean == 0:
            return 0
        if self.detail:  # a count of seeds, no p: decided by the seeds agreeing
            return self.lean
        return self.lean if self.p < ALPHA else 0

    def text(self) -> str:
        seeds = "/".join(map(str, self.n))
        if self.detail:
            return f"{self.name}: {self.detail}"
        if not self.n or min(self.n) == 0:
            return f"{self.name}: no values"
        if math.isnan(self.t):
            return f"{self.name}: Δ = {self.delta:+.3g} (n = {seeds}, no t-test)"
        return f"{self.name}: Δ = {self.delta:+.3g}, t = {self.t:.2f}, p = {self.p:.3g} (n = {seeds})"


def _welch_t(a: np.ndarray, b: np.ndarray, alternative: str) -> tuple[float, float]:
    """(t, p) of scipy's one-sided Welch test; exact limits where both arms have no spread or one
    arm has a single value (Welch needs a variance on each side: t NaN, p 1)."""
    if len(a) < 2 or len(b) < 2:
        return math.nan, 1.0
    va, vb = a.var(ddof=1), b.var(ddof=1)
    diff = a.mean() - b.mean()
    if va + vb == 0:  # identical values within each arm
        if diff == 0:
            return 0.0, 0.5
        t = math.copysign(math.inf, diff)
        return t, 0.0 if (diff > 0) == (alternative == "greater") else 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nearly identical values: scipy warns, the result stands
        res = stats.ttest_ind(a, b, equal_var=False, alternative=alternative)
    return float(res.statistic), float(res.pvalue)


def welch(a, b, name: str = "a − b", margin: float = 0.0) -> Test:
    """One-sided Welch t-test of mean(a) − mean(b) against ``margin`` (0: no difference), in the
    direction of the observed Δ = mean(a) − mean(b) − margin: lean = sign(Δ), p = P(a difference
    at least this far beyond the margin in that direction | the difference is the margin)."""
    xa, xb = finite(a), finite(b)
    if len(xa) == 0 or len(xb) == 0:
        return Test(name, math.nan, math.nan, math.nan, (len(xa), len(xb)), 0)
    delta = float(xa.mean() - xb.mean() - margin)
    lean = 1 if delta > 0 else -1 if delta < 0 else 0
    t, p = _welch_t(xa - margin, xb, "greater" if delta >= 0 else "less")
    return Test(name, delta, t, p, (len(xa), len(xb)), lean)


def _one_sample(x: np.ndarray, bound: float, name: str, lean: int, n: tuple[int, ...]) -> Test:
    """One-sided one-sample t-test of mean(x) against ``bound`` in the observed direction; ``lean``
    says whether that direction supports the claim. Exact limits for one value or no spread."""
    delta = float(x.mean() - bound)
    if len(x) < 2:
        return Test(name, delta, math.nan, 1.0, n, lean)
    if x.std(ddof=1) == 0:
        return Test(name, delta, math.copysign(math.inf, delta) if delta else 0.0, 0.0 if delta else 0.5, n, lean)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_1samp(x, bound, alternative="less" if delta < 0 else "greater")
    return Test(name, delta, float(res.statistic), float(res.pvalue), n, lean)


def below(values, bound: float, name: str = "mean − bound") -> Test:
    """One-sided one-sample t-test of mean < bound: lean +1 when the mean is below the bound,
    −1 above it; p of that direction."""
    x = finite(values)
    if len(x) == 0:
        return Test(name, math.nan, math.nan, math.nan, (0,), 0)
    return _one_sample(x, bound, name, 1 if x.mean() < bound else -1, (len(x),))


def above(values, bound: float, name: str = "mean − bound") -> Test:
    """One-sided one-sample t-test of mean > bound: lean +1 when the mean is above the bound,
    −1 at or below it; p of that direction."""
    x = finite(values)
    if len(x) == 0:
        return Test(name, math.nan, math.nan, math.nan, (0,), 0)
    return _one_sample(x, bound, name, 1 if x.mean() > bound else -1, (len(x),))


def paired(a, b, name: str = "a − b") -> Test:
    """One-sided paired t-test of a − b against 0, for two quantities of the same runs (pairs with
    a non-finite member are dropped), in the direction of the observed mean difference."""
    xa, xb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    d = (xa - xb)[np.isfinite(xa) & np.isfinite(xb)]
    if len(d) == 0:
        return Test(name, math.nan, math.nan, math.nan, (0,), 0)
    return _one_sample(d, 0.0, name, 1 if d.mean() > 0 else -1 if d.mean() < 0 else 0, (len(d),))


def equivalent(a, b, tolerance: float, name: str = "|a − b|") -> Test:
    """"About the same": lean +1 when |Δ| < tolerance, −1 otherwise. p is that of two one-sided
    Welch tests (TOST, the larger p of Δ > −tol and Δ < tol) for +1, and of the one-sided test
    |Δ| > tol in the observed direction for −1."""
    xa, xb = finite(a), finite(b)
    if len(xa) == 0 or len(xb) == 0 or not math.isfinite(tolerance):
        return Test(name, math.nan, math.nan, math.nan, (len(xa), len(xb)), 0)
    delta = float(xa.mean() - xb.mean())
    if abs(delta) < tolerance:
        t_hi, p_hi = _welch_t(xa - tolerance, xb, "less")  # Δ < tol
        t_lo, p_lo = _welch_t(xa + tolerance, xb, "greater")  # Δ > −tol
        t, p = (t_hi, p_hi) if p_hi >= p_lo else (t_lo, p_lo)
        return Test(name, delta, t, p, (len(xa), len(xb)), 1)
    shift = tolerance if delta > 0 else -tolerance
    t, p = _welch_t(xa - shift, xb, "greater" if delta > 0 else "less")
    return Test(name, delta, t, p, (len(xa), len(xb)), -1)


def compare(a, b) -> int:
    """+1 if a's seeds beat b's, −1 if they fall below them, 0 when the seeds cannot tell:
    the :meth:`Test.result` of :func:`welch` (one-sided Welch p < ALPHA with ≥ MIN_SEEDS finite
    values each)."""
    return welch(a, b).result


def t_interval(values, level: float = CONFIDENCE) -> tuple[float, float]:
    """The ``level`` two-sided Student-t interval of the mean of the finite values (scipy.stats.t);
    (NaN, NaN) with fewer than two."""
    x = finite(values)
    if len(x) < 2:
        return math.nan, math.nan
    sem = x.std(ddof=1) / math.sqrt(len(x))
    if sem == 0:
        return float(x.mean()), float(x.mean())
    lo, hi = stats.t.interval(level, len(x) - 1, loc=x.mean(), scale=sem)
    return float(lo), float(hi)
