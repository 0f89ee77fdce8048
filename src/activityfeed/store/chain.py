"""The hash chain's rows: checkpoints, written with each batch of events, and the reads
that verify them (the rules are in ``domain/chain.py``).

Whoever inserts into ``events`` reads the head with ``select_head`` (instead of
``store.events.select_head``: the same statement, plus the newest checkpoint) and then
calls ``append_checkpoint`` in the same transaction, under the workspace's write lock.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, tuple_

from activityfeed.domain import chain
from activityfeed.domain.events import Event
from activityfeed.store.db import Tx
from activityfeed.store.schema import LIMIT_ONE, event_checkpoints, events, workspaces

_CHUNK = 5000
_FIELD_COLUMNS = tuple(events.c[name] for name in chain.FIELDS)
_SEQ, _ORD = chain.FIELDS.index("seq"), chain.FIELDS.index("ws_ord")


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The workspace's newest ``ws_ord`` and the digest its next checkpoint chains from,
    and when that newest event was recorded (None for no event)."""

    ws_ord: int
    digest: bytes
    recorded_at: datetime | None


def _newest(column: Any, order: Any, workspace: Any) -> Any:
    return (
        select(column).where(workspace == bindparam("ws")).order_by(order.desc()).limit(LIMIT_ONE)
    )


#: Built once (every ingestion batch reads it): the newest event's ``ws_ord`` and
#: ``recorded_at`` (by ws_ord, not seq: see store.events.newest_first_in_workspace), and
#: the newest checkpoint's digest.
_HEAD = select(
    _newest(events.c.ws_ord, events.c.ws_ord, events.c.workspace_id).scalar_subquery(),
    _newest(events.c.recorded_at, events.c.ws_ord, events.c.workspace_id).scalar_subquery(),
    _newest(
        event_checkpoints.c.digest, event_checkpoints.c.last_ord, event_checkpoints.c.workspace_id
    ).scalar_subquery(),
)


def select_head(tx: Tx, workspace_id: str) -> ChainHead:
    """The newest event's ``ws_ord`` (0 for none) and ``recorded_at``, and the newest
    checkpoint's digest (the genesis for none), in one statement."""
    row = tx.conn.execute(_HEAD, {"ws": workspace_id}).one()
    return ChainHead(
        ws_ord=int(row[0] or 0),
        digest=bytes.fromhex(row[2]) if row[2] else chain.genesis(workspace_id),
        recorded_at=row[1],
    )


def append_checkpoint(
    tx: Tx, workspace_id: str, head: ChainHead, rows: Sequence[Sequence[Any]]
) -> str:
    """Write the checkpoint of ``rows`` (values in ``chain.FIELDS`` order, numbered
    ``head.ws_ord + 1 …``) in canonical version ``chain.VERSION``: one hash per event and
    one INSERT. Returns the new digest.

    When the stored checkpoints stop short of ``head.ws_ord`` (events written without
    their checkpoint), this one still chains from the newest checkpoint: the writer
    does not fail, and ``verify`` reports the uncovered positions.
    """
    if not rows:
        return head.digest.hex()
    first, last = head.ws_ord + 1, head.ws_ord + len(rows)
    digest = chain.fold(head.digest, first, last, map(chain.leaf, rows)).hex()
    tx.conn.execute(
        insert(event_checkpoints).values(
            workspace_id=workspace_id,
            first_ord=first,
            last_ord=last,
            version=chain.VERSION,
            digest=digest,
        )
    )
    return digest


def event_values(e: Event, ws_ord: int) -> tuple[Any, ...]:
    """An event as ``insert_events`` stores it, in ``chain.FIELDS`` order."""
    actor = e.actor
    return (
        e.seq,
        e.id,
        e.workspace_id,
        ws_ord,
        e.resource_type.value,
        e.action.value,
        e.resource_id,
        e.resource_name,
        e.description,
        actor.id if actor else None,
        actor.name if actor else None,
        actor.email if actor else None,
        e.source.kind.value,
        e.source.api_key_prefix,
        e.created_at,
        e.recorded_at,
        e.metadata,
        e.private_to,
        e.idempotency_key,
        e.payload_hash,
    )


def iter_checkpoints(tx: Tx, workspace_id: str) -> Iterator[chain.Checkpoint]:
    """The workspace's checkpoints by ``last_ord``, read in keyset chunks."""
    cp = event_checkpoints.c
    after = -1
    while True:
        rows = tx.conn.execute(
            select(cp.first_ord, cp.last_ord, cp.digest, cp.version)
            .where(cp.workspace_id == workspace_id, cp.last_ord > after)
            .order_by(cp.last_ord)
            .limit(_CHUNK)
        ).all()
        for r in rows:
            yield chain.Checkpoint(int(r[0]), int(r[1]), r[2], int(r[3]))
        if len(rows) < _CHUNK:
            return
        after = int(rows[-1][1])


def iter_stored(
    tx: Tx, workspace_id: str, *, after_ord: int | None = None
) -> Iterator[tuple[Any, ...]]:
    """Every stored event of the workspace (past position ``after_ord`` when given),
    values in ``chain.FIELDS`` order, by ``(ws_ord, seq)`` (so duplicated positions are
    seen, not skipped), in keyset chunks."""
    ev = events.c
    after: tuple[int, int] = (-(2**62), 0) if after_ord is None else (after_ord, 2**62)
    while True:
        rows = tx.conn.execute(
            select(*_FIELD_COLUMNS)
            .where(ev.workspace_id == workspace_id, tuple_(ev.ws_ord, ev.seq) > after)
            .order_by(ev.ws_ord, ev.seq)
            .limit(_CHUNK)
        ).all()
        for r in rows:
            yield tuple(r)
        if len(rows) < _CHUNK:
            return
        last = rows[-1]
        after = (int(last[_ORD]), int(last[_SEQ]))


def iter_leaves(tx: Tx, workspace_id: str) -> Iterator[chain.Leaf]:
    """Every stored event as a leaf, by position: its values, which ``chain.check``
    hashes in the version of the checkpoint that covers it, and its stored ``seq``."""
    for values in iter_stored(tx, workspace_id):
        yield chain.Leaf(ws_ord=int(values[_ORD]), seq=int(values[_SEQ]), values=values)


def select_workspaces(tx: Tx, slug: str | None = None) -> list[tuple[str, str]]:
    """(id, slug) of every workspace, or of the one with ``slug``, in slug order."""
    stmt = select(workspaces.c.id, workspaces.c.slug).order_by(workspaces.c.slug)
    if slug is not None:
        stmt = stmt.where(workspaces.c.slug == slug)
    return [(r[0], r[1]) for r in tx.conn.execute(stmt)]
