"""stream: the outbox of seen/archive changes for the live stream

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stream_changes",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("prev_seq", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_stream_changes")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_stream_changes_workspace_id_user_id_seq"),
        "stream_changes",
        ["workspace_id", "user_id", "seq"],
        unique=False,
    )
    op.create_index(
        op.f("ix_stream_changes_created_at"), "stream_changes", ["created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_stream_changes_created_at"), table_name="stream_changes")
    op.drop_index(op.f("ix_stream_changes_workspace_id_user_id_seq"), table_name="stream_changes")
    op.drop_table("stream_changes")
