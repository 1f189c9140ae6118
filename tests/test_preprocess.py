"""Patch preprocessing shared by training and inference (numpy only)."""

import numpy as np
import pytest

from marrowdiff.preprocess import (
    Geometry,
    canvas,
    centre_views,
    d4_numpy,
    resize_patch,
    shifted_views,
    white_balance,
)
from marrowdiff.training.transforms import PatchBank, d4


def test_white_balance_neutralises_a_colour_cast():
    image = np.full((10, 10, 3), (240, 220, 180), np.uint8)
    image[4:6, 4:6] = (120, 60, 140)
    out = white_balance(image)
    assert np.abs(out[0, 0].astype(int) - 235).max() <= 1


def test_batched_centre_views_are_what_training_sees(rng):
    # Inference white-balances a batch at once and scales only the windows; training does
    # one patch at a time on the whole canvas. They must give the same pixels.
    patches = [rng.integers(0, 256, (s, s, 3), dtype=np.uint8) for s in (40, 48, 48, 60)]
    patches[1][10:30, 10:30] = (90, 40, 150)  # a "cell" on a tinted background
    for geometry in (
        Geometry(input_size=36, field=0.75, white_balance=True),
        Geometry(input_size=27, field=0.75, white_balance=True),
        Geometry(input_size=36, field=1.0, white_balance=False),
    ):
        bank = PatchBank(patches, geometry)
        np.testing.assert_array_equal(centre_views(patches, geometry), bank.centre().numpy())
        single = [white_balance(resize_patch(p, geometry.canvas)) for p in patches]
        batch = white_balance(np.stack([resize_patch(p, geometry.canvas) for p in patches]))
        np.testing.assert_array_equal(batch, np.stack(single))
    assert centre_views([], geometry).shape == (0, 3, 36, 36)


def test_shifted_views_are_the_training_views_at_that_shift(rng):
    patches = [rng.integers(0, 256, (s, s, 3), dtype=np.uint8) for s in (40, 48)]
    geometry = Geometry(input_size=36, field=0.75, max_shift=1 / 12, white_balance=True)
    bank = PatchBank(patches, geometry)
    for dy, dx in ((0, 0), (-4, 0), (2, -3), (4, 4)):
        items = np.array([[i, dy, dx, 0] for i in range(len(patches))])
        np.testing.assert_array_equal(
            shifted_views(patches, geometry, dy, dx), bank.views(items).numpy()
        )
    np.testing.assert_array_equal(
        shifted_views(patches, geometry, 0, 0), centre_views(patches, geometry)
    )
    assert canvas(patches[0], geometry).shape == (48 + 8, 48 + 8, 3)
    with pytest.raises(ValueError, match="larger than the pad"):
        shifted_views(patches, geometry, 5, 0)


def test_numpy_d4_is_the_torch_d4(rng):
    import torch

    x = rng.integers(0, 256, (2, 3, 5, 5), dtype=np.uint8)
    for k in range(8):
        np.testing.assert_array_equal(d4_numpy(x, k), d4(torch.from_numpy(x), k).numpy())
