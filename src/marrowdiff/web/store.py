"""The review station's records: cases, images, cells and an append-only log, in SQLite.

Every change is one transaction that also appends to `log` (who, what, when, before, after);
triggers make `log` append-only and a signed case's cells unchangeable, so not even a bug in the
web layer can rewrite history. The database lives in the server's data folder with the images;
a restart or a browser reload loses nothing that was acknowledged.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from marrowdiff.errors import UserError
from marrowdiff.web.tables import has_check, rebuild_table

SCHEMA = """
CREATE TABLE IF NOT EXISTS cases (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    signed_at TEXT,
    signed_by TEXT,
    patient TEXT NOT NULL DEFAULT '',  -- optional, for the report
    stain TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    case_id INTEGER NOT NULL REFERENCES cases(id),
    kind TEXT NOT NULL CHECK (kind IN ('field', 'patch', 'slide')),  -- a slide: stored_name is
                                                                   -- its path in --slides
    original_name TEXT NOT NULL,
    stored_name TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    warning TEXT NOT NULL DEFAULT ''   -- what detection noticed (detect.size_warning)
);
CREATE TABLE IF NOT EXISTS cells (
    id INTEGER PRIMARY KEY,
    case_id INTEGER NOT NULL REFERENCES cases(id),
    image_id INTEGER NOT NULL REFERENCES images(id),
    x REAL NOT NULL,
    y REAL NOT NULL,
    model_class TEXT NOT NULL,
    probability REAL NOT NULL,
    model_flag TEXT NOT NULL,          -- '', 'unsure' or 'border'
    proba TEXT NOT NULL,               -- JSON list, in the model's class order
    label TEXT NOT NULL,               -- the current class (the model's until reviewed)
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'confirmed', 'corrected', 'not_a_cell', 'unidentified')),
    reviewed_by TEXT,
    reviewed_at TEXT,
    origin TEXT NOT NULL DEFAULT 'detector'  -- 'detector', or 'reviewer' (a missed cell added)
        CHECK (origin IN ('detector', 'reviewer'))
);
CREATE TABLE IF NOT EXISTS verdicts (  -- a blind double review's verdicts, one per reviewer
    id INTEGER PRIMARY KEY,
    case_id INTEGER NOT NULL REFERENCES cases(id),
    cell_id INTEGER NOT NULL REFERENCES cells(id),
    user TEXT NOT NULL,
    verdict TEXT NOT NULL,             -- a class code, 'not_a_cell' or 'unidentified'
    at TEXT NOT NULL,
    UNIQUE (cell_id, user)
);
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    user TEXT NOT NULL,
    case_id INTEGER NOT NULL,
    cell_id INTEGER,
    action TEXT NOT NULL,
    detail TEXT NOT NULL               -- JSON: before/after or what was done
);
CREATE TRIGGER IF NOT EXISTS log_no_update BEFORE UPDATE ON log
BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS log_no_delete BEFORE DELETE ON log
BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS signed_cells_frozen BEFORE UPDATE ON cells
WHEN (SELECT signed_at FROM cases WHERE id = OLD.case_id) IS NOT NULL
BEGIN SELECT RAISE(ABORT, 'the case is signed'); END;
CREATE INDEX IF NOT EXISTS cells_by_case ON cells(case_id);
CREATE INDEX IF NOT EXISTS verdicts_by_case ON verdicts(case_id);
"""
# Made after `_migrate`, as they name columns an older data folder gains there.
TRIGGERS = """
CREATE TRIGGER IF NOT EXISTS verdicts_sealed_insert BEFORE INSERT ON verdicts
WHEN (SELECT unblinded_at FROM cases WHERE id = NEW.case_id) IS NOT NULL
BEGIN SELECT RAISE(ABORT, 'the blind review is over: its verdicts are sealed'); END;
CREATE TRIGGER IF NOT EXISTS verdicts_sealed_update BEFORE UPDATE ON verdicts
WHEN (SELECT unblinded_at FROM cases WHERE id = OLD.case_id) IS NOT NULL
BEGIN SELECT RAISE(ABORT, 'the blind review is over: its verdicts are sealed'); END;
CREATE TRIGGER IF NOT EXISTS verdicts_no_delete BEFORE DELETE ON verdicts
BEGIN SELECT RAISE(ABORT, 'a verdict is never deleted'); END;
"""
# What a reviewer can say of a cell besides a class (a verdict, `Store.review`).
OUTCOMES = ("not_a_cell", "unidentified")
MAX_REVIEWERS = 5

STATUSES = ("pending", "confirmed", "corrected", "not_a_cell", "unidentified")


class StoreError(UserError, ValueError):
    """A request the records cannot take (unknown case, signed case...); says why."""


class SignedError(StoreError):
    """The case is signed: nothing in it may change."""


class NotFoundError(StoreError):
    """No such case, image or cell."""


class ForbiddenError(StoreError):
    """Not this person's to do (adjudicating a cell they reviewed themselves)."""


# Columns added since the first version: (table, column, definition), for `_migrate`.
ADDED_COLUMNS = (
    (
        "cells",
        "origin",
        "TEXT NOT NULL DEFAULT 'detector' CHECK (origin IN ('detector', 'reviewer'))",
    ),
    ("images", "warning", "TEXT NOT NULL DEFAULT ''"),
    ("cases", "patient", "TEXT NOT NULL DEFAULT ''"),
    ("cases", "stain", "TEXT NOT NULL DEFAULT ''"),
    ("cells", "distance", "REAL"),  # from the model's training cells (domain.py); NULL: unknown
    # blind double review: verdicts each cell needs (1: one review, as before), the model's
    # class hidden from the reviewers, and when the verdicts were opened
    ("cases", "reviewers", "INTEGER NOT NULL DEFAULT 1"),
    ("cases", "hide_model", "INTEGER NOT NULL DEFAULT 0"),
    ("cases", "unblinded_at", "TEXT"),
)


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a data folder made by an earlier version up to this schema."""
    for table, column, definition in ADDED_COLUMNS:
        if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
    if not has_check(db, "images", "slide"):  # made before slides: kind was field or patch
        rebuild_table(db, SCHEMA, "images")


def verdict_of(status: str, label: str) -> str:
    """A review as a verdict: the class, or the outcome "not_a_cell" / "unidentified"."""
    return status if status in OUTCOMES else label


def applied(verdict: str, cell) -> tuple[str, str]:
    """The label and status a cell takes from a verdict all its reviewers gave."""
    if verdict in OUTCOMES:
        return cell["label"], verdict
    return verdict, _status("corrected", verdict, cell["model_class"])


def _status(status: str, label: str, model_class: str) -> str:
    """A class given to a cell is "confirmed" when it is the model's, else "corrected"."""
    if status in ("confirmed", "corrected"):
        return "confirmed" if label == model_class else "corrected"
    return status


def detection_rates(tally: dict) -> dict:
    """Precision (found cells that are cells) and recall (cells that were found) of the
    detector from a `detection_tally`; None where nothing is known yet."""
    kept = tally["found"] - tally["not_a_cell"] - tally["pending"]
    reviewed = tally["found"] - tally["pending"]
    return tally | {
        "precision": round(kept / reviewed, 4) if reviewed else None,
        "recall": round(kept / (kept + tally["added"]), 4) if kept + tally["added"] else None,
    }


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class NewCell:
    x: float
    y: float
    model_class: str
    probability: float
    model_flag: str
    proba: list[float]
    origin: str = "detector"
    distance: float | None = None  # from the model's training cells; None: not known


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # an acknowledged correction survives a crash
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(SCHEMA)
        _migrate(self.db)
        self.db.executescript(TRIGGERS)
        self.lock = threading.RLock()  # one connection, shared by the server's threads

    @contextmanager
    def transaction(self):
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def _rows(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self.lock:
            return self.db.execute(sql, params).fetchall()

    def _log(self, db, user: str, case_id: int, action: str, detail: dict, cell_id=None) -> None:
        db.execute(
            "INSERT INTO log (at, user, case_id, cell_id, action, detail) VALUES (?,?,?,?,?,?)",
            (now(), user, case_id, cell_id, action, json.dumps(detail)),
        )

    # cases ------------------------------------------------------------------------------------

    def create_case(
        self,
        name: str,
        user: str,
        patient: str = "",
        stain: str = "",
        reviewers: int = 1,
        hide_model: bool = False,
    ) -> dict:
        """A new case. `reviewers` >= 2: a blind double review (each cell classified by that
        many people, none seeing another's verdict until all are in; `hide_model`: nor the
        model's class)."""
        if not 1 <= reviewers <= MAX_REVIEWERS:
            raise StoreError(f"a case has 1 to {MAX_REVIEWERS} reviewers per cell, not {reviewers}")
        if hide_model and reviewers < 2:
            raise StoreError(
                "hiding the model's class is part of a blind review: ask for 2 or more reviewers"
            )
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM cases WHERE name = ?", (name,)).fetchone():
                raise StoreError(f"a case named {name!r} exists already")
            cur = db.execute(
                "INSERT INTO cases (name, created_at, created_by, patient, stain, reviewers,"
                " hide_model) VALUES (?,?,?,?,?,?,?)",
                (name, now(), user, patient, stain, reviewers, int(hide_model)),
            )
            detail = {"name": name} | ({"patient": patient} if patient else {})
            blind = {"reviewers": reviewers, "hide_model": hide_model} if reviewers > 1 else {}
            self._log(db, user, cur.lastrowid, "create case", detail | {"stain": stain} | blind)
        return self.case(cur.lastrowid)

    def case(self, case_id: int) -> dict:
        rows = self._rows("SELECT * FROM cases WHERE id = ?", (case_id,))
        if not rows:
            raise NotFoundError(f"no case {case_id}")
        return dict(rows[0])

    def cases(self) -> list[dict]:
        rows = self._rows(
            "SELECT c.*, (SELECT COUNT(*) FROM cells WHERE case_id = c.id) AS n_cells, "
            "(SELECT COUNT(*) FROM cells WHERE case_id = c.id AND status = 'pending') "
            "AS n_pending FROM cases c ORDER BY c.id DESC"
        )
        return [dict(r) for r in rows]

    def _open_case(self, db, case_id: int) -> sqlite3.Row:
        row = db.execute("SELECT * FROM cases WHERE id = ?", (case_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no case {case_id}")
        if row["signed_at"] is not None:
            raise SignedError(f"case {case_id} is signed and cannot be changed")
        return row

    def _takes_cells(self, db, case_id: int) -> None:
        """New images and cells come before a blind review's verdicts are opened, never after
        (a cell added then would have no verdicts to compare)."""
        if self._open_case(db, case_id)["unblinded_at"] is not None:
            raise StoreError(
                f"case {case_id}'s blind review is over: it takes no more images or cells; "
                "start a new case for them"
            )

    # images and cells -------------------------------------------------------------------------

    def add_image(
        self,
        case_id: int,
        user: str,
        kind: str,
        original_name: str,
        stored_name: str,
        size: tuple[int, int],
        cells: list[NewCell],
        warning: str = "",
    ) -> tuple[int, list[int]]:
        with self.transaction() as db:
            self._takes_cells(db, case_id)
            image_id = db.execute(
                "INSERT INTO images (case_id, kind, original_name, stored_name, width, height,"
                " created_at, warning) VALUES (?,?,?,?,?,?,?,?)",
                (case_id, kind, original_name, stored_name, size[0], size[1], now(), warning),
            ).lastrowid
            ids = [self._insert_cell(db, case_id, image_id, c) for c in cells]
            self._log(
                db,
                user,
                case_id,
                "upload",
                {"image": image_id, "name": original_name, "kind": kind, "cells": len(ids)},
            )
        return image_id, ids

    @staticmethod
    def _insert_cell(db, case_id: int, image_id: int, c: NewCell) -> int:
        return db.execute(
            "INSERT INTO cells (case_id, image_id, x, y, model_class, probability,"
            " model_flag, proba, label, origin, distance) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                case_id,
                image_id,
                c.x,
                c.y,
                c.model_class,
                c.probability,
                c.model_flag,
                json.dumps(c.proba),
                c.model_class,
                c.origin,
                c.distance,
            ),
        ).lastrowid

    def add_cell(
        self, case_id: int, image_id: int, user: str, cell: NewCell, min_gap: float = 0.0
    ) -> dict:
        """A cell the detector missed, placed by a person on one of the case's fields; it
        comes in unreviewed, with the model's class, like any other. Refused closer than
        `min_gap` px to a cell already on the field (checked in the same transaction, so two
        reviewers clicking on one cell add it once)."""
        with self.transaction() as db:
            self._takes_cells(db, case_id)
            image = db.execute(
                "SELECT kind FROM images WHERE id = ? AND case_id = ?", (image_id, case_id)
            ).fetchone()
            if image is None:
                raise NotFoundError(f"case {case_id} has no image {image_id}")
            if image["kind"] != "field":
                raise StoreError(f"image {image_id} is a single-cell patch, not a field")
            for other in db.execute("SELECT id, x, y FROM cells WHERE image_id = ?", (image_id,)):
                if math.hypot(other["x"] - cell.x, other["y"] - cell.y) < min_gap:
                    raise StoreError(
                        f"cell {other['id']} is already there ({other['x']:.0f}, "
                        f"{other['y']:.0f}); select it to review it"
                    )
            cell_id = self._insert_cell(db, case_id, image_id, cell)
            self._log(
                db,
                user,
                case_id,
                "add cell",
                {"image": image_id, "x": cell.x, "y": cell.y, "model_class": cell.model_class},
                cell_id,
            )
        return self.cell(cell_id)

    def image(self, image_id: int) -> dict:
        rows = self._rows("SELECT * FROM images WHERE id = ?", (image_id,))
        if not rows:
            raise NotFoundError(f"no image {image_id}")
        return dict(rows[0])

    def images(self, case_id: int) -> list[dict]:
        rows = self._rows("SELECT * FROM images WHERE case_id = ? ORDER BY id", (case_id,))
        return [dict(r) for r in rows]

    # A cell comes with what is needed to crop it: its image's name, kind and stored file.
    _CELLS = (
        "SELECT cells.*, images.original_name AS image_name, images.kind AS image_kind, "
        "images.stored_name AS image_file FROM cells JOIN images ON images.id = cells.image_id"
    )

    def cells(self, case_id: int) -> list[dict]:
        rows = self._rows(f"{self._CELLS} WHERE cells.case_id = ? ORDER BY cells.id", (case_id,))
        return [dict(r) | {"proba": json.loads(r["proba"])} for r in rows]

    def cell(self, cell_id: int) -> dict:
        rows = self._rows(f"{self._CELLS} WHERE cells.id = ?", (cell_id,))
        if not rows:
            raise NotFoundError(f"no cell {cell_id}")
        return dict(rows[0]) | {"proba": json.loads(rows[0]["proba"])}

    def review(self, cell_id: int, user: str, status: str, label: str | None = None) -> dict:
        """Confirm, correct (a new label), or mark a cell "not_a_cell" / "unidentified". In a
        blind double review it is this reviewer's verdict (`_verdict`), not the cell's label."""
        if status not in STATUSES[1:]:
            raise StoreError(f"unknown review {status!r}; use one of {', '.join(STATUSES[1:])}")
        with self.transaction() as db:
            before = db.execute("SELECT * FROM cells WHERE id = ?", (cell_id,)).fetchone()
            if before is None:
                raise NotFoundError(f"no cell {cell_id}")
            case = self._open_case(db, before["case_id"])
            if case["reviewers"] > 1:
                if case["hide_model"] and status in ("confirmed", "corrected") and not label:
                    raise StoreError(
                        f"case {case['name']!r} hides the model's class from its reviewers: "
                        "name the cell's class (its key), there is no class to confirm"
                    )
                self._verdict(db, case, before, user, verdict_of(status, label or before["label"]))
                return self.cell(cell_id)
            label = label or before["label"]
            status = _status(status, label, before["model_class"])
            self._decide(db, before, user, label, status, "review")
        return self.cell(cell_id)

    def _decide(self, db, before: sqlite3.Row, user: str, label: str, status: str, action: str,
                detail: dict | None = None) -> None:  # fmt: skip
        """Set a cell's label and status (a review, a consensus, an adjudication), logged."""
        db.execute(
            "UPDATE cells SET label = ?, status = ?, reviewed_by = ?, reviewed_at = ? WHERE id = ?",
            (label, status, user, now(), before["id"]),
        )
        self._log(
            db,
            user,
            before["case_id"],
            action,
            {
                "before": {"label": before["label"], "status": before["status"]},
                "after": {"label": label, "status": status},
            }
            | (detail or {}),
            before["id"],
        )

    # blind double review -------------------------------------------------------------------------

    def _verdict(self, db, case: sqlite3.Row, cell: sqlite3.Row, user: str, verdict: str) -> None:
        """One reviewer's verdict on a cell of a blind case (a second one replaces the first
        until the verdicts are opened); the last verdict the case needs opens them all."""
        if case["unblinded_at"] is not None:
            raise StoreError(
                f"case {case['id']}'s verdicts are in and opened: a cell they disagree on is "
                "decided by an adjudicator; the others stand"
            )
        db.execute(
            "INSERT INTO verdicts (case_id, cell_id, user, verdict, at) VALUES (?,?,?,?,?) "
            "ON CONFLICT(cell_id, user) DO UPDATE SET verdict = excluded.verdict, at = excluded.at",
            (case["id"], cell["id"], user, verdict, now()),
        )
        self._log(db, user, case["id"], "verdict", {"verdict": verdict}, cell["id"])
        self._unblind_if_complete(db, case)

    def _unblind_if_complete(self, db, case: sqlite3.Row) -> None:
        """Open a blind case's verdicts once every cell has as many as the case asks for: a
        cell the reviewers agree on takes their verdict; the others wait for an adjudicator."""
        short = db.execute(
            "SELECT COUNT(*) FROM cells WHERE case_id = ? AND "
            "(SELECT COUNT(*) FROM verdicts WHERE cell_id = cells.id) < ?",
            (case["id"], case["reviewers"]),
        ).fetchone()[0]
        if short:
            return
        agreed = disputed = 0
        for cell in db.execute("SELECT * FROM cells WHERE case_id = ?", (case["id"],)).fetchall():
            said = db.execute(
                "SELECT user, verdict FROM verdicts WHERE cell_id = ? ORDER BY user", (cell["id"],)
            ).fetchall()
            if len({v["verdict"] for v in said}) > 1:
                disputed += 1
                continue
            agreed += 1
            label, status = applied(said[0]["verdict"], cell)
            consensus = " + ".join(v["user"] for v in said)
            self._decide(db, cell, consensus, label, status, "consensus")
        db.execute("UPDATE cases SET unblinded_at = ? WHERE id = ?", (now(), case["id"]))
        self._log(db, "marrowdiff", case["id"], "unblind", {"agreed": agreed, "disputed": disputed})

    def adjudicate(self, cell_id: int, user: str, status: str, label: str | None = None) -> dict:
        """An adjudicator's decision on a cell the blind reviewers disagreed on: a class (a
        label "A|B" for a cell between two neighbouring stages), "not_a_cell" or
        "unidentified". Never by one of the cell's own reviewers."""
        if status not in STATUSES[1:]:
            raise StoreError(f"unknown decision {status!r}; use one of {', '.join(STATUSES[1:])}")
        with self.transaction() as db:
            cell = db.execute("SELECT * FROM cells WHERE id = ?", (cell_id,)).fetchone()
            if cell is None:
                raise NotFoundError(f"no cell {cell_id}")
            case = self._open_case(db, cell["case_id"])
            if case["reviewers"] < 2:
                raise StoreError(
                    f"case {case['name']!r} has one reviewer per cell: there is nothing to "
                    "adjudicate; review the cell instead"
                )
            if case["unblinded_at"] is None:
                raise StoreError(
                    f"case {case['name']!r} is still blind: every cell needs "
                    f"{case['reviewers']} verdicts before any is adjudicated"
                )
            said = {
                r["user"]: r["verdict"]
                for r in db.execute("SELECT * FROM verdicts WHERE cell_id = ?", (cell_id,))
            }
            if cell["status"] != "pending":
                raise StoreError(f"cell {cell_id} is decided already ({cell['status']})")
            if user in said:
                raise ForbiddenError(
                    f"{user} reviewed cell {cell_id}: another adjudicator decides it"
                )
            label = label or cell["label"]
            self._decide(db, cell, user, label, _status(status, label, cell["model_class"]),
                         "adjudicate", {"verdicts": said})  # fmt: skip
        return self.cell(cell_id)

    def verdicts(self, case_id: int, user: str | None = None) -> list[dict]:
        """A case's verdicts (only `user`'s, if given), oldest first."""
        where, params = "case_id = ?", (case_id,)
        if user is not None:
            where, params = "case_id = ? AND user = ?", (case_id, user)
        rows = self._rows(f"SELECT * FROM verdicts WHERE {where} ORDER BY id", params)
        return [dict(r) for r in rows]

    def sign(self, case_id: int, user: str) -> dict:
        with self.transaction() as db:
            case = self._open_case(db, case_id)
            pending = db.execute(
                "SELECT COUNT(*) FROM cells WHERE case_id = ? AND status = 'pending'", (case_id,)
            ).fetchone()[0]
            if pending and case["reviewers"] > 1 and case["unblinded_at"] is None:
                raise StoreError(
                    f"case {case['name']!r} is still blind: every cell needs "
                    f"{case['reviewers']} reviewers' verdicts before it is signed"
                )
            if pending and case["reviewers"] > 1:
                raise StoreError(
                    f"{pending} cell(s) the reviewers disagree on await an adjudicator's decision"
                )
            if pending:
                raise StoreError(f"{pending} cell(s) are not reviewed yet; review every cell first")
            if not db.execute("SELECT 1 FROM cells WHERE case_id = ?", (case_id,)).fetchone():
                raise StoreError(f"case {case_id} has no cells: upload its fields first")
            db.execute(
                "UPDATE cases SET signed_at = ?, signed_by = ? WHERE id = ?", (now(), user, case_id)
            )
            self._log(db, user, case_id, "sign", {})
        return self.case(case_id)

    def reopen(self, case_id: int, user: str, reason: str) -> None:
        """Undo a sign-off whose report could not be written (logged, with the reason)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE cases SET signed_at = NULL, signed_by = NULL WHERE id = ?", (case_id,)
            )
            self._log(db, user, case_id, "sign failed", {"reason": reason[:500]})

    def detection_tally(self, case_id: int | None = None) -> dict:
        """How the detector did by its reviewers' verdicts, on fields of signed cases (every
        cell reviewed), or of one case: cells it found, those marked "not a cell", and cells
        a person added because it missed them."""
        where = "cases.signed_at IS NOT NULL" if case_id is None else "cells.case_id = ?"
        row = self._rows(
            "SELECT COUNT(DISTINCT cells.case_id) AS cases,"
            " SUM(cells.origin = 'detector') AS found,"
            " SUM(cells.origin = 'detector' AND cells.status = 'not_a_cell') AS not_a_cell,"
            " SUM(cells.origin = 'detector' AND cells.status = 'pending') AS pending,"
            " SUM(cells.origin = 'reviewer' AND cells.status != 'not_a_cell') AS added"
            " FROM cells JOIN images ON images.id = cells.image_id"
            " JOIN cases ON cases.id = cells.case_id"
            f" WHERE images.kind = 'field' AND {where}",
            () if case_id is None else (case_id,),
        )[0]
        return detection_rates({k: v or 0 for k, v in dict(row).items()})

    def log(self, case_id: int) -> list[dict]:
        rows = self._rows("SELECT * FROM log WHERE case_id = ? ORDER BY id", (case_id,))
        return [dict(r) | {"detail": json.loads(r["detail"])} for r in rows]

    def close(self) -> None:
        self.db.close()
