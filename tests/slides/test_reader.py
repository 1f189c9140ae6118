"""Opening slides: formats, microns per pixel, levels, the private images, and bad files."""

from __future__ import annotations

import numpy as np
import pytest

from marrowdiff.slides.pyramid import write_pyramid
from marrowdiff.slides.reader import Slide, SlideError, slide_format
from tests.conftest import write_image
from tests.slides.conftest import shared


def gradient(y, x, h, w):
    """A known picture: red = column, green = row (mod 256), blue constant."""
    out = np.empty((h, w, 3), np.uint8)
    out[..., 0] = (np.arange(x, x + w) % 256)[None, :]
    out[..., 1] = (np.arange(y, y + h) % 256)[:, None]
    out[..., 2] = 200
    return out


def test_a_written_pyramid_opens_with_its_scale_levels_and_pixels(tmp_path):
    path = write_pyramid(tmp_path / "g.tiff", 1500, 2100, gradient, mpp=0.25)
    with Slide(path) as slide:
        info = slide.info
        assert (info.vendor, info.width, info.height) == ("generic-tiff", 2100, 1500)
        assert info.mpp == pytest.approx(0.25)
        assert info.level_dimensions[:3] == ((2100, 1500), (1050, 750), (525, 375))
        assert np.array_equal(slide.read(1000, 700, 40, 30), gradient(700, 1000, 30, 40))
        # Level 2 is the 4 x 4 mean of level 0: green (the row) of level-2 row 10 is rows 40-43
        assert slide.read(0, 40, 4, 1, level=2)[0, 0, 1] == pytest.approx(41.5, abs=1)
        # Outside the slide is glass (white), not black
        assert (slide.read(2090, 1490, 20, 20)[15:, 15:] == 255).all()


def test_ordinary_images_are_not_slides(tmp_path):
    png = write_image(tmp_path / "field.png", np.zeros((20, 20, 3), np.uint8))
    tif = write_image(tmp_path / "field.tif", np.zeros((20, 20, 3), np.uint8))
    assert slide_format(png) is None and slide_format(tif) is None


def test_a_slide_is_recognised_by_opening_it_not_by_its_name(tmp_path):
    path = write_pyramid(tmp_path / "scan.dat", 600, 600, gradient, mpp=0.25)
    assert slide_format(path) == "generic-tiff"


@pytest.mark.parametrize(
    "name, vendor, size, mpp, private",
    [
        ("cmu-1-small-region.svs", "aperio", (2220, 2967), 0.499, ["label", "macro"]),
        ("tcga-cr-7395-01a-01-ts1.svs", "aperio", (4443, 3567), None, []),
        ("boxes.tiff", "generic-tiff", (300, 250), 352.777, []),
        ("boxes_0.dcm", "dicom", (16, 16), 0.499, []),
        ("small.svs", "aperio", (16, 16), 0.499, []),
    ],
)
def test_the_public_slide_files_open_as_their_readme_says(name, vendor, size, mpp, private):
    with Slide(shared(name)) as slide:
        info = slide.info
        assert (info.vendor, (info.width, info.height)) == (vendor, size)
        assert info.mpp == (None if mpp is None else pytest.approx(mpp, rel=1e-3))
        assert info.private_images == private
        assert slide.read(0, 0, 8, 8).shape == (8, 8, 3)


@pytest.mark.parametrize("name", ["broken.svs", "unopenable.tiff"])
def test_a_file_that_does_not_open_is_a_sentence_naming_it(name):
    with pytest.raises(SlideError, match=name) as caught:
        Slide(shared(name))
    assert "copy it again" in str(caught.value)


def test_tiles_that_do_not_decode_are_a_sentence_naming_the_file_and_where():
    with Slide(shared("unreadable.svs")) as slide:
        with pytest.raises(SlideError, match=r"unreadable\.svs.*\(0, 0\)"):
            slide.read(0, 0, 16, 16)
        slide.reopen()  # OpenSlide refuses every read after a failure until then
        assert slide.info.width == 16
