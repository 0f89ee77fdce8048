"""ingest: SQLite's search index is fed once per batch, not by a per-row trigger

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 00:00:00

The FTS5 trigger ran one trigram insert per event as a sub-statement, and FTS5 writes
its pending terms out at every statement boundary, so a batch of 1000 events wrote 1000
tiny index segments (and merged them): ingestion ran at a sixth of the table's speed.
``store.events.insert_events`` now fills ``events_fts`` for the whole batch with one
``INSERT ... SELECT`` in the same transaction. PostgreSQL's GIN index is unchanged.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS events_fts_insert")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE TRIGGER events_fts_insert AFTER INSERT ON events BEGIN "
            "INSERT INTO events_fts(rowid, body) VALUES (new.seq, "
            "new.resource_name || ' ' || new.resource_type || ' ' || new.description); END"
        )
