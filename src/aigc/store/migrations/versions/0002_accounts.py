"""Accounts: users, API keys, login sessions, daily usage; an owner on conversations, templates and
stored responses (NULL: made before accounts, or on a server without them).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)
_OWNED = ("conversations", "templates", "responses")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("rate_limit", sa.String(32), nullable=True),
        sa.Column("token_quota", sa.String(32), nullable=True),
        sa.Column("created_at", _TZ, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("last_used_at", _TZ, nullable=True),
        sa.Column("revoked_at", _TZ, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_api_keys_user_id", "api_keys", ["user_id"])
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("expires_at", _TZ, nullable=False),
    )
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"])
    op.create_index("ix_sessions_expires_at", "sessions", ["expires_at"])
    op.create_table(
        "usage",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("key_id", sa.Integer, nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.UniqueConstraint("user_id", "key_id", "day"),
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in _OWNED:
        if sqlite:
            # SQLite adds a column with its foreign key in place; Alembic's batch mode would copy
            # the table, and dropping the old one would cascade into its children.
            op.execute(f"ALTER TABLE {table} ADD COLUMN user_id INTEGER REFERENCES users (id) ON DELETE CASCADE")
        else:
            op.add_column(table, sa.Column("user_id", sa.Integer, nullable=True))
            op.create_foreign_key(f"fk_{table}_user_id_users", table, "users", ["user_id"], ["id"],
                                  ondelete="CASCADE")
        op.create_index(f"ix_{table}_user_id", table, ["user_id"])


def downgrade() -> None:
    for table in _OWNED:
        op.drop_index(f"ix_{table}_user_id", table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("user_id")
    for table in ("usage", "sessions", "api_keys", "users"):
        op.drop_table(table)
