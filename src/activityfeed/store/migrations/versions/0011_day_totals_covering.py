"""read path: PostgreSQL's key of ``event_day_totals`` carries ``n``

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27 22:00:00

An unfiltered ``total`` sums ``event_day_totals.n`` over a range of days. With ``n``
only in the table, PostgreSQL found the rows in the key's index and then read a heap
page for every row or two (a bitmap heap scan: 56 pages for 60 rows, a third of the
total's statement at 1,000,000 events). With ``n`` in the key's index (``INCLUDE``) the
sum reads the index alone wherever the visibility map says the pages are settled, which
is every day but the few still being written. The price: a day's row updated by the
triggers is no longer a heap-only update (``n`` is now indexed), a new index entry per
update, a few dozen a batch. SQLite keeps its key as it is: its rows are found by rowid
from the same index, a few microseconds for a year.
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

KEY = "pk_event_day_totals"
COLUMNS = "workspace_id, day, private_to"


def _rekey(include: str) -> None:
    # One statement: the table is never without its key (the triggers' ON CONFLICT
    # needs it), and the new index is built under the same lock.
    op.execute(
        f"ALTER TABLE event_day_totals DROP CONSTRAINT {KEY}, "
        f"ADD CONSTRAINT {KEY} PRIMARY KEY ({COLUMNS}){include}"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _rekey(" INCLUDE (n)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _rekey("")
