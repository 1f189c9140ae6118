"""Every stage over the malformed-input corpus (tests/malformed.py): no traceback, no label
changed without a word, every bad file named.

A stage runs in-process through `marrowdiff.cli.main`, so an exception that escaped it would
fail the test with its traceback; what the user reads is checked in stdout and stderr.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from marrowdiff.cli import main
from marrowdiff.synthetic.cells import synthetic_cell
from marrowdiff.synthetic.fields import FieldConfig, make_field

from .conftest import TINY_CLASSES, write_image
from .malformed import DATA_SETS, IMAGE_FILES, model_cases

TINY = """\
[model]
input_size = 32
[geometry]
input_size = 32
"""
LABELS = {"0": "pronormoblast", "4": "myeloblast", "9": "segmented_neutrophil"}


def run(argv: list[str], capsys) -> tuple[int, str]:
    """Exit code, and everything the user read."""
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text
    return code, text


def shown(name: str) -> str:
    """A file name as the command line prints it (a name that is not UTF-8 is escaped)."""
    return name.encode("utf-8", "backslashreplace").decode()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Good cells of three classes, with every file of the corpus in class "4"."""
    root = tmp_path_factory.mktemp("corpus") / "data"
    rng = np.random.default_rng(5)
    for label, radius in TINY_CLASSES.items():
        for k in range(8):
            write_image(root / label / f"good{k}.png", synthetic_cell(rng, 48, radius=radius))
    for case in IMAGE_FILES:
        case.make(root / "4")
    return root


def test_the_corpus_is_large_enough():
    assert len(IMAGE_FILES) + len(DATA_SETS) + len(model_cases(Path("r"), Path("o"))) >= 50
    assert len({c.name for c in IMAGE_FILES}) == len(IMAGE_FILES)


@pytest.mark.slow
def test_audit_split_and_train_name_every_bad_file_and_keep_every_label(corpus, tmp_path, capsys):
    code, said = run(["audit", corpus, "--out", tmp_path / "audit"], capsys)
    assert code == 0
    skipped = {
        Path(s["path"]).name: s["reason"]
        for s in read_json(tmp_path / "audit/audit.json")["skipped"]
    }
    for case in IMAGE_FILES:
        assert (case.name in skipped) == case.bad, (case.name, skipped.get(case.name))
        if case.bad:
            assert shown(f"4/{case.name}") in said or case.name in said, case.name

    code, said = run(
        ["split", corpus, "--audit", tmp_path / "audit", "--out", tmp_path / "s"], capsys
    )
    assert code == 0
    splits = read_json(tmp_path / "s/splits.json")
    labels = splits["labels"]
    readable = {f"4/{c.name}" for c in IMAGE_FILES if not c.bad}
    good = {f"{label}/good{k}.png" for label in TINY_CLASSES for k in range(8)}
    assert set(labels) == good | readable  # no bad file, every readable one
    assert all(labels[p] == LABELS[p.split("/")[0]] for p in labels)  # each by its folder

    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    code, said = run(
        ["train", corpus, "--splits", tmp_path / "s/splits.json", "--out", tmp_path / "run",
         "--config", config, "--epochs", "1"],
        capsys,
    )  # fmt: skip
    assert code == 0, said
    assert (tmp_path / "run" / "model.pt").is_file()


def test_classify_and_count_name_every_unreadable_input(corpus, tiny_run, tmp_path, capsys):
    inputs = sorted((corpus / "4").iterdir())
    code, said = run(["classify", tiny_run, *inputs, "--out", tmp_path / "cells.csv"], capsys)
    assert code == 0
    with open(tmp_path / "cells.csv", newline="", encoding="utf-8", errors="surrogateescape") as fh:
        rows = {Path(r["path"]).name for r in csv.DictReader(fh)}
    for case in IMAGE_FILES:
        assert (case.name in rows) != case.bad, case.name
        if case.bad:
            assert f"skipped {corpus / '4' / case.name}" in said, case.name

    rng = np.random.default_rng(3)
    patches = [synthetic_cell(rng, 144, radius=3 * r) for r in TINY_CLASSES.values()]
    field, _ = make_field(patches * 2, ["x"] * 6, FieldConfig(540, 660, 6, red_cells=40), 0)
    write_image(tmp_path / "fields" / "field.png", field)
    bad = [c for c in IMAGE_FILES if c.bad]
    for case in bad:
        case.make(tmp_path / "fields")
    code, said = run(
        [
            "count",
            tiny_run,
            tmp_path / "fields",
            "--out",
            tmp_path / "report",
            "--cell-diameter",
            90,
        ],
        capsys,
    )
    assert code == 0
    report = read_json(tmp_path / "report" / "report.json")
    assert report["n_cells_found"] > 0
    for case in bad:
        assert f"skipped {tmp_path / 'fields' / case.name}" in said, case.name


@pytest.mark.parametrize("case", DATA_SETS, ids=lambda c: c.name)
def test_a_data_set_that_cannot_be_used_is_refused_by_every_stage(case, tmp_path, capsys):
    data = case.make(tmp_path)
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    stages = [
        ["audit", data, "--out", tmp_path / "a"],
        ["split", data, "--out", tmp_path / "s"],
        ["train", data, "--out", tmp_path / "r", "--config", config, "--epochs", "1"],
    ]
    if not case.labels_only:  # `vocab init` reads any labels (--vocab infer)
        stages.append(["vocab", "init", data, "--out", tmp_path / "v.toml"])
    for argv in stages:
        code, said = run(argv, capsys)
        assert code == 2 and case.says in said, (argv[0], said)
        assert str(data) in said or data.name in said, (argv[0], said)


@pytest.fixture(scope="module")
def models(tiny_run, onnx_file, tmp_path_factory):
    return model_cases(tiny_run, onnx_file)


MODEL_CASES = [c.name for c in model_cases(Path("run"), Path("x.onnx"))]


@pytest.mark.parametrize("name", MODEL_CASES)
def test_a_damaged_or_foreign_model_is_refused_by_every_stage(name, models, tmp_path, capsys):
    case = next(c for c in models if c.name == name)
    model = case.make(tmp_path)
    cell = write_image(tmp_path / "in" / "cell.png", synthetic_cell(np.random.default_rng(0), 48))
    stages = [
        ["classify", model, cell, "--out", tmp_path / "c.csv"],
        ["count", model, cell.parent, "--out", tmp_path / "report"],
        ["evaluate", model],
    ]
    if model.suffix != ".onnx":
        stages.append(["export", model, "--onnx", tmp_path / "m.onnx"])
    for argv in stages:
        code, said = run(argv, capsys)
        assert code == 2, (argv[0], said)
        assert str(model) in said, (argv[0], said)
    assert not (tmp_path / "c.csv").exists() and not (tmp_path / "report").exists()


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())
