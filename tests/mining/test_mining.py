"""Mining a centred-cell data set's fields for objects that are not nucleated cells."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from marrowdiff.counting.detect import Detection
from marrowdiff.data.datasets import open_dataset
from marrowdiff.data.splits import Splits, derive_splits, make_splits
from marrowdiff.mining.debris import KINDS, background_point, draw_debris
from marrowdiff.mining.mine import MiningError, mine, mined_set
from marrowdiff.mining.objects import LABELLED, SKIP, nuclear_share, sort_objects
from marrowdiff.stain import haematoxylin
from marrowdiff.synthetic.cells import synthetic_cell
from marrowdiff.synthetic.fields import smear_background

D = 100.0  # cell diameter, px
AREA = np.pi * (D / 2) ** 2


def det(y, x, area=AREA, border=False):
    return Detection(y=y, x=x, area=area, border=border)


def test_objects_are_sorted_by_place_size_and_nuclear_stain():
    found = [
        det(180, 180),  # the labelled cell, at the centre
        det(40, 300, 0.1 * AREA),  # small: a platelet
        det(300, 60, 0.6 * AREA),  # large, no nuclear stain: a red cell
        det(300, 300, 0.9 * AREA),  # large, nuclear stain: perhaps a second white cell
        det(5, 5, 0.6 * AREA, border=True),  # cut by the border: never counted, never mined
    ]
    shares = [0.9, 0.2, 0.0, 0.6, 0.0]
    assert sort_objects((361, 361), found, shares, D) == [
        LABELLED, "platelet", "red_cell", SKIP, SKIP
    ]  # fmt: skip
    # A platelet image: no object is its labelled cell; the central one is sorted by the rules.
    assert sort_objects((361, 361), found, shares, D, centred=False)[0] == SKIP
    # The labelled cell not found near the centre: the nearest object is sorted, not taken.
    far = [det(180, 300, 0.1 * AREA), det(300, 60, 0.6 * AREA)]
    assert sort_objects((361, 361), far, [0.1, 0.0], D) == ["platelet", "red_cell"]


def test_the_nuclear_share_is_high_on_a_nucleus_and_nil_on_a_red_cell():
    rng = np.random.default_rng(0)
    cell = synthetic_cell(rng, 144, radius=45)
    red = np.full((144, 144, 3), (232, 220, 215), np.uint8)
    yy, xx = np.ogrid[:144, :144]
    red[(yy - 72) ** 2 + (xx - 72) ** 2 < 40**2] = (222, 165, 160)
    assert nuclear_share(cell, D, 0.06) > 0.8
    assert nuclear_share(red, D, 0.06) == 0.0


@pytest.mark.parametrize("kind", KINDS)
def test_drawn_debris_is_dark_stain_at_the_centre_and_seeded(kind):
    background = np.full((144, 144, 3), (232, 220, 215), np.uint8)
    drawn = draw_debris(background, np.random.default_rng(3), kind)
    again = draw_debris(background, np.random.default_rng(3), kind)
    assert np.array_equal(drawn, again)
    centre = haematoxylin(drawn)[52:92, 52:92]
    assert centre.max() > haematoxylin(background).max() + 0.03
    assert (drawn[0, 0] == background[0, 0]).all()  # the corner is untouched
    with pytest.raises(ValueError, match="unknown debris kind"):
        draw_debris(background, np.random.default_rng(0), "dust")


def test_a_background_point_keeps_away_from_every_object():
    rng = np.random.default_rng(0)
    taken = [(100.0, 100.0), (250.0, 250.0)]
    for _ in range(20):
        y, x = background_point((361, 361), taken, 70, rng)
        assert min(np.hypot(y - ty, x - tx) for ty, tx in taken) >= 70
        assert 35 <= y <= 361 - 35 and 35 <= x <= 361 - 35
    assert background_point((100, 100), [(50.0, 50.0)], 90, rng) is None  # no room


def test_derived_splits_put_each_crop_where_its_field_went():
    paths = [f"f{i}.jpg" for i in range(24)]
    parent = Splits(make_splits(paths, ["a", "b"] * 12, paths, ["a", "b"]))
    test_field, train_field = parent.test[0], parent.fold(0)[0][0]
    val_field = parent.fold(0)[1][0]
    sources = {"c1": test_field, "c2": train_field, "c3": val_field, "c4": "unknown.jpg"}
    labels = {"c1": "red_cell", "c2": "platelet", "c3": "red_cell", "c4": "red_cell"}
    derived = Splits(derive_splits(parent, sources, labels))
    assert derived.test == ["c1"]
    assert "c2" in derived.fold(0)[0] and "c3" in derived.fold(0)[1]
    assert "c4" not in derived.labels  # its field is not in the parent's splits
    for k in range(parent.n_folds):
        train, val = derived.fold(k)
        assert "c1" not in train + val  # a test field's object never trains nor validates
        assert ("c2" in train) == (train_field in parent.fold(k)[0])


def _field(rng, platelet: bool) -> np.ndarray:
    """A 360 px field: a nucleated cell at the centre, a small dark platelet far from it."""
    field = smear_background(rng, 360, 360, red_cells=0, radius=45)
    if not platelet:
        cell = synthetic_cell(rng, 144, radius=45).astype(np.float32)
        field[108:252, 108:252] = cell
    yy, xx = np.ogrid[:360, :360]
    field[(yy - 60) ** 2 + (xx - 290) ** 2 < 9**2] = (90, 50, 130)  # a platelet
    return np.clip(field, 0, 255).astype(np.uint8)


@pytest.fixture
def fields(tmp_path):
    """A class-folder data set of 24 whole fields, and its splits."""
    rng = np.random.default_rng(1)
    root = tmp_path / "fields"
    for i in range(24):
        label = ["myeloblast", "lymphocyte", "platelet"][i % 3]
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(_field(rng, label == "platelet")).save(root / label / f"f{i}.png")
    (root / "lymphocyte" / "broken.png").write_bytes(b"not a png")
    dataset = open_dataset(root, "marrow14")
    splits = make_splits(
        [r.path for r in dataset.records],
        [r.label for r in dataset.records],
        [r.path for r in dataset.records],
        sorted({r.label for r in dataset.records}),
    )
    splits["dataset"] = {"fingerprint": dataset.fingerprint}
    return dataset, Splits(splits, "splits.json")


def test_mining_writes_a_data_set_that_trains_with_its_fields_splits(fields, tmp_path):
    dataset, splits = fields
    said = []
    summary = mine(dataset, splits, tmp_path / "mined", log=said.append)
    assert summary["mined"]["platelet"] >= 20  # nearly every field's platelet
    assert "red_cell" not in summary["mined"]  # none in these fields
    assert any("broken.png" in line for line in summary["unreadable"])
    assert any("broken.png" in line for line in said)
    with open(tmp_path / "mined" / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["label"] for r in rows} <= {"platelet", "artefact"}
    assert all((tmp_path / "mined" / r["path"]).is_file() for r in rows)
    mined, mined_splits = mined_set(dataset, splits, tmp_path / "mined")
    assert len(mined) == len(rows) and mined.vocabulary.name == "marrow14"
    field_of = {r["path"]: r["group"] for r in rows}
    assert {field_of[p] for p in mined_splits.test} <= set(splits.test)
    assert mined_splits.fingerprint == mined.fingerprint


def test_a_mining_is_reused_unless_its_fields_or_rules_changed(fields, tmp_path):
    dataset, splits = fields
    mined_set(dataset, splits, tmp_path / "mined")
    stamp = (tmp_path / "mined" / "mined.json").stat().st_mtime_ns
    mined_set(dataset, splits, tmp_path / "mined")
    assert (tmp_path / "mined" / "mined.json").stat().st_mtime_ns == stamp
    summary = json.loads((tmp_path / "mined" / "mined.json").read_text())
    summary["config"]["debris"] = 0.9
    (tmp_path / "mined" / "mined.json").write_text(json.dumps(summary))
    mined_set(dataset, splits, tmp_path / "mined")  # another rule: mined again
    assert json.loads((tmp_path / "mined" / "mined.json").read_text())["config"]["debris"] == 0.25


def test_fields_with_nothing_to_mine_are_an_error_naming_the_data_set(tmp_path):
    root = tmp_path / "empty"
    (root / "myeloblast").mkdir(parents=True)
    for i in range(12):
        blank = np.full((200, 200, 3), 230, np.uint8)
        Image.fromarray(blank).save(root / "myeloblast" / f"b{i}.png")
    dataset = open_dataset(root, "marrow14")
    paths = [r.path for r in dataset.records]
    splits = Splits(make_splits(paths, ["myeloblast"] * 12, paths, ["myeloblast"]))
    with pytest.raises(MiningError, match="no object was mined"):
        mine(dataset, splits, tmp_path / "out")
    assert not (tmp_path / "out" / "manifest.csv").exists()


def test_splits_of_another_data_set_are_refused(fields, tmp_path):
    dataset, splits = fields
    other = Splits(splits.to_dict() | {"dataset": {"fingerprint": "0" * 64}}, "other.json")
    with pytest.raises(MiningError, match="other.json was made for another listing"):
        mine(dataset, other, tmp_path / "mined")


def test_the_mine_command_writes_the_set_and_names_bad_splits(fields, tmp_path, capsys):
    from marrowdiff.cli import main

    dataset, splits = fields
    splits.write(tmp_path)
    argv = ["mine", str(dataset.source), "--vocab", "marrow14", "--out", str(tmp_path / "m")]
    assert main([*argv, "--splits", str(tmp_path / "splits.json")]) == 0
    assert "objects mined from 24 fields" in capsys.readouterr().out
    assert (tmp_path / "m" / "manifest.csv").is_file()
    assert main([*argv, "--splits", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: no splits file" in capsys.readouterr().err
