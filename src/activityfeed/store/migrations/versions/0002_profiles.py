"""profiles and undos

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 19:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "profiles",
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("bio", sa.Text(), nullable=False),
        sa.Column("company", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("training_failures", sa.Boolean(), nullable=False),
        sa.Column("weekly_digest", sa.Boolean(), nullable=False),
        sa.Column("email_digest", sa.String(length=16), nullable=False),
        sa.Column(
            "last_changes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("onboarded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("onboarding_event_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_profiles_user_id_users")),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_profiles")),
    )
    op.create_table(
        "undos",
        sa.Column("event_id", sa.String(length=32), nullable=False),
        sa.Column("undo_event_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("undone_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name=op.f("fk_undos_event_id_events")),
        sa.ForeignKeyConstraint(
            ["undo_event_id"], ["events.id"], name=op.f("fk_undos_undo_event_id_events")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_undos_user_id_users")),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_undos")),
        sa.UniqueConstraint("undo_event_id", name=op.f("uq_undos_undo_event_id")),
    )


def downgrade() -> None:
    op.drop_table("undos")
    op.drop_table("profiles")
