"""Calibrated probabilities and the "unsure" flag, fitted on validation cells.

Temperature scaling (Guo et al. 2017): one scalar T divides the logits so that the validation
negative log-likelihood is least; it changes no prediction, only how sure each one claims to be.
The flag threshold is then the lowest top-class probability at which the validation cells the
model is at least that sure of are expected to reach `target_accuracy`, their chance of being
right smoothed by a logistic fit on confidence (`correctness`): below it, a cell is "unsure".
Both are stored with the model, separately for plain and 8-way rotation/flip (TTA) inference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from marrowdiff.estimate import effective_n, expected_counts, wilson

# Unflagged validation cells should be right this often. Every cell is reviewed in the review
# station anyway; the flag says which ones to look at first and which not to count unseen.
TARGET_ACCURACY = 0.90
MODES = {"plain": False, "tta": True}  # calibrated separately: name -> test-time augmentation


@dataclass(frozen=True)
class Calibration:
    temperature: float = 1.0
    threshold: float = 0.0  # cells whose top calibrated probability is below are flagged
    target_accuracy: float = (
        TARGET_ACCURACY  # the accuracy the threshold aims at on validation cells
    )
    coverage: float = 1.0  # fraction of validation cells at or above the threshold
    accepted_accuracy: float = float("nan")  # their accuracy
    ece_before: float = float("nan")  # expected calibration error, 10 bins, T = 1
    ece_after: float = float("nan")
    n: int = 0  # validation cells it was fitted on (0: not calibrated)
    interval_scale: float = 1.0  # widens the estimate's intervals (`fit_interval_scale`)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> Calibration:
        return cls(**d) if d else cls()

    def proba(self, logits: np.ndarray) -> np.ndarray:
        return softmax(np.asarray(logits, np.float64) / self.temperature, axis=1)


def calibrations_from_dict(d: dict | None) -> dict[str, Calibration]:
    """{"plain": Calibration, "tta": Calibration} as a checkpoint or ONNX file stores them."""
    return {mode: Calibration.from_dict(v) for mode, v in (d or {}).items()}


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of `labels`."""
    logits = np.asarray(logits, np.float64)
    rows = np.arange(len(labels))

    def nll(log_t: float) -> float:
        return -log_softmax(logits / np.exp(log_t), axis=1)[rows, labels].mean()

    return float(np.exp(minimize_scalar(nll, bounds=(-3, 3), method="bounded").x))


def correctness(confidence: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Each cell's chance of being right given its confidence: a logistic fit of right/wrong
    on the log-odds of the confidence (two parameters, monotone). The running accuracy of the
    surest k validation cells jumps about with single cells at the size of a validation split
    (about 100 cells here); this smooth estimate does not. All right or all wrong: 1 or 0."""
    if right.all() or not right.any():
        return np.full(len(right), float(right.all()))
    from sklearn.linear_model import LogisticRegression

    c = np.clip(confidence, 1e-6, 1 - 1e-6)
    z = np.log(c / (1 - c))[:, None]
    return LogisticRegression(C=1e4).fit(z, right).predict_proba(z)[:, 1]


def choose_threshold(
    proba: np.ndarray, labels: np.ndarray, target: float
) -> tuple[float, float, float]:
    """(threshold, coverage, accuracy above it): the lowest confidence at which the cells at or
    above it are expected to be right at least `target` of the time (`correctness`, smoothed
    over the validation cells); the accuracy returned is what those cells actually scored.
    When no such set exists (not even the single surest cell), the threshold is 1.0 and every
    cell is flagged."""
    confidence = proba.max(1)
    right = proba.argmax(1) == labels
    order = np.argsort(-confidence, kind="stable")
    expected = np.cumsum(correctness(confidence, right)[order]) / np.arange(1, len(order) + 1)
    ok = np.flatnonzero(expected >= target)
    if len(ok) == 0:
        return 1.0, 0.0, float("nan")
    threshold = float(confidence[order[ok[-1]]])
    sure = confidence >= threshold  # ties at the threshold are sure too
    return threshold, float(sure.mean()), float(right[sure].mean())


def expected_calibration_error(proba: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    confidence = proba.max(1)
    right = proba.argmax(1) == labels
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            error += inside.mean() * abs(right[inside].mean() - confidence[inside].mean())
    return float(error)


def fit_interval_scale(
    proba: np.ndarray, labels: np.ndarray, cells: int = 100, draws: int = 400, seed: int = 0
) -> float:
    """How much wider the report's standard errors must be for its 95% intervals to hold the
    true shares: cases of `cells` cells are drawn (with replacement) from the validation
    cells, each counted by its top class as the report counts it (`report.estimate`), and the
    scale is the least one (on a grid from 1 to 10) at which 95% of the intervals, over the
    classes present and the cases, hold the validation share. The sampling error alone takes
    no account of the model's confusions (a stage it mistakes for its neighbour), which the
    true shares expose."""
    rng = np.random.default_rng(seed)
    truth = np.bincount(labels, minlength=proba.shape[1]) / len(labels)
    present = truth > 0
    top = np.eye(proba.shape[1])[proba.argmax(1)]
    estimates = [expected_counts(top[rng.integers(0, len(labels), cells)]) for _ in range(draws)]
    share = np.array([e["percent"] for e in estimates])[:, present] / 100
    variance = (np.array([e["se"] for e in estimates])[:, present] / 100) ** 2

    def coverage(scale: float) -> float:
        low, high = wilson(share, effective_n(share, variance * scale**2, cells))
        return float(np.mean((low <= truth[present] + 1e-9) & (truth[present] <= high + 1e-9)))

    for scale in np.round(np.arange(1.0, 10.01, 0.05), 2):
        if coverage(scale) >= 0.95:
            return float(scale)
    return 10.0


def calibrate(
    logits: np.ndarray, labels: np.ndarray, target_accuracy: float = TARGET_ACCURACY
) -> Calibration:
    """Temperature and flag threshold from validation logits (N, C) and true labels (N,)."""
    labels = np.asarray(labels, np.int64)
    if len(labels) < 10:
        raise ValueError(
            f"calibration needs at least 10 labelled validation cells, got {len(labels)}"
        )
    temperature = fit_temperature(logits, labels)
    after = Calibration(temperature=temperature).proba(logits)
    threshold, coverage, accuracy = choose_threshold(after, labels, target_accuracy)
    return Calibration(
        temperature=temperature,
        threshold=threshold,
        target_accuracy=target_accuracy,
        coverage=coverage,
        accepted_accuracy=accuracy,
        ece_before=expected_calibration_error(softmax(logits, axis=1), labels),
        ece_after=expected_calibration_error(after, labels),
        n=len(labels),
        interval_scale=round(fit_interval_scale(after, labels), 3),
    )


def calibrate_modes(
    logits: dict[str, np.ndarray],
    labels: np.ndarray,
    target: float = TARGET_ACCURACY,
    log=print,
) -> dict:
    """{"plain": ..., "tta": ...} calibrations from each mode's validation logits (N, C) and the
    true labels; {} when there are too few validation cells to fit them."""
    if len(labels) < 10:
        log("no validation split to calibrate on: probabilities stay uncalibrated, no cell flagged")
        return {}
    out = {mode: calibrate(x, labels, target).to_dict() for mode, x in logits.items()}
    c = out["plain"]
    sure = (
        f"{c['coverage']:.0%} of cells sure, {c['accepted_accuracy']:.1%} of them right"
        if c["coverage"] > 0
        else f"no cell reaches {target:.0%} accuracy: every cell is flagged unsure"
    )
    log(
        f"calibrated on {c['n']} validation cells: temperature {c['temperature']:.2f}, "
        f"unsure below p={c['threshold']:.2f} ({sure}); estimate intervals x"
        f"{c['interval_scale']:.2f}"
    )
    return out
