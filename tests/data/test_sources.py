"""Unlabelled inputs: files, folders and zips, junk passed over, unreadable ones reported."""

import zipfile

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
    inputs = list_inputs([tmp_path / "dir", tmp_path / "cells.zip", single])
    names = [i.name.replace(str(tmp_path), "") for i in inputs]
    assert names == ["/dir/b.png", "/dir/sub/a.png", "/cells.zip!x/broken.png",
                     "/cells.zip!x/c.png", "/one.jpg"]  # fmt: skip
    said = []
    read = [item.name for item, _ in read_inputs(inputs, log=said.append)]
    assert len(read) == 4 and len(said) == 1 and "broken.png" in said[0]
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        list_inputs([tmp_path / "missing"])
