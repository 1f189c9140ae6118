"""The input normalisation: colour space and per-channel statistics."""

import numpy as np
import pytest
import torch

from marrowdiff.normalisation import fit_normalisation, normalise, to_colour


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
