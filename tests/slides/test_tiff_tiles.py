"""Plain tiled TIFFs read from their tiles (`slides.tiff_tiles`): OpenSlide's pixels, damaged
tiles as sentences, other files left to OpenSlide."""

from __future__ import annotations

import threading

import numpy as np
import openslide
import pytest

from marrowdiff.slides.pyramid import write_pyramid
from marrowdiff.slides.reader import Slide, SlideError
from tests.slides.test_reader import gradient


def noise(y, x, h, w):
    """A picture where every pixel differs from its neighbours: any shifted copy shows."""
    rng = np.random.default_rng(y * 100_003 + x)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def openslide_rgb(path, x, y, level, w, h) -> np.ndarray:
    """OpenSlide's own read of a region, composited onto white (outside the slide: glass)."""
    with openslide.OpenSlide(str(path)) as slide:
        rgba = np.asarray(slide.read_region((x, y), level, (w, h)))
    opaque = rgba[..., 3:] == 255
    return np.where(opaque, rgba[..., :3], 255).astype(np.uint8)


def test_regions_read_from_the_tiles_are_openslides_pixels(tmp_path):
    path = write_pyramid(tmp_path / "n.tiff", 1300, 1700, noise, mpp=0.25)
    rng = np.random.default_rng(1)
    with Slide(path) as slide:
        assert slide._tiles is not None
        for level in (0, 1, 2):
            scale = round(slide.info.level_downsamples[level])
            width, height = slide.info.level_dimensions[level]
            for _ in range(6):  # inside, across tile seams, and over the slide's edges
                w, h = (int(v) for v in rng.integers(1, 600, 2))
                x, y = (int(rng.integers(-200, d + 50)) * scale for d in (width, height))
                assert slide._direct(x, y, level) is not None
                assert np.array_equal(
                    slide.read(x, y, w, h, level), openslide_rgb(path, x, y, level, w, h)
                ), (level, x, y, w, h)


def test_the_cache_stays_within_its_bound_and_twins_share_it(tmp_path):
    path = write_pyramid(tmp_path / "g.tiff", 1100, 1100, gradient, mpp=0.25)
    with Slide(path) as slide:
        slide._tiles._limit = 3 * 512 * 512 * 3  # three tiles
        twin = slide.twin()
        results = {}

        def read(name, handle):
            results[name] = [handle.read(x, 0, 300, 1100) for x in range(0, 1100, 100)]

        threads = [threading.Thread(target=read, args=(k, h)) for k, h in ((0, slide), (1, twin))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert twin._tiles is slide._tiles
        assert slide._tiles._bytes <= 3 * 512 * 512 * 3 and len(slide._tiles._cache) <= 3
        for k, x in enumerate(range(0, 1100, 100)):
            inside = min(300, 1100 - x)
            expected = np.full((1100, 300, 3), 255, np.uint8)  # beyond the slide: glass
            expected[:, :inside] = gradient(0, x, 1100, inside)
            assert np.array_equal(results[0][k], expected)
            assert np.array_equal(results[1][k], expected)
        twin.close()
        assert slide.read(0, 0, 4, 4).shape == (4, 4, 3)  # the twin's close leaves it open


def test_a_tile_that_does_not_decode_is_a_sentence_and_the_others_still_read(tmp_path):
    import tifffile

    path = write_pyramid(tmp_path / "d.tiff", 1024, 1024, gradient, mpp=0.25)
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[0].dataoffsets[1], tif.pages[0].databytecounts[1]
    with open(path, "r+b") as f:  # spoil the second tile of level 0 (x 512-1023, y 0-511)
        f.seek(offset + count // 2)
        f.write(b"\x00" * 64)
    with Slide(path) as slide:
        assert slide._tiles is not None
        with pytest.raises(SlideError, match=r"d\.tiff: the tiles at \(600, 10\) .*do not decode"):
            slide.read(600, 10, 16, 16)
        assert np.array_equal(slide.read(10, 600, 16, 16), gradient(600, 10, 16, 16))


def test_a_tile_the_file_leaves_out_is_glass_as_openslide_paints_it(tmp_path):
    import tifffile

    path = write_pyramid(tmp_path / "s.tiff", 1024, 1024, gradient, mpp=0.25)
    with tifffile.TiffFile(path) as tif:
        counts = tif.pages[0].tags["TileByteCounts"]
        width = {3: 2, 4: 4, 16: 8}[int(counts.dtype)]
    with open(path, "r+b") as f:  # the second tile of level 0 has no bytes (a sparse TIFF)
        f.seek(counts.valueoffset + width)
        f.write(b"\x00" * width)
    with Slide(path) as slide:
        region = slide.read(500, 10, 24, 16)
        assert np.array_equal(region, openslide_rgb(path, 500, 10, 0, 24, 16))
        assert (region[:, 12:] == 255).all() and np.array_equal(
            region[:, :12], gradient(10, 500, 16, 12)
        )


def test_other_tiffs_and_regions_between_pixels_are_left_to_openslide(tmp_path):
    import tifffile

    rgba = np.zeros((600, 600, 4), np.uint8)
    rgba[..., :3] = gradient(0, 0, 600, 600)
    rgba[..., 3] = 255
    path = tmp_path / "rgba.tiff"
    tifffile.imwrite(path, rgba, photometric="rgb", tile=(256, 256), compression="zlib",
                     extrasamples=[2])  # fmt: skip
    with Slide(path) as slide:
        assert slide.info.vendor == "generic-tiff" and slide._tiles is None
        assert np.array_equal(slide.read(20, 30, 8, 8), gradient(30, 20, 8, 8))
    plain = write_pyramid(tmp_path / "p.tiff", 1300, 1700, gradient, mpp=0.25)
    with Slide(plain) as slide:
        assert slide._direct(3, 0, 1) is None  # level 1 starts between its pixels: OpenSlide's
        assert slide._direct(4, 2, 1) == (2, 1)
