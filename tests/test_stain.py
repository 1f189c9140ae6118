"""Stain normalisation at inference (stain.py): Reinhard's colour transfer in CIELAB."""

import numpy as np
import pytest

from marrowdiff.stain import (
    StainReference,
    fit_stain,
    lab_statistics,
    reinhard,
    stain_from_dict,
)


def windows(rng, n: int = 4, tint=(1.0, 1.0, 1.0)) -> np.ndarray:
    """(n, 3, 32, 32) uint8: pale background with a darker blob, tinted per channel."""
    yy, xx = np.mgrid[:32, :32]
    blob = ((yy - 16) ** 2 + (xx - 16) ** 2 < 100)[None, None]
    base = np.where(blob, 110.0, 215.0) + rng.normal(0, 6, (n, 3, 32, 32))
    return np.clip(base * np.asarray(tint)[None, :, None, None], 0, 255).astype(np.uint8)


def test_reinhard_gives_each_window_the_references_lab_statistics():
    rng = np.random.default_rng(0)
    reference = fit_stain(*lab_statistics(windows(rng, 8, tint=(0.95, 0.8, 1.0))))
    moved = reinhard(windows(rng, 3, tint=(1.0, 0.9, 0.7)), reference)
    means, stds = lab_statistics(moved)
    np.testing.assert_allclose(means, np.tile(reference.mean, (3, 1)), atol=0.6)
    np.testing.assert_allclose(stds, np.tile(reference.std, (3, 1)), rtol=0.03, atol=0.2)
    assert moved.dtype == np.uint8 and moved.shape == (3, 3, 32, 32)


def test_a_window_already_like_the_reference_is_left_as_it_was():
    rng = np.random.default_rng(1)
    x = windows(rng, 1)
    same = reinhard(x, fit_stain(*lab_statistics(x)))
    assert np.abs(same.astype(int) - x.astype(int)).max() <= 2


def test_a_stain_reference_survives_its_dict_and_a_damaged_one_is_refused():
    reference = StainReference((70.0, 5.0, -3.0), (20.0, 4.0, 6.0))
    assert stain_from_dict(reference.to_dict()) == reference
    assert stain_from_dict(None) is None
    with pytest.raises(ValueError, match="above 0"):
        stain_from_dict(reference.to_dict() | {"std": [20.0, 0.0, 6.0]})
    with pytest.raises(ValueError, match="unknown stain reference"):
        stain_from_dict({"method": "macenko"})


def test_a_colour_shift_is_the_distance_between_mean_lab_colours():
    from marrowdiff.stain import ColourShift, colour_shift

    shift = ColourShift((70.0, 10.0, -5.0), (67.0, 6.0, -5.0))
    assert shift.delta_e == pytest.approx(5.0)
    assert "70/10/-5 against 67/6/-5" in shift.phrase() and "(difference 5)" in shift.phrase()
    rng = np.random.default_rng(2)
    x = windows(rng, 3)
    reference = fit_stain(*lab_statistics(x))
    assert colour_shift(x, reference).delta_e == pytest.approx(0.0, abs=1e-6)
    assert colour_shift(x[:0], reference) is None
