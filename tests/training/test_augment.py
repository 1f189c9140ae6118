"""Stain, light, blur, JPEG, scale and context jitter of training views, against known answers."""

import numpy as np
import torch
from skimage.color import rgb_from_hed

from marrowdiff.training.augment import (
    blur,
    blur_draws,
    context,
    context_draws,
    jpeg,
    jpeg_draws,
    light_draws,
    light_jitter,
    scale_draws,
    stain_draws,
    stain_jitter,
    zoom,
)


def views(seed: int = 0, n: int = 4) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(30, 250, (n, 3, 16, 16), dtype=np.uint8))


def test_no_jitter_draws_nothing_and_changes_nothing():
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    assert stain_draws(8, 0.0, generator) is None and light_draws(8, 0.0, generator) is None
    assert blur_draws(8, 0.0, generator) is None and jpeg_draws(8, 0, generator) is None
    assert scale_draws(8, 0.0, generator) is None and context_draws(8, 0.0, generator) is None
    assert torch.equal(generator.get_state(), state)  # a run without jitter is the same run
    x = views()
    assert torch.equal(stain_jitter(x, None), x) and torch.equal(light_jitter(x, None), x)
    assert all(torch.equal(f(x, None), x) for f in (blur, jpeg, zoom, context))


def test_identity_draws_give_back_the_image_to_rounding():
    x = views()
    same_stain = torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0, 0.0]]).repeat(4, 1)
    assert (stain_jitter(x, same_stain).int() - x.int()).abs().max() <= 1
    assert torch.equal(light_jitter(x, torch.ones(4, 4)), x)
    assert torch.equal(zoom(x, torch.ones(4)), x)
    assert (blur(x, torch.full((4,), 1e-3)).int() - x.int()).abs().max() == 0


def test_blur_smooths_by_its_own_sigma_per_view():
    x = views(n=2)
    blurred = blur(x, torch.tensor([0.3, 2.0])).float()
    spread = [float(v.std()) for v in blurred]
    assert spread[1] < 0.5 * spread[0] < float(x[0].float().std())
    flat = torch.full((1, 3, 16, 16), 120, dtype=torch.uint8)
    assert torch.equal(blur(flat, torch.tensor([1.5])), flat)  # a flat image stays as it was


def test_zoom_magnifies_about_the_centre():
    disc = torch.zeros((1, 3, 32, 32), dtype=torch.uint8)
    disc[..., 12:20, 12:20] = 255  # 64 px, centred
    assert int((zoom(disc, torch.tensor([2.0]))[0, 0] > 127).sum()) == 256  # twice the side
    smaller = zoom(disc, torch.tensor([0.5]))[0, 0]
    assert int((smaller[8:24, 8:24] > 127).sum()) == 16  # half the side (reflected beyond)


def test_jpeg_round_trips_lose_more_at_lower_quality():
    rng = np.random.default_rng(1)
    smooth = torch.from_numpy(
        np.kron(rng.integers(40, 220, (2, 3, 4, 4)), np.ones((1, 1, 8, 8))).astype(np.uint8)
    )
    error = [
        float((jpeg(smooth, torch.tensor([q, q])).int() - smooth.int()).abs().float().mean())
        for q in (95, 20)
    ]
    assert error[0] < 0.5 * error[1]
    draws = jpeg_draws(1000, 50, torch.Generator().manual_seed(0))
    assert int(draws.min()) == 50 and int(draws.max()) == 95


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


def test_context_keeps_the_cell_and_puts_plain_plasma_around_it():
    x = torch.full((2, 3, 40, 40), 60, dtype=torch.uint8)
    draws = torch.tensor([[1.0, 0.4, 230, 220, 210], [0.0, 0.4, 230, 220, 210]])
    out = context(x, draws)
    assert out[0, :, 20, 20].tolist() == [60, 60, 60]  # the centre: the cell, untouched
    assert out[0, :, 0, 0].tolist() == [230, 220, 210]  # a corner: plasma
    assert out[0, :, 20, 10].tolist() == [60, 60, 60]  # inside the disc (radius 16 px)
    assert torch.equal(out[1], x[1])  # a view not chosen is left alone
    chosen = context_draws(1000, 0.3, torch.Generator().manual_seed(1))[:, 0]
    assert 250 < chosen.sum() < 350  # the share asked for
