"""Unlabelled inputs: files, folders and zips, junk passed over, unreadable ones reported."""

import zipfile
from pathlib import Path

import numpy as np
import pytest

from marrowdiff.data.sources import list_inputs, read_inputs
from marrowdiff.synthetic.cells import synthetic_cell

from ..conftest import encode, write_image


def test_files_folders_and_zips_in_a_stable_order(tmp_path):
    rng = np.random.default_rng(0)
    write_image(tmp_path / "dir" / "b.png", synthetic_cell(rng, 32))
    write_image(tmp_path / "dir" / "sub" / "a.png", synthetic_cell(rng, 32))
    (tmp_path / "dir" / ".hidden.png").write_bytes(b"x")
    (tmp_path / "dir" / "notes.txt").write_text("not an image")
    with zipfile.ZipFile(tmp_path / "cells.zip", "w") as archive:
        archive.writestr("x/c.png", encode(synthetic_cell(rng, 32)))
        archive.writestr("__MACOSX/x/._c.png", b"junk")
        archive.writestr("x/broken.png", b"\x89PNG nope")
    single = write_image(tmp_path / "one.jpg", synthetic_cell(rng, 32))
    inputs, passed = list_inputs([tmp_path / "dir", tmp_path / "cells.zip", single])
    names = [i.name.replace(str(tmp_path), "") for i in inputs]
    assert names == [
        "/dir/b.png",
        "/dir/sub/a.png",
        "/cells.zip!x/broken.png",
        "/cells.zip!x/c.png",
        "/one.jpg",
    ]
    assert {s.path.replace(str(tmp_path), ""): s.reason for s in passed} == {
        "/dir/.hidden.png": "hidden file",
        "/dir/notes.txt": "not an image file (by suffix)",
        "/cells.zip!__MACOSX/x/._c.png": "inside __MACOSX/ (not data)",
    }
    said = []
    read = [item.name for item, _ in read_inputs(inputs, log=said.append)]
    assert len(read) == 4 and len(said) == 1 and "broken.png" in said[0]
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        list_inputs([tmp_path / "missing"])


@pytest.mark.filterwarnings("ignore:Duplicate name")  # the zip is made so on purpose
def test_a_zip_that_would_hide_or_escape_is_named_entry_by_entry(tmp_path, capsys):
    from marrowdiff.cli import main
    from marrowdiff.data.datasets import DatasetError

    rng = np.random.default_rng(1)
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as archive:
        for k in range(3):
            archive.writestr(f"0/c{k}.png", encode(synthetic_cell(rng, 32)))
        for name in ("../evil.png", "0/../../evil2.png", "0/..\\..\\evil4.png", "/abs.png"):
            archive.writestr(name, encode(synthetic_cell(rng, 32)))
    inputs, passed = list_inputs([tmp_path / "evil.zip"])
    assert [i.member for i in inputs] == ["0/c0.png", "0/c1.png", "0/c2.png"]
    assert len(passed) == 4 and all("leads out of the archive" in s.reason for s in passed)
    assert main(["classify", "unused", str(tmp_path / "evil.zip"), "--out", "x"]) == 2  # no model
    # a name twice: one of the two could never be read, so the zip is refused whole
    with zipfile.ZipFile(tmp_path / "twice.zip", "w") as archive:
        archive.writestr("0/c.png", encode(synthetic_cell(rng, 32)))
        archive.writestr("0/c.png", encode(synthetic_cell(rng, 32)))
    with pytest.raises(DatasetError, match="appear more than once"):
        list_inputs([tmp_path / "twice.zip"])


def test_a_link_out_of_the_folder_is_not_followed(tmp_path):
    rng = np.random.default_rng(2)
    write_image(tmp_path / "secret" / "s.png", synthetic_cell(rng, 32))
    write_image(tmp_path / "in" / "a.png", synthetic_cell(rng, 32))
    (tmp_path / "in" / "out.png").symlink_to(tmp_path / "secret" / "s.png")
    (tmp_path / "in" / "inside.png").symlink_to(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "folder").symlink_to(tmp_path / "secret")
    inputs, passed = list_inputs([tmp_path / "in"])
    assert sorted(i.path.name for i in inputs) == ["a.png", "inside.png"]
    assert {s.path.split("/")[-1]: s.reason for s in passed} == {
        "folder": "a link to a folder: not followed",
        "out.png": "a link to a file outside the folder: not read",
    }


SLIDES = Path(__file__).resolve().parents[3] / "shared" / "data" / "slides"


@pytest.mark.realdata
@pytest.mark.skipif(not SLIDES.is_dir(), reason=f"no slide files at {SLIDES}")
def test_a_whole_slide_file_is_named_as_one_never_counted_as_a_field(tmp_path):
    files = [SLIDES / n for n in ("cmu-1-small-region.svs", "boxes.tiff", "boxes_0.dcm")]
    inputs, _ = list_inputs(files)
    said = []
    assert list(read_inputs(inputs, log=said.append)) == []
    assert [line.split(": ", 1)[1].split(")")[0] for line in said] == [
        "a whole-slide file (aperio",
        "a whole-slide file (generic-tiff",
        "a whole-slide file (dicom",
    ]
