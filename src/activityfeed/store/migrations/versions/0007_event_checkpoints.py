"""tamper evidence: a hash chain of per-batch checkpoints over each workspace's events

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 04:00:00

``event_checkpoints`` holds one row per recording transaction: the ``ws_ord`` range it
appended and ``sha256(previous digest, range, the events' leaf hashes)``. The upgrade
chains the history already stored, in checkpoints of ``BACKFILL`` events, so that
``activityfeed verify`` passes on an upgraded database (it can only vouch for that
history from the upgrade on).

The leaves are canonical version 2 (docs/decisions/0003-tamper-evidence.md), the form
the code writes, which leaves out ``seq``: chained in version 1, a pre-0007 history
would have its exports give the counter every workspace shares for each of its events.
Databases that ran this revision before it wrote version 2 keep their version-1
checkpoints, which verify forever. The form is written out here, not imported from
``activityfeed.domain.chain``, and so are the columns: a migration must do the same
whenever it runs, whatever the code around it has become.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BACKFILL = 10_000
#: The canonical version this revision writes (see the module's docstring).
_VERSION = 2

#: The columns of ``events`` as of this revision, in the order version 2 lists them:
#: every stored column but ``seq``.
_FIELDS = (
    "id",
    "workspace_id",
    "ws_ord",
    "resource_type",
    "action",
    "resource_id",
    "resource_name",
    "description",
    "actor_id",
    "actor_name",
    "actor_email",
    "source_kind",
    "source_key_prefix",
    "created_at",
    "recorded_at",
    "metadata",
    "private_to",
    "idempotency_key",
    "payload_hash",
)
_TIMES = frozenset({_FIELDS.index("created_at"), _FIELDS.index("recorded_at")})
_METADATA = _FIELDS.index("metadata")
_events = sa.table(
    "events",
    *(
        sa.column(
            name,
            sa.DateTime(timezone=True)
            if name.endswith("_at")
            else sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
            if name == "metadata"
            else None,
        )
        for name in _FIELDS
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
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def _time(value: datetime) -> str:
    # SQLite gives back the naive UTC text it stores; PostgreSQL an aware timestamptz.
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")


def _norm(value: Any) -> Any:
    """Metadata as either database gives it back after a JSON round trip: keys as
    strings in sorted order, integral floats as the integer of their shortest repr."""
    kind = type(value)
    if kind is dict:
        items = sorted(
            ((k if type(k) is str else json.dumps(k), v) for k, v in value.items()),
            key=lambda item: item[0],
        )
        return {k: _norm(v) for k, v in items}
    if kind is list or kind is tuple:
        return [_norm(v) for v in value]
    if kind is float and value.is_integer():
        return int(Decimal(repr(value)))
    return value


def _leaf(values: Sequence[Any]) -> bytes:
    """sha256 of the compact ASCII JSON array ``[2, *values]`` (``_FIELDS`` order)."""
    row: list[Any] = [_VERSION, *values]
    for i in _TIMES:
        row[i + 1] = _time(row[i + 1])
    metadata = row[_METADATA + 1]
    row[_METADATA + 1] = _norm(metadata) if metadata else {}
    return hashlib.sha256(_ENCODER.encode(row).encode("ascii")).digest()


def _genesis(workspace_id: str) -> bytes:
    return hashlib.sha256(b"activityfeed/events/v1\x00" + workspace_id.encode()).digest()


def _fold(previous: bytes, first: int, last: int, leaves: Iterable[bytes]) -> bytes:
    h = hashlib.sha256(previous)
    h.update(struct.pack(">QQ", first, last))
    for one in leaves:
        h.update(one)
    return h.digest()


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
        previous = _genesis(workspace_id)
        after = 0
        while rows := conn.execute(
            sa.select(*_events.c)
            .where(_events.c.workspace_id == workspace_id, _events.c.ws_ord > after)
            .order_by(_events.c.ws_ord)
            .limit(BACKFILL)
        ).all():
            first, last = int(rows[0].ws_ord), int(rows[-1].ws_ord)
            previous = _fold(previous, first, last, (_leaf(tuple(r)) for r in rows))
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
