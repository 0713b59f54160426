"""`aigc users` and `aigc keys` as an administrator runs them: real processes, a file database."""

from __future__ import annotations

import subprocess
import sys

from aigc.accounts import UserStore
from aigc.store import Database


def aigc(*args: str, stdin: str | None = None, db: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aigc", *args, "--database-url", db], input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_users_and_keys_lifecycle(tmp_path):
    db = f"sqlite:///{tmp_path}/app.db"
    r = aigc("users", "add", "alice", "--admin", "--password-stdin", stdin="a long password\n", db=db)
    assert r.returncode == 0 and "added admin alice" in r.stdout, r.stderr
    assert aigc("users", "add", "bob", "--password-stdin", stdin="another password\n", db=db).returncode == 0
    listed = aigc("users", "list", db=db).stdout
    assert "alice\tadmin" in listed and "bob\tuser" in listed
    store = UserStore(Database(db))
    assert store.authenticate("alice", "a long password") is not None
    with Database(db).session() as s:  # nothing reversible stored
        hashes = [h for (h,) in s.execute(__import__("sqlalchemy").text("SELECT password_hash FROM users"))]
    assert all(h.startswith("$argon2id$") and "password" not in h for h in hashes)

    r = aigc("users", "set-password", "bob", "--password-stdin", stdin="a new password!\n", db=db)
    assert r.returncode == 0, r.stderr
    assert store.authenticate("bob", "a new password!") and not store.authenticate("bob", "another password")

    r = aigc("keys", "create", "--user", "bob", "--name", "ci", db=db)
    key = r.stdout.strip()
    assert r.returncode == 0 and key.startswith("aigc-") and "shown once" in r.stderr
    assert store.key_user(key)[0].name == "bob"
    listed = aigc("keys", "list", db=db).stdout
    assert key[:11] in listed and key not in listed and "bob\tci" in listed
    key_id = listed.split("\t")[0]
    assert aigc("keys", "revoke", key_id, db=db).returncode == 0
    assert store.key_user(key) is None
    r = aigc("users", "set-limits", "bob", "--rate-limit", "10/minute", db=db)
    assert r.returncode == 0 and "10/minute" in r.stdout
    assert aigc("users", "remove", "bob", db=db).returncode == 0
    assert "bob" not in aigc("users", "list", db=db).stdout


def test_mistakes_are_one_line_and_exit_2(tmp_path):
    db = f"sqlite:///{tmp_path}/app.db"
    cases = [
        (("users", "add", "x", "--password-stdin"), "short\n", "too short"),
        (("users", "add", "bad name", "--password-stdin"), "long enough pw\n", "invalid user name"),
        (("users", "remove", "ghost"), None, "no user named"),
        (("users", "set-password", "ghost", "--password-stdin"), "long enough pw\n", "no user named"),
        (("keys", "create", "--user", "ghost"), None, "no user named"),
        (("keys", "revoke", "99"), None, "no API key"),
        (("users", "add", "x"), "", "--password-stdin"),  # no terminal to ask on
        (("users", "set-limits", "x", "--rate-limit", "fast"), None, "invalid limit"),
    ]
    aigc("users", "add", "dup", "--no-password", db=db)
    cases.append((("users", "add", "dup", "--no-password"), None, "already exists"))
    for args, stdin, message in cases:
        r = aigc(*args, stdin=stdin, db=db)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
