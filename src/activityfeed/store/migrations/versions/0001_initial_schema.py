"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 18:34:10.966058
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_failures",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failures")),
    )
    op.create_index(
        op.f("ix_login_failures_address_failed_at"),
        "login_failures",
        ["address", "failed_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_login_failures_email_failed_at"),
        "login_failures",
        ["email", "failed_at"],
        unique=False,
    )

    op.create_table(
        "users",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_table(
        "workspaces",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("is_personal", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspaces")),
        sa.UniqueConstraint("slug", name=op.f("uq_workspaces_slug")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "scopes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_api_keys_created_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_api_keys_workspace_id_workspaces")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_api_keys_secret_hash")),
    )
    op.create_index(op.f("ix_api_keys_workspace_id"), "api_keys", ["workspace_id"], unique=False)

    op.create_table(
        "events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("ws_ord", sa.BigInteger(), nullable=False),
        sa.Column("resource_type", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("resource_id", sa.String(length=128), nullable=False),
        sa.Column("resource_name", sa.String(length=300), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("actor_id", sa.String(length=32), nullable=True),
        sa.Column("actor_name", sa.String(length=200), nullable=True),
        sa.Column("actor_email", sa.String(length=320), nullable=True),
        sa.Column("source_kind", sa.String(length=16), nullable=False),
        sa.Column("source_key_prefix", sa.String(length=16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("private_to", sa.String(length=32), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("payload_hash", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_events_workspace_id_workspaces")
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_events")),
        sa.UniqueConstraint("id", name=op.f("uq_events_id")),
    )
    op.create_index(
        "ix_events_feed",
        "events",
        ["workspace_id", "created_at", "seq", "private_to"],
        unique=False,
    )
    op.create_index(
        "ix_events_private",
        "events",
        ["workspace_id", "seq", "private_to"],
        unique=False,
        sqlite_where=sa.text("private_to IS NOT NULL"),
        postgresql_where=sa.text("private_to IS NOT NULL"),
    )
    op.create_index(
        "ix_events_resource",
        "events",
        ["workspace_id", "resource_type", "resource_id"],
        unique=False,
    )
    op.create_index(
        "ix_events_type_feed",
        "events",
        ["workspace_id", "resource_type", "created_at", "seq"],
        unique=False,
    )
    op.create_index("ux_events_arrival", "events", ["workspace_id", "seq", "ws_ord"], unique=True)
    op.create_index(
        "ux_events_idempotency", "events", ["workspace_id", "idempotency_key"], unique=True
    )
    # Search: trigram indexes, so that a name fragment or a word is found without a scan
    # of the whole history (PRODUCT.md: case-insensitive, over name, type, description).
    if op.get_bind().dialect.name == "sqlite":
        # Contentless (no copy of the text) and fed by a trigger; events are immutable,
        # so an insert trigger is all it needs.
        op.execute(
            "CREATE VIRTUAL TABLE events_fts USING fts5("
            "body, content='', tokenize='trigram case_sensitive 0')"
        )
        op.execute(
            "CREATE TRIGGER events_fts_insert AFTER INSERT ON events BEGIN "
            "INSERT INTO events_fts(rowid, body) VALUES (new.seq, "
            "new.resource_name || ' ' || new.resource_type || ' ' || new.description); END"
        )
    else:
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute(
            "CREATE INDEX ix_events_search_trgm ON events USING gin "
            "((resource_name || ' ' || resource_type || ' ' || description) gin_trgm_ops)"
        )
    op.create_index("ux_events_ord", "events", ["workspace_id", "ws_ord"], unique=True)

    op.create_table(
        "memberships",
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_memberships_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_memberships_workspace_id_workspaces")
        ),
        sa.PrimaryKeyConstraint("workspace_id", "user_id", name=op.f("pk_memberships")),
    )
    op.create_index(op.f("ix_memberships_user_id"), "memberships", ["user_id"], unique=False)

    op.create_table(
        "sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_sessions_user_id_users")),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_sessions_workspace_id_workspaces")
        ),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_sessions")),
    )
    op.create_index(op.f("ix_sessions_user_id"), "sessions", ["user_id"], unique=False)

    op.create_table(
        "viewer_marks",
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("seen_seq", sa.BigInteger(), nullable=False),
        sa.Column("seen_ord", sa.BigInteger(), nullable=False),
        sa.Column("archived_seq", sa.BigInteger(), nullable=False),
        sa.Column("archived_ord", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_viewer_marks_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_viewer_marks_workspace_id_workspaces"),
        ),
        sa.PrimaryKeyConstraint("user_id", "workspace_id", name=op.f("pk_viewer_marks")),
    )
    op.create_table(
        "event_states",
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column(
            "event_seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("is_seen", sa.Boolean(), nullable=True),
        sa.Column("is_archived", sa.Boolean(), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_seq"], ["events.seq"], name=op.f("fk_event_states_event_seq_events")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_event_states_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", "event_seq", name=op.f("pk_event_states")),
    )
    op.create_index(
        op.f("ix_event_states_user_id_workspace_id_event_seq"),
        "event_states",
        ["user_id", "workspace_id", "event_seq"],
        unique=False,
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS events_fts_insert")
        op.execute("DROP TABLE IF EXISTS events_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_events_search_trgm")
    op.drop_index(op.f("ix_event_states_user_id_workspace_id_event_seq"), table_name="event_states")

    op.drop_table("event_states")
    op.drop_table("viewer_marks")
    op.drop_index(op.f("ix_sessions_user_id"), table_name="sessions")

    op.drop_table("sessions")
    op.drop_index(op.f("ix_memberships_user_id"), table_name="memberships")

    op.drop_table("memberships")
    op.drop_index("ux_events_ord", table_name="events")
    op.drop_index("ux_events_idempotency", table_name="events")
    op.drop_index("ux_events_arrival", table_name="events")
    op.drop_index("ix_events_type_feed", table_name="events")
    op.drop_index("ix_events_resource", table_name="events")
    op.drop_index("ix_events_private", table_name="events")
    op.drop_index("ix_events_feed", table_name="events")

    op.drop_table("events")
    op.drop_index(op.f("ix_api_keys_workspace_id"), table_name="api_keys")

    op.drop_table("api_keys")
    op.drop_table("workspaces")
    op.drop_table("users")
    op.drop_index(op.f("ix_login_failures_email_failed_at"), table_name="login_failures")
    op.drop_index(op.f("ix_login_failures_address_failed_at"), table_name="login_failures")

    op.drop_table("login_failures")
