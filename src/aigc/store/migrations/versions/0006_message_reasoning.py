"""Messages keep a reasoning model's thinking apart from the reply's text.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("reasoning", sa.Text, nullable=True))


def downgrade() -> None:
    op.drop_column("messages", "reasoning")
