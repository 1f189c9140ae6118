"""Checkpoint -> class probabilities for single-cell patches (and dual-stage combinations)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from marrowdiff.classes import Vocabulary
from marrowdiff.config import RunConfig
from marrowdiff.dualstage import check_locals, combine
from marrowdiff.models import build_model
from marrowdiff.train import load_checkpoint, predict_logits
from marrowdiff.transforms import Normalisation, PatchBank


class Predictor:
    """A trained model with everything needed to turn raw RGB patches into probabilities."""

    def __init__(self, state: dict, source: str = "<checkpoint>"):
        self.source = source
        self.config = RunConfig.from_dict(state["config"])
        self.classes: list[str] = list(state["classes"])
        self.vocabulary = Vocabulary.from_dict(state["vocabulary"])
        self.normalisation = Normalisation.from_dict(state["normalisation"])
        self.metadata = {
            k: v for k, v in state.items() if k not in ("state_dict", "optimizer", "scheduler")
        }
        self.model = build_model(replace(self.config.model, pretrained=False))
        self.model.load_state_dict(state["state_dict"])
        self.model.eval().to(memory_format=torch.channels_last)

    @classmethod
    def load(cls, path: str | Path) -> Predictor:
        """From a run folder (its model.pt) or a checkpoint file."""
        return cls(load_checkpoint(path), str(path))

    def proba(
        self, images: list[np.ndarray], tta: bool = False, batch_size: int = 128
    ) -> np.ndarray:
        """(N, C) softmax probabilities for (H, W, 3) uint8 RGB patches."""
        if not images:
            return np.zeros((0, len(self.classes)))
        bank = PatchBank(images, self.config.geometry)
        logits = predict_logits(
            self.model, bank, self.normalisation, tta=tta, batch_size=batch_size
        )
        return torch.softmax(logits.double(), dim=1).numpy()

    def invariance(self, images: list[np.ndarray]) -> tuple[list[str], np.ndarray]:
        """Predictions under each rotation/flip and under shifts of the crop centre.

        Returns transform names and (T, N) predicted class indices; transform 0 is the
        identity, so `preds == preds[0]` says where the prediction held."""
        bank = PatchBank(images, self.config.geometry)
        pad = self.config.geometry.pad
        shifts = sorted(
            {
                (sy * m, sx * m)
                for m in (max(1, pad // 2), pad)
                for sy in (-1, 0, 1)
                for sx in (-1, 0, 1)
                if sy or sx
            }
        )
        transforms = [(0, 0, k) for k in range(8)] + [(dy, dx, 0) for dy, dx in shifts]
        names = [
            "identity",
            "rot90",
            "rot180",
            "rot270",
            "flip",
            "rot90+flip",
            "rot180+flip",
            "rot270+flip",
        ] + [f"shift({dy:+d},{dx:+d})" for dy, dx, _ in transforms[8:]]
        index = np.arange(len(images))
        preds = [
            predict_logits(
                self.model,
                bank,
                self.normalisation,
                items=np.column_stack(
                    [
                        index,
                        np.full_like(index, dy),
                        np.full_like(index, dx),
                        np.full_like(index, k),
                    ]
                ),
            )
            .argmax(1)
            .numpy()
            for dy, dx, k in transforms
        ]
        return names, np.stack(preds)


class DualStage:
    """A global predictor refined by local predictors of neighbouring stages."""

    def __init__(self, global_: Predictor, locals_: list[Predictor]):
        check_locals(global_.classes, global_.source, locals_)
        self.global_, self.locals_ = global_, locals_
        self.classes = global_.classes
        self.vocabulary = global_.vocabulary

    def proba(self, images: list[np.ndarray], tta: bool = False) -> np.ndarray:
        return self.refine(self.global_.proba(images, tta), images, tta)

    def refine(
        self, global_proba: np.ndarray, images: list[np.ndarray], tta: bool = False
    ) -> np.ndarray:
        """The global model's probabilities, refined by the local models."""
        return combine(
            global_proba, self.classes, [(p.proba(images, tta), p.classes) for p in self.locals_]
        )
