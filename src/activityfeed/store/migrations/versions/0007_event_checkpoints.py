"""tamper evidence: a hash chain of per-batch checkpoints over each workspace's events

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 04:00:00

``event_checkpoints`` holds one row per recording transaction: the ``ws_ord`` range it
appended and ``sha256(previous digest, range, the events' leaf hashes)``. The upgrade
chains the history already stored, in checkpoints of ``BACKFILL`` events, so that
``activityfeed verify`` passes on an upgraded database (it can only vouch for that
history from the upgrade on). The canonical form is version 1 of
``activityfeed.domain.chain``; a later version would add its own functions there, so this
migration keeps computing version 1.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from activityfeed.domain import chain
from activityfeed.store.schema import JsonDoc, UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BACKFILL = 10_000
#: The canonical version of this revision, not ``chain.VERSION`` (2 since): a migration
#: does the same whenever it runs, and ``verify`` reads version 1 forever.
_VERSION = 1

# The columns as of this revision (not the live schema module's table, which may change).
_events = sa.table(
    "events",
    *(
        sa.column(
            name, UTCDateTime() if name.endswith("_at") else JsonDoc if name == "metadata" else None
        )
        for name in chain.FIELDS
    ),
)
_checkpoints = sa.table(
    "event_checkpoints",
    sa.column("workspace_id"),
    sa.column("last_ord"),
    sa.column("first_ord"),
    sa.column("version"),
    sa.column("digest"),
)


def upgrade() -> None:
    op.create_table(
        "event_checkpoints",
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("last_ord", sa.BigInteger(), nullable=False),
        sa.Column("first_ord", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "last_ord", name=op.f("pk_event_checkpoints")),
    )
    conn = op.get_bind()
    workspace_ids = [
        r[0] for r in conn.execute(sa.text("SELECT DISTINCT workspace_id FROM events ORDER BY 1"))
    ]
    for workspace_id in workspace_ids:
        previous = chain.genesis(workspace_id)
        after = 0
        while rows := conn.execute(
            sa.select(*_events.c)
            .where(_events.c.workspace_id == workspace_id, _events.c.ws_ord > after)
            .order_by(_events.c.ws_ord)
            .limit(BACKFILL)
        ).all():
            first, last = int(rows[0].ws_ord), int(rows[-1].ws_ord)
            previous = chain.fold(
                previous, first, last, (chain.leaf(tuple(r), _VERSION) for r in rows)
            )
            conn.execute(
                sa.insert(_checkpoints).values(
                    workspace_id=workspace_id,
                    first_ord=first,
                    last_ord=last,
                    version=_VERSION,
                    digest=previous.hex(),
                )
            )
            after = last


def downgrade() -> None:
    op.drop_table("event_checkpoints")
