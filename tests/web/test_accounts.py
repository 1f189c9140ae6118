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
            accounts.log_in("ana", "guess-guess-guess")
    with pytest.raises(LockedOut, match="try again in"):
        accounts.log_in("ana", PASSWORD)  # even the right password, until the window passes
    monkeypatch.setattr(accounts_module, "LOCKOUT_SECONDS", 0)
    assert accounts.log_in("ana", PASSWORD)[0].name == "ana"
