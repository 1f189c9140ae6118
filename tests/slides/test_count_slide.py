"""Counting a slide end to end: every cell once across seams, the map's countable tiles,
the outputs (report, cells.csv, QuPath GeoJSON), resuming, --cells, --region, privacy and
bad slides."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from scipy.spatial import cKDTree

from marrowdiff.cli import main
from marrowdiff.counting.report import ReportConfig
from marrowdiff.inference.predict import load_classifier
from marrowdiff.slides import job
from marrowdiff.slides.count import SlideCountConfig
from marrowdiff.slides.job import count_slide
from marrowdiff.slides.resolution import ResolutionError
from marrowdiff.slides.tiles import RegionError
from marrowdiff.synthetic.slide import read_truth, truth_path
from tests.slides.conftest import SMALL, shared, stop_at

TILE = 768  # px: small tiles, so that a small slide has many seams


def rows(out) -> list[dict]:
    with open(out / "cells.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def count(model, slide, out, **options):
    config = SlideCountConfig(**({"tile": TILE, "cells": None} | options))
    return count_slide(load_classifier([str(model)]), slide, config, ReportConfig(), out,
                       str(model), log=lambda m: None)  # fmt: skip


def test_every_cell_of_the_counted_tiles_is_found_once_across_seams(counted, small_slide):
    summary, out = counted
    found = np.array([[float(r["x"]), float(r["y"])] for r in rows(out)])
    truth = read_truth(truth_path(small_slide))
    true = np.stack([truth["x"], truth["y"]], axis=1)
    boxes = [t["box"] for t in summary["slide"]["counted_tiles"]]
    inside = np.zeros(len(true), bool)
    for x, y, w, h in boxes:
        inside |= (
            (true[:, 0] >= x) & (true[:, 0] < x + w) & (true[:, 1] >= y) & (true[:, 1] < y + h)
        )
    assert len(boxes) >= 4 and inside.sum() > 50  # a 2 x 2 block of tiles at least: 4 seams
    assert not cKDTree(found).query_pairs(30)  # no cell twice (cells are 135 px apart)
    distance, nearest = cKDTree(true).query(found)
    assert (distance < 30).mean() > 0.95  # precision
    assert np.isin(np.flatnonzero(inside), nearest[distance < 30]).mean() > 0.9  # recall
    # every counted tile lies in the countable area the slide was drawn with
    for x, y, w, h in boxes:
        assert SMALL.zone(y + h / 2, x + w / 2) == "countable"


def test_the_outputs_say_where_each_cell_is_and_open_in_qupath(counted, mpp_onnx):
    summary, out = counted
    table = rows(out)
    assert summary["n_cells_found"] == len(table)
    first = table[0]
    assert float(first["x_um"]) == pytest.approx(float(first["x"]) * 0.136, abs=0.01)
    geo = json.loads((out / "cells.geojson").read_text())
    kinds = [f["properties"]["objectType"] for f in geo["features"]]
    assert kinds.count("detection") == len(table)
    assert kinds.count("annotation") == summary["slide"]["tiles"]["counted"]
    cell = next(f for f in geo["features"] if f["properties"]["objectType"] == "detection")
    ring = np.array(cell["geometry"]["coordinates"][0])
    assert ring[0].tolist() == ring[-1].tolist()  # a closed polygon, in level-0 px
    assert ring.mean(axis=0) == pytest.approx([float(first["x"]), float(first["y"])], abs=5)
    names = {c.name for c in load_classifier([str(mpp_onnx)]).vocabulary.classes}
    assert cell["properties"]["classification"]["name"] in names
    assert len(cell["properties"]["classification"]["color"]) == 3
    page = (out / "report.html").read_text()
    assert "<h2>Slide</h2>" in page and "generic-tiff" in page and "left out" not in page
    assert summary["slide"]["working"]["slide_mpp"] == pytest.approx(0.136)
    assert not (out / ".partial").exists()  # the journal is gone once the report is written


def test_an_interrupted_count_goes_on_where_it_stopped(
    mpp_onnx, small_slide, counted, tmp_path, monkeypatch
):
    _, whole = counted
    real = job.classify_tile
    stop_at(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        count(mpp_onnx, small_slide, tmp_path)
    assert len((tmp_path / ".partial" / "tiles.txt").read_text().split()) == 3
    monkeypatch.undo()
    seen = []
    monkeypatch.setattr(job, "classify_tile", lambda *a, **k: seen.append(1) or real(*a, **k))
    count(mpp_onnx, small_slide, tmp_path)
    key = lambda r: (r["tile"], r["x"], r["y"], r["class"])  # noqa: E731
    assert sorted(map(key, rows(tmp_path))) == sorted(map(key, rows(whole)))
    assert (
        len(seen)
        == json.loads((whole / "report.json").read_text())["slide"]["tiles"]["counted"] - 3
    )


def test_cells_n_counts_the_best_tiles_until_n_cells_are_in(
    mpp_onnx, small_slide, counted, tmp_path
):
    whole, _ = counted
    summary = count(mpp_onnx, small_slide, tmp_path, cells=30)
    assert summary["target"] == 30 and summary["estimate"]["n_cells"] >= 30
    assert summary["slide"]["tiles"]["counted"] < whole["slide"]["tiles"]["counted"]
    best = whole["slide"]["counted_tiles"]
    first = summary["slide"]["counted_tiles"][0]["index"]
    assert first == max(best, key=lambda t: (t["score"], -t["index"]))["index"]


def test_a_region_counts_its_tiles_and_one_outside_the_slide_is_refused(
    mpp_onnx, small_slide, tmp_path
):
    summary = count(mpp_onnx, small_slide, tmp_path, region="1000,900,800,700", cells=None)
    assert summary["slide"]["chosen_by"] == "region"
    assert summary["slide"]["region"] == [1000, 900, 800, 700]
    for r in rows(tmp_path):
        assert 1000 <= float(r["x"]) < 1800 and 900 <= float(r["y"]) < 1600
    with pytest.raises(RegionError, match="3072 x 2560"):
        count(mpp_onnx, small_slide, tmp_path / "x", region="3000,0,500,500")


def test_a_model_without_its_microns_per_pixel_is_refused_before_any_work(
    onnx_file, small_slide, tmp_path
):
    with pytest.raises(ResolutionError, match="calibrate RUN --mpp"):
        count(onnx_file, small_slide, tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_folder_with_a_bad_slide_counts_the_good_ones_and_names_the_bad(
    mpp_onnx, small_slide, tmp_path, capsys
):
    folder = tmp_path / "slides"
    folder.mkdir()
    shutil.copy(small_slide, folder / "good.tiff")
    (folder / "bad.svs").write_bytes(b"II*\x00 not really a slide")
    code = main(["count", str(mpp_onnx), str(folder), "--out", str(tmp_path / "out"),
                 "--cells", "40", "--tile", str(TILE)])  # fmt: skip
    said = capsys.readouterr()
    assert code == 0
    assert "skipped" in said.out and "bad.svs" in said.out and "not a slide" in said.out
    assert (tmp_path / "out" / "good" / "report.html").exists()
    assert not (tmp_path / "out" / "bad").exists()


def test_the_label_and_macro_images_are_left_out_unless_asked_for(mpp_onnx, tmp_path):
    slide = shared("cmu-1-small-region.svs")
    region = "600,800,900,900"
    summary = count(mpp_onnx, slide, tmp_path / "a", region=region, mpp=0.136)
    page = (tmp_path / "a" / "report.html").read_text()
    assert "label and macro image(s) were left out" in page and "slide label" not in page
    assert summary["slide"]["left_out"] == ["label", "macro"]
    assert not summary["slide"]["label_included"]
    count(mpp_onnx, slide, tmp_path / "b", region=region, mpp=0.136, with_label=True)
    page = (tmp_path / "b" / "report.html").read_text()
    assert "alt='slide label'" in page and "macro image(s) were left out" in page


def test_a_slide_whose_tiles_do_not_decode_is_a_sentence(mpp_onnx, tmp_path, capsys):
    code = main(["count", str(mpp_onnx), str(shared("unreadable.svs")), "--out",
                 str(tmp_path / "out"), "--region", "0,0,16,16", "--mpp", "0.136"])  # fmt: skip
    said = capsys.readouterr()
    assert code == 2
    assert "unreadable.svs" in said.out + said.err and "do not decode" in said.out + said.err


def test_a_tile_that_does_not_decode_is_left_out_and_said_the_others_counted(
    mpp_onnx, small_slide, tmp_path, monkeypatch
):
    from marrowdiff.slides.reader import SlideError

    real = job.prepare_tile
    spoiled = []

    def failing(slide, tile, working, config):
        if not spoiled:
            spoiled.append(tile.index)
            raise SlideError(
                f"{slide.path}: the tiles at ({tile.read.x}, {tile.read.y}) do not decode"
            )
        return real(slide, tile, working, config)

    monkeypatch.setattr(job, "prepare_tile", failing)
    summary = count(mpp_onnx, small_slide, tmp_path)
    assert summary["slide"]["tiles"]["counted"] == summary["slide"]["tiles"]["countable"] - 1
    assert spoiled[0] not in [t["index"] for t in summary["slide"]["counted_tiles"]]
    warning = next(w for w in summary["warnings"] if "could not be read" in w)
    assert (
        warning.startswith("1 tile(s) of the slide could not be read") and "marrow.tiff" in warning
    )


def test_a_countable_area_with_fewer_cells_than_asked_is_counted_whole_and_said(
    mpp_onnx, small_slide, counted, tmp_path
):
    whole, _ = counted
    summary = count(mpp_onnx, small_slide, tmp_path, cells=100_000)
    assert summary["slide"]["tiles"]["counted"] == whole["slide"]["tiles"]["countable"]
    assert summary["n_cells_found"] == whole["n_cells_found"]
    said = [w for w in summary["warnings"] if "counted whole" in w]
    assert said and "100000 cells" in said[0]
    assert not summary["target_reached"]
