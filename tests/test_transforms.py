import numpy as np
import pytest
import torch

from marrowdiff.preprocess import centre_views, resize_patch
from marrowdiff.transforms import (
    RECIPES,
    Geometry,
    PatchBank,
    d4,
    fit_normalisation,
    get_recipe,
    normalise,
    to_colour,
    white_balance,
)


def test_yuv_matches_torch7_rgb2yuv():
    rgb = torch.tensor([1.0, 0.5, 0.25]).view(1, 3, 1, 1)
    y, u, v = to_colour(rgb, "yuv").flatten().tolist()
    assert y == pytest.approx(0.299 + 0.587 * 0.5 + 0.114 * 0.25)
    assert u == pytest.approx(-0.14713 - 0.28886 * 0.5 + 0.436 * 0.25)
    assert v == pytest.approx(0.615 - 0.51499 * 0.5 - 0.10001 * 0.25)
    grey = torch.full((1, 3, 2, 2), 0.4)
    assert torch.allclose(to_colour(grey, "yuv")[:, 1:], torch.zeros(1, 2, 2, 2), atol=1e-4)


def test_normalisation_from_training_images_gives_zero_mean_unit_std(rng):
    images = torch.from_numpy(rng.integers(0, 256, (20, 3, 8, 8), dtype=np.uint8))
    norm = fit_normalisation(images, "yuv")
    x = normalise(images, norm)
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3)


def test_d4_views_are_the_eight_distinct_symmetries():
    x = torch.arange(9.0).view(1, 1, 3, 3)
    views = [d4(x, k) for k in range(8)]
    assert torch.equal(views[0], x)
    assert torch.equal(views[1], torch.rot90(x, 1, (-2, -1)))
    assert torch.equal(views[4], torch.flip(x, (-1,)))
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8


def test_patch_bank_shift_and_geometry(rng):
    image = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    bank = PatchBank([image], Geometry(input_size=48, field=1.0, max_shift=1 / 12))
    centre = bank.centre()[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(centre, image)
    shifted = bank.views(np.array([[0, 2, -3, 0]]))[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(shifted[:40, 3:], image[2:42, :45])  # window moved (2, -3)
    assert bank.geometry.pad == 4


def test_patch_bank_brings_sizes_to_one_canvas(rng):
    small = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    large = rng.integers(0, 256, (50, 40, 3), dtype=np.uint8)
    bank = PatchBank([small, large], Geometry(input_size=24, field=0.75))
    assert bank.centre().shape == (2, 3, 24, 24)


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
