"""A slide count's progress on disk: each finished tile's cells (cells.csv's rows) and then
the tile's index, appended and flushed tile by tile, so that a count that is stopped (a
power cut, Ctrl-C, a killed job) goes on from the last finished tile when run again. A
journal made for another slide, model or configuration is set aside, never mixed in."""

from __future__ import annotations

import contextlib
import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from marrowdiff.fileio import write_json

FOLDER = ".partial"  # in the report folder; removed once the report is written


@dataclass
class Journal:
    folder: Path
    columns: list[str]
    done: set[int] = field(default_factory=set)

    @property
    def rows_path(self) -> Path:
        return self.folder / "cells.csv"

    def rows(self):
        """The finished tiles' rows (dicts), in the order they were written."""
        if not self.rows_path.exists():
            return
        with open(self.rows_path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if int(row["tile"]) in self.done:  # rows of a tile cut short are dropped
                    yield row

    def add(self, tile: int, rows: list[list]) -> None:
        """A finished tile: its rows first, then its index, each flushed to disk."""
        new = not self.rows_path.exists()
        with open(self.rows_path, "a", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            if new:
                writer.writerow(self.columns)
            writer.writerows(rows)
            fh.flush()
            os.fsync(fh.fileno())
        with open(self.folder / "tiles.txt", "a", encoding="utf-8") as fh:
            fh.write(f"{tile}\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.done.add(tile)


def open_journal(
    out: Path, key: dict, columns: list[str], log=print, resume: bool = True
) -> Journal:
    """The journal of `out` for the count `key` describes (slide, model, configuration): the
    one left by an interrupted run of the same count, or a new one (always, without
    `resume`: a torchrun count starts over)."""
    folder = Path(out) / FOLDER
    stamp = folder / "count.json"
    if folder.exists() and not resume:
        for name in ("cells.csv", "tiles.txt"):
            (folder / name).unlink(missing_ok=True)
    elif folder.exists():
        try:
            same = json.loads(stamp.read_text(encoding="utf-8")) == json.loads(json.dumps(key))
        except (OSError, ValueError):
            same = False
        if same and (folder / "tiles.txt").exists():
            text = (folder / "tiles.txt").read_text(encoding="utf-8")
            done = {int(t) for t in text.split() if t.isdigit()}
            log(f"{out}: going on from an interrupted count ({len(done)} tiles already done)")
            journal = Journal(folder, columns, done)
            _compact(journal)
            return journal
        log(f"{out}: an unfinished count of another slide, model or setting is set aside")
        for name in ("cells.csv", "tiles.txt"):
            (folder / name).unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(stamp, key)
    return Journal(folder, columns)


def close_journal(journal: Journal) -> None:
    """Remove a journal once its report is written."""
    for name in ("cells.csv", "tiles.txt", "count.json"):
        (journal.folder / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty: something else was put there
        journal.folder.rmdir()


def _compact(journal: Journal) -> None:
    """Drop the rows of a tile cut short (written before its index was), atomically: it is
    counted again."""
    if not journal.rows_path.exists():
        return
    part = journal.rows_path.with_suffix(".csv.part")
    with open(part, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=journal.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(journal.rows())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(part, journal.rows_path)
