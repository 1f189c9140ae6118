"""The domain check: are these cells like the ones the model learned from? Pure numbers, no I/O.

A model records a reference of what its training cells look like *to the network*: the unit
vectors of the penultimate-layer features of up to `MAX_BANK` training cells. A cell's distance
to that reference is one minus the cosine similarity to its k-th nearest training cell (deep
nearest neighbours, Sun et al. 2022, ICML). The per-cell threshold is the `QUANTILE` of the
distances of held-out cells of the model's own source (its validation cells), so that about 1%
of cells like the training cells lie beyond it.

A set of cells (a count, a classify) is called unlike the training cells when the share beyond
the threshold is both at least `MIN_SHARE` (an effect, not a wobble: five times the expected
share) and more than chance allows for cells like the training ones (one-sided binomial test,
p < `ALPHA`). Measured on the two public sources (docs/BENCHMARKS.md, "The domain check"): a
colour-and-size check alone could not tell the archive's cells from PBC's; this one can.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import cache, cached_property

import numpy as np
from scipy.stats import binom
from threadpoolctl import ThreadpoolController

K = 5  # neighbours: the k-th nearest training cell's distance
QUANTILE = 0.99  # of the validation cells' distances: the per-cell threshold
MAX_BANK = 2000  # training cells kept in the reference (2,000 x 1,280 float16: 5 MB)
MIN_SHARE = 0.05  # a set is unlike the training cells only if at least this share is beyond...
ALPHA = 1e-3  # ...and a share that large has p below this for cells like them
ADVICE = (
    "its accuracy on them is not known: review every cell, or train with your own labelled "
    'cells (docs/training.md, "Your own cells")'
)


def unit_rows(features: np.ndarray) -> np.ndarray:
    """(N, D) features scaled to unit length (a zero row stays zero)."""
    x = np.asarray(features, np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, np.float32(1e-12))


@dataclass(frozen=True)
class DomainReference:
    """What the model's training cells look like to it, and where "unlike them" begins."""

    bank: np.ndarray  # (M, D) float16 unit vectors of training cells' features
    threshold: float  # a cell farther than this from the bank is unlike the training cells
    expected: float  # the share of held-out cells of the model's own source beyond it
    threshold_cells: int  # how many held-out cells set the threshold
    k: int = K
    held_out: str = "validation"  # which cells set it: "validation", or "training" (fold -1)

    @cached_property
    def bank32(self) -> np.ndarray:
        """The bank as float32, converted once (a count calls `distances` per batch)."""
        return self.bank.astype(np.float32)

    @property
    def dim(self) -> int:
        return int(self.bank.shape[1])

    def distances(self, features: np.ndarray, chunk: int = 1024) -> np.ndarray:
        """(N,) one minus the cosine similarity of each cell to its k-th nearest bank cell."""
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise ValueError(
                f"features of shape {features.shape} do not fit a reference of {self.dim}"
            )
        bank = self.bank32
        k = min(self.k, len(bank))
        out = np.empty(len(features), np.float64)
        # One BLAS thread: its idle threads would spin against the network's (ONNX Runtime's)
        # between batches, which cost 40% of `classify`'s cells/s on 2 cores.
        with _blas().limit(limits=1, user_api="blas"):
            for i in range(0, len(features), chunk):
                similarity = unit_rows(features[i : i + chunk]) @ bank.T
                kth = np.partition(similarity, len(bank) - k, axis=1)[:, len(bank) - k]
                out[i : i + chunk] = 1.0 - kth
        return out

    def to_dict(self) -> dict:
        """JSON-ready: the bank as base64 float16 (a checkpoint and an ONNX file hold this)."""
        bank = np.ascontiguousarray(self.bank, dtype="<f2")
        return {
            "method": "knn-cosine",
            "k": self.k,
            "threshold": self.threshold,
            "expected": self.expected,
            "threshold_cells": self.threshold_cells,
            "held_out": self.held_out,
            "shape": list(bank.shape),
            "bank": base64.b64encode(bank.tobytes()).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, d: dict) -> DomainReference:
        """Raises ValueError (or KeyError, TypeError) on a reference that does not read."""
        if d.get("method") != "knn-cosine":
            raise ValueError(f"unknown domain method {d.get('method')!r}")
        rows, dim = (int(v) for v in d["shape"])
        raw = base64.b64decode(d["bank"], validate=True)
        if rows < 1 or dim < 1 or len(raw) != rows * dim * 2:
            raise ValueError("the domain reference's bank does not have its stated shape")
        bank = np.frombuffer(raw, "<f2").reshape(rows, dim)
        threshold, expected = float(d["threshold"]), float(d["expected"])
        if not (np.isfinite(bank).all() and np.isfinite(threshold) and 0 <= expected <= 1):
            raise ValueError("the domain reference holds numbers that are not finite")
        k, held_out = int(d["k"]), str(d.get("held_out", "validation"))
        return cls(bank, threshold, expected, int(d["threshold_cells"]), k, held_out)


def domain_from_dict(d: dict | None) -> DomainReference | None:
    """A stored reference, or None for a model saved without one (older models)."""
    return DomainReference.from_dict(d) if d else None


def bank_sample(n: int, seed: int = 0, max_bank: int = MAX_BANK) -> np.ndarray:
    """Sorted indices of the (at most `max_bank`) training cells a reference keeps."""
    rng = np.random.default_rng([seed, 26])
    return np.sort(rng.choice(n, min(max_bank, n), replace=False))


def fit_reference(
    train: np.ndarray,
    held_out: np.ndarray | None,
    k: int = K,
    quantile: float = QUANTILE,
) -> DomainReference:
    """The reference of a model from the features of its training cells (`bank_sample`) and
    of held-out cells of the same source, whose distances set the threshold at their
    `quantile`. Without held-out cells (a run on all its cells, fold -1), a fifth of the
    training cells sets it: cells it was trained on, so it flags somewhat more."""
    train = np.asarray(train)
    source = "validation"
    if held_out is None or not len(held_out):
        fifth = np.arange(len(train)) % 5 == 4  # every fifth: all classes, in any order
        train, held_out, source = train[~fifth], train[fifth], "training"
    if len(train) < k + 1:
        raise ValueError(
            f"a domain reference needs more than {k} training cells (got {len(train)})"
        )
    bank = unit_rows(train).astype(np.float16)
    distances = DomainReference(bank, 0.0, 0.0, len(held_out), k).distances(held_out)
    threshold = float(np.quantile(distances, quantile))
    expected = float((distances > threshold).mean())
    return DomainReference(bank, threshold, expected, len(held_out), k, source)


@dataclass(frozen=True)
class DomainCheck:
    """What the check found for a set of cells."""

    cells: int
    outside: int  # cells beyond the threshold
    expected: float  # the share of cells like the training cells beyond it
    p_value: float  # of a share this large among cells like the training cells
    checked: bool = True  # False: the model holds no reference, so nothing was checked

    @property
    def share(self) -> float:
        return self.outside / self.cells if self.cells else 0.0

    @property
    def unlike(self) -> bool:
        """The cells as a whole are unlike the training cells."""
        return self.checked and self.share >= MIN_SHARE and self.p_value < ALPHA

    def to_dict(self) -> dict:
        if not self.checked:
            return {"cells": self.cells, "checked": False}
        return {
            "checked": True,
            "cells": self.cells,
            "outside": self.outside,
            "share": round(self.share, 4),
            "expected": round(self.expected, 4),
            "p_value": float(f"{self.p_value:.3g}"),
            "unlike": self.unlike,
        }

    def sentence(self, figures: str = "") -> str:
        """The warning a report or a command heads with (or "" when the cells are alike);
        `figures`: what else was measured of the cells (colour, size), to say what differs."""
        if not self.checked:
            return (
                "the model holds no reference of its training cells, so whether these images "
                "are like them was not checked: run `marrowdiff calibrate` on its run folder "
                "(and export it again)"
            )
        if not self.unlike:
            return ""
        return (
            f"these images differ from the model's training images: {self.outside} of "
            f"{self.cells} cells ({self.share:.0%}) lie outside what the model saw in "
            f"training, where about {self.expected:.0%} of cells like its "
            f"training cells would ({_p(self.p_value)}){'; ' + figures if figures else ''}; "
            f"{ADVICE}"
        )


def _p(p_value: float) -> str:
    return "p < 1e-12" if p_value < 1e-12 else f"p = {p_value:.1g}"


def check_cells(distances: np.ndarray, reference: DomainReference | None) -> DomainCheck:
    """The domain check of a set of cells from their distances (`DomainReference.distances`);
    NaN distances (cells a model could not place) are left out. Without a reference, a check
    that says nothing was checked."""
    distances = np.asarray(distances, np.float64)
    if reference is None:
        return DomainCheck(len(distances), 0, float("nan"), 1.0, checked=False)
    distances = distances[np.isfinite(distances)]
    outside = int((distances > reference.threshold).sum())
    # The expected share is 1 - QUANTILE by construction; the measured one is used when higher.
    expected = max(reference.expected, 1 - QUANTILE)
    p_value = float(binom.sf(outside - 1, len(distances), expected)) if outside else 1.0
    return DomainCheck(len(distances), outside, expected, p_value)


@cache
def _blas() -> ThreadpoolController:
    """The process's thread pools, found once: finding them reads every loaded library's
    file (4 ms), which per batch of cells cost 3% of a slide's count."""
    return ThreadpoolController()
