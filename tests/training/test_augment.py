"""Stain and light jitter of training views, against known answers."""

import numpy as np
import torch
from skimage.color import rgb_from_hed

from marrowdiff.training.augment import light_draws, light_jitter, stain_draws, stain_jitter


def views(seed: int = 0, n: int = 4) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(30, 250, (n, 3, 16, 16), dtype=np.uint8))


def test_no_jitter_draws_nothing_and_changes_nothing():
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    assert stain_draws(8, 0.0, generator) is None and light_draws(8, 0.0, generator) is None
    assert torch.equal(generator.get_state(), state)  # a run without jitter is the same run
    x = views()
    assert torch.equal(stain_jitter(x, None), x) and torch.equal(light_jitter(x, None), x)


def test_identity_draws_give_back_the_image_to_rounding():
    x = views()
    same_stain = torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0, 0.0]]).repeat(4, 1)
    assert (stain_jitter(x, same_stain).int() - x.int()).abs().max() <= 1
    assert torch.equal(light_jitter(x, torch.ones(4, 4)), x)


def test_doubling_haematoxylin_doubles_the_optical_density_of_a_pure_haematoxylin_pixel():
    h = rgb_from_hed[0]  # haematoxylin's optical density direction (unit length)
    od = 0.05 * h  # a pale pixel of haematoxylin alone, in scikit-image's units
    pixel = np.round(255 * np.exp(-od * -np.log(1e-6)))  # the RGB it shows
    x = torch.tensor(pixel, dtype=torch.uint8).view(1, 3, 1, 1)
    doubled = stain_jitter(x, torch.tensor([[2.0, 1.0, 1.0, 0.0, 0.0, 0.0]]))[0, :, 0, 0]
    expected = np.round(255 * np.exp(-2 * od * -np.log(1e-6)))
    assert np.abs(doubled.numpy().astype(int) - expected).max() <= 2  # (rounding of the input)
    shifted = stain_jitter(x, torch.tensor([[1.0, 1.0, 1.0, 0.05, 0.0, 0.0]]))[0, :, 0, 0]
    assert np.abs(shifted.numpy().astype(int) - expected).max() <= 2  # + 0.05 H: the same


def test_light_jitter_by_hand():
    grey = torch.full((1, 3, 2, 2), 128, dtype=torch.uint8)
    brighter = light_jitter(grey, torch.tensor([[1.25, 1.0, 1.0, 1.0]]))
    assert (brighter == 160).all()  # 128 * 1.25
    darker_gamma = light_jitter(grey, torch.tensor([[1.0, 1.0, 1.0, 2.0]]))
    assert (darker_gamma == round(255 * (128 / 255) ** 2)).all()
    red = torch.zeros((1, 3, 1, 1), dtype=torch.uint8)
    red[0, 0] = 200
    desaturated = light_jitter(red, torch.tensor([[1.0, 1.0, 0.0, 1.0]]))[0, :, 0, 0]
    assert desaturated.tolist() == [round(200 / 3)] * 3  # no saturation: the channels' mean
