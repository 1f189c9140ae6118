"""Blob measurements at once (`counting.blobs`), against known answers and an independent
convex hull of every pixel's corners."""

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull
from skimage.measure import label

from marrowdiff.counting.blobs import measure


def reference_centre(mask: np.ndarray) -> tuple[float, float]:
    """The area centroid of the convex hull of all four corners of every pixel (Qhull)."""
    rows, cols = np.nonzero(mask)
    corners = np.concatenate(
        [np.c_[rows + dy, cols + dx] for dy in (-0.5, 0.5) for dx in (-0.5, 0.5)]
    ).astype(float)
    hull = ConvexHull(corners)
    ring = corners[hull.vertices]
    y, x = ring[:, 0], ring[:, 1]
    y1, x1 = np.roll(y, -1), np.roll(x, -1)
    cross = x * y1 - x1 * y
    return (
        ((y + y1) * cross).sum() / (3 * cross.sum()),
        ((x + x1) * cross).sum() / (3 * cross.sum()),
    )


def test_a_notched_square_is_centred_on_its_hull_not_its_pixels():
    regions = np.zeros((14, 14), int)
    regions[2:12, 2:12] = 1
    regions[5:9, 2:7] = 0  # a notch from the left: the pixels' mean moves right, the hull not
    blobs = measure(regions)
    assert blobs.label.tolist() == [1]
    assert blobs.area.tolist() == [100 - 20]
    assert (blobs.y[0], blobs.x[0]) == (6.5, 6.5)
    assert np.nonzero(regions)[1].mean() > 7.0
    assert [blobs.top[0], blobs.left[0], blobs.bottom[0], blobs.right[0]] == [2, 2, 12, 12]


def test_a_right_triangle_of_pixels():
    regions = np.tril(np.ones((20, 20), int))  # row r holds columns 0..r
    blobs = measure(regions)
    # The hull of the staircase: (-.5, -.5), (.5, -.5), (19.5, 18.5), (19.5, 19.5), (-.5, 19.5)
    # as (x, y) corners; Qhull of every pixel's corners gives the same polygon.
    assert blobs.y[0] == pytest.approx(reference_centre(regions == 1)[0], abs=1e-12)
    assert blobs.x[0] == pytest.approx(reference_centre(regions == 1)[1], abs=1e-12)


def test_random_blobs_match_qhull_of_every_corner_and_min_area_drops_small_ones():
    rng = np.random.default_rng(3)
    for _ in range(20):
        regions = label(ndi.gaussian_filter(rng.random((90, 120)), 2.5) > 0.5)
        sizes = np.bincount(regions.ravel())
        blobs = measure(regions, min_area=12)
        wanted = [k for k in range(1, regions.max() + 1) if sizes[k] >= 12]
        assert blobs.label.tolist() == wanted
        for k, lab in enumerate(blobs.label):
            mask = regions == lab
            cy, cx = reference_centre(mask)
            assert (blobs.y[k], blobs.x[k]) == pytest.approx((cy, cx), abs=1e-9)
            rows, cols = np.nonzero(mask)
            assert blobs.area[k] == mask.sum()
            assert (blobs.top[k], blobs.bottom[k]) == (rows.min(), rows.max() + 1)
            assert (blobs.left[k], blobs.right[k]) == (cols.min(), cols.max() + 1)


def test_blobs_touching_the_image_edges_and_none_at_all():
    regions = np.zeros((6, 8), int)
    regions[:, 6:] = 2  # the right edge, every row: runs must not join across rows
    regions[0, 0] = 1  # one pixel in the corner
    blobs = measure(regions)
    assert blobs.label.tolist() == [1, 2]
    assert (blobs.y[0], blobs.x[0]) == (0.0, 0.0)
    assert (blobs.y[1], blobs.x[1]) == (2.5, 6.5)
    assert len(measure(np.zeros((5, 5), int))) == 0
    assert len(measure(regions, min_area=100)) == 0
