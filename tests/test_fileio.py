"""Atomic output: a reader sees the old file or the new one, and a failed write leaves nothing."""

import json
import os

import pytest

from marrowdiff.fileio import atomic_open, write_json, write_text


def test_a_write_replaces_the_file_whole(tmp_path):
    path = write_json(tmp_path / "deep" / "x.json", {"a": 1, "é": "ü"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": 1, "é": "ü"}
    write_text(path, "second")
    assert path.read_text() == "second"
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]  # no temporary left


def test_a_failed_write_keeps_the_old_file_and_leaves_no_part_file(tmp_path):
    path = write_text(tmp_path / "x.txt", "old")
    with pytest.raises(RuntimeError), atomic_open(path, "w") as fh:
        fh.write("half of the new")
        raise RuntimeError("disk full")
    assert path.read_text() == "old"
    with pytest.raises(TypeError):
        write_json(path, {"not json": object()})
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]


def test_json_has_no_nan_and_keeps_non_utf8_names(tmp_path):
    path = write_json(tmp_path / "x.json", {"a": float("nan"), "b": [1.5, float("inf")]})
    assert json.loads(path.read_text()) == {"a": None, "b": [1.5, None]}
    name = b"\xffcell.png".decode("utf-8", "surrogateescape")  # a Latin-1 file name on Linux
    path = write_json(tmp_path / "y.json", {"path": name, "é": 1})
    assert json.loads(path.read_text(encoding="utf-8")) == {"path": name, "é": 1}


def test_a_temporary_file_left_by_a_crash_is_removed_by_the_next_write(tmp_path):
    import os
    import time

    left = tmp_path / ".x.txt.abc123.part"
    left.write_text("half")
    old = time.time() - 2 * 3600
    os.utime(left, (old, old))
    recent = tmp_path / ".x.txt.def456.part"  # another writer, still at work
    recent.write_text("half")
    write_text(tmp_path / "x.txt", "whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".x.txt.def456.part", "x.txt"]


def test_a_killed_writers_temporaries_go_at_once_and_a_live_ones_stay(tmp_path):
    import subprocess
    import sys

    from marrowdiff.fileio import HOST, remove_stale_parts

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = int(gone.stdout)  # a process that has ended: its writes were cut off
    killed = [tmp_path / f".{n}.h{HOST}p{dead}.k2j9.part" for n in ("last.pt", "model.pt")]
    live = tmp_path / f".last.pt.h{HOST}p{os.getpid()}.x7q1.part"  # this process: writing
    elsewhere = tmp_path / f".last.pt.hotherhostp{dead}.a1b2.part"  # another host's: by age
    for part in (*killed, live, elsewhere):
        part.write_bytes(b"half")
    write_text(tmp_path / "last.pt", "whole")  # a write sweeps its own file's temporaries
    assert not killed[0].exists() and killed[1].exists() and live.exists() and elsewhere.exists()
    assert remove_stale_parts(tmp_path) == 1  # a sweep of the folder: model.pt's too
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["last.pt", live.name, elsewhere.name]
    )


def test_json_is_written_as_it_is_encoded_and_reads_as_json_dumps_wrote_it(tmp_path):
    # more than one 4,096-chunk batch, a tuple, nesting, floats, non-ASCII, None
    data = {
        "labels": {f"{k % 10}/cell{k:05d}.jpg": "é" for k in range(3000)},
        "folds": [{"train": [f"p{k}" for k in range(2000)], "val": ("a", "b")}],
        "t": 0.1,
        "n": None,
        "nan": float("nan"),
    }
    path = write_json(tmp_path / "x.json", data)
    expected = json.dumps({**data, "nan": None}, indent=2, ensure_ascii=False) + "\n"
    assert path.read_bytes() == expected.encode("utf-8")
    assert data["nan"] != data["nan"]  # the caller's data is not changed
