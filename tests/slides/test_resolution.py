"""The scale a slide is read at: the level and resize to the model's microns per pixel."""

from __future__ import annotations

import pytest

from marrowdiff.slides.reader import SlideInfo
from marrowdiff.slides.resolution import ResolutionError, working_scale


def info(mpp, downsamples=(1.0, 2.0, 4.0, 8.0)):
    dims = tuple((int(8000 / d), int(6000 / d)) for d in downsamples)
    return SlideInfo("s.svs", "aperio", 8000, 6000, dims, downsamples, mpp, 40.0, ())


def test_the_finest_level_not_finer_than_needed_is_read_and_resized():
    w = working_scale(info(0.05), model_mpp=0.136)
    # 0.136 / 0.05 = 2.72 level-0 px per model px: level 1 (x2), shrunk by 2 / 2.72
    assert (w.level, w.downsample) == (1, 2.0)
    assert w.factor == pytest.approx(2 / 2.72)
    assert w.level0_per_model_px == pytest.approx(2.72)
    assert not w.warning


def test_a_slide_a_little_coarser_is_enlarged_with_a_warning_and_much_coarser_refused():
    w = working_scale(info(0.2), model_mpp=0.136)
    assert w.level == 0 and w.factor == pytest.approx(0.2 / 0.136)
    assert "1.47 times coarser" in w.warning
    with pytest.raises(ResolutionError, match=r"0\.499 microns per pixel, 3\.7 times coarser"):
        working_scale(info(0.499), model_mpp=0.136)


def test_a_slide_without_its_scale_needs_mpp_and_a_model_without_its_own_is_refused():
    with pytest.raises(ResolutionError, match="--mpp"):
        working_scale(info(None), model_mpp=0.136)
    assert working_scale(info(None), model_mpp=0.136, given_mpp=0.136).source == "--mpp"
    with pytest.raises(ResolutionError, match="calibrate RUN --mpp"):
        working_scale(info(0.136), model_mpp=None)
