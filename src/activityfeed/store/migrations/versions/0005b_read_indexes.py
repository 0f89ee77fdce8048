"""read path: per-day event counts, kept by the database, for exact cheap totals

Revision ID: 0005b
Revises: 0004
Create Date: 2026-11-26 01:10:00

``event_day_counts`` holds, per workspace, UTC day and ``private_to`` ('' for public
events), how many events were created that day. A trigger on ``events`` keeps it (per
row on SQLite; per statement, from the transition table, on PostgreSQL), so every
insert path — the service, a bulk load, ``COPY`` — keeps it right; events are never
updated or deleted. The feed's ``total`` adds whole days from here and counts only the
two partial days at the range's edges in the feed index.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005b"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_day_counts",
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("private_to", sa.String(length=32), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "workspace_id", "day", "private_to", name=op.f("pk_event_day_counts")
        ),
    )
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE TRIGGER events_day_count AFTER INSERT ON events BEGIN "
            "INSERT INTO event_day_counts(workspace_id, day, private_to, n) VALUES "
            "(new.workspace_id, substr(new.created_at, 1, 10), coalesce(new.private_to, ''), 1) "
            "ON CONFLICT(workspace_id, day, private_to) DO UPDATE SET n = n + 1; END"
        )
        op.execute(
            "INSERT INTO event_day_counts(workspace_id, day, private_to, n) "
            "SELECT workspace_id, substr(created_at, 1, 10), coalesce(private_to, ''), count(*) "
            "FROM events GROUP BY 1, 2, 3"
        )
    else:
        op.execute(
            "CREATE FUNCTION events_day_count() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO event_day_counts AS c(workspace_id, day, private_to, n) "
            "SELECT workspace_id, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), "
            "coalesce(private_to, ''), count(*) "
            "FROM new_rows GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 "
            "ON CONFLICT (workspace_id, day, private_to) DO UPDATE SET n = c.n + excluded.n; "
            "RETURN NULL; END $$"
        )
        op.execute(
            "CREATE TRIGGER events_day_count AFTER INSERT ON events "
            "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
            "EXECUTE FUNCTION events_day_count()"
        )
        op.execute(
            "INSERT INTO event_day_counts(workspace_id, day, private_to, n) "
            "SELECT workspace_id, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), "
            "coalesce(private_to, ''), count(*) "
            "FROM events GROUP BY 1, 2, 3"
        )


def downgrade() -> None:
    op.execute(
        "DROP TRIGGER IF EXISTS events_day_count ON events"
        if op.get_bind().dialect.name == "postgresql"
        else "DROP TRIGGER IF EXISTS events_day_count"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS events_day_count()")
    op.drop_table("event_day_counts")
