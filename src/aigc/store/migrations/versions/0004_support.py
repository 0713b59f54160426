"""Knowledge-base documents keep their file (for re-indexing). Customer service: support sites (a knowledge-base assistant with a persona, rules and an
embeddable widget), visitor conversations and their hand-off to staff.

Revision ID: 0004
Revises: 0003

A visitor's conversation is an ordinary conversation owned by the site's owner, marked with its
`site_id` and the hash of the visitor's token; `handoff` is its place in the staff queue. Staff
replies are assistant messages with an `author`. `site_id` has no database foreign key (SQLite
cannot add one to an existing table); deleting a site deletes its conversations in code.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "support_sites",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("public_key", sa.String(64), nullable=False, unique=True),
        sa.Column("origins", sa.JSON, nullable=False),
        sa.Column("persona", sa.Text, nullable=False),
        sa.Column("rules", sa.Text, nullable=False),
        sa.Column("greeting", sa.Text, nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("knowledge_base_ids", sa.JSON, nullable=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("handoff_on_no_source", sa.Boolean, nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("updated_at", _TZ, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_support_sites_user_id", "support_sites", ["user_id"])
    op.add_column("conversations", sa.Column("site_id", sa.Integer, nullable=True))
    op.add_column("conversations", sa.Column("visitor_hash", sa.String(64), nullable=True))
    op.add_column("conversations", sa.Column("handoff", sa.String(16), nullable=True))
    op.add_column("conversations", sa.Column("handoff_reason", sa.String(32), nullable=True))
    op.add_column("conversations", sa.Column("handoff_at", _TZ, nullable=True))
    op.add_column("conversations", sa.Column("agent_id", sa.Integer, nullable=True))
    op.create_index("ix_conversations_site_id", "conversations", ["site_id"])
    op.create_index("ix_conversations_handoff", "conversations", ["handoff"])
    op.add_column("messages", sa.Column("author", sa.String(64), nullable=True))
    op.add_column("kb_documents", sa.Column("original", sa.LargeBinary, nullable=True))


def downgrade() -> None:
    op.drop_column("kb_documents", "original")
    op.drop_column("messages", "author")
    op.drop_index("ix_conversations_handoff", "conversations")
    op.drop_index("ix_conversations_site_id", "conversations")
    for column in ("agent_id", "handoff_at", "handoff_reason", "handoff", "visitor_hash", "site_id"):
        op.drop_column("conversations", column)
    op.drop_table("support_sites")
