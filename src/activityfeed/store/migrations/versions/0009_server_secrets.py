"""secrets: the installation's keys (the one that seals cursors and stream positions)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 11:00:00

The key is made here, so that serving never writes to read it; a table emptied later
gets a new one on first use (``store.secrets.secret``). A new key only makes the cursors
and stream positions of the old one unknown: a list starts again from its first page, a
live tab reloads its list.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "server_secrets",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_server_secrets")),
    )
    table = sa.table(
        "server_secrets",
        sa.column("name", sa.String()),
        sa.column("secret", sa.LargeBinary()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    # AES-256-SIV's 64 bytes (domain/sealing.py, KEY_BYTES), written out: a migration
    # does what it did when it was written.
    op.bulk_insert(
        table,
        [{"name": "positions", "secret": secrets.token_bytes(64), "created_at": datetime.now(UTC)}],
    )


def downgrade() -> None:
    op.drop_table("server_secrets")
