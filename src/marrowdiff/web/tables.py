"""Schema changes SQLite cannot make in place, for the station's two databases."""

from __future__ import annotations

import sqlite3


def has_check(db: sqlite3.Connection, table: str, value: str) -> bool:
    """Whether `table`'s definition names `value` (a CHECK's allowed value, quoted)."""
    (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    return f"'{value}'" in sql


def rebuild_table(db: sqlite3.Connection, schema: str, table: str) -> None:
    """Rebuild `table`, made by an earlier version, with its definition in `schema` (a newer
    CHECK), keeping its rows and ids; one transaction, so a failure changes nothing."""
    start = schema.index(f"CREATE TABLE IF NOT EXISTS {table} (")
    create = schema[start : schema.index(");", start) + 2].replace(
        f"{table} (", f"{table}_new (", 1
    )
    columns = ", ".join(row[1] for row in db.execute(f"PRAGMA table_info({table})"))
    db.execute("PRAGMA foreign_keys=OFF")  # other tables refer to it by name: kept through
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute(create)
        db.execute(f"INSERT INTO {table}_new ({columns}) SELECT {columns} FROM {table}")
        db.execute(f"DROP TABLE {table}")
        db.execute(f"ALTER TABLE {table}_new RENAME TO {table}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    finally:
        db.execute("PRAGMA foreign_keys=ON")
