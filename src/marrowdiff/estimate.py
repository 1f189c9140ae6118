"""The differential as an estimate: counts with 95% intervals (pure functions).

Counting only the cells the model is sure of skews a differential: the easy cells are not a
random sample (on the demo's fields the sure cells were mostly myeloblasts). The report counts
every cell instead (`report.estimate`: each by its class, one-hot rows here), which measured
best on validation fields; rows may also be calibrated probabilities, so that a cell that is
60% myelocyte and 40% metamyelocyte adds 0.6 and 0.4 ("probabilistic classify and count",
Bella et al. 2010; `bench/detection.py` compares them, docs/BENCHMARKS.md).

The 95% interval is for the class's share in the marrow the cells were sampled from. With cells
drawn independently, the estimate is a mean over the N cells of their rows, so its standard
error is sd(p_ik) / sqrt(N): for one-hot (verified) rows the binomial error of a manual count,
as in Rümke's tables; for probabilities it also holds which class each cell is. (With mass on
classes not counted, the share is a ratio and its error comes by the delta method.) `scale`
widens it for what the rows do not hold (a model's confusions; `Calibration.interval_scale`).
The interval is Wilson's score interval at the effective number of cells share (1 - share) /
SE^2, which stays inside [0, 100] % and is not empty for a class seen in no cell (0 of 100
cells: 0 - 3.7 %).
"""

from __future__ import annotations

import numpy as np

Z95 = 1.959964


def expected_counts(proba: np.ndarray, scale: float = 1.0) -> dict:
    """Per class: expected count, share (%) and its 95% interval, from (n_cells, n_classes)
    probabilities over the counted classes. A row may sum to less than 1: the rest is the
    chance that the cell is of a class not counted (a platelet), and the cell counts as that
    fraction of a cell. A verified cell's row is one-hot. `n` is the expected number of
    counted cells. `scale` widens the standard error before the interval is drawn (a model's
    `Calibration.interval_scale`, fitted on its validation cells; 1: the probabilities are
    taken at their word)."""
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be (cells, classes), not {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any() or (p.sum(1) > 1 + 1e-6).any():
        raise ValueError("probabilities must be finite, non-negative and sum to at most 1")
    expected = p.sum(0)
    mass = p.sum(1)  # how much of a counted cell each is
    n = float(mass.sum())
    if n <= 0:
        nothing = np.full(p.shape[1], np.nan)
        return {"n": 0.0, "expected": expected, "percent": nothing, "se": nothing,
                "low": nothing, "high": nothing}  # fmt: skip
    share = expected / n
    cells = len(p)
    # the ratio estimate's variance (delta method): var(p_ik - share_k m_i) / (N mean(m)^2)
    residual = p - share[None, :] * mass[:, None]
    variance = residual.var(0) / (cells * (n / cells) ** 2) * scale**2
    low, high = wilson(share, effective_n(share, variance, cells))
    return {
        "n": n,
        "expected": expected,
        "percent": 100 * share,
        "se": 100 * np.sqrt(variance),
        "low": 100 * low,
        "high": 100 * high,
    }


def effective_n(share: np.ndarray, variance: np.ndarray, cells: int) -> np.ndarray:
    """The number of verified cells that would give `share` this variance (at least 1); for
    a share of 0 or 1, whose variance is 0, the number of cells."""
    inside = (share > 0) & (share < 1) & (variance > 0)
    out = np.full(share.shape, float(cells))
    out[inside] = share[inside] * (1 - share[inside]) / variance[inside]
    return np.maximum(out, 1.0)


def wilson(share: np.ndarray, n: np.ndarray, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson's score interval of a proportion `share` of `n` trials."""
    centre = (share + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(share * (1 - share) / n + z**2 / (4 * n**2))
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)
