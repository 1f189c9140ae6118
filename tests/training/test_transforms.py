import numpy as np
import torch

from marrowdiff.preprocess import Geometry
from marrowdiff.training.transforms import PatchBank, d4


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


def test_patch_bank_brings_sizes_to_one_canvas():
    small = np.zeros((32, 32, 3), np.uint8)
    small[16:] = 255  # dark top half, white bottom half
    large = np.full((50, 40, 3), (200, 100, 50), np.uint8)
    bank = PatchBank([small, large], Geometry(input_size=24, field=0.75))
    views = bank.centre().permute(0, 2, 3, 1).numpy()  # (2, 24, 24, 3)
    assert views.shape == (2, 24, 24, 3)
    # resized, not cropped: the edge stays in the middle of the window, colours unchanged
    assert (views[0, :11] == 0).all() and (views[0, 13:] == 255).all()
    assert (views[1] == (200, 100, 50)).all()
