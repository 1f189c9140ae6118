"""From a trained model to a differential: classify patches, count fields, one report."""

import csv
import json

import numpy as np
import pytest

from marrowdiff.cli import main
from marrowdiff.synthetic.cells import synthetic_cell
from marrowdiff.synthetic.fields import FieldConfig, make_field

from ..conftest import TINY_CLASSES, write_image


@pytest.fixture(scope="module")
def fields(tmp_path_factory):
    """Two 540 x 660 fields of synthetic cells at 3x the tiny model's patch scale."""
    rng = np.random.default_rng(5)
    patches, labels = [], []
    for label, radius in TINY_CLASSES.items():
        for _ in range(6):
            patches.append(synthetic_cell(rng, 144, radius=3 * radius))
            labels.append(label)
    folder = tmp_path_factory.mktemp("fields")
    config = FieldConfig(height=540, width=660, cells=7, red_cells=40)
    for k in range(2):
        write_image(folder / f"field{k}.png", make_field(patches, labels, config, seed=k)[0])
    return folder


def test_classify_writes_one_row_per_readable_patch(tiny_run, tmp_path, capsys):
    rng = np.random.default_rng(4)
    for k, radius in enumerate((8, 16)):
        write_image(tmp_path / "in" / f"cell{k}.png", synthetic_cell(rng, 48, radius=radius))
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG garbage")
    assert (
        main(
            ["classify", str(tiny_run), str(tmp_path / "in"), "--out", str(tmp_path / "cells.csv")]
        )
        == 0
    )
    rows = list(csv.DictReader((tmp_path / "cells.csv").open()))
    assert [r["path"].rsplit("/", 1)[1] for r in rows] == ["cell0.png", "cell1.png"]
    assert {"class", "probability", "flag", "p_pronormoblast"} <= set(rows[0])
    assert sum(float(v) for k, v in rows[0].items() if k.startswith("p_")) == pytest.approx(
        1, abs=1e-3
    )
    out = capsys.readouterr().out
    assert "skipped" in out and "broken.png" in out and "2 of 3 entries classified" in out


def test_the_classify_csv_is_streamed_in_the_format_of_the_cells_it_held_before(tiny_run, tmp_path):
    from marrowdiff.counting.count import classify_patches, classify_to_csv
    from marrowdiff.counting.report_files import cell_rows, write_csv
    from marrowdiff.data.sources import list_inputs
    from marrowdiff.inference.predict import load_classifier

    rng = np.random.default_rng(5)
    for k in range(7):
        write_image(tmp_path / "in" / f"c{k}.png", synthetic_cell(rng, 48, radius=6 + 2 * k))
    classifier = load_classifier([tiny_run])
    inputs, _ = list_inputs([tmp_path / "in"])
    found = classify_to_csv(classifier, inputs, tmp_path / "new.csv", log=lambda m: None)
    cells = classify_patches(classifier, inputs, thumbnails=False, log=lambda m: None)
    rows = [{"path": r.pop("field")} | r for r in cell_rows(cells, classifier.classes)]
    for row in rows:  # the rows as `classify` made them from whole Cells until now
        del row["x"], row["y"]
    write_csv(tmp_path / "old.csv", rows)
    assert (tmp_path / "new.csv").read_bytes() == (tmp_path / "old.csv").read_bytes()
    assert len(found) == 7 and found.proba.shape == (7, len(classifier.classes))
    assert found.unsure.sum() == sum(c.flag == "unsure" for c in cells)


def test_count_makes_one_report_from_several_fields_with_either_backend(
    tiny_run, onnx_file, fields, tmp_path
):
    for name, model in (("pt", tiny_run), ("onnx", onnx_file)):
        assert (
            main(
                [
                    "count",
                    str(model),
                    str(fields),
                    "--out",
                    str(tmp_path / name),
                    "--cell-diameter",
                    "90",
                    "--target",
                    "300",
                ]
            )
            == 0
        )
    reports = [json.loads((tmp_path / n / "report.json").read_text()) for n in ("pt", "onnx")]
    assert reports[0]["n_fields"] == 2 and reports[0]["n_cells_found"] >= 10
    assert [r["count"] for r in reports[0]["classes"]] == [
        r["count"] for r in reports[1]["classes"]
    ]
    rows = list(csv.DictReader((tmp_path / "pt" / "cells.csv").open()))
    assert len(rows) == reports[0]["n_cells_found"]
    assert {r["flag"] for r in rows} <= {"", "unsure", "border"}
    assert sum(r["flag"] == "" for r in rows) == reports[0]["n_counted"]
    assert (tmp_path / "pt" / "report.html").stat().st_size > 10_000


def test_count_skips_what_it_cannot_read_and_reports_an_empty_field(
    tiny_run, fields, tmp_path, capsys
):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a-field.png").write_bytes((fields / "field0.png").read_bytes())
    write_image(folder / "blank.png", np.full((540, 660, 3), (232, 220, 215), np.uint8))
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_bytes(b"not an image")
    (folder / "trunc.png").write_bytes((fields / "field1.png").read_bytes()[:3000])
    argv = ["count", str(tiny_run), str(folder), "--out", str(tmp_path / "out")]
    assert main(argv + ["--cell-diameter", "90"]) == 0
    out = capsys.readouterr().out
    for name in ("empty.jpg", "notes.png", "trunc.png"):
        assert f"skipped {folder / name}" in out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["n_fields"] == 2 and report["n_cells_found"] >= 3  # the blank field counts
    assert "blank.png (0 cells)" in (tmp_path / "out" / "report.html").read_text()


def test_count_fails_when_no_input_was_readable(tiny_run, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(b"not an image")
    (tmp_path / "in" / "b.jpg").write_bytes(b"")
    argv = ["count", str(tiny_run), str(tmp_path / "in"), "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    said = capsys.readouterr()
    assert "none of the 2 inputs was readable" in said.err and "no report was written" in said.err
    assert f"skipped {tmp_path / 'in' / 'a.png'}" in said.out
    assert not (tmp_path / "out").exists()  # no empty report that looks like a result
    argv = ["classify", str(tiny_run), str(tmp_path / "in"), "--out", str(tmp_path / "c.csv")]
    assert main(argv) == 2 and not (tmp_path / "c.csv").exists()


def test_a_report_names_the_exact_model_that_made_it(tiny_run, onnx_file, tmp_path):
    from marrowdiff.inference.predict import load_classifier
    from marrowdiff.run import load_checkpoint

    torch_sha = load_checkpoint(tiny_run).state["weights_sha256"]
    assert load_classifier([tiny_run]).checksum == torch_sha[:12]
    onnx = load_classifier([onnx_file])
    assert len(onnx.checksum) == 12 and onnx.checksum != torch_sha[:12]  # the graph's
