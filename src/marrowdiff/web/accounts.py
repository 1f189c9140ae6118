"""The review station's people: accounts with a role, and their login sessions, in SQLite.

    DATA_DIR/accounts.sqlite3      users (name, role, argon2id hash), sessions (sha256 of token)

A *reviewer* uploads, reviews and adds missed cells; a *signer* may also sign a case off. The
accounts are managed on the server's own machine (`marrowdiff users add|list|passwd|remove`),
never over the web: whoever can write the data folder administers the station. Passwords are
hashed with argon2id (`argon2-cffi`); a session is a random token the browser holds in an
HttpOnly cookie, and the database keeps only its sha256, so a copy of the database logs no one
in. Removing a user or changing a password ends that user's sessions.
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

FILE = "accounts.sqlite3"
ROLES = ("reviewer", "signer")
MIN_PASSWORD = 10  # characters (NIST SP 800-63B asks for at least 8)
SESSION_HOURS = 10.0  # a working day; then log in again
MAX_FAILURES = 5  # failed logins of one name within LOCKOUT_SECONDS: refused until it passes
LOCKOUT_SECONDS = 600

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('reviewer', 'signer')),
    password TEXT NOT NULL,            -- argon2id hash
    created_at TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1  -- 0: removed (kept, so the log's names stay known)
);
CREATE TABLE IF NOT EXISTS sessions (
    token TEXT PRIMARY KEY,            -- sha256 of the cookie's token, never the token
    user TEXT NOT NULL REFERENCES users(name),
    expires_at TEXT NOT NULL
);
"""


class AccountError(UserError, ValueError):
    """A request about accounts that cannot be done (unknown user, weak password...)."""


class LoginError(AccountError):
    """Wrong name or password (the message never says which)."""


class LockedOut(LoginError):
    """Too many failed logins of one name lately: refused until the window passes."""


@dataclass(frozen=True)
class User:
    name: str
    role: str  # one of ROLES

    @property
    def may_sign(self) -> bool:
        return self.role == "signer"


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
        self.lock = threading.Lock()
        self.hasher = PasswordHasher()
        self._failures: dict[str, list[float]] = {}

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

    def log_in(self, name: str, password: str) -> tuple[User, str]:
        """Check a name and password; returns the user and a new session token (for the
        cookie). Wrong either way is one `LoginError`; a name with MAX_FAILURES failed
        attempts in LOCKOUT_SECONDS is refused until the window passes."""
        name = unicodedata.normalize("NFC", name or "").strip()
        recent = self._recent_failures(name)
        if len(recent) >= MAX_FAILURES:
            wait = int(LOCKOUT_SECONDS - (time.monotonic() - recent[0])) + 1
            raise LockedOut(f"too many failed logins for this name: try again in {wait} s")
        rows = self._execute("SELECT * FROM users WHERE name = ? AND active = 1", (name,))
        stored = rows[0]["password"] if rows else self._dummy
        try:
            self.hasher.verify(stored, password or "")
            if not rows:
                raise VerificationError()
        except (VerificationError, InvalidHashError):
            with self.lock:
                self._failures.setdefault(name, []).append(time.monotonic())
            raise LoginError("wrong user name or password") from None
        with self.lock:
            self._failures.pop(name, None)
        token = secrets.token_urlsafe(32)
        expires = _now() + timedelta(hours=SESSION_HOURS)
        self._execute("DELETE FROM sessions WHERE expires_at < ?", (_now().isoformat(),))
        self._execute(
            "INSERT INTO sessions (token, user, expires_at) VALUES (?,?,?)",
            (_digest(token), name, expires.isoformat()),
        )
        return User(name, rows[0]["role"]), token

    def _recent_failures(self, name: str) -> list[float]:
        with self.lock:
            cutoff = time.monotonic() - LOCKOUT_SECONDS
            recent = [t for t in self._failures.get(name, []) if t > cutoff]
            self._failures[name] = recent
            return recent

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
