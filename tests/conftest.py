"""Shared fixtures: tiny synthetic data sets written on the fly (no image is committed)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from marrowdiff.synthetic.cells import recrop, synthetic_cell
from marrowdiff.synthetic.fields import FieldConfig

REPO = Path(__file__).resolve().parents[1]
REAL_ARCHIVE = Path(
    os.environ.get(
        "MARROWDIFF_WBC_ARCHIVE", REPO.parent / "shared/data/wbc_plosone/data_WBC_torch.zip"
    )
)
REAL_PBC = Path(
    os.environ.get(
        "MARROWDIFF_PBC_ARCHIVE",
        REPO.parent / "shared/data/pbc/PBC_dataset_normal_DIB-subset.zip",
    )
)


def encode(image: np.ndarray, fmt: str = "PNG", **params) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, **params)
    return buf.getvalue()


def write_image(path: Path, image: np.ndarray, fmt: str | None = None, **params) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = fmt or {".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF"}.get(
        path.suffix.lower(), "PNG"
    )
    path.write_bytes(encode(image, fmt, **params))
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def cells(rng):
    """A factory of distinct 48 px synthetic cells."""
    return lambda n, size=48: [synthetic_cell(rng, size) for _ in range(n)]


@pytest.fixture
def class_tree(tmp_path, rng):
    """A folder data set: classes "0".."2" (choi2017 aliases) with 8 distinct cells each."""
    root = tmp_path / "data"
    for label in "012":
        for k in range(8):
            write_image(root / label / f"{k}.png", synthetic_cell(rng, 48))
    return root


@pytest.fixture
def with_duplicates(tmp_path, rng):
    """A folder data set with one cell re-cropped into a second class (a label conflict) and
    one re-encoded within its class; 6 distinct cells per class otherwise."""
    root = tmp_path / "dups"
    base = synthetic_cell(rng, 72)
    write_image(root / "0" / "cell.png", recrop(base, 0, 0, 64))
    write_image(root / "1" / "same-cell.png", recrop(base, 5, -4, 64))
    other = synthetic_cell(rng, 64)
    write_image(root / "2" / "a.png", other)
    write_image(root / "2" / "a-again.jpg", other, quality=70)
    for label in "012":
        for k in range(6):
            write_image(root / label / f"distinct{k}.png", synthetic_cell(rng, 64))
    return root


SMALL_FIELD = FieldConfig(height=540, width=660, cells=6, red_cells=40)


@pytest.fixture(scope="session")
def patches():
    """20 cell patches of 144 px at the detector's default scale, for synthetic fields."""
    rng = np.random.default_rng(0)
    return [
        synthetic_cell(rng, 144, radius=rng.uniform(38, 50), hue=rng.uniform(-1, 1))
        for _ in range(20)
    ]


# Three classes of two lineages that differ in cell size: erythroid pronormoblast ("0"),
# myeloid myeloblast ("4") and segmented neutrophil ("9"); radius in px of a 48 px patch.
TINY_CLASSES = {"0": 8, "4": 12, "9": 16}


def tiny_config(epochs: int, **overrides):
    """The quick preset at 32 px: a model that trains in seconds."""
    from dataclasses import replace

    from marrowdiff.config import load_config

    config = load_config("quick", train__epochs=epochs, **overrides)
    return replace(
        config,
        model=replace(config.model, input_size=32),
        geometry=replace(config.geometry, input_size=32),
    )


def tiny_fields(folder: Path, n: int) -> Path:
    """`n` 540 x 660 fields of the tiny run's cells at 3x its patch scale, in `folder`."""
    from marrowdiff.synthetic.fields import FieldConfig, make_field

    rng = np.random.default_rng(5)
    cells = [
        synthetic_cell(rng, 144, radius=3 * r) for r in TINY_CLASSES.values() for _ in range(6)
    ]
    for k in range(n):
        field, _ = make_field(cells, ["x"] * len(cells), FieldConfig(540, 660, 7, 40), seed=k)
        write_image(folder / f"field{k}.png", field)
    return folder


def trained_run(root: Path, classes: dict[str, int], per_class: int, epochs: int, seed: int):
    """A trained, calibrated run folder (ROOT/run) of synthetic cells of `classes` (label:
    nucleus radius), `per_class` each."""
    from marrowdiff.data.datasets import open_dataset
    from marrowdiff.data.splits import splits_for_run
    from marrowdiff.training.train import fit

    rng = np.random.default_rng(seed)
    for label, radius in classes.items():
        for k in range(per_class):
            write_image(root / "data" / label / f"{k}.png", synthetic_cell(rng, 48, radius=radius))
    dataset = open_dataset(root / "data")
    splits = splits_for_run(dataset, root / "run", log=lambda m: None)
    fit(tiny_config(epochs), dataset, splits, root / "run", log=lambda m: None)
    return root / "run"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A trained, calibrated run folder of a tiny model (seconds to train, shared by tests)."""
    return trained_run(tmp_path_factory.mktemp("tiny"), TINY_CLASSES, 26, 4, seed=11)


@pytest.fixture(scope="session")
def tiny_local_run(tiny_run):
    """A local model of two of the tiny run's classes, on the same splits (a dual-stage set)."""
    from marrowdiff.data.splits import Splits
    from marrowdiff.run import load_checkpoint
    from marrowdiff.training.train import fit

    dataset = load_checkpoint(tiny_run).dataset()
    config = tiny_config(2, train__classes=("myeloblast", "segmented_neutrophil"))  # "4", "9"
    fit(config, dataset, Splits.read(tiny_run), tiny_run.parent / "local", log=lambda m: None)
    return tiny_run.parent / "local"


@pytest.fixture(scope="session")
def onnx_file(tiny_run, tmp_path_factory):
    """The tiny run exported to ONNX."""
    from marrowdiff.inference.export import export_onnx

    return export_onnx(tiny_run, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture
def easy_data(tmp_path):
    """Three classes that differ in cell size, 18 cells each: learnable in a few epochs."""
    rng = np.random.default_rng(7)
    root = tmp_path / "easy"
    for label, radius in (("7", 7), ("8", 11), ("9", 15)):
        for k in range(18):
            write_image(root / label / f"{k}.png", synthetic_cell(rng, 40, radius=radius))
    return root


@pytest.fixture
def pbc_like(tmp_path):
    """A second data set in PBC's layout: the label is the file-name prefix, some coarse."""
    rng = np.random.default_rng(8)
    root = tmp_path / "pbc"
    for folder, prefix, radius in (("ig", "MMY", 7), ("ig", "IG", 9), ("neutrophil", "BNE", 11)):
        for k in range(12):
            write_image(root / folder / f"{prefix}_{k}.png", synthetic_cell(rng, 40, radius=radius))
    vocab = tmp_path / "pbc-like.toml"
    vocab.write_text('base = "marrow14"\nlabel_from = "filename-prefix"\n')
    return root, vocab


# Three neighbouring myeloid stages (myeloblast, promyelocyte, myelocyte): a model whose
# classes a cell can lie between (blind review and adjudication).
STAGE_CLASSES = {"4": 8, "5": 12, "6": 16}


@pytest.fixture(scope="session")
def stage_run(tmp_path_factory):
    """A tiny trained run of three neighbouring stages (seconds to train, shared by tests)."""
    return trained_run(tmp_path_factory.mktemp("stages"), STAGE_CLASSES, 20, 2, seed=12)
