"""From a trained model to a differential: classify, count, export to ONNX, calibrate."""

import csv
import json

import numpy as np
import pytest

from marrowdiff.cli import main
from marrowdiff.export import export_onnx
from marrowdiff.predict import load_classifier, load_model
from marrowdiff.smear import FieldConfig, make_field
from marrowdiff.synthetic import synthetic_cell

from .conftest import TINY_CLASSES, write_image


@pytest.fixture(scope="module")
def onnx_file(tiny_run, tmp_path_factory):
    return export_onnx(tiny_run, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


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


def test_the_run_is_calibrated_on_its_validation_split(tiny_run):
    model = load_model(tiny_run)
    for mode in (False, True):
        c = model.calibration(mode)
        assert c.n >= 10 and c.temperature > 0 and 0 <= c.threshold <= 1


def test_onnx_and_pytorch_agree_within_1e4(tiny_run, onnx_file):
    rng = np.random.default_rng(3)
    images = [synthetic_cell(rng, 48, radius=r) for r in (8, 12, 16, 10, 14)]
    images.append(synthetic_cell(rng, 61)[:, :55])  # not square, other size
    torch_model, onnx_model = load_model(tiny_run), load_model(onnx_file)
    assert onnx_model.classes == torch_model.classes
    assert onnx_model.calibrations == torch_model.calibrations
    for tta in (False, True):
        difference = np.abs(torch_model.proba(images, tta) - onnx_model.proba(images, tta))
        assert difference.max() < 1e-4


def test_an_onnx_file_without_our_metadata_is_refused(tmp_path):
    (tmp_path / "x.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        load_model(tmp_path / "x.onnx")
    with pytest.raises(FileNotFoundError, match="no such model"):
        load_model(tmp_path / "missing.onnx")


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
    assert "skipped" in out and "broken.png" in out and "2 of 3 patches classified" in out


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


def test_a_dual_stage_set_classifies_too(tiny_run, onnx_file):
    classifier = load_classifier([onnx_file, tiny_run])
    proba, unsure = classifier.classify([synthetic_cell(np.random.default_rng(0), 48)])
    assert proba.shape == (1, len(TINY_CLASSES)) and proba.sum() == pytest.approx(1)
    assert unsure.shape == (1,)


def test_calibrate_command_refits_and_stores(tiny_run, capsys):
    assert main(["calibrate", str(tiny_run), "--target-accuracy", "0.8"]) == 0
    assert "calibrated on" in capsys.readouterr().out
    assert load_model(tiny_run).calibration(False).target_accuracy == 0.8


def test_int8_export_is_quantised_described_and_close_to_float(tiny_run, tmp_path):
    import onnx

    out = tmp_path / "tiny-int8.onnx"
    assert main(["export", str(tiny_run), "--onnx", str(out), "--int8"]) == 0
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8, reference = load_model(out), load_model(tiny_run)
    assert int8.classes == reference.classes and int8.calibrations == reference.calibrations
    q = int8.metadata["quantisation"]
    assert q["compared_on"] == "val" and q["cells"] > 0 and q["calibration_cells"] > q["cells"]
    assert 0 <= q["class_changes"] <= q["cells"] and 0 <= q["accuracy_int8"] <= 1
    rng = np.random.default_rng(6)
    images = [synthetic_cell(rng, 48, radius=r) for r in (8, 12, 16, 10)]
    difference = np.abs(int8.proba(images) - reference.proba(images))
    assert difference.max() < 0.2  # 8-bit steps move probabilities, a little
    for k, image in enumerate(images):
        write_image(tmp_path / "cells" / f"{k}.png", image)
    cells = tmp_path / "cells.csv"
    assert main(["classify", str(out), str(tmp_path / "cells"), "--out", str(cells)]) == 0
    assert len(list(csv.DictReader(cells.open()))) == len(images)


def test_int8_export_needs_the_runs_cells(tiny_run, tmp_path):
    checkpoint = tmp_path / "alone" / "model.pt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes((tiny_run / "model.pt").read_bytes())
    with pytest.raises(FileNotFoundError, match="splits are missing"):
        export_onnx(checkpoint, tmp_path / "x.onnx", int8=True)


def test_int8_export_of_a_local_model_uses_its_own_classes(tiny_run, tmp_path):
    from dataclasses import replace

    from marrowdiff.config import load_config
    from marrowdiff.datasets import open_dataset
    from marrowdiff.splits import Splits
    from marrowdiff.train import fit

    pair = ("myeloblast", "segmented_neutrophil")  # folders "4" and "9"
    config = load_config("quick", train__epochs=1, train__classes=pair)
    config = replace(
        config,
        model=replace(config.model, input_size=32),
        geometry=replace(config.geometry, input_size=32),
    )
    splits = Splits.read(tiny_run)
    dataset = open_dataset(splits.to_dict()["dataset"]["source"])
    fit(config, dataset, splits, tmp_path / "local", log=lambda m: None)
    model = load_model(export_onnx(tmp_path / "local", tmp_path / "local.onnx", int8=True))
    q = model.metadata["quantisation"]
    val = splits.of_classes(splits.fold(0)[1], list(pair))
    assert model.classes == list(pair) and 0 < q["cells"] == len(val)
