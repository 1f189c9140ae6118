"""The interval a differential's percentage has for the number of cells counted: the exact
binomial (Clopper-Pearson) interval, as in Rümke's table (5% of 100 cells: 1.6-11.3%; of 500
cells: 3.3-7.3%), from statsmodels."""

from __future__ import annotations

from statsmodels.stats.proportion import proportion_confint


def rumke(count: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """The 95% interval, in percent, of a class seen `count` times among `n` cells (a count
    may be fractional: a cell between two stages counts half to each)."""
    if n <= 0:
        return (0.0, 100.0)
    low, high = proportion_confint(round(count), n, alpha=1 - level, method="beta")
    return (round(100 * float(low), 2), round(100 * float(high), 2))
