"""Dual-stage combination: a global model over all classes and local models for pairs (or
small sets) of neighbouring stages. Where the global model's top class is one of a local
model's classes, the local model decides how that set's probability mass is shared."""

from __future__ import annotations

import numpy as np


def check_locals(global_classes: list[str], global_source: str, locals_) -> None:
    """Every local model (with `.classes` and `.source`) decides among global classes only."""
    for local in locals_:
        missing = set(local.classes) - set(global_classes)
        if missing:
            raise ValueError(
                f"local model {local.source} has classes {sorted(missing)} "
                f"that global model {global_source} does not"
            )


def combine(
    global_proba: np.ndarray, global_classes: list[str], locals_: list[tuple[np.ndarray, list[str]]]
) -> np.ndarray:
    """(N, C) global probabilities, [(N, K) local probabilities, its K classes] -> (N, C)."""
    out = np.array(global_proba, dtype=np.float64, copy=True)
    for proba, classes in locals_:
        missing = set(classes) - set(global_classes)
        if missing:
            raise ValueError(f"local model classes {sorted(missing)} are not global classes")
        cols = [global_classes.index(c) for c in classes]
        routed = np.isin(out.argmax(1), cols)  # where the global model picks one of the set
        mass = out[routed][:, cols].sum(1, keepdims=True)
        block = out[routed]
        block[:, cols] = mass * proba[routed]
        out[routed] = block
    return out
