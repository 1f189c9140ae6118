"""Fine and coarse labels as index sets over a model's classes.

A model outputs fine classes only. A cell's label is one fine class, or a coarse label of the
vocabulary (`members`: "one of these, stage not given"). `LabelSpace` numbers the labels a run
sees: the model's classes first (so a fine label's index is its class index), then the coarse
labels, each with its set of classes. Training puts the label's probability mass on its set
(`set_loss`); evaluation scores a prediction in the set right (`LabelSpace.hit`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from marrowdiff.classes import Vocabulary


@dataclass(frozen=True)
class LabelSpace:
    classes: tuple[str, ...]  # the model's outputs, in order
    labels: tuple[str, ...]  # classes, then the coarse labels in use
    sets: np.ndarray  # (len(labels), len(classes)) bool: which classes each label admits

    @classmethod
    def of(cls, vocabulary: Vocabulary, classes: Iterable[str], codes: Iterable[str] = ()):
        """The space of `classes` and of the coarse labels among `codes` whose members are all
        classes of the model (a coarse label reaching outside the model cannot be scored)."""
        classes = tuple(classes)
        coarse = [
            c
            for c in dict.fromkeys(codes)
            if c not in classes
            and vocabulary[c].coarse
            and set(vocabulary.members_of(c)) <= set(classes)
        ]
        labels = classes + tuple(coarse)
        sets = np.zeros((len(labels), len(classes)), bool)
        sets[np.arange(len(classes)), np.arange(len(classes))] = True
        for row, code in enumerate(coarse, start=len(classes)):
            sets[row, [classes.index(m) for m in vocabulary.members_of(code)]] = True
        return cls(classes, labels, sets)

    def __contains__(self, code: str) -> bool:
        return code in self.labels

    def encode(self, codes: Iterable[str]) -> np.ndarray:
        """(N,) int64 label indices."""
        index = {c: i for i, c in enumerate(self.labels)}
        return np.array([index[c] for c in codes], dtype=np.int64)

    def fine(self, y: np.ndarray) -> np.ndarray:
        """(N,) bool: which labels are fine classes."""
        return np.asarray(y) < len(self.classes)

    def hit(self, y: np.ndarray, pred: np.ndarray) -> np.ndarray:
        """(N,) bool: the predicted class is in the label's set."""
        return self.sets[np.asarray(y), np.asarray(pred)]


def fine_classes(vocabulary: Vocabulary, codes: Iterable[str]) -> list[str]:
    """The classes a model of labels `codes` learns, in vocabulary order: each fine label, and
    every member of each coarse label."""
    wanted = {m for c in set(codes) for m in vocabulary.members_of(c)}
    return [c for c in vocabulary.fine_codes if c in wanted]


def set_loss(logits: torch.Tensor, sets: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Summed negative log of each row's probability on its label set ((B, C) bool `sets`),
    label-smoothed as cross-entropy is: a one-hot set gives `F.cross_entropy(...,
    label_smoothing=smoothing, reduction="sum")`."""
    total = torch.logsumexp(logits, dim=1)
    inside = torch.logsumexp(logits.masked_fill(~sets, float("-inf")), dim=1)
    loss = (1 - smoothing) * (total - inside)
    if smoothing:
        loss = loss + smoothing * (total - logits.mean(dim=1))
    return loss.sum()
