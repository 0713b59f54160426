"""Arena battles: one prompt answered by two models, side by side or blind, and the vote.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "arena_battles",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("blind", sa.Boolean, nullable=False),
        sa.Column("messages", sa.JSON, nullable=False),
        sa.Column("model_a", sa.String(200), nullable=False),
        sa.Column("model_b", sa.String(200), nullable=False),
        sa.Column("reply_a", sa.Text, nullable=False),
        sa.Column("reply_b", sa.Text, nullable=False),
        sa.Column("finish_a", sa.String(32), nullable=True),
        sa.Column("finish_b", sa.String(32), nullable=True),
        sa.Column("winner", sa.String(16), nullable=True),
        sa.Column("voted_at", sa.DateTime(timezone=True), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_arena_battles_user_id", "arena_battles", ["user_id"])
    op.create_index("ix_arena_battles_voted_at", "arena_battles", ["voted_at"])


def downgrade() -> None:
    op.drop_table("arena_battles")
