"""`classify` and `count` at another magnification: the scale is measured, named and, when
asked, corrected (counting/scale.py)."""

import csv
import json

import numpy as np
import pytest

from marrowdiff.cli import main
from marrowdiff.run import load_checkpoint
from marrowdiff.synthetic.cells import synthetic_cell

from ..conftest import tiny_fields, write_image


def patches(folder, side: int = 48, n: int = 24):
    """Cells like the tiny run's (48 px patches, radius 8, 12 or 16), framed by the centre
    `side` px of the patch: seen 48/side times as large, as a higher magnification would."""
    rng = np.random.default_rng(9)
    top = (48 - side) // 2
    for k in range(n):
        image = synthetic_cell(rng, 48, radius=(8, 12, 16)[k % 3])
        write_image(folder / f"cell{k:02d}.png", image[top : top + side, top : top + side])
    return folder


def classes(csv_path) -> list[str]:
    return [row["class"] for row in csv.DictReader(csv_path.open())]


def test_the_model_records_its_training_cells_size(tiny_run):
    size = load_checkpoint(tiny_run).size
    assert size is not None and 5 < size.diameter < 32 and size.mpp is None


def test_cells_at_another_magnification_are_named_and_reframed_on_request(
    tiny_run, tmp_path, capsys
):
    def classify(folder, name, *options) -> list[str]:
        out = tmp_path / f"{name}.csv"
        assert main(["classify", str(tiny_run), str(folder), "--out", str(out), *options]) == 0
        return classes(out)

    truth = classify(patches(tmp_path / "a"), "native")
    assert "times the size" not in capsys.readouterr().out
    classify(patches(tmp_path / "twice", side=24), "twice")
    out = capsys.readouterr().out
    assert "times the size of the model's training cells" in out and "--rescale auto" in out
    # at 1.5 times the size, reframing brings the classes back towards the native ones
    larger = patches(tmp_path / "larger", side=32)
    plain, auto = classify(larger, "plain"), classify(larger, "auto", "--rescale", "auto")
    assert "cells framed x0." in capsys.readouterr().out

    def agree(found: list[str]) -> float:
        return float(np.mean([a == b for a, b in zip(found, truth, strict=True)]))

    assert agree(auto) > agree(plain)


def test_mpp_needs_a_model_that_knows_its_own(tiny_run, tmp_path, capsys):
    folder = patches(tmp_path / "a", n=3)
    code = main(
        ["classify", str(tiny_run), str(folder), "--out", str(tmp_path / "x.csv"), "--mpp", "0.2"]
    )
    assert code == 2
    assert "does not record the microns per pixel" in capsys.readouterr().err


def test_a_count_records_the_scale_it_read_cells_at(tiny_run, tmp_path):
    out = tmp_path / "report"
    args = ["count", str(tiny_run), str(tiny_fields(tmp_path / "fields", 2)), "--out", str(out)]
    assert main([*args, "--rescale", "auto"]) == 0
    scale = json.loads((out / "report.json").read_text())["about"]["scale"]
    assert scale["source"] == "cell size" and scale["input_cell_diameter"] > 0
    assert scale["factor"] == pytest.approx(
        scale["training_cell_diameter"] / scale["input_cell_diameter"], rel=0.02
    )
