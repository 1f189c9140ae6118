"""Smoke tests on the public archive and on PBC; each skipped, saying why, where ../shared is
not present."""

import json

import pytest

from marrowdiff.cli import main
from marrowdiff.data.public import PUBLIC_ARCHIVES, fetch, sha256_file

from .conftest import REAL_ARCHIVE, REAL_PBC

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


@pytest.mark.skipif(
    not REAL_ARCHIVE.is_file(),
    reason=f"public archive not found at {REAL_ARCHIVE} "
    "(set MARROWDIFF_WBC_ARCHIVE to its path to run this test)",
)
def test_public_archive_fetch_audit_split(tmp_path):
    archive = fetch("wbc_plosone", tmp_path / "data", from_file=REAL_ARCHIVE, progress=False)
    assert sha256_file(archive) == PUBLIC_ARCHIVES["wbc_plosone"].sha256
    assert main(["split", str(archive), "--out", str(tmp_path / "run")]) == 0
    audit = json.loads((tmp_path / "run" / "audit.json").read_text())
    assert audit["n_images"] == 627 and audit["n_unreadable"] == 0
    assert audit["counts"]["pronormoblast"] == 17 and audit["counts"]["myeloblast"] == 210
    assert audit["skipped_by_reason"] == {"inside .git/": 25, "hidden file": 1}
    conflicts = {
        frozenset(m["path"] for m in g["members"])
        for g in audit["duplicate_groups"]
        if g["conflicting_labels"]
    }
    # the six cross-class re-crops checked by eye (docs/data.md)
    assert conflicts == {
        frozenset(p)
        for p in [
            ("2/32.jpg", "3/22.jpg"),
            ("0/17.jpg", "3/48.jpg"),
            ("5/48.jpg", "6/33.jpg"),
            ("5/32.jpg", "6/18.jpg"),
            ("0/16.jpg", "1/27.jpg"),
            ("5/47.jpg", "6/31.jpg"),
        ]
    }
    assert audit["n_duplicate_groups"] == 11
    splits = json.loads((tmp_path / "run" / "splits.json").read_text())
    assert len(splits["test"]) in range(100, 110)
    assert splits["n_groups"] == 616


@pytest.mark.skipif(
    not REAL_PBC.is_file(),
    reason=f"PBC data set not found at {REAL_PBC} "
    "(set MARROWDIFF_PBC_ARCHIVE to its path to run this test)",
)
def test_pbc_fetch_verifies_every_image_and_reads_the_published_labels(tmp_path):
    from marrowdiff.data.datasets import open_dataset

    target = fetch("pbc", tmp_path / "data", from_file=REAL_PBC, progress=False)
    dataset = open_dataset(target, "pbc")
    counts = {k: v for k, v in dataset.counts.items() if v}
    assert counts == {  # the table of ../shared/data/pbc/README.md
        "promyelocyte": 592,
        "myelocyte": 1137,
        "metamyelocyte": 1015,
        "band_neutrophil": 1633,
        "segmented_neutrophil": 1646,
        "eosinophil": 400,
        "basophil": 400,
        "lymphocyte": 400,
        "monocyte": 400,
        "platelet": 600,
        "erythroblast": 1551,
        "immature_granulocyte": 151,
        "neutrophil": 50,
    }
    assert dataset.load(dataset.records[0]).shape[:2] == (152, 151)  # the centred crop
