"""Two methods measuring the same cases (the model's differential against the reference's,
one class at a time): bias and limits of agreement (Bland and Altman 1986), and Deming
regression, which allows for error in both (Cornbleet and Gochman 1979; standard errors by the
jackknife, Linnet 1990), both in percentage points."""

from __future__ import annotations

import numpy as np
from scipy import stats


def bland_altman(model: np.ndarray, reference: np.ndarray) -> dict:
    """Bias (mean of model - reference) and 95% limits of agreement (bias +- 1.96 SD of the
    differences); None where fewer than 2 cases leave an SD undefined."""
    d = np.asarray(model, float) - np.asarray(reference, float)
    if len(d) < 2:
        return {"cases": len(d), "bias": float(d.mean()) if len(d) else None, "sd": None,
                "low": None, "high": None}  # fmt: skip
    bias, sd = float(d.mean()), float(d.std(ddof=1))
    return {"cases": len(d), "bias": round(bias, 3), "sd": round(sd, 3),
            "low": round(bias - 1.96 * sd, 3), "high": round(bias + 1.96 * sd, 3)}  # fmt: skip


def _deming_fit(x: np.ndarray, y: np.ndarray, ratio: float) -> tuple[float, float]:
    """Slope and intercept; `ratio`: the variance of y's errors over x's (1: the same)."""
    mx, my = x.mean(), y.mean()
    sxx, syy, sxy = ((x - mx) ** 2).sum(), ((y - my) ** 2).sum(), ((x - mx) * (y - my)).sum()
    if sxy == 0:
        return (np.nan, np.nan)
    u = syy - ratio * sxx
    slope = (u + np.sqrt(u * u + 4 * ratio * sxy * sxy)) / (2 * sxy)
    return float(slope), float(my - slope * mx)


def deming(reference: np.ndarray, model: np.ndarray, ratio: float = 1.0) -> dict:
    """Deming regression of the model's values on the reference's, with 95% confidence
    intervals from the jackknife; None where it is undefined (fewer than 3 cases, or no
    spread)."""
    x, y = np.asarray(reference, float), np.asarray(model, float)
    n = len(x)
    slope, intercept = _deming_fit(x, y, ratio) if n >= 2 else (np.nan, np.nan)
    out = {"cases": n, "slope": None, "intercept": None, "slope_ci": None, "intercept_ci": None}
    if not np.isfinite(slope):
        return out
    out |= {"slope": round(slope, 4), "intercept": round(intercept, 4)}
    if n < 3:
        return out
    leave_out = np.array([_deming_fit(np.delete(x, i), np.delete(y, i), ratio) for i in range(n)])
    if not np.isfinite(leave_out).all():
        return out
    t = stats.t.ppf(0.975, n - 2)
    for k, (name, value) in enumerate((("slope", slope), ("intercept", intercept))):
        pseudo = n * value - (n - 1) * leave_out[:, k]
        se = pseudo.std(ddof=1) / np.sqrt(n)
        out[f"{name}_ci"] = [round(value - t * se, 4), round(value + t * se, 4)]
    return out
