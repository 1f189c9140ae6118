"""The scale check's pieces (cellsize.py): a cell's measured size, framing, the warning."""

import numpy as np
import pytest

from marrowdiff.cellsize import (
    LIMITS,
    Scale,
    SizeReference,
    cell_diameter,
    reframed,
    rescale_factor,
    size_from_dict,
)
from marrowdiff.synthetic.cells import synthetic_cell


def median_size(radius: float, n: int = 7) -> float:
    rng = np.random.default_rng(int(radius))
    return float(
        np.median([cell_diameter(synthetic_cell(rng, 96, radius=radius)) for _ in range(n)])
    )


def test_a_cell_twice_as_large_measures_about_twice_as_large():
    small, large = median_size(12), median_size(24)
    assert 5 < small < 30 and 1.4 < large / small < 2.6
    assert np.isnan(cell_diameter(np.full((40, 40, 3), 240, np.uint8)))  # nothing stained


def test_reframing_crops_or_pads_about_the_centre():
    image = np.arange(40 * 40 * 3, dtype=np.uint8).reshape(40, 40, 3)
    centre = reframed(image, 2.0)
    assert centre.shape == (20, 20, 3) and (centre == image[10:30, 10:30]).all()
    padded = reframed(image, 0.5)
    assert padded.shape == (80, 80, 3) and (padded[20:60, 20:60] == image).all()
    assert reframed(image, 1.0) is image


def test_the_rescale_factor_brings_cells_to_the_training_size_within_limits():
    reference = SizeReference(30.0, 200)
    assert rescale_factor(60.0, reference) == pytest.approx(0.5)
    assert rescale_factor(300.0, reference) == LIMITS[0]
    assert rescale_factor(float("nan"), reference) == 1.0


def test_cells_of_another_size_are_named_unless_corrected():
    plain = Scale(1.0, "none", 48.0, 30.0)
    assert plain.ratio == pytest.approx(1.6)
    assert "1.60 times the size" in plain.warning() and "--rescale auto" in plain.warning()
    assert Scale(1.0, "none", 33.0, 30.0).warning() == ""  # within ALIKE
    assert Scale(0.625, "cell size", 48.0, 30.0).warning() == ""  # corrected
    assert Scale(0.625, "cell size", 48.0, 30.0).to_dict()["size_ratio"] == 1.6


def test_a_size_reference_survives_its_dict_and_a_bad_one_is_refused():
    reference = SizeReference(31.5, 200, 0.25)
    assert size_from_dict(reference.to_dict()) == reference
    with pytest.raises(ValueError):
        size_from_dict({"diameter": 0, "cells": 3})
