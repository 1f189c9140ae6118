"""Data recipes: the items each training epoch sees, from (seed, epoch) alone."""

import numpy as np
import pytest

from marrowdiff.preprocess import Geometry
from marrowdiff.training.recipes import RECIPES, get_recipe

LABELS = np.array([0] * 12 + [1] * 5 + [2] * 30)


@pytest.mark.parametrize(
    "name, size",
    [
        ("original", 47),
        ("augmented", 47 * 8),
        ("oversampled-300", 900),
        ("augmented+oversampled-300", 7200),
        ("balanced-random", 300),
    ],
)
def test_recipe_sizes(name, size):
    items = get_recipe(name).items(LABELS, Geometry(), seed=0, epoch=0)
    assert items.shape == (size, 4)
    per_class = np.bincount(LABELS[items[:, 0]])
    if RECIPES[name].oversample:
        assert (per_class == per_class[0]).all()  # class-balanced


def test_oversampling_never_copies_an_original():
    items = get_recipe("augmented+oversampled-300").items(LABELS, Geometry(), seed=0, epoch=0)
    keys = {tuple(row) for row in items.tolist()}
    assert len(keys) == len(items)  # no item twice...
    originals = items[(items[:, 1] == 0) & (items[:, 2] == 0) & (items[:, 3] == 0)]
    assert sorted(originals[:, 0].tolist()) == list(range(len(LABELS)))  # ...originals once
    assert np.abs(items[:, 1:3]).max() <= Geometry().pad


def test_fixed_recipes_repeat_random_ones_change_and_all_are_seeded():
    g = Geometry()
    fixed = get_recipe("oversampled-300")
    assert sorted(map(tuple, fixed.items(LABELS, g, 0, 0).tolist())) == sorted(
        map(tuple, fixed.items(LABELS, g, 0, 5).tolist())
    )
    random = get_recipe("balanced-random")
    assert not np.array_equal(random.items(LABELS, g, 0, 0), random.items(LABELS, g, 0, 1))
    assert np.array_equal(random.items(LABELS, g, 0, 1), random.items(LABELS, g, 0, 1))
