"""Knowledge bases: documents, chunks, vectors; conversations name the knowledge bases they use,
assistant messages keep the sources they cited.

Revision ID: 0003
Revises: 0002

`kb_vectors` (one row per chunk) lives in the database's vector extension when it has one:
sqlite-vec's `vec0` on SQLite, pgvector's `vector(384)` with an HNSW index on PostgreSQL. A
database without it gets a plain table of float arrays, searched exactly (knowledge/vectors.py).
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)
DIM = 384
log = logging.getLogger("aigc.store")


def upgrade() -> None:
    op.create_table(
        "knowledge_bases",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("embedding_model", sa.String(100), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("updated_at", _TZ, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_knowledge_bases_user_id", "knowledge_bases", ["user_id"])
    op.create_table(
        "kb_documents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kb_id", sa.Integer, sa.ForeignKey("knowledge_bases.id", ondelete="CASCADE"), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("chunk_count", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("indexed_at", _TZ, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_kb_documents_kb_id", "kb_documents", ["kb_id"])
    op.create_index("ix_kb_documents_sha256", "kb_documents", ["sha256"])
    op.create_table(
        "kb_chunks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("document_id", sa.Integer, sa.ForeignKey("kb_documents.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kb_id", sa.Integer, sa.ForeignKey("knowledge_bases.id", ondelete="CASCADE"), nullable=False),
        sa.Column("ordinal", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("heading", sa.Text, nullable=False),
        sa.Column("start", sa.Integer, nullable=False),
        sa.Column("end", sa.Integer, nullable=False),
        sa.Column("tokens", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_kb_chunks_document_id", "kb_chunks", ["document_id"])
    op.create_index("ix_kb_chunks_kb_id", "kb_chunks", ["kb_id"])
    op.add_column("conversations", sa.Column("knowledge_base_ids", sa.JSON, nullable=True))
    op.add_column("messages", sa.Column("sources", sa.JSON, nullable=True))
    _vectors()


def _vectors() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        try:
            # Partitioned by knowledge base: a search reads only the partitions it asks for.
            op.execute("CREATE VIRTUAL TABLE kb_vectors USING vec0(kb_id integer partition key, "
                       f"embedding float[{DIM}] distance_metric=cosine)")
        except Exception as e:  # this SQLite cannot load sqlite-vec
            log.warning("sqlite-vec is not available (%s): knowledge-base vectors are searched exactly", e)
            op.execute("CREATE TABLE kb_vectors (rowid INTEGER PRIMARY KEY, kb_id INTEGER NOT NULL, "
                       "embedding BLOB NOT NULL)")
        # Vectors go with their chunk (a virtual table takes no foreign key).
        op.execute("CREATE TRIGGER kb_vectors_delete AFTER DELETE ON kb_chunks BEGIN "
                   "DELETE FROM kb_vectors WHERE rowid = old.id; END")
        return
    try:
        with bind.begin_nested():
            op.execute("CREATE EXTENSION IF NOT EXISTS vector")
        column = f"vector({DIM})"
    except Exception as e:
        log.warning("pgvector is not available (%s): knowledge-base vectors are searched exactly", e)
        column = "real[]"
    op.execute(f"CREATE TABLE kb_vectors (chunk_id integer PRIMARY KEY REFERENCES kb_chunks (id) ON DELETE CASCADE, "
               f"embedding {column} NOT NULL)")
    if column.startswith("vector"):
        op.execute("CREATE INDEX kb_vectors_hnsw ON kb_vectors USING hnsw (embedding vector_cosine_ops)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS kb_vectors")
    op.drop_column("messages", "sources")
    op.drop_column("conversations", "knowledge_base_ids")
    for table in ("kb_chunks", "kb_documents", "knowledge_bases"):
        op.drop_table(table)
