"""`marrowdiff count` with slides: where each slide's report goes."""

from __future__ import annotations

from pathlib import Path

from marrowdiff.data.sources import Input
from marrowdiff.slides.commands import report_names


def test_slides_of_the_same_name_get_report_folders_of_their_own():
    slides = [Input(p, Path(p)) for p in ("a/x.svs", "b/x.svs", "c/y.ndpi", "d/x.tiff")]
    assert report_names(slides) == ["x", "x-2", "y", "x-3"]
