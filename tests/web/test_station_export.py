"""What the review station exports for the next model: verified classes, and objects marked
not a cell as an outcome that is not counted."""

import numpy as np
import pytest

from marrowdiff.classes import load_vocabulary
from marrowdiff.data.datasets import open_dataset
from marrowdiff.data.splits import splits_for_run
from marrowdiff.synthetic.cells import synthetic_cell
from marrowdiff.training.train import fit
from marrowdiff.web.station import exported_label

from ..conftest import tiny_config, write_image
from .test_webapp import ANA, local, new_case, station, synthetic_field, upload

MARROW, ARCHIVE = load_vocabulary("marrow14"), load_vocabulary("choi2017")


@pytest.mark.parametrize(
    "status, label, model, vocabulary, exported",
    [
        ("confirmed", "myeloblast", "myeloblast", MARROW, "myeloblast"),
        ("corrected", "myelocyte", "red_cell", MARROW, "myelocyte"),  # restored as a cell
        ("confirmed", "red_cell", "red_cell", MARROW, "red_cell"),  # rightly set aside
        ("not_a_cell", "red_cell", "red_cell", MARROW, "red_cell"),  # the model's reason
        ("not_a_cell", "myeloblast", "myeloblast", MARROW, "artefact"),  # "not a cell"
        ("not_a_cell", "myeloblast", "myeloblast", ARCHIVE, None),  # no outcome for it
        ("unidentified", "myeloblast", "myeloblast", MARROW, None),
        ("pending", "myeloblast", "myeloblast", MARROW, None),
    ],
)
def test_each_review_is_exported_as_the_label_that_trains(status, label, model, vocabulary,
                                                          exported):  # fmt: skip
    row = {"status": status, "label": label, "model_class": model}
    assert exported_label(row, vocabulary) == exported


@pytest.fixture(scope="module")
def marrow_run(tmp_path_factory):
    """A tiny marrow14 model with two cell classes and the red-cell outcome."""
    rng = np.random.default_rng(5)
    root = tmp_path_factory.mktemp("marrow")
    for k in range(12):
        write_image(root / "d" / "myeloblast" / f"{k}.png", synthetic_cell(rng, 48, radius=16))
        write_image(root / "d" / "lymphocyte" / f"{k}.png", synthetic_cell(rng, 48, radius=8))
        red = np.full((48, 48, 3), (232, 220, 215), np.uint8)
        red[np.hypot(*np.ogrid[-24:24, -24:24]) < rng.uniform(9, 14)] = (222, 165, 160)
        write_image(root / "d" / "red_cell" / f"{k}.png", red)
    dataset = open_dataset(root / "d", "marrow14")
    splits = splits_for_run(dataset, root / "run", log=lambda m: None)
    fit(tiny_config(1), dataset, splits, root / "run", log=lambda m: None)
    return root / "run"


def test_a_reviewer_restores_an_object_set_aside_and_marks_one_not_a_cell(marrow_run, tmp_path):
    client = local(station(marrow_run, tmp_path / "review"))
    info = client.get("/api/info", headers=ANA).json()
    assert {c["code"]: c["counted"] for c in info["classes"]} == {
        "myeloblast": True, "lymphocyte": True, "red_cell": False
    }  # fmt: skip
    case = new_case(client)
    assert upload(client, case, ("field.png", synthetic_field())).status_code == 200
    cells = client.get(f"/api/cases/{case}").json()["cells"]
    assert len(cells) >= 3
    first, second, rest = cells[0], cells[1], cells[2:]

    def review(cell, **body):
        response = client.post(f"/api/cells/{cell['id']}", headers=ANA, json=body)
        assert response.status_code == 200, response.text

    review(first, status="corrected", label="red_cell")  # set aside by the reviewer
    differential = client.get(f"/api/cases/{case}").json()["differential"]
    assert differential["not_counted"].get("red_cell", 0) >= 1
    review(first, status="corrected", label="myeloblast")  # ... and restored as a cell
    review(second, status="not_a_cell")
    for cell in rest:
        review(cell, status="confirmed")
    assert client.post(f"/api/cases/{case}/sign", headers=ANA).status_code == 200
    report = client.get(f"/api/cases/{case}/report/report.json").json()
    counted = len(cells) - 1 - sum(c["label"] == "red_cell" for c in rest)
    assert report["n_counted"] == counted
    export = tmp_path / "review" / "cases" / str(case) / "export" / "manifest.csv"
    export = open_dataset(export, "marrow14")
    labels = {r.path: r.label for r in export.records}
    assert labels[f"crops/cell{first['id']}.png"] == "myeloblast"
    assert labels[f"crops/cell{second['id']}.png"] in ("artefact", "red_cell")
    assert len(labels) == len(cells)  # the object marked not a cell trains the next model


@pytest.mark.slow
def test_train_takes_exports_with_cells_between_two_stages(tmp_path):
    """Several cases' exports as one manifest, as the station writes them: `A|B` labels train
    as the set of both stages, and each case stays whole in the splits."""
    rng = np.random.default_rng(8)
    lines = ["path,label,group,model_class,status,reviewers"]
    labels = ["myeloblast", "promyelocyte", "myelocyte", "promyelocyte|myelocyte"]
    for case in range(8):
        for k, label in enumerate(labels * 2):
            radius = {"myeloblast": 8, "promyelocyte": 12}.get(label, 16)
            name = f"crops/case{case}-{k}.png"
            write_image(tmp_path / "export" / name, synthetic_cell(rng, 48, radius=radius))
            lines.append(f'{name},{label},case:{case},myeloblast,corrected,"{{}}"')
    (tmp_path / "export" / "manifest.csv").write_text("\n".join(lines) + "\n")
    dataset = open_dataset(tmp_path / "export" / "manifest.csv", "choi2017")
    splits = splits_for_run(dataset, tmp_path / "run", log=lambda m: None)
    test_groups = {dataset.record(p).group for p in splits.test}
    train_groups = {dataset.record(p).group for p in splits.fold(0)[0]}
    assert test_groups and not test_groups & train_groups  # a case is never split
    final = fit(tiny_config(1), dataset, splits, tmp_path / "run", log=lambda m: None)
    assert final["classes"] == ["myeloblast", "promyelocyte", "myelocyte"]
