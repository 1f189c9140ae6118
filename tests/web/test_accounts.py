"""The review station's accounts and sessions (web.accounts), without the web."""

import hashlib
import sqlite3

import pytest

from marrowdiff.web import accounts as accounts_module
from marrowdiff.web.accounts import AccountError, Accounts, LockedOut, LoginError, User

PASSWORD = "correct horse battery"


@pytest.fixture
def accounts(tmp_path):
    return Accounts(tmp_path)


def test_a_user_logs_in_with_their_password_only(accounts):
    accounts.add("Łukasz", "reviewer", PASSWORD)
    user, token = accounts.log_in("Łukasz", PASSWORD)
    assert user == User("Łukasz", "reviewer") and not user.may_sign
    assert accounts.session(token) == user
    for name, password in (("Łukasz", PASSWORD + "!"), ("nobody", PASSWORD), ("Łukasz", "")):
        with pytest.raises(LoginError, match="wrong user name or password"):
            accounts.log_in(name, password)
    assert accounts.session("forged-token") is None and accounts.session(None) is None


def test_the_database_holds_neither_passwords_nor_session_tokens(accounts, tmp_path):
    accounts.add("ana", "signer", PASSWORD)
    _, token = accounts.log_in("ana", PASSWORD)
    dump = "\n".join(sqlite3.connect(tmp_path / "accounts.sqlite3").iterdump())
    assert PASSWORD not in dump and token not in dump
    assert "$argon2id$" in dump and hashlib.sha256(token.encode()).hexdigest() in dump


def test_bad_accounts_are_refused_with_the_reason(accounts):
    with pytest.raises(AccountError, match="at least 10 characters"):
        accounts.add("ana", "signer", "short")
    with pytest.raises(AccountError, match="unknown role 'admin'"):
        accounts.add("ana", "admin", PASSWORD)
    with pytest.raises(AccountError, match="printable"):
        accounts.add("a\x00b", "signer", PASSWORD)
    accounts.add("ana", "signer", PASSWORD)
    with pytest.raises(AccountError, match="exists already"):
        accounts.add("ana", "reviewer", PASSWORD)
    with pytest.raises(AccountError, match="no user 'bob'"):
        accounts.remove("bob")


def test_removing_a_user_or_changing_a_password_ends_their_sessions(accounts):
    accounts.add("ana", "signer", PASSWORD)
    accounts.add("bob", "reviewer", PASSWORD)
    _, ana = accounts.log_in("ana", PASSWORD)
    _, bob = accounts.log_in("bob", PASSWORD)
    accounts.set_password("ana", "another long password")
    assert accounts.session(ana) is None and accounts.session(bob) is not None
    with pytest.raises(LoginError):
        accounts.log_in("ana", PASSWORD)
    assert accounts.log_in("ana", "another long password")[0].may_sign
    accounts.remove("bob")
    assert accounts.session(bob) is None and [u.name for u in accounts.users()] == ["ana"]
    with pytest.raises(LoginError):
        accounts.log_in("bob", PASSWORD)
    assert not Accounts.exist(accounts.path.parent / "elsewhere")
    assert Accounts.exist(accounts.path.parent)


def test_a_session_ends_when_it_expires(accounts, monkeypatch):
    accounts.add("ana", "signer", PASSWORD)
    _, token = accounts.log_in("ana", PASSWORD)
    monkeypatch.setattr(accounts_module, "SESSION_HOURS", -1.0)
    _, expired = accounts.log_in("ana", PASSWORD)
    assert accounts.session(token) is not None and accounts.session(expired) is None
    accounts.log_out(token)
    assert accounts.session(token) is None


def test_guessing_a_password_is_stopped_after_five_tries(accounts, monkeypatch):
    accounts.add("ana", "signer", PASSWORD)
    for _ in range(accounts_module.MAX_FAILURES):
        with pytest.raises(LoginError):
            accounts.log_in("ana", "guess-guess-guess", "10.0.0.9")
    with pytest.raises(LockedOut, match="try again in"):
        accounts.log_in("ana", PASSWORD, "10.0.0.9")  # from there, not even the right one
    monkeypatch.setattr(accounts_module, "LOCKOUT_SECONDS", 0)
    assert accounts.log_in("ana", PASSWORD, "10.0.0.9")[0].name == "ana"


def _counting_checks(accounts, monkeypatch) -> list:
    """Every password the accounts hash from now on (the slow step a lock must come before)."""
    checked = []

    class Counting:
        def __init__(self, hasher):
            self.hasher = hasher

        def verify(self, stored, password):
            checked.append(password)
            return self.hasher.verify(stored, password)

        def hash(self, password):
            return self.hasher.hash(password)

    monkeypatch.setattr(accounts, "hasher", Counting(accounts.hasher))
    return checked


@pytest.mark.parametrize("servers", [1, 2])  # one server's threads; two processes' connections
def test_parallel_guesses_are_checked_no_more_than_the_limit(tmp_path, monkeypatch, servers):
    from concurrent.futures import ThreadPoolExecutor

    Accounts(tmp_path).add("ana", "signer", PASSWORD)
    each = [Accounts(tmp_path) for _ in range(servers)]
    checked = [_counting_checks(accounts, monkeypatch) for accounts in each]

    def guess(k: int) -> str:
        try:
            each[k % servers].log_in("ana", f"guess number {k}", "10.0.0.9")
        except LockedOut:
            return "locked"
        except LoginError:
            return "wrong"
        return "in"

    with ThreadPoolExecutor(40) as pool:
        outcomes = list(pool.map(guess, range(40)))
    assert outcomes.count("wrong") == accounts_module.PER_SOURCE
    assert outcomes.count("locked") == 40 - accounts_module.PER_SOURCE
    assert sum(len(c) for c in checked) == accounts_module.PER_SOURCE  # hashed: 5, not 40


def test_a_guesser_elsewhere_cannot_lock_the_owner_out(accounts, monkeypatch):
    monkeypatch.setattr(accounts_module, "PER_NAME", 8)  # fewer hashes, the same rule
    accounts.add("ana", "signer", PASSWORD)
    accounts.log_in("ana", PASSWORD, "10.0.0.1")  # her desk: a known address from now on
    # a guesser behind one address: locked out there only
    for _ in range(accounts_module.PER_SOURCE):
        with pytest.raises(LoginError):
            accounts.log_in("ana", "guess-guess-guess", "203.0.113.7")
    with pytest.raises(LockedOut, match="of this name from here"):
        accounts.log_in("ana", PASSWORD, "203.0.113.7")
    assert accounts.log_in("ana", PASSWORD, "10.0.0.1")[0].name == "ana"
    # guessers behind many addresses: the name is closed to new addresses, not to hers
    for k in range(accounts_module.PER_NAME - accounts_module.PER_SOURCE):
        with pytest.raises(LoginError):
            accounts.log_in("ana", "guess-guess-guess", f"198.51.100.{k}")
    with pytest.raises(LockedOut, match="of this name from elsewhere"):
        accounts.log_in("ana", PASSWORD, "192.0.2.1")
    assert accounts.log_in("ana", PASSWORD, "10.0.0.1")[0].name == "ana"
    # an administrator lifts every limit on the name
    assert accounts.unlock("ana") == accounts_module.PER_NAME
    assert accounts.log_in("ana", PASSWORD, "192.0.2.1")[0].name == "ana"


def test_one_address_spraying_many_names_is_stopped(accounts, monkeypatch):
    monkeypatch.setattr(accounts_module, "PER_ADDRESS", 8)  # fewer hashes, the same rule
    for k in range(accounts_module.PER_ADDRESS):
        with pytest.raises(LoginError):
            accounts.log_in(f"user{k}", "guess-guess-guess", "203.0.113.7")
    with pytest.raises(LockedOut, match="failed logins from here"):
        accounts.log_in("someone-else", "guess-guess-guess", "203.0.113.7")


def test_users_unlock_from_the_command_line(tmp_path, capsys):
    from marrowdiff.cli import main

    accounts = Accounts(tmp_path)
    accounts.add("ana", "signer", PASSWORD)
    for _ in range(accounts_module.PER_SOURCE):
        with pytest.raises(LoginError):
            accounts.log_in("ana", "guess-guess-guess", "10.0.0.9")
    assert main(["users", "unlock", "ana", "--data-dir", str(tmp_path)]) == 0
    assert "5 failed login(s) forgotten" in capsys.readouterr().out
    assert accounts.log_in("ana", PASSWORD, "10.0.0.9")[0].name == "ana"  # the server sees it
    assert main(["users", "unlock", "bob", "--data-dir", str(tmp_path)]) == 2


def test_an_older_accounts_file_takes_the_adjudicator_role_and_keeps_its_users(tmp_path):
    # accounts.sqlite3 as it was before adjudicators: its CHECK allowed two roles only
    with sqlite3.connect(tmp_path / "accounts.sqlite3") as old:
        old.execute(
            "CREATE TABLE users (name TEXT PRIMARY KEY, role TEXT NOT NULL CHECK (role IN "
            "('reviewer', 'signer')), password TEXT NOT NULL, created_at TEXT NOT NULL, "
            "active INTEGER NOT NULL DEFAULT 1)"
        )
        old.execute("INSERT INTO users VALUES ('ana', 'signer', 'x', '2026-01-01', 1)")
    accounts = Accounts(tmp_path)
    accounts.add("cleo", "adjudicator", PASSWORD)
    users = {(u.name, u.role) for u in accounts.users()}
    assert users == {("ana", "signer"), ("cleo", "adjudicator")}
    assert accounts.log_in("cleo", PASSWORD)[0].may_adjudicate
