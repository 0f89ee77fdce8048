"""Per-viewer state: watermarks (``viewer_marks``) and per-event exceptions (``event_states``).

See ``activityfeed.domain.state`` for the rule. Invariants kept here:

* ``is_seen`` is only ever stored as TRUE (there is no "mark unseen"), and only above
  the seen watermark; so every unseen event lies above the seen watermark.
* An exception equal to what the watermark already says is stored as NULL, and rows
  whose two columns are NULL are deleted: the table stays as small as the viewer's
  individual clicks since their last "all" operation.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, bindparam, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from activityfeed.domain.state import Watermarks
from activityfeed.store.db import Tx
from activityfeed.store.events import count_private_of_others_above
from activityfeed.store.schema import event_states, viewer_marks


def select_marks(tx: Tx, *, user_id: str, workspace_id: str) -> Watermarks:
    """The viewer's watermarks in the workspace (0/0 when they have none yet).

    In a write transaction on PostgreSQL this first takes the viewer's lock for the
    workspace, held until commit, so that two state changes of one viewer (two tabs:
    "Archive all" and "Mark all seen") run one after the other: otherwise the second
    would write back the watermark the first just moved (a lost update). SQLite
    serialises every writer already.
    """
    if tx.is_write and tx.dialect == "postgresql":
        key = func.hashtextextended(f"viewer_marks:{user_id}:{workspace_id}", 0)
        tx.conn.execute(select(func.pg_advisory_xact_lock(key)))
    row = tx.conn.execute(_MARKS, {"user": user_id, "ws": workspace_id}).first()
    if row is None:
        return Watermarks()
    return Watermarks(seen_seq=row[0], seen_ord=row[1], archived_seq=row[2], archived_ord=row[3])


# The read path's statements are built once, with named parameters (see store/events.py).
_MARKS = select(
    viewer_marks.c.seen_seq,
    viewer_marks.c.seen_ord,
    viewer_marks.c.archived_seq,
    viewer_marks.c.archived_ord,
).where(viewer_marks.c.user_id == bindparam("user"), viewer_marks.c.workspace_id == bindparam("ws"))


def upsert_marks(tx: Tx, *, user_id: str, workspace_id: str, marks: Watermarks) -> None:
    values = {
        "seen_seq": marks.seen_seq,
        "seen_ord": marks.seen_ord,
        "archived_seq": marks.archived_seq,
        "archived_ord": marks.archived_ord,
    }
    dialect_insert = postgresql.insert if tx.dialect == "postgresql" else sqlite.insert
    stmt = dialect_insert(viewer_marks).values(user_id=user_id, workspace_id=workspace_id, **values)
    tx.conn.execute(
        stmt.on_conflict_do_update(index_elements=["user_id", "workspace_id"], set_=values)
    )


def upsert_exceptions(
    tx: Tx,
    *,
    user_id: str,
    workspace_id: str,
    seqs: Sequence[int],
    is_seen: bool | None = None,
    is_archived: bool | None = None,
    set_seen: bool = False,
    set_archived: bool = False,
) -> None:
    """Set one column of the exceptions of ``seqs`` (creating rows as needed).

    Setting a column to None clears that override; rows left with no override are
    deleted, so the table holds only exceptions that say something.
    """
    if not seqs:
        return
    values: dict[str, object] = {}
    if set_seen:
        values["is_seen"] = is_seen
    if set_archived:
        values["is_archived"] = is_archived
    dialect_insert = postgresql.insert if tx.dialect == "postgresql" else sqlite.insert
    stmt = dialect_insert(event_states)
    tx.conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["user_id", "event_seq"],
            set_={k: getattr(stmt.excluded, k) for k in values},
        ),
        [
            {
                "user_id": user_id,
                "event_seq": seq,
                "workspace_id": workspace_id,
                "is_seen": values.get("is_seen"),
                "is_archived": values.get("is_archived"),
            }
            for seq in seqs
        ],
    )
    if None in values.values():
        tx.conn.execute(
            delete(event_states).where(
                *_mine(user_id, workspace_id),
                event_states.c.event_seq.in_(list(seqs)),
                event_states.c.is_seen.is_(None),
                event_states.c.is_archived.is_(None),
            )
        )


def _mine(user_id: str, workspace_id: str) -> list[ColumnElement[bool]]:
    return [event_states.c.user_id == user_id, event_states.c.workspace_id == workspace_id]


def clear_seen_exceptions(tx: Tx, *, user_id: str, workspace_id: str, upto_seq: int) -> None:
    """Forget seen exceptions at or below a new seen watermark (it now says the same)."""
    tx.conn.execute(
        update(event_states)
        .where(
            *_mine(user_id, workspace_id),
            event_states.c.is_seen.is_not(None),
            event_states.c.event_seq <= upto_seq,
        )
        .values(is_seen=None)
    )
    _delete_empty(tx, user_id, workspace_id)


def clear_archived_exceptions(tx: Tx, *, user_id: str, workspace_id: str) -> None:
    """Forget every archive exception (after "archive all" or "restore all")."""
    tx.conn.execute(
        update(event_states)
        .where(*_mine(user_id, workspace_id), event_states.c.is_archived.is_not(None))
        .values(is_archived=None)
    )
    _delete_empty(tx, user_id, workspace_id)


def _delete_empty(tx: Tx, user_id: str, workspace_id: str) -> None:
    tx.conn.execute(
        delete(event_states).where(
            *_mine(user_id, workspace_id),
            event_states.c.is_seen.is_(None),
            event_states.c.is_archived.is_(None),
        )
    )


_es = event_states.c
#: The viewer's exceptions counted by ``count_unseen`` and ``count_inbox``, by what they
#: say; parameters ``user``, ``ws``, ``lo`` (exclusive) and/or ``hi`` (inclusive) seq.
_EXCEPTION_COUNTS = {
    # Restored (unarchived) and not seen, between the seen and the archive watermark.
    "restored_unseen": (
        _es.event_seq > bindparam("lo"),
        _es.event_seq <= bindparam("hi"),
        _es.is_archived == False,  # noqa: E712  (SQL comparison, not Python truthiness)
        or_(_es.is_seen.is_(None), _es.is_seen == False),  # noqa: E712
    ),
    # Seen or archived one by one above a watermark.
    "hidden_above": (
        _es.event_seq > bindparam("lo"),
        or_(_es.is_seen == True, _es.is_archived == True),  # noqa: E712
    ),
    "archived_above": (_es.event_seq > bindparam("lo"), _es.is_archived == True),  # noqa: E712
    "restored_below": (_es.event_seq <= bindparam("hi"), _es.is_archived == False),  # noqa: E712
}
_EXCEPTION_COUNT_STATEMENTS = {
    name: select(func.count())
    .select_from(event_states)
    .where(_es.user_id == bindparam("user"), _es.workspace_id == bindparam("ws"), *conds)
    for name, conds in _EXCEPTION_COUNTS.items()
}


def _exception_count(tx: Tx, which: str, user_id: str, workspace_id: str, **bounds: int) -> int:
    params = {"user": user_id, "ws": workspace_id, **bounds}
    return int(tx.conn.execute(_EXCEPTION_COUNT_STATEMENTS[which], params).scalar_one())


def count_visible_above(
    tx: Tx, *, user_id: str, workspace_id: str, head_ord: int, seq: int, ord_: int
) -> int:
    """Events above a watermark (``seq``/``ord_``) that this viewer can see."""
    return (head_ord - ord_) - count_private_of_others_above(
        tx, viewer_id=user_id, workspace_id=workspace_id, seq=seq
    )


def count_unseen(
    tx: Tx, *, user_id: str, workspace_id: str, marks: Watermarks, head_ord: int
) -> int:
    """Unseen events in the Inbox, exactly, at a cost that does not grow with history.

    Every unseen event is above the seen watermark S. Above max(S, A) the archive
    watermark A archives nothing, so the count is the visible events there less the
    exceptions that make one seen or archived. Between S and A (when A is higher)
    events are archived unless restored, so only restored-and-unseen exceptions count.
    """
    if marks.archived_seq <= marks.seen_seq:
        upper_seq, upper_ord, middle = marks.seen_seq, marks.seen_ord, 0
    else:
        upper_seq, upper_ord = marks.archived_seq, marks.archived_ord
        middle = _exception_count(
            tx,
            "restored_unseen",
            user_id,
            workspace_id,
            lo=marks.seen_seq,
            hi=marks.archived_seq,
        )
    above = count_visible_above(
        tx,
        user_id=user_id,
        workspace_id=workspace_id,
        head_ord=head_ord,
        seq=upper_seq,
        ord_=upper_ord,
    )
    hidden = _exception_count(tx, "hidden_above", user_id, workspace_id, lo=upper_seq)
    return middle + above - hidden


def count_inbox(
    tx: Tx, *, user_id: str, workspace_id: str, marks: Watermarks, head_ord: int
) -> int:
    """Events in the Inbox (whatever their seen state), from watermarks and exceptions."""
    above = count_visible_above(
        tx,
        user_id=user_id,
        workspace_id=workspace_id,
        head_ord=head_ord,
        seq=marks.archived_seq,
        ord_=marks.archived_ord,
    )
    a = marks.archived_seq
    archived_above = _exception_count(tx, "archived_above", user_id, workspace_id, lo=a)
    restored_below = _exception_count(tx, "restored_below", user_id, workspace_id, hi=a)
    return above - archived_above + restored_below


def count_visible(tx: Tx, *, user_id: str, workspace_id: str, head_ord: int) -> int:
    return count_visible_above(
        tx, user_id=user_id, workspace_id=workspace_id, head_ord=head_ord, seq=0, ord_=0
    )
