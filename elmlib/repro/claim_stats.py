"""The statistics of the claims ledger (`elmlib.repro.ledger`): t-intervals of paired differences, the
power of a paired t-test, the minimum detectable effect (MDE) at n and spread, and the seeds that would
resolve an effect.

    mean, low, high = t_interval([0.4, 1.1, 0.7])
    mde(3, sd=0.35), seeds_needed(0.35, effect=0.8)
"""
from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats

ALPHA, POWER, MAX_SEEDS = 0.05, 0.80, 1000
NAN = math.nan


def t_interval(d, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the t-interval of the mean of ``d``; low and high are NaN when n < 2."""
    d = np.asarray(d, dtype=float)
    mean = float(d.mean()) if len(d) else NAN
    if len(d) < 2:
        return mean, NAN, NAN
    half = stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return mean, mean - half, mean + half


def power(effect: float, n: int, sd: float, alpha: float = ALPHA) -> float:
    """Power of a two-sided one-sample (paired) t-test of n differences with spread sd at a true effect."""
    df, crit = n - 1, stats.t.ppf(1 - alpha / 2, n - 1)
    nc = abs(effect) / (sd / math.sqrt(n))
    far = stats.nct.cdf(-crit, df, nc)  # the wrong-side tail: negligible, and NaN in scipy for some large nc
    return float(stats.nct.sf(crit, df, nc) + (0.0 if math.isnan(far) else far))


def mde(n: int, sd: float, alpha: float = ALPHA, target: float = POWER) -> float:
    """Smallest true effect a paired t-test of n differences with spread sd detects with power ``target``
    (noncentral t); NaN when n < 2, 0 when sd is 0."""
    if n < 2 or not math.isfinite(sd):
        return NAN
    if sd == 0:
        return 0.0
    high = sd
    while power(high, n, sd, alpha) < target:  # power rises with the effect: bracket, then solve
        high *= 2
    return optimize.brentq(lambda e: power(e, n, sd, alpha) - target, 0.0, high, xtol=1e-10 * sd)


def seeds_needed(sd: float, effect: float, max_n: int = MAX_SEEDS) -> int | None:
    """Smallest n whose MDE at spread sd is at most |effect|; None if more than max_n would be needed."""
    if not math.isfinite(sd) or effect == 0:
        return None
    lo, hi = 2, 2
    while mde(hi, sd) > abs(effect):
        if hi >= max_n:
            return None
        lo, hi = hi, min(2 * hi, max_n)
    while lo < hi:  # MDE falls with n: bisect for the first n that reaches the effect
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if mde(mid, sd) > abs(effect) else (lo, mid)
    return lo
