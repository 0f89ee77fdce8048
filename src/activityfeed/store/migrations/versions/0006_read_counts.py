"""read path: per-day event counts, kept by the database, for exact cheap totals

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 01:10:00

``event_day_counts`` holds, per workspace, UTC day, ``private_to`` ('' for public
events), resource type and action, how many events were created. A trigger on
``events`` keeps it on PostgreSQL (per statement, from the transition table), so every
insert path there (the service, a bulk load, ``COPY``) keeps it right. On SQLite a
per-row trigger cost a third of ingestion's throughput, so whoever inserts events there
calls ``store.events.index_batch`` in the same transaction (one statement a batch);
events are never updated or deleted (a TRUNCATE of ``events`` on PostgreSQL empties the
counts too). The feed's ``total`` adds whole days from here and counts only the two
partial days at the range's edges in the feed index.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

KEY = "workspace_id, day, private_to, resource_type, action"
INSERT = f"INSERT INTO event_day_counts({KEY}, n) "
SQLITE_DAY = "substr(created_at, 1, 10)"
PG_DAY = "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


def _grouped(day: str, source: str) -> str:
    return (
        f"SELECT workspace_id, {day}, coalesce(private_to, ''), resource_type, action, "  # noqa: S608
        f"count(*) FROM {source} GROUP BY 1, 2, 3, 4, 5"
    )


def upgrade() -> None:
    op.create_table(
        "event_day_counts",
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("private_to", sa.String(length=32), nullable=False),
        sa.Column("resource_type", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "workspace_id",
            "day",
            "private_to",
            "resource_type",
            "action",
            name=op.f("pk_event_day_counts"),
        ),
    )
    if op.get_bind().dialect.name == "sqlite":
        # No per-row trigger on SQLite: it costs a third of ingestion's throughput.
        # store.events.index_batch adds a whole batch's counts in one statement instead.
        op.execute(INSERT + _grouped(SQLITE_DAY, "events"))
    else:
        op.execute(
            "CREATE FUNCTION events_day_count() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            + INSERT.replace("event_day_counts", "event_day_counts AS c")
            + _grouped(PG_DAY, "new_rows")
            + f" ORDER BY 1, 2, 3, 4, 5 ON CONFLICT ({KEY}) DO UPDATE SET n = c.n + excluded.n;"
            " RETURN NULL; END $$"
        )
        op.execute(
            "CREATE TRIGGER events_day_count AFTER INSERT ON events "
            "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
            "EXECUTE FUNCTION events_day_count()"
        )
        # A TRUNCATE of events (test fixtures, an operator's reset) empties the counts too.
        op.execute(
            "CREATE FUNCTION events_day_count_truncate() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN DELETE FROM event_day_counts; RETURN NULL; END $$"
        )
        op.execute(
            "CREATE TRIGGER events_day_count_truncate AFTER TRUNCATE ON events "
            "FOR EACH STATEMENT EXECUTE FUNCTION events_day_count_truncate()"
        )
        op.execute(INSERT + _grouped(PG_DAY, "events"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS events_day_count ON events")
        op.execute("DROP FUNCTION IF EXISTS events_day_count()")
        op.execute("DROP TRIGGER IF EXISTS events_day_count_truncate ON events")
        op.execute("DROP FUNCTION IF EXISTS events_day_count_truncate()")
    op.drop_table("event_day_counts")
