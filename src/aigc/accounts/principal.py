"""Who a request acts for, decided once by the server's auth middleware and read by every route."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """`user_id` None is the single room: a server without accounts (loopback, no users), or the
    server-wide `--api-key`. What it makes has no owner, and it sees only what has none."""

    user_id: int | None
    name: str
    role: str = "admin"  # admin | staff (answers support hand-offs) | user
    key_id: int | None = None  # the user API key the request came with
    via: str = "anonymous"  # anonymous | server_key | api_key | session

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def owner(self) -> int | None:
        return self.user_id


ANONYMOUS = Principal(None, "local", "admin", via="anonymous")
SERVER_KEY = Principal(None, "server-key", "admin", via="server_key")
