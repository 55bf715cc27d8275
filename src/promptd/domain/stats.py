"""Small statistics for campaign results: mean with a 95 % interval (Student's t for a scalar metric, Wilson's
score interval for a bool one: it stays within [0, 1]), percentiles, Welch's t-test. Pure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Summary", "percentile", "summarize", "summarize_bool", "welch_p_value"]

Z_975 = 1.959963984540054  # the 97.5 % quantile of the standard normal


@dataclass(frozen=True, slots=True)
class Summary:
    n: int
    mean: float | None
    low: float | None  # 95 % confidence interval
    high: float | None
    variance: float | None


def summarize(values: Sequence[float]) -> Summary:
    n = len(values)
    if n == 0:
        return Summary(0, None, None, None, None)
    mean = math.fsum(values) / n
    if n == 1:
        return Summary(1, mean, None, None, None)
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    half = t_quantile_975(n - 1) * math.sqrt(var / n)
    return Summary(n, mean, mean - half, mean + half, var)


def summarize_bool(values: Sequence[float]) -> Summary:
    """A bool metric (values 0 and 1): its rate, with Wilson's score interval, which never leaves [0, 1] and is
    meaningful at 0 %, 100 % and small samples, where the t interval of `summarize` is not."""
    plain = summarize(values)
    n = plain.n
    if n == 0 or plain.mean is None:
        return plain
    p, z2 = plain.mean, Z_975 * Z_975
    center = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z_975 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return Summary(n, p, max(0.0, center - half), min(1.0, center + half), plain.variance)


def percentile(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction for the regularized incomplete beta function (Lentz's method)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1 + aa * d
        d = 1 / (d if abs(d) > tiny else tiny)
        c = 1 + aa / c if abs(1 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1 + aa * d
        d = 1 / (d if abs(d) > tiny else tiny)
        c = 1 + aa / c if abs(1 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1) < 3e-14:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1 - front * _betacf(b, a, 1 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| > |t|) for Student's t with `df` degrees of freedom."""
    return _betainc(df / 2, 0.5, df / (df + t * t))


def t_quantile_975(df: float) -> float:
    """The 97.5 % quantile of Student's t (for a 95 % interval), by bisection on the p-value."""
    lo, hi = 0.0, 100.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if t_two_sided_p(mid, df) > 0.05:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def welch_p_value(a: Summary, b: Summary) -> float | None:
    """Two-sided p-value that the two means differ (Welch's unequal-variance t-test); None without data."""
    if a.n < 2 or b.n < 2 or a.variance is None or b.variance is None or a.mean is None or b.mean is None:
        return None
    va, vb = a.variance / a.n, b.variance / b.n
    if va + vb == 0:
        return 0.0 if a.mean != b.mean else 1.0
    t = (a.mean - b.mean) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / ((va**2 / (a.n - 1) if a.n > 1 else 0) + (vb**2 / (b.n - 1) if b.n > 1 else 0))
    return t_two_sided_p(t, df)
