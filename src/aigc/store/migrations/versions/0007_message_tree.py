"""Messages form a tree: edits and regenerations add siblings instead of deleting. Each message's
`parent_id` (already a column) names the message it follows; each message remembers which of its
children the branch on screen continues with (`active_child_id`), and the conversation which of
its first messages (`active_root_id`): the active path follows those from the root.

Existing conversations were linear: each message's parent becomes the previous message of its
conversation (by id), its active child the next one, and the active root its first message.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# (table, column, its foreign key's name): both refer to messages.id, ON DELETE SET NULL
_POINTERS = (("conversations", "active_root_id", "fk_conversations_active_root_id_messages"),
             ("messages", "active_child_id", "fk_messages_active_child_id_messages"))


def upgrade() -> None:
    bind = op.get_bind()
    for table, column, fk_name in _POINTERS:
        if bind.dialect.name == "sqlite":
            # In place, as 0002 does: batch mode would copy the table, and dropping the old one
            # would cascade into every conversation's messages. (A downgraded SQLite database still
            # has the columns, see downgrade.)
            if column not in {c["name"] for c in sa.inspect(bind).get_columns(table)}:
                op.execute(f"ALTER TABLE {table} ADD COLUMN {column} INTEGER "
                           "REFERENCES messages (id) ON DELETE SET NULL")
        else:
            op.add_column(table, sa.Column(column, sa.Integer, nullable=True))
            op.create_foreign_key(fk_name, table, "messages", [column], ["id"], ondelete="SET NULL")
    # Siblings are looked up by parent; the index also keeps ON DELETE SET NULL from scanning
    # every message when a conversation's messages go.
    op.create_index("ix_messages_parent_id", "messages", ["parent_id"])
    # One UPDATE per pointer, the same on both databases: the previous message by id, then the
    # next one, then the first.
    op.execute("""
        UPDATE messages SET parent_id = (
            SELECT MAX(p.id) FROM messages AS p
            WHERE p.conversation_id = messages.conversation_id AND p.id < messages.id)
    """)
    op.execute("""
        UPDATE messages SET active_child_id = (
            SELECT MIN(c.id) FROM messages AS c WHERE c.parent_id = messages.id)
    """)
    op.execute("""
        UPDATE conversations SET active_root_id = (
            SELECT MIN(m.id) FROM messages AS m WHERE m.conversation_id = conversations.id)
    """)


def downgrade() -> None:
    op.drop_index("ix_messages_parent_id", table_name="messages")
    for table, column, fk_name in _POINTERS:
        if op.get_bind().dialect.name == "sqlite":
            # SQLite cannot drop a foreign key's column, and copying the table would cascade into
            # the messages: the column stays, unused by 0006, and an upgrade takes it up again.
            op.execute(f"UPDATE {table} SET {column} = NULL")
        else:
            op.drop_constraint(fk_name, table, type_="foreignkey")
            op.drop_column(table, column)
