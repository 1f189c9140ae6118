import numpy as np
import pytest
import torch

from marrowdiff.normalisation import fit_normalisation, normalise, to_colour
from marrowdiff.preprocess import Geometry
from marrowdiff.training.transforms import PatchBank, d4


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
