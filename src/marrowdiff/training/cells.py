"""The cells a run trains and validates on: one side of a split on canvases (`SplitData`),
other data sets trained on beside the run's own (`Source`), and the classes a run learns."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from marrowdiff.classes import Vocabulary
from marrowdiff.config import TrainConfig
from marrowdiff.data.datasets import Dataset, open_dataset
from marrowdiff.data.splits import Splits, splits_for_run
from marrowdiff.labels import LabelSpace, fine_classes
from marrowdiff.preprocess import Geometry
from marrowdiff.training import TrainingError, banks
from marrowdiff.training.recipes import Recipe
from marrowdiff.training.transforms import PatchBank


@dataclass
class SplitData:
    """The images of one side of a split, on canvases, with label indices into `space` (a
    fine label's index is its class index)."""

    paths: list[str]
    labels: np.ndarray  # (N,) int64
    bank: PatchBank | banks.DiskBank | banks.ConcatBank
    space: LabelSpace | None = None
    # (first, end, weight) of each data set's images in the bank: the run's own first
    parts: tuple[tuple[int, int, float], ...] = ()

    def items(self, recipe: Recipe, geometry: Geometry, seed: int, epoch: int) -> np.ndarray:
        """One epoch's (M, 4) items: the recipe on each data set's labels, drawn `weight`
        times as often (the recipe's per-label draws scaled), then shuffled together. With one
        data set, exactly `recipe.items`."""
        if len(self.parts) <= 1:
            return recipe.items(self.labels, geometry, seed, epoch)
        chunks = []
        for i, (first, end, weight) in enumerate(self.parts):
            draw = recipe if i == 0 else _weighted(recipe, weight)
            part = draw.items(self.labels[first:end], geometry, seed + 7919 * i, epoch)
            part[:, 0] += first
            chunks.append(part)
        items = np.concatenate(chunks)
        return items[np.random.default_rng([seed, epoch, 2]).permutation(len(items))]


def _weighted(recipe: Recipe, weight: float) -> Recipe:
    if weight == 1.0:
        return recipe
    if not recipe.oversample:
        raise TrainingError(
            f"a data set weight other than 1 needs a recipe that draws a number of views per "
            f"label (balanced-random, oversampled-*); {recipe.name!r} takes every image once"
        )
    return replace(recipe, oversample=max(1, round(recipe.oversample * weight)))


@dataclass(frozen=True)
class Source:
    """A data set trained on beside the run's own (`fit(..., also=...)`): its splits' training
    part of the run's fold trains, with `weight` times the recipe's draws per label; its
    validation and test cells never train, and the run validates on its own data set only."""

    dataset: Dataset
    splits: Splits
    weight: float = 1.0

    def __post_init__(self):
        if not self.weight > 0:
            raise TrainingError(
                f"{self.dataset.source}: weight {self.weight}; a data set trained on needs a "
                "weight above 0 (leave it out to not train on it)"
            )


def _codes(dataset: Dataset, splits: Splits, paths: list[str], target: Vocabulary) -> list[str]:
    """The labels of `paths` in the target vocabulary (by code, name or alias)."""
    return target.map_labels(
        (splits.labels[p] for p in paths), where=f"{dataset.source} (into {target.name!r})"
    )


def select(
    dataset: Dataset,
    paths: list[str],
    codes: list[str],
    space: LabelSpace,
    geometry: Geometry,
    stream: str = "auto",
) -> SplitData:
    """The images of `paths` (labelled `codes`) whose label is in `space`, in memory or on
    disk (`banks`)."""
    keep = [(p, c) for p, c in zip(paths, codes, strict=True) if c in space]
    kept = [p for p, _ in keep]
    bank = banks.make_bank(dataset, kept, geometry, stream)
    return SplitData(kept, space.encode(c for _, c in keep), bank, space)


def training_classes(
    config: TrainConfig, vocabulary: Vocabulary, splits: Splits, also: tuple = ()
) -> list[str]:
    """The classes a run learns, in vocabulary order: --classes, or every fine class of the
    labels in the splits (a coarse label brings its members)."""
    present = set(splits.classes_present())
    for source in also:
        present |= set(vocabulary.map_labels(source.splits.classes_present()))
    classes = list(config.classes) or fine_classes(vocabulary, present)
    unknown = set(classes) - set(vocabulary.fine_codes)
    if unknown:
        raise TrainingError(
            f"--classes {sorted(unknown)} are not fine classes of vocabulary {vocabulary.name!r}"
        )
    return classes


def load_fold(
    dataset: Dataset,
    splits: Splits,
    fold: int,
    classes: list[str],
    geometry: Geometry,
    also: tuple[Source, ...] = (),
    log=print,
    stream: str = "auto",
) -> tuple[SplitData, SplitData]:
    """The (train, val) images of a CV fold, of `classes`, with the training part of the same
    fold of every `also` data set in the training side; every class must have training
    labels."""
    target = dataset.vocabulary
    sources = (Source(dataset, splits), *also)
    train_paths = [s.splits.fold(fold)[0] for s in sources]
    train_codes = [
        _codes(s.dataset, s.splits, p, target) for s, p in zip(sources, train_paths, strict=True)
    ]
    space = LabelSpace.of(target, classes, [c for codes in train_codes for c in codes])
    parts, paths, labels, images, first = [], [], [], [], 0
    for source, source_paths, codes in zip(sources, train_paths, train_codes, strict=True):
        part = select(source.dataset, source_paths, codes, space, geometry, stream)
        parts.append((first, first + len(part.paths), source.weight))
        first += len(part.paths)
        paths += part.paths
        labels.append(part.labels)
        images.append(part.bank)
    labels = np.concatenate(labels)
    bank = banks.concatenate(images)
    train = SplitData(paths, labels, bank, space, tuple(parts))
    admitted = space.sets[labels].any(axis=0)
    empty = [c for i, c in enumerate(classes) if not admitted[i]]
    if empty:
        raise TrainingError(
            f"no training images of class(es) {', '.join(empty)} in this split; "
            "leave them out of --classes or add data"
        )
    only_coarse = [c for i, c in enumerate(classes) if not (labels == i).any()]
    if only_coarse:
        log(
            f"note: {', '.join(only_coarse)} learned from coarse labels only (no cell of the "
            "training data names its stage)"
        )
    val_paths = splits.fold(fold)[1]
    val_codes = _codes(dataset, splits, val_paths, target)
    val = select(dataset, val_paths, val_codes, space, geometry, stream)
    return train, val


def open_sources(entries: list[dict], out: Path, vocab: str, log=print) -> tuple[Source, ...]:
    """The other data sets a run trains on (`config.also_entries`), each opened with its
    vocabulary (default: the run's) and split leak-free into OUT/also-N/ unless its splits
    are given."""
    sources = []
    for i, entry in enumerate(entries):
        dataset = open_dataset(entry["data"], entry["vocab"] or vocab)
        splits = splits_for_run(dataset, out / f"also-{i + 1}", entry["splits"], log=log)
        sources.append(Source(dataset, splits, entry["weight"]))
    return tuple(sources)
