"""One smoke test on the paper's public archive; skipped where ../shared is not present."""

import json

import pytest

from marrowdiff.cli import main
from marrowdiff.datasets import PUBLIC_ARCHIVES, fetch, sha256_file

from .conftest import REAL_ARCHIVE

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
