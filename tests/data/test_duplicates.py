import io

import numpy as np
import pytest
from PIL import Image

from marrowdiff.data.duplicates import DuplicatePair, find_duplicates, group_pairs
from marrowdiff.synthetic.cells import recrop, synthetic_cell


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


def test_all_templates_at_once_score_as_skimage_match_template(rng):
    from skimage.feature import match_template

    from marrowdiff.data.duplicates import _ncc_max

    image = rng.normal(0, 1, (96, 96))
    templates = rng.normal(0, 1, (5, 56, 56))
    templates[1] = image[10:66, 25:81]  # a window of the image itself: NCC 1 there
    templates[2] = 3.0  # flat: matches nothing
    expected = [
        0.0 if t.std() < 1e-6 else float(np.nan_to_num(match_template(image, t)).max())
        for t in templates
    ]
    np.testing.assert_allclose(_ncc_max(image, templates), expected, atol=1e-6)
    assert _ncc_max(image, templates)[1] == pytest.approx(1.0)


def test_the_neighbour_search_finds_what_comparing_every_pair_finds(rng):
    from dataclasses import replace

    from marrowdiff.data.duplicates import DuplicateConfig

    cells = [synthetic_cell(rng, 72, radius=rng.uniform(12, 20)) for _ in range(150)]
    bases = [synthetic_cell(rng, 90) for _ in range(6)]
    for k, base in enumerate(bases):  # re-crops up to 8 px away, re-encoded
        cells[10 * k] = recrop(base, 0, 0, 72)
        cells[10 * k + 5] = _jpeg(recrop(base, 8 - 3 * k, 2 * k - 6, 72), quality=80)
    every_pair = replace(DuplicateConfig(), exhaustive_below=10**6)
    hnsw = replace(DuplicateConfig(), exact_below=0)  # the approximate index, as for large sets
    expected = {(10 * k, 10 * k + 5) for k in range(6)}
    for config in (DuplicateConfig(), every_pair, hnsw):
        assert {(p.a, p.b) for p in find_duplicates(cells, config)} == expected


def test_an_index_on_disk_finds_the_same_pairs(rng, tmp_path):
    from marrowdiff.data.duplicates import DuplicateIndex

    base = synthetic_cell(rng, 90)
    cells = [recrop(base, 0, 0, 72), *(synthetic_cell(rng, 72) for _ in range(70))]
    cells.append(recrop(base, 5, -4, 72))
    index = DuplicateIndex(len(cells), folder=tmp_path)
    for cell in cells:
        index.add(cell)
    assert (tmp_path / "thumbnails.npy").stat().st_size >= len(cells) * 48 * 48
    assert [(p.a, p.b) for p in index.find(cells.__getitem__)] == [(0, len(cells) - 1)]


def test_search_stages_shared_between_processes_find_what_one_finds(rng, monkeypatch):
    from dataclasses import replace

    from marrowdiff.data import duplicates
    from marrowdiff.data.duplicates import DuplicateConfig

    if (
        not hasattr(duplicates.os, "sched_getaffinity")
        or len(duplicates.os.sched_getaffinity(0)) < 2
    ):
        pytest.skip("one core: verification never forks here")
    cells = [synthetic_cell(rng, 72, radius=rng.uniform(12, 20)) for _ in range(40)]
    for k in range(4):  # four re-crops, and every pair compared (many candidates, few found)
        base = synthetic_cell(rng, 90)
        cells[k], cells[20 + k] = recrop(base, 0, 0, 72), recrop(base, 3 * k - 4, 5 - k, 72)
    every = {"exhaustive_below": 10**6, "coarse_threshold": -1.0, "prefilter_threshold": -1.0}
    config = replace(DuplicateConfig(), **every)
    alone = find_duplicates(cells, config)
    stages = ("neighbours", "candidates", "verification")
    monkeypatch.setattr(duplicates, "PARALLEL_FROM", dict.fromkeys(stages, 0))
    monkeypatch.setattr(duplicates, "CHUNK", dict.fromkeys(stages, 3))  # out of order
    shared = find_duplicates(cells, config)
    assert shared == alone and {(p.a, p.b) for p in alone} == {(k, 20 + k) for k in range(4)}
    # and the neighbour index's stage, shared the same way, on 80 patches in 5 blocks
    config = replace(DuplicateConfig(), block=16)
    monkeypatch.setattr(duplicates, "PARALLEL_FROM", dict.fromkeys(stages, 10**9))
    alone = find_duplicates(cells * 2, config)
    monkeypatch.setattr(duplicates, "PARALLEL_FROM", dict.fromkeys(stages, 0))
    assert find_duplicates(cells * 2, config) == alone and len(alone) > 40  # copies and re-crops


def _die(job, part):  # a worker killed mid-stage (out of memory, a kill -9)
    import os

    os._exit(9)


def test_a_worker_that_dies_fails_the_stage_instead_of_hanging(monkeypatch):
    from marrowdiff.data import duplicates

    if (
        not hasattr(duplicates.os, "sched_getaffinity")
        or len(duplicates.os.sched_getaffinity(0)) < 2
    ):
        pytest.skip("one core: the stages never fork here")
    monkeypatch.setattr(duplicates, "PARALLEL_FROM", {"verification": 0})
    with pytest.raises(duplicates.WorkerError, match="died.*run the same command again"):
        list(duplicates._in_workers("verification", None, _die, list(range(600)), False))
