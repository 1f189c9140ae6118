"""The review station's people: accounts with a role, and their login sessions, in SQLite.

    DATA_DIR/accounts.sqlite3      users (name, role, argon2id hash), sessions (sha256 of token)

A *reviewer* uploads, reviews and adds missed cells; an *adjudicator* may also decide the
cells that a blind double review disagrees on; a *signer* may do both and sign a case off. The
accounts are managed on the server's own machine (`marrowdiff users add|list|passwd|remove`),
never over the web: whoever can write the data folder administers the station. Passwords are
hashed with argon2id (`argon2-cffi`); a session is a random token the browser holds in an
HttpOnly cookie, and the database keeps only its sha256, so a copy of the database logs no one
in. Removing a user or changing a password ends that user's sessions.

Guessing is throttled (`log_in`): every attempt takes a slot in the database before its
password is hashed, in one transaction, so parallel guesses cannot all pass. A name may be tried
PER_SOURCE times from one address, and PER_NAME times in all from addresses its owner has never
logged in from, per LOCKOUT_SECONDS; an address may try PER_ADDRESS names. A guesser elsewhere
therefore cannot lock the owner out of the places they work from; `marrowdiff users unlock NAME`
lifts every limit on a name at once.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import sqlite3
import threading
import time
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from marrowdiff.errors import UserError
from marrowdiff.web.tables import has_check, rebuild_table

FILE = "accounts.sqlite3"
ROLES = ("reviewer", "adjudicator", "signer")
MIN_PASSWORD = 10  # characters (NIST SP 800-63B asks for at least 8)
SESSION_HOURS = 10.0  # a working day; then log in again
LOCKOUT_SECONDS = 600  # the throttle's window
PER_SOURCE = 5  # tries of one name from one address in the window
PER_NAME = 20  # tries of one name from addresses its owner never logged in from
PER_ADDRESS = 30  # tries of any names from one address
MAX_FAILURES = PER_SOURCE  # the limit a guesser at one address meets first

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('reviewer', 'adjudicator', 'signer')),
    password TEXT NOT NULL,            -- argon2id hash
    created_at TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1  -- 0: removed (kept, so the log's names stay known)
);
CREATE TABLE IF NOT EXISTS sessions (
    token TEXT PRIMARY KEY,            -- sha256 of the cookie's token, never the token
    user TEXT NOT NULL REFERENCES users(name),
    expires_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (  -- failed (or running) logins, for the throttle
    name TEXT NOT NULL,
    source TEXT NOT NULL,              -- the client's address
    at REAL NOT NULL                   -- unix time
);
CREATE INDEX IF NOT EXISTS attempts_by_name ON attempts(name, at);
CREATE TABLE IF NOT EXISTS known_sources (  -- where each user has logged in from
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    PRIMARY KEY (name, source)
);
"""


class AccountError(UserError, ValueError):
    """A request about accounts that cannot be done (unknown user, weak password...)."""


class LoginError(AccountError):
    """Wrong name or password (the message never says which)."""


class LockedOut(LoginError):
    """Too many tries of one name (or from one address) lately: refused until the window
    passes, or until `marrowdiff users unlock` lifts it."""


@dataclass(frozen=True)
class User:
    name: str
    role: str  # one of ROLES

    @property
    def may_sign(self) -> bool:
        return self.role == "signer"

    @property
    def may_adjudicate(self) -> bool:
        """Decides cells the blind reviewers disagree on (a signer may too)."""
        return self.role in ("adjudicator", "signer")


def user_name(text: str) -> str:
    """A person's name as the station keeps it: NFC, trimmed, 1-100 printable characters."""
    name = unicodedata.normalize("NFC", text or "").strip()
    if not name or len(name) > 100 or not name.isprintable():
        raise AccountError("a user name is 1-100 printable characters")
    return name


def _now() -> datetime:
    return datetime.now(UTC)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    """Users and sessions of one data folder. Safe to share between the server's threads, and
    between the server and a `marrowdiff users` command run beside it (SQLite, WAL)."""

    def __init__(self, data_dir: str | Path):
        self.path = Path(data_dir) / FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(SCHEMA)
        if not has_check(self.db, "users", "adjudicator"):  # made before adjudication
            rebuild_table(self.db, SCHEMA, "users")
        self.lock = threading.Lock()
        self.hasher = PasswordHasher()

    @functools.cached_property
    def _dummy(self) -> str:
        """A hash to check an unknown name's password against: the refusal takes as long as a
        wrong password's (made on the first login, not for `exist` or `users list`)."""
        return self.hasher.hash(secrets.token_hex(16))

    @classmethod
    def exist(cls, data_dir: str | Path) -> bool:
        """Whether the data folder has any active account (without creating the file)."""
        if not (Path(data_dir) / FILE).is_file():
            return False
        accounts = cls(data_dir)
        try:
            return bool(accounts.users())
        finally:
            accounts.close()

    def _execute(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self.lock:
            return self.db.execute(sql, params).fetchall()

    # users (from the command line) ------------------------------------------------------------

    def add(self, name: str, role: str, password: str) -> User:
        name = user_name(name)
        if role not in ROLES:
            raise AccountError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        _check_password(password)
        if self._execute("SELECT 1 FROM users WHERE name = ? AND active = 1", (name,)):
            raise AccountError(f"user {name!r} exists already; use `marrowdiff users passwd`")
        self._execute(
            "INSERT INTO users (name, role, password, created_at) VALUES (?,?,?,?) "
            "ON CONFLICT(name) DO UPDATE SET role = excluded.role, "
            "password = excluded.password, active = 1",
            (name, role, self.hasher.hash(password), _now().isoformat(timespec="seconds")),
        )
        return User(name, role)

    def users(self) -> list[User]:
        rows = self._execute("SELECT name, role FROM users WHERE active = 1 ORDER BY name")
        return [User(r["name"], r["role"]) for r in rows]

    def set_password(self, name: str, password: str) -> None:
        self._known(name)
        _check_password(password)
        self._execute(
            "UPDATE users SET password = ? WHERE name = ?", (self.hasher.hash(password), name)
        )
        self._execute("DELETE FROM sessions WHERE user = ?", (name,))

    def remove(self, name: str) -> None:
        """Deactivate a user and end their sessions (their name stays in the log)."""
        self._known(name)
        self._execute("UPDATE users SET active = 0 WHERE name = ?", (name,))
        self._execute("DELETE FROM sessions WHERE user = ?", (name,))

    def _known(self, name: str) -> sqlite3.Row:
        rows = self._execute("SELECT * FROM users WHERE name = ? AND active = 1", (name,))
        if not rows:
            raise AccountError(f"no user {name!r}; `marrowdiff users list` shows who there is")
        return rows[0]

    # logging in (from the web) ----------------------------------------------------------------

    def log_in(self, name: str, password: str, source: str = "local") -> tuple[User, str]:
        """Check a name and password from a client address; returns the user and a new
        session token (for the cookie). Wrong either way is one `LoginError`; a throttled try
        is `LockedOut` before any password is checked (`_take_slot`)."""
        name = unicodedata.normalize("NFC", name or "").strip()
        attempt = self._take_slot(name, source)
        rows = self._execute("SELECT * FROM users WHERE name = ? AND active = 1", (name,))
        stored = rows[0]["password"] if rows else self._dummy
        try:
            self.hasher.verify(stored, password or "")
            if not rows:
                raise VerificationError()
        except (VerificationError, InvalidHashError):
            raise LoginError("wrong user name or password") from None  # the slot stays taken
        self._execute(
            "DELETE FROM attempts WHERE rowid = ? OR (name = ? AND source = ?)",
            (attempt, name, source),
        )
        self._execute("INSERT OR IGNORE INTO known_sources VALUES (?, ?)", (name, source))
        token = secrets.token_urlsafe(32)
        expires = _now() + timedelta(hours=SESSION_HOURS)
        self._execute("DELETE FROM sessions WHERE expires_at < ?", (_now().isoformat(),))
        self._execute(
            "INSERT INTO sessions (token, user, expires_at) VALUES (?,?,?)",
            (_digest(token), name, expires.isoformat()),
        )
        return User(name, rows[0]["role"]), token

    def _take_slot(self, name: str, source: str) -> int:
        """Count the recent tries against the limits and record this one, atomically (one
        write transaction: threads and processes alike wait their turn); returns its row."""
        now = time.time()
        since = now - LOCKOUT_SECONDS
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.execute("DELETE FROM attempts WHERE at < ?", (since,))
                full = self._throttled(name, source)
                if full is None:
                    cursor = self.db.execute(
                        "INSERT INTO attempts VALUES (?, ?, ?)", (name, source, now)
                    )
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        if full is not None:
            raise LockedOut(f"too many {full} lately: try again in {LOCKOUT_SECONDS // 60} min")
        return cursor.lastrowid

    def _throttled(self, name: str, source: str) -> str | None:
        """Which limit a new try of `name` from `source` would break (inside the transaction)."""

        def count(sql: str, *params) -> int:
            return self.db.execute(f"SELECT COUNT(*) FROM attempts WHERE {sql}", params).fetchone()[
                0
            ]

        if count("name = ? AND source = ?", name, source) >= PER_SOURCE:
            return "failed logins of this name from here"
        if count("source = ?", source) >= PER_ADDRESS:
            return "failed logins from here"
        known = self.db.execute(
            "SELECT 1 FROM known_sources WHERE name = ? AND source = ?", (name, source)
        ).fetchone()
        if (
            not known
            and count(
                "name = ? AND source NOT IN (SELECT source FROM known_sources WHERE name = ?)",
                name,
                name,
            )
            >= PER_NAME
        ):
            return "failed logins of this name from elsewhere"
        return None

    def unlock(self, name: str) -> int:
        """Lift every limit on a name (its failed tries are forgotten); how many there were."""
        name = unicodedata.normalize("NFC", name or "").strip()
        self._known(name)
        with self.lock:
            return self.db.execute("DELETE FROM attempts WHERE name = ?", (name,)).rowcount

    def session(self, token: str | None) -> User | None:
        """The user a session cookie belongs to, or None (no, unknown or expired token, or
        the user was removed)."""
        if not token:
            return None
        rows = self._execute(
            "SELECT users.name, users.role, sessions.expires_at FROM sessions "
            "JOIN users ON users.name = sessions.user "
            "WHERE sessions.token = ? AND users.active = 1",
            (_digest(token),),
        )
        if not rows or datetime.fromisoformat(rows[0]["expires_at"]) < _now():
            return None
        return User(rows[0]["name"], rows[0]["role"])

    def log_out(self, token: str | None) -> None:
        if token:
            self._execute("DELETE FROM sessions WHERE token = ?", (_digest(token),))

    def close(self) -> None:
        self.db.close()


def _check_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD:
        raise AccountError(f"a password has at least {MIN_PASSWORD} characters")
