"""The README's PostgreSQL line as a user runs it: `AIGC_DATABASE_URL=postgresql+psycopg://...
aigc serve` migrates an empty database, keeps conversations across a restart, and works with
accounts."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "web"))

from web_harness import start_server, stop_server  # noqa: E402

from aigc.accounts import UserStore  # noqa: E402
from aigc.store import Database  # noqa: E402
from database_harness import fresh_database  # noqa: E402

pytestmark = pytest.mark.slow


def test_aigc_serve_on_postgresql(tmp_path):
    with fresh_database("postgresql", tmp_path) as url:
        server = start_server(tmp_path, database_url=url)
        try:
            with httpx.Client(base_url=server.url, timeout=120) as c:
                cid = c.post("/api/conversations", json={"title": "在 PostgreSQL 上"}).json()["id"]
                r = c.post(f"/api/conversations/{cid}/messages", json={"content": "Hi!", "params": {"max_tokens": 4}})
                assert r.status_code == 200
        finally:
            stop_server(server)
        UserStore(Database(url)).add("pg-admin", "a long password", admin=True)  # inherits the chat
        server = start_server(tmp_path, database_url=url)
        try:
            with httpx.Client(base_url=server.url, timeout=120) as c:
                assert c.get("/api/conversations").status_code == 401
                assert c.post("/api/auth/login", json={"username": "pg-admin", "password": "a long password"}
                              ).status_code == 200
                conv = c.get(f"/api/conversations/{cid}").json()
                assert conv["title"] == "在 PostgreSQL 上" and [m["role"] for m in conv["messages"]] == [
                    "user", "assistant"]
        finally:
            stop_server(server)
