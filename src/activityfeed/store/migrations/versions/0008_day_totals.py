"""read path: per-day event totals, so an unfiltered total reads a row a day

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 03:00:00

``event_day_totals`` holds, per workspace, UTC day and ``private_to`` ('' for public
events), how many events were created: ``event_day_counts`` summed over resource type
and action. The feed's ``total`` without a type or action filter reads it, one or two
rows a day instead of one per day, type and action (about forty: a year's total read
14,600 rows). Triggers on ``event_day_counts`` keep it on both databases, so whatever
keeps the day counts (PostgreSQL's trigger on ``events``, SQLite's
``store.events.index_batch``, the bulk loader, the benchmark's floor) keeps the totals:
a row trigger per day-count row a batch touches (a few dozen), not per event.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# The statements spelled out (no string building): triggers are schema, read as written.
SQLITE = [
    """CREATE TRIGGER event_day_totals_insert AFTER INSERT ON event_day_counts BEGIN
        INSERT INTO event_day_totals(workspace_id, day, private_to, n)
        VALUES (NEW.workspace_id, NEW.day, NEW.private_to, NEW.n)
        ON CONFLICT(workspace_id, day, private_to) DO UPDATE SET n = n + excluded.n;
    END""",
    """CREATE TRIGGER event_day_totals_update AFTER UPDATE OF n ON event_day_counts BEGIN
        UPDATE event_day_totals SET n = n + NEW.n - OLD.n
        WHERE workspace_id = NEW.workspace_id AND day = NEW.day
          AND private_to = NEW.private_to;
    END""",
    """CREATE TRIGGER event_day_totals_delete AFTER DELETE ON event_day_counts BEGIN
        UPDATE event_day_totals SET n = n - OLD.n
        WHERE workspace_id = OLD.workspace_id AND day = OLD.day
          AND private_to = OLD.private_to;
    END""",
]

POSTGRESQL = [
    """CREATE FUNCTION event_day_totals_keep() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO event_day_totals AS t (workspace_id, day, private_to, n)
            VALUES (NEW.workspace_id, NEW.day, NEW.private_to, NEW.n)
            ON CONFLICT (workspace_id, day, private_to) DO UPDATE SET n = t.n + excluded.n;
        ELSIF TG_OP = 'UPDATE' THEN
            UPDATE event_day_totals SET n = n + NEW.n - OLD.n
            WHERE workspace_id = NEW.workspace_id AND day = NEW.day
              AND private_to = NEW.private_to;
        ELSE
            UPDATE event_day_totals SET n = n - OLD.n
            WHERE workspace_id = OLD.workspace_id AND day = OLD.day
              AND private_to = OLD.private_to;
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER event_day_totals_keep
    AFTER INSERT OR UPDATE OF n OR DELETE ON event_day_counts
    FOR EACH ROW EXECUTE FUNCTION event_day_totals_keep()""",
    # A TRUNCATE of the counts (with the other tables, as the tests reset) empties the
    # totals too. (0006's trigger on a TRUNCATE of events deletes the counts, which the
    # row trigger follows.)
    """CREATE FUNCTION event_day_totals_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN DELETE FROM event_day_totals; RETURN NULL; END $$""",
    """CREATE TRIGGER event_day_totals_truncate AFTER TRUNCATE ON event_day_counts
    FOR EACH STATEMENT EXECUTE FUNCTION event_day_totals_truncate()""",
]

BACKFILL = """INSERT INTO event_day_totals(workspace_id, day, private_to, n)
    SELECT workspace_id, day, private_to, sum(n) FROM event_day_counts
    GROUP BY workspace_id, day, private_to"""


def upgrade() -> None:
    op.create_table(
        "event_day_totals",
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("private_to", sa.String(length=32), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "workspace_id", "day", "private_to", name=op.f("pk_event_day_totals")
        ),
    )
    op.execute(BACKFILL)
    for statement in SQLITE if op.get_bind().dialect.name == "sqlite" else POSTGRESQL:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS event_day_totals_keep ON event_day_counts")
        op.execute("DROP TRIGGER IF EXISTS event_day_totals_truncate ON event_day_counts")
        op.execute("DROP FUNCTION IF EXISTS event_day_totals_keep()")
        op.execute("DROP FUNCTION IF EXISTS event_day_totals_truncate()")
    else:
        for name in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS event_day_totals_{name}")
    op.drop_table("event_day_totals")
