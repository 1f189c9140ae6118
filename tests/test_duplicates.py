import io

import numpy as np
from PIL import Image

from marrowdiff.duplicates import DuplicatePair, find_duplicates, group_pairs
from marrowdiff.synthetic import recrop, synthetic_cell


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def _resized(image: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def test_recrops_resizes_and_reencodes_are_found(rng):
    base = synthetic_cell(rng, 160)
    others = [synthetic_cell(rng, 144) for _ in range(12)]
    copies = [
        recrop(base, 0, 0, 144),
        recrop(base, 0, 0, 144),  # identical pixels
        recrop(base, 10, -8, 144),  # re-cropped at a shifted centre
        _resized(recrop(base, 0, 0, 144), 96),  # the 96 px version of the patch
        _jpeg(recrop(base, -5, 6, 144), quality=60),  # re-encoded
    ]
    pairs = find_duplicates(others + copies)
    first = len(others)
    found = {(p.a, p.b) for p in pairs}
    assert found == {(first + i, first + j) for i in range(5) for j in range(i + 1, 5)}
    exact = [p for p in pairs if p.exact]
    assert [(p.a, p.b, p.similarity) for p in exact] == [(first, first + 1, 1.0)]
    assert min(p.similarity for p in pairs) > 0.9


def test_distinct_look_alike_cells_are_not_duplicates(rng):
    # Same size, stain and nucleus ratio: only the texture and surroundings differ.
    look_alikes = [synthetic_cell(rng, 96, radius=26, nucleus=0.6) for _ in range(40)]
    assert find_duplicates(look_alikes) == []


def test_flat_images_do_not_match_everything():
    flat = [np.full((64, 64, 3), v, np.uint8) for v in (10, 120, 240)]
    assert find_duplicates(flat) == []  # no texture, nothing to compare; not exact copies


def test_non_square_images(rng):
    base = synthetic_cell(rng, 140)
    wide = base[10:110, 10:130]  # 100 x 120
    shifted = base[16:116, 4:124]  # the same field of view, 6 px away
    other = synthetic_cell(rng, 140)[10:110, 10:130]
    assert [(p.a, p.b) for p in find_duplicates([wide, shifted, other])] == [(0, 1)]


def test_group_pairs_joins_chains():
    pairs = [
        DuplicatePair(0, 3, 0.9, False),
        DuplicatePair(3, 5, 0.9, False),
        DuplicatePair(1, 2, 1.0, True),
    ]
    assert group_pairs(7, pairs) == [[0, 3, 5], [1, 2]]
    assert group_pairs(3, []) == []
