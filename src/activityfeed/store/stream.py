"""The live stream's reads and the state-change outbox (``stream_changes``).

New events need no outbox: within a workspace they commit in ``seq`` order (every
writer holds the workspace lock from before its ``seq`` is allocated until it commits),
so "events of W above seq s" is exact. A user's state changes in a workspace are
serialised the same way (the viewer lock in ``states.select_marks``), so "changes of
(W, U) above seq c" is exact too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String, and_, bindparam, delete, func, insert, or_, select

from activityfeed.domain.state import Watermarks
from activityfeed.domain.stream import StateAction
from activityfeed.store import events as event_store
from activityfeed.store.db import Tx
from activityfeed.store.notify import CHANNEL, Wake, notify
from activityfeed.store.schema import event_states, events, stream_changes

_EVENT_COLUMNS = [c for c in events.c if c.name != "payload_hash"]


@dataclass(frozen=True, slots=True)
class Change:
    """One recorded state change of one user in one workspace."""

    seq: int
    prev_seq: int
    action: StateAction
    event_ids: list[str]
    is_all: bool
    created_at: datetime
    #: For an "all" change: the newest event ``seq`` it covered (the head when it ran).
    upto_seq: int | None = None


def notify_events(tx: Tx, workspace_id: str) -> None:
    """Wake the streams of every process for new events of the workspace (at commit)."""
    notify(tx, Wake(workspace_id))


def insert_change(
    tx: Tx,
    *,
    workspace_id: str,
    user_id: str,
    action: StateAction,
    event_ids: Sequence[str],
    is_all: bool,
    upto_seq: int | None = None,
) -> None:
    """Record a state change for the user's other tabs, and wake them at commit.

    The caller holds the viewer's lock for the workspace (``select_marks`` in a write
    transaction), so ``prev_seq`` is really the previous change. ``created_at`` is the
    wall clock: it only decides when the row is pruned and orders replays. An "all"
    change gives ``upto_seq``, the head it covered, so that each row says exactly which
    events it changed (the id list of an "all" change is empty).
    """
    params = change_params(
        workspace_id=workspace_id,
        user_id=user_id,
        action=action,
        event_ids=event_ids,
        is_all=is_all,
        upto_seq=upto_seq,
    )
    # One statement: the previous change's seq is read by the insert itself, and on
    # PostgreSQL the wake-up is sent by the same statement (``notify``'s ``pg_notify``).
    if tx.dialect == "postgresql":
        tx.conn.execute(_INSERT_CHANGE_AND_NOTIFY, params)
    else:
        tx.conn.execute(INSERT_CHANGE, params)


def change_params(
    *,
    workspace_id: str,
    user_id: str,
    action: StateAction,
    event_ids: Sequence[str],
    is_all: bool,
    upto_seq: int | None = None,
) -> dict[str, Any]:
    """The parameters of ``INSERT_CHANGE`` (``ws``, ``user``, ``action``, ``payload``,
    ``created_at``) and of its PostgreSQL wake-up (``channel``, ``wake``)."""
    payload = {
        "eventIds": list(event_ids),
        "all": is_all,
        **({"uptoSeq": upto_seq} if upto_seq is not None else {}),
    }
    return {
        "ws": workspace_id,
        "user": user_id,
        "action": action.value,
        "payload": payload,
        "created_at": datetime.now(UTC),
        "channel": CHANNEL,
        "wake": Wake(workspace_id, user_id).encode(),
    }


_sc = stream_changes.c
#: The outbox row of one state change; parameters as ``change_params`` gives them.
INSERT_CHANGE = insert(stream_changes).from_select(
    ["workspace_id", "user_id", "prev_seq", "action", "payload", "created_at"],
    select(
        bindparam("ws", type_=_sc.workspace_id.type),
        bindparam("user", type_=_sc.user_id.type),
        func.coalesce(func.max(_sc.seq), 0),
        bindparam("action", type_=_sc.action.type),
        bindparam("payload", type_=_sc.payload.type),
        bindparam("created_at", type_=_sc.created_at.type),
    ).where(_sc.workspace_id == bindparam("ws"), _sc.user_id == bindparam("user")),
)
#: PostgreSQL's wake-up, to select from ``INSERT_CHANGE`` as a CTE (``RETURNING seq``).
WAKE = func.pg_notify(bindparam("channel", type_=String()), bindparam("wake", type_=String()))

_INSERT_CHANGE_AND_NOTIFY = select(WAKE).select_from(INSERT_CHANGE.returning(_sc.seq).cte("change"))


def max_change_seq(tx: Tx, *, workspace_id: str, user_id: str) -> int:
    return int(
        tx.conn.execute(
            select(func.coalesce(func.max(stream_changes.c.seq), 0)).where(
                stream_changes.c.workspace_id == workspace_id, stream_changes.c.user_id == user_id
            )
        ).scalar_one()
    )


def select_changes_after(
    tx: Tx, *, workspace_id: str, user_id: str, after_seq: int, limit: int
) -> list[Change]:
    """The user's changes in the workspace above ``after_seq``, oldest first."""
    rows = tx.conn.execute(
        select(stream_changes)
        .where(
            stream_changes.c.workspace_id == workspace_id,
            stream_changes.c.user_id == user_id,
            stream_changes.c.seq > after_seq,
        )
        .order_by(stream_changes.c.seq)
        .limit(limit)
    )
    return [_change(r) for r in rows]


def _change(row: Any) -> Change:
    payload = row.payload or {}
    return Change(
        seq=int(row.seq),
        prev_seq=int(row.prev_seq),
        action=StateAction(row.action),
        event_ids=[str(i) for i in payload.get("eventIds", [])],
        is_all=bool(payload.get("all", False)),
        created_at=row.created_at,
        upto_seq=int(payload["uptoSeq"]) if payload.get("uptoSeq") is not None else None,
    )


def select_events_after(
    tx: Tx, *, viewer_id: str, workspace_id: str, marks: Watermarks, after_seq: int, limit: int
) -> list[event_store.Row]:
    """The events of the workspace the viewer may see above ``after_seq``, in arrival
    order, with the viewer's seen/archived state."""
    stmt = (
        select(
            *_EVENT_COLUMNS,
            event_store.seen_expr(marks).label("is_seen_v"),
            event_store.archived_expr(marks).label("is_archived_v"),
        )
        .select_from(
            events.outerjoin(
                event_states,
                and_(event_states.c.user_id == viewer_id, event_states.c.event_seq == events.c.seq),
            )
        )
        .where(
            events.c.workspace_id == workspace_id,
            or_(events.c.private_to.is_(None), events.c.private_to == viewer_id),
            events.c.seq > after_seq,
        )
        .order_by(events.c.seq)
        .limit(limit)
    )
    return [
        event_store.Row(
            event=event_store.to_event(r),
            is_seen=bool(r.is_seen_v),
            is_archived=bool(r.is_archived_v),
        )
        for r in tx.conn.execute(stmt)
    ]


def prune_changes(tx: Tx, *, before: datetime) -> int:
    """Delete changes older than ``before``, except each (workspace, user)'s newest one.

    The newest row stays so that a later row's ``prev_seq`` can always be checked
    against the table: a reconnecting tab whose position is older than a pruned row is
    told to reload instead of silently missing it.
    """
    newest = select(func.max(stream_changes.c.seq)).group_by(
        stream_changes.c.workspace_id, stream_changes.c.user_id
    )
    result = tx.conn.execute(
        delete(stream_changes).where(
            stream_changes.c.created_at < before, stream_changes.c.seq.not_in(newest)
        )
    )
    return int(result.rowcount or 0)
