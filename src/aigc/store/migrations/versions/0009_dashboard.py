"""The dashboard's history: metric slices (ten seconds of one model's requests) and studio runs
(template, model and the user's rating; no text).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_slices",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("start_ms", sa.BigInteger, nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        *(sa.Column(name, sa.Integer, nullable=False) for name in ("requests", "errors", "rate_limited")),
        *(sa.Column(name, sa.BigInteger, nullable=False)
          for name in ("prompt_tokens", "generation_tokens", "cached_tokens")),
        *(column for name in ("ttft", "itl", "e2e") for column in (
            sa.Column(f"{name}_count", sa.Integer, nullable=False),
            sa.Column(f"{name}_sum", sa.Float, nullable=False),
            sa.Column(f"{name}_buckets", sa.JSON, nullable=False))),
        sa.Column("statuses", sa.JSON, nullable=False),
        sa.Column("error_types", sa.JSON, nullable=False),
        sa.Column("running_max", sa.Integer, nullable=False),
        sa.Column("waiting_max", sa.Integer, nullable=False),
        sa.Column("kv_usage_max", sa.Float, nullable=False),
    )
    op.create_index("ix_metric_slices_start_ms", "metric_slices", ["start_ms"])
    op.create_table(
        "studio_runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
        sa.Column("template_id", sa.String(100), nullable=False),
        sa.Column("template_version", sa.Integer, nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("rating", sa.Integer, nullable=True),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rated_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_studio_runs_user_id", "studio_runs", ["user_id"])
    op.create_index("ix_studio_runs_template_id", "studio_runs", ["template_id"])
    op.create_index("ix_studio_runs_created_at", "studio_runs", ["created_at"])


def downgrade() -> None:
    op.drop_table("studio_runs")
    op.drop_table("metric_slices")
