"""Wake-ups between processes: PostgreSQL NOTIFY/LISTEN, and SQLite tailing.

A wake-up carries no data, only *where* to look: "workspace W has new events" or "user U
changed their state in workspace W". Every process's stream broker then reads what is
new from the tables by position, so a lost or repeated wake-up costs one query, never a
lost or duplicated message.

On PostgreSQL the recording transaction itself sends the wake-up with ``pg_notify``,
which the server delivers only when (and if) that transaction commits; each process
holds one listening connection. SQLite has no NOTIFY: each process tails the two tables
by primary key (``select_tail``), a single cheap query per poll.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, literal_column, select
from sqlalchemy.engine import make_url

from activityfeed.store.db import Tx, normalise_url
from activityfeed.store.schema import events, stream_changes

log = logging.getLogger(__name__)

CHANNEL = "activityfeed_stream"


@dataclass(frozen=True, slots=True)
class Wake:
    """Something new in ``workspace_id``: events (no user) or a user's state change."""

    workspace_id: str
    user_id: str | None = None

    def encode(self) -> str:
        return f"c {self.workspace_id} {self.user_id}" if self.user_id else f"e {self.workspace_id}"

    @classmethod
    def decode(cls, payload: str) -> Wake | None:
        parts = payload.split(" ")
        if parts[0] == "e" and len(parts) == 2:
            return cls(parts[1])
        if parts[0] == "c" and len(parts) == 3:
            return cls(parts[1], parts[2])
        return None


def notify(tx: Tx, wake: Wake) -> None:
    """Wake every process's stream when ``tx`` commits (PostgreSQL; SQLite is tailed)."""
    if tx.dialect == "postgresql":
        tx.conn.execute(select(func.pg_notify(CHANNEL, wake.encode())))


@dataclass(frozen=True, slots=True)
class Tail:
    """What arrived since the last poll, and the positions to poll from next."""

    event_seq: int
    change_seq: int
    wakes: frozenset[Wake]


def _unindexed(tx: Tx, *columns: str) -> list[Any]:
    # Grouping by a bare column lets SQLite pick an index that starts with it and read
    # all of it (every event, four times a second in every process); a unary "+" makes
    # the column unindexable, so the plan is the primary-key range of the new rows.
    prefix = "+" if tx.dialect == "sqlite" else ""
    return [literal_column(prefix + c) for c in columns]


def select_tail(tx: Tx, *, after_event_seq: int, after_change_seq: int) -> Tail:
    """The workspaces with events above ``after_event_seq`` and the (workspace, user)
    pairs with changes above ``after_change_seq``: two range scans of primary keys.

    Only sound where commits follow ``seq`` order, as on SQLite (one writer at a time,
    ``seq`` handed out inside the write lock).
    """
    wakes: set[Wake] = set()
    event_seq, change_seq = after_event_seq, after_change_seq
    for ev in tx.conn.execute(
        select(events.c.workspace_id, func.max(events.c.seq))
        .where(events.c.seq > after_event_seq)
        .group_by(*_unindexed(tx, "events.workspace_id"))
    ):
        wakes.add(Wake(ev[0]))
        event_seq = max(event_seq, int(ev[1]))
    for row in tx.conn.execute(
        select(
            stream_changes.c.workspace_id, stream_changes.c.user_id, func.max(stream_changes.c.seq)
        )
        .where(stream_changes.c.seq > after_change_seq)
        .group_by(*_unindexed(tx, "stream_changes.workspace_id", "stream_changes.user_id"))
    ):
        wakes.add(Wake(row[0], row[1]))
        change_seq = max(change_seq, int(row[2]))
    return Tail(event_seq=event_seq, change_seq=change_seq, wakes=frozenset(wakes))


def select_tail_start(tx: Tx) -> tuple[int, int]:
    """The newest event and change seqs: where a new tailer starts."""
    e = tx.conn.execute(select(func.coalesce(func.max(events.c.seq), 0))).scalar_one()
    c = tx.conn.execute(select(func.coalesce(func.max(stream_changes.c.seq), 0))).scalar_one()
    return int(e), int(c)


def libpq_url(url: str) -> str:
    """The SQLAlchemy URL as a libpq URI for a raw psycopg connection."""
    parsed = make_url(normalise_url(url)).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


async def listen(
    url: str,
    on_wake: Callable[[Wake], None],
    on_connect: Callable[[], None],
    *,
    retry_seconds: float = 1.0,
) -> None:
    """LISTEN on one connection until cancelled; reconnect after any failure.

    ``on_connect`` runs each time the LISTEN is in place, so the caller can catch up on
    whatever committed while no connection was listening (nothing is replayed by the
    server). ``on_wake`` gets each notification, in commit order.
    """
    # Here, not at the top: only PostgreSQL listens, and the driver is 9 MB of a SQLite
    # worker's memory that it would never use.
    import psycopg

    delay = retry_seconds
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True)
        except (psycopg.Error, OSError) as exc:
            log.warning("stream listener cannot connect (%s); retrying", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
            continue
        try:
            await conn.execute(f"LISTEN {CHANNEL}")
            delay = retry_seconds
            on_connect()
            while True:
                async for note in conn.notifies(timeout=30.0):
                    if (wake := Wake.decode(note.payload)) is not None:
                        on_wake(wake)
                # A quiet half-minute: make sure the connection is still alive.
                await conn.execute("SELECT 1")
        except (psycopg.Error, OSError) as exc:
            log.warning("stream listener lost its connection (%s); reconnecting", exc)
            await asyncio.sleep(delay)
        finally:
            await conn.close()
