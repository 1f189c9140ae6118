"""A slide's tiles shared among ranks and merged on rank 0 give the report one process
writes. The ranks are simulated in this process (`on_every_rank` runs each rank's share in
turn), so the merge is tested without launching torchrun; the launch itself is tested on
fields (tests/distributed)."""

from __future__ import annotations

import json

import pytest

from marrowdiff.counting.report import ReportConfig
from marrowdiff.distributed import shards
from marrowdiff.inference.predict import load_classifier
from marrowdiff.slides import job
from marrowdiff.slides.count import SlideCountConfig
from tests.slides.conftest import stop_at


@pytest.mark.slow  # counts the slide twice: about 3 s
def test_two_ranks_count_a_slide_exactly_as_one_does(counted, mpp_onnx, small_slide, tmp_path,
                                                     monkeypatch):  # fmt: skip
    _, one = counted  # one process: --cells all, 768 px tiles
    shares = []

    def two_ranks(work, items):
        shares.extend([items[0::2], items[1::2]])
        return [work(items[0::2]), work(items[1::2])]  # rank 0's part, then rank 1's

    two = tmp_path / "two"
    config = SlideCountConfig(tile=768, cells=None)
    classifier = load_classifier([str(mpp_onnx)])
    # A single-process count of the same slide, stopped after its first tile: its journal is
    # set aside, never mixed into the ranks' (they count every tile again).
    stop_at(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        job.count_slide(classifier, small_slide, config, ReportConfig(), two, str(mpp_onnx),
                        log=lambda m: None)  # fmt: skip
    assert (two / ".partial" / "tiles.txt").read_text().split()
    monkeypatch.undo()
    monkeypatch.setattr(job, "launched", lambda: True)
    monkeypatch.setattr(job, "world_size", lambda: 2)
    monkeypatch.setattr(shards, "on_every_rank", two_ranks)
    job.count_slide(classifier, small_slide, config, ReportConfig(), two, str(mpp_onnx),
                    log=lambda m: None)  # fmt: skip
    assert len(shares) == 2 and shares[0] and shares[1]
    assert (one / "cells.csv").read_text() == (two / "cells.csv").read_text()
    a, b = (json.loads((d / "cells.geojson").read_text()) for d in (one, two))
    for d in (a, b):
        for f in d["features"]:
            f.pop("id")  # each feature has a fresh id
    assert a == b
    reports = [json.loads((d / "report.json").read_text()) for d in (one, two)]
    for report in reports:
        report.pop("created")
    assert reports[0] == reports[1] and reports[0]["n_cells_found"] > 50
