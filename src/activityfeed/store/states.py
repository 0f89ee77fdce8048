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
from datetime import datetime
from functools import cache
from typing import Any, Literal

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Select,
    String,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from activityfeed.domain.accounts import Membership, Session
from activityfeed.domain.query import ActivityQuery, Cursor
from activityfeed.domain.state import MarksAndHead, Watermarks
from activityfeed.domain.stream import StateAction
from activityfeed.store.accounts import LIVE_SESSION_IN_WORKSPACE, session_in_workspace
from activityfeed.store.db import Tx
from activityfeed.store.events import (
    HEAD,
    PRIVATE_OF_OTHERS,
    PRIVATE_OF_OTHERS_ABOVE,
    ROW_WIDTH,
    Row,
    count_matching,
    count_private_of_others_above,
    newest_first_in_workspace,
    page_statement,
    row_of,
    select_head,
    select_page_with_total,
    total_statement,
)
from activityfeed.store.schema import (
    LIMIT_ONE,
    event_states,
    events,
    memberships,
    sessions,
    stream_changes,
    viewer_marks,
    workspaces,
)
from activityfeed.store.stream import INSERT_CHANGE, WAKE, change_params


def select_marks(tx: Tx, *, user_id: str, workspace_id: str) -> Watermarks:
    """The viewer's watermarks in the workspace (0/0 when they have none yet).

    In a write transaction on PostgreSQL this first takes the viewer's lock for the
    workspace, held until commit, so that two state changes of one viewer (two tabs:
    "Archive all" and "Mark all seen") run one after the other: otherwise the second
    would write back the watermark the first just moved (a lost update). SQLite
    serialises every writer already.
    """
    if tx.is_write and tx.dialect == "postgresql":
        tx.conn.execute(_LOCK_VIEWER, {"key": _viewer_key(user_id, workspace_id)})
    row = tx.conn.execute(_MARKS, {"user": user_id, "ws": workspace_id}).first()
    if row is None:
        return Watermarks()
    return Watermarks(seen_seq=row[0], seen_ord=row[1], archived_seq=row[2], archived_ord=row[3])


def select_marks_and_head(
    tx: Tx, *, user_id: str, workspace_id: str
) -> tuple[Watermarks, tuple[int, int]]:
    """``select_marks`` and ``events.select_head`` (the newest event's seq and ws_ord),
    in one statement in a read transaction. A write transaction takes the viewer's
    lock first (``select_marks``), so it reads them one after the other."""
    if tx.is_write:
        return (
            select_marks(tx, user_id=user_id, workspace_id=workspace_id),
            select_head(tx, workspace_id),
        )
    return _marks_and_head(tx, user_id, workspace_id)


def lock_marks_and_head(
    tx: Tx, *, user_id: str, workspace_id: str
) -> tuple[Watermarks, tuple[int, int]]:
    """For an "all" operation (a write transaction): on PostgreSQL the viewer's lock
    (``select_marks``) and then the workspace's shared lock (``accounts.lock_workspace``:
    in-flight ingestion commits first, and none commits until this transaction ends),
    both in one statement; then the watermarks and the head in a second, which sees
    everything committed before the locks were granted. Two round trips where taking
    each lock and reading each value on its own took four."""
    if tx.dialect == "postgresql":
        params = {"key": _viewer_key(user_id, workspace_id), "ws": workspace_id}
        tx.conn.execute(_LOCK_VIEWER_AND_WORKSPACE, params)
    return _marks_and_head(tx, user_id, workspace_id)


def _marks_and_head(tx: Tx, user_id: str, workspace_id: str) -> tuple[Watermarks, tuple[int, int]]:
    return _marks_and_head_from(
        tx.conn.execute(_MARKS_AND_HEAD, {"user": user_id, "ws": workspace_id}).one()
    )


def _marks_and_head_from(row: Sequence[Any]) -> tuple[Watermarks, tuple[int, int]]:
    """The four watermark columns and the head's two (NULLs: none yet, an empty
    workspace)."""
    marks = (
        Watermarks(seen_seq=row[0], seen_ord=row[1], archived_seq=row[2], archived_ord=row[3])
        if row[0] is not None
        else Watermarks()
    )
    head = (int(row[4]), int(row[5])) if row[4] is not None else (0, 0)
    return marks, head


# The read path's statements are built once, with named parameters (see store/events.py).
_MARKS = select(
    viewer_marks.c.seen_seq,
    viewer_marks.c.seen_ord,
    viewer_marks.c.archived_seq,
    viewer_marks.c.archived_ord,
).where(viewer_marks.c.user_id == bindparam("user"), viewer_marks.c.workspace_id == bindparam("ws"))


def _viewer_key(user_id: str, workspace_id: str) -> str:
    return f"viewer_marks:{user_id}:{workspace_id}"


_LOCK_VIEWER = select(
    func.pg_advisory_xact_lock(func.hashtextextended(bindparam("key", type_=String()), 0))
)
# PostgreSQL evaluates the select list in order: the viewer's lock, then the row lock.
_LOCK_VIEWER_AND_WORKSPACE = _LOCK_VIEWER.add_columns(
    select(workspaces.c.id)
    .where(workspaces.c.id == bindparam("ws"))
    .with_for_update(read=True)
    .scalar_subquery()
)

_HEAD_ROW = HEAD.subquery("head")
_ONE = select(literal(1).label("one")).subquery("one")
# One row whatever exists: the viewer's marks (NULLs when they have none yet) beside the
# head (NULLs in an empty workspace). The head keeps its own plan: one entry of
# ``ux_events_ord``, read once (it does not depend on the marks).
_MARKS_AND_HEAD = select(*_MARKS.selected_columns, _HEAD_ROW.c.seq, _HEAD_ROW.c.ws_ord).select_from(
    _ONE.outerjoin(
        viewer_marks,
        and_(
            viewer_marks.c.user_id == bindparam("user"),
            viewer_marks.c.workspace_id == bindparam("ws"),
        ),
    ).outerjoin(_HEAD_ROW, true())
)


def _head_of_membership(column: ColumnElement[Any]) -> ColumnElement[Any]:
    # Correlated to the row's membership: ``HEAD``'s one ``ux_events_ord`` entry.
    return (
        select(column)
        .where(events.c.workspace_id == memberships.c.workspace_id)
        .order_by(newest_first_in_workspace())
        .limit(LIMIT_ONE)
        .scalar_subquery()
    )


_LIVE_SESSION_FOR_FEED = LIVE_SESSION_IN_WORKSPACE.add_columns(
    *_MARKS.selected_columns,
    _head_of_membership(events.c.seq).label("head_seq"),
    _head_of_membership(events.c.ws_ord).label("head_ord"),
).outerjoin(
    viewer_marks,
    and_(
        viewer_marks.c.user_id == sessions.c.user_id,
        viewer_marks.c.workspace_id == memberships.c.workspace_id,
    ),
)


#: Where the marks and head start in a row of ``_LIVE_SESSION_FOR_FEED`` (six columns).
_MARKS_AT = len(_LIVE_SESSION_FOR_FEED.selected_columns) - 6

#: On PostgreSQL the statement also sets two things for the rest of its read
#: transaction (``set_config(..., true)`` lasts until the transaction ends, and costs no
#: round trip here), both undone by a text search for its own statements
#: (``events._search``; docs/performance.md, "Ninth round"):
#: - prepared statements run on their generic plan. The page's other statements are
#:   built per shape (their values never change which plan is best), but on a long
#:   history PostgreSQL prices their generic plan above a plan for the values at hand,
#:   so it planned the page's rows and its total anew at every page: 0.4 ms of the
#:   server's CPU a page at 1,000,000 events, for the same plans;
#: - no parallel workers. The page's statements read a few index entries, but their
#:   estimates can pass ``parallel_setup_cost``: right after "Archive all" the Inbox's
#:   total started two workers to count nothing, 5.2 ms a page instead of 0.6.
_LIVE_SESSION_FOR_FEED_PG = _LIVE_SESSION_FOR_FEED.add_columns(
    func.set_config("plan_cache_mode", "force_generic_plan", True).label("plan_cache_mode"),
    func.set_config("max_parallel_workers_per_gather", "0", True).label("parallel_workers"),
)


def select_live_session_for_feed(
    tx: Tx, id_hash: str, *, now: datetime, idle_since: datetime
) -> tuple[Session, Membership | None, MarksAndHead | None] | None:
    """The live session (as ``accounts.select_live_session``), the user's membership of
    its active workspace (None when they left it), and their watermarks there with the
    workspace's head (None without the membership): one statement, for the feed page,
    which would otherwise read the marks and head in a statement of their own. Read in
    the page's read transaction, so the marks are those of the page's snapshot."""
    params = {"id_hash": id_hash, "now": now, "idle_since": idle_since}
    stmt = _LIVE_SESSION_FOR_FEED_PG if tx.dialect == "postgresql" else _LIVE_SESSION_FOR_FEED
    found = tx.fetch(stmt, params)
    if not found:
        return None
    row = found[0]
    session, membership = session_in_workspace(row)
    if membership is None:
        return session, None, None
    return session, membership, _marks_and_head_from(row[_MARKS_AT : _MARKS_AT + 6])


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
    _clear(tx, user_id, workspace_id, "is_seen", event_states.c.event_seq <= upto_seq)


def clear_archived_exceptions(tx: Tx, *, user_id: str, workspace_id: str) -> None:
    """Forget every archive exception (after "archive all" or "restore all")."""
    _clear(tx, user_id, workspace_id, "is_archived")


def _clear(tx: Tx, user_id: str, workspace_id: str, column: str, *where: Any) -> None:
    """Set ``column`` to NULL on the viewer's exceptions (``where``): rows that say
    nothing else are deleted, the others updated; one statement on PostgreSQL (the
    delete a data-modifying CTE of the update: the two touch different rows)."""
    other = "is_archived" if column == "is_seen" else "is_seen"
    targets = [*_mine(user_id, workspace_id), event_states.c[column].is_not(None), *where]
    gone = delete(event_states).where(*targets, event_states.c[other].is_(None))
    kept = update(event_states).where(*targets, event_states.c[other].is_not(None))
    kept = kept.values({column: None})
    if tx.dialect == "postgresql":
        tx.conn.execute(kept.add_cte(gone.cte("gone")))
    else:
        tx.conn.execute(gone)
        tx.conn.execute(kept)


#: What an "all" operation counts before it moves a watermark (``move_all``).
Count = Literal["nothing", "inbox", "inbox_and_visible"]
#: The exception column an "all" operation makes moot.
Cleared = Literal["is_seen", "is_archived"]


def move_all(
    tx: Tx,
    *,
    user_id: str,
    workspace_id: str,
    marks: Watermarks,
    new_marks: Watermarks,
    head: tuple[int, int],
    clear: Cleared,
    action: StateAction,
    count: Count = "nothing",
) -> tuple[int, int | None]:
    """The writes of an "all" operation: the viewer's watermarks become ``new_marks``,
    the exceptions that ``clear`` (``is_seen`` or ``is_archived``) now makes moot are
    forgotten (``clear_seen_exceptions`` up to the head, ``clear_archived_exceptions``),
    and the outbox records ``action`` on everything up to the head.

    Returns what ``count`` asks for as it was before the move: the Inbox's size
    (``count_inbox``) and, with ``inbox_and_visible``, the visible events
    (``count_visible``); 0 and None with ``nothing``. The caller holds the locks of
    ``lock_marks_and_head``, which also gave ``marks`` and ``head``. On PostgreSQL this
    is one statement: the writes are data-modifying CTEs, and the counts read the
    statement's snapshot, which none of its own writes change.
    """
    head_seq, head_ord = head
    change = change_params(
        workspace_id=workspace_id,
        user_id=user_id,
        action=action,
        event_ids=[],
        is_all=True,
        upto_seq=head_seq,
    )
    if tx.dialect == "postgresql":
        params = {
            **change,
            **_inbox_params(user_id, workspace_id, marks),
            "upto": head_seq,
            "new_seen_seq": new_marks.seen_seq,
            "new_seen_ord": new_marks.seen_ord,
            "new_archived_seq": new_marks.archived_seq,
            "new_archived_ord": new_marks.archived_ord,
        }
        row = tx.conn.execute(_move_all_statement(clear, count), params).one()
        return _inbox_from(row[1:], marks, head_ord, count)
    counted: tuple[int, int | None] = (0, None)
    if count != "nothing":
        counted = _inbox_and_visible(tx, user_id, workspace_id, marks, head_ord, count)
    upsert_marks(tx, user_id=user_id, workspace_id=workspace_id, marks=new_marks)
    if clear == "is_seen":
        clear_seen_exceptions(tx, user_id=user_id, workspace_id=workspace_id, upto_seq=head_seq)
    else:
        clear_archived_exceptions(tx, user_id=user_id, workspace_id=workspace_id)
    tx.conn.execute(INSERT_CHANGE, change)
    return counted


@cache
def _move_all_statement(clear: Cleared, count: Count) -> Select[Any]:
    """``move_all``'s one PostgreSQL statement, per column cleared and counts."""
    vm = viewer_marks.c
    new = {
        name: bindparam(f"new_{name}", type_=vm[name].type)
        for name in ("seen_seq", "seen_ord", "archived_seq", "archived_ord")
    }
    upsert = postgresql.insert(viewer_marks).values(
        user_id=bindparam("user"), workspace_id=bindparam("ws"), **new
    )
    upsert = upsert.on_conflict_do_update(
        index_elements=["user_id", "workspace_id"],
        set_={name: upsert.excluded[name] for name in new},
    )
    other = "is_archived" if clear == "is_seen" else "is_seen"
    targets = [
        _es.user_id == bindparam("user"),
        _es.workspace_id == bindparam("ws"),
        _es[clear].is_not(None),
    ]
    if clear == "is_seen":
        targets.append(_es.event_seq <= bindparam("upto"))
    gone = delete(event_states).where(*targets, _es[other].is_(None))
    kept = update(event_states).where(*targets, _es[other].is_not(None)).values({clear: None})
    parts: list[Any] = []
    if count != "nothing":
        parts.extend(
            (_INBOX_PARTS if count == "inbox" else _INBOX_AND_VISIBLE_PARTS).selected_columns
        )
    # The three writes touch different rows (the delete and the update split the
    # exceptions by ``other``), as PostgreSQL requires of one statement's CTEs; each
    # runs to completion whether or not the SELECT reads it.
    return (
        select(WAKE, *parts)
        .select_from(INSERT_CHANGE.returning(stream_changes.c.seq).cte("change"))
        .add_cte(upsert.cte("marks"), gone.cte("gone"), kept.cte("kept"))
    )


_es = event_states.c
#: The viewer's exceptions counted by ``count_inbox``, by what they say (``==`` on the
#: columns is SQL, not Python truthiness); parameters ``user``, ``ws``, ``lo``
#: (exclusive) and/or ``hi`` (inclusive) seq.
_EXCEPTION_COUNTS = {
    "archived_above": (_es.event_seq > bindparam("lo"), _es.is_archived == True),  # noqa: E712
    "restored_below": (_es.event_seq <= bindparam("hi"), _es.is_archived == False),  # noqa: E712
}
_EXCEPTION_COUNT_STATEMENTS = {
    name: select(func.count())
    .select_from(event_states)
    .where(_es.user_id == bindparam("user"), _es.workspace_id == bindparam("ws"), *conds)
    for name, conds in _EXCEPTION_COUNTS.items()
}


_INBOX_PARTS = select(
    PRIVATE_OF_OTHERS_ABOVE.scalar_subquery(),
    _EXCEPTION_COUNT_STATEMENTS["archived_above"].scalar_subquery(),
    _EXCEPTION_COUNT_STATEMENTS["restored_below"].scalar_subquery(),
)
# ... and every other member's private events (what the viewer cannot see at all).
_INBOX_AND_VISIBLE_PARTS = _INBOX_PARTS.add_columns(PRIVATE_OF_OTHERS.scalar_subquery())


def count_visible_above(
    tx: Tx, *, user_id: str, workspace_id: str, head_ord: int, seq: int, ord_: int
) -> int:
    """Events above a watermark (``seq``/``ord_``) that this viewer can see."""
    return (head_ord - ord_) - count_private_of_others_above(
        tx, viewer_id=user_id, workspace_id=workspace_id, seq=seq
    )


def _unseen_upper(marks: Watermarks) -> tuple[int, int]:
    """The higher watermark's (seq, ord): every unseen event in the Inbox above it is
    visible and not hidden by an exception."""
    if marks.archived_seq <= marks.seen_seq:
        return marks.seen_seq, marks.seen_ord
    return marks.archived_seq, marks.archived_ord


@cache
def _unseen_parts(*, middle: bool) -> tuple[ColumnElement[Any], ...]:
    """``count_unseen``'s counts as scalar subqueries, in the order ``_unseen_from`` reads
    them; parameters ``viewer``, ``ws``, ``upper`` (the higher watermark's seq) and, with
    ``middle``, ``s`` and ``a`` (the feed's names, so they share a statement with it)."""
    ev = events.c
    upper: BindParameter[Any] = bindparam("upper")
    mine = (_es.user_id == bindparam("viewer"), _es.workspace_id == bindparam("ws"))
    private_of_others = (
        select(func.count())
        .select_from(events)
        .where(
            ev.workspace_id == bindparam("ws"),
            ev.private_to.is_not(None),
            ev.private_to != bindparam("viewer"),
            ev.seq > upper,
        )
    )
    hidden = (
        select(func.count())
        .select_from(event_states)
        .where(
            *mine,
            _es.event_seq > upper,
            or_(_es.is_seen == True, _es.is_archived == True),  # noqa: E712
        )
    )
    parts = [private_of_others.scalar_subquery(), hidden.scalar_subquery()]
    if middle:
        restored_unseen = (
            select(func.count())
            .select_from(event_states)
            .where(
                *mine,
                _es.event_seq > bindparam("s"),
                _es.event_seq <= bindparam("a"),
                _es.is_archived == False,  # noqa: E712
                or_(_es.is_seen.is_(None), _es.is_seen == False),  # noqa: E712
            )
        )
        parts.append(restored_unseen.scalar_subquery())
    return tuple(parts)


@cache
def _unseen_statement(*, middle: bool) -> Select[Any]:
    return select(*_unseen_parts(middle=middle))


def _unseen_params(user_id: str, workspace_id: str, marks: Watermarks) -> dict[str, Any]:
    return {
        "viewer": user_id,
        "ws": workspace_id,
        "upper": _unseen_upper(marks)[0],
        "s": marks.seen_seq,
        "a": marks.archived_seq,
    }


def _unseen_from(counts: Sequence[Any], marks: Watermarks, head_ord: int) -> int:
    """The unseen count from ``_unseen_parts``' values."""
    private_of_others, hidden = int(counts[0]), int(counts[1])
    middle = int(counts[2]) if len(counts) > 2 else 0
    above = (head_ord - _unseen_upper(marks)[1]) - private_of_others
    return middle + above - hidden


def count_unseen(
    tx: Tx, *, user_id: str, workspace_id: str, marks: Watermarks, head_ord: int
) -> int:
    """Unseen events in the Inbox, exactly, at a cost that does not grow with history.

    Every unseen event is above the seen watermark S. Above max(S, A) the archive
    watermark A archives nothing, so the count is the visible events there less the
    exceptions that make one seen or archived. Between S and A (when A is higher)
    events are archived unless restored, so only restored-and-unseen exceptions count.
    One statement.
    """
    stmt = _unseen_statement(middle=marks.archived_seq > marks.seen_seq)
    counts = tx.conn.execute(stmt, _unseen_params(user_id, workspace_id, marks)).one()
    return _unseen_from(counts, marks, head_ord)


def count_unseen_in(tx: Tx, *, user_id: str, workspace_ids: Sequence[str]) -> dict[str, int]:
    """``count_unseen`` in each of ``workspace_ids``, with each one's watermarks and head
    read by the same statement: one round trip for any number of workspaces (the
    workspace switcher), where reading marks and head and then counting took two each.

    For a read transaction (one snapshot); a write transaction takes the locks first and
    counts workspace by workspace (``services.workspaces.unseen_count``).
    """
    if not workspace_ids:
        return {}
    rows = tx.conn.execute(_UNSEEN_IN, {"viewer": user_id, "ids": list(workspace_ids)})
    return {row[0]: int(row[1]) for row in rows}


def _unseen_in_statement() -> Select[Any]:
    """``count_unseen``'s arithmetic (``_unseen_upper``, ``_unseen_from``) in SQL, a row per
    workspace of ``ids``; the counts are the same scalar subqueries, correlated."""
    w, vm = workspaces.c, viewer_marks.c
    s_seq, s_ord = func.coalesce(vm.seen_seq, 0), func.coalesce(vm.seen_ord, 0)
    a_seq, a_ord = func.coalesce(vm.archived_seq, 0), func.coalesce(vm.archived_ord, 0)
    seen_is_upper = a_seq <= s_seq
    upper_seq = case((seen_is_upper, s_seq), else_=a_seq)
    upper_ord = case((seen_is_upper, s_ord), else_=a_ord)
    ev = events.c
    viewer: BindParameter[Any] = bindparam("viewer")
    head_ord = (
        select(ev.ws_ord)
        .where(ev.workspace_id == w.id)
        .order_by(newest_first_in_workspace())
        .limit(LIMIT_ONE)
        .scalar_subquery()
    )
    mine = (_es.user_id == viewer, _es.workspace_id == w.id)

    def count(table: Any, *where: ColumnElement[bool]) -> ColumnElement[Any]:
        return select(func.count()).select_from(table).where(*where).scalar_subquery()

    private_of_others = count(
        events,
        ev.workspace_id == w.id,
        ev.private_to.is_not(None),
        ev.private_to != viewer,
        ev.seq > upper_seq,
    )
    hidden = count(
        event_states,
        *mine,
        _es.event_seq > upper_seq,
        or_(_es.is_seen == True, _es.is_archived == True),  # noqa: E712
    )
    restored_unseen = count(
        event_states,
        *mine,
        _es.event_seq > s_seq,
        _es.event_seq <= a_seq,
        _es.is_archived == False,  # noqa: E712
        or_(_es.is_seen.is_(None), _es.is_seen == False),  # noqa: E712
    )
    middle = case((seen_is_upper, 0), else_=restored_unseen)
    above = func.coalesce(head_ord, 0) - upper_ord - private_of_others
    return (
        select(w.id, middle + above - hidden)
        .select_from(
            workspaces.outerjoin(viewer_marks, and_(vm.user_id == viewer, vm.workspace_id == w.id))
        )
        .where(w.id.in_(bindparam("ids", expanding=True)))
    )


def count_total_and_unseen(
    tx: Tx,
    *,
    viewer_id: str,
    workspace_id: str,
    marks: Watermarks,
    q: ActivityQuery,
    head_ord: int,
) -> tuple[int, int]:
    """``count_matching``'s total of the query and ``count_unseen``, the same numbers, in
    one statement when the total is one (no text search: ``total_statement``)."""
    found = total_statement(
        viewer_id=viewer_id, workspace_id=workspace_id, marks=marks, q=q, head_ord=head_ord
    )
    if found is None:
        total = count_matching(
            tx, viewer_id=viewer_id, workspace_id=workspace_id, marks=marks, q=q, head_ord=head_ord
        )
        unseen = count_unseen(
            tx, user_id=viewer_id, workspace_id=workspace_id, marks=marks, head_ord=head_ord
        )
        return total, unseen
    stmt, params = found
    params |= _unseen_params(viewer_id, workspace_id, marks)
    both = _total_with_unseen(stmt, middle=marks.archived_seq > marks.seen_seq)
    [row] = tx.fetch(both, params)
    return int(row[0]), _unseen_from(row[1:], marks, head_ord)


def select_page_and_counts(
    tx: Tx,
    *,
    viewer_id: str,
    workspace_id: str,
    marks: Watermarks,
    q: ActivityQuery,
    limit: int,
    offset: int,
    after: Cursor | None,
    head_ord: int,
) -> tuple[list[Row], int, int]:
    """``events.select_page``'s rows, ``count_matching``'s total and ``count_unseen``, as
    ``select_page`` and ``count_total_and_unseen`` give them, in one statement when
    both are one (no text search, a total from whole days): the page's rows each carry
    the two counts (each computed once). An empty page carries nothing: its counts
    then take a statement of their own. A search's page counts its matches itself where
    it can (``events.select_page_with_total``)."""
    counted = (
        None
        if q.search
        else total_statement(
            viewer_id=viewer_id, workspace_id=workspace_id, marks=marks, q=q, head_ord=head_ord
        )
    )
    rows: list[Row] = []
    total: int | None = None
    if counted is None:
        rows, total = select_page_with_total(
            tx,
            viewer_id=viewer_id,
            workspace_id=workspace_id,
            marks=marks,
            q=q,
            limit=limit,
            offset=offset,
            after=after,
            head_ord=head_ord,
        )
    else:
        page, params = page_statement(
            viewer_id=viewer_id,
            workspace_id=workspace_id,
            marks=marks,
            q=q,
            limit=limit,
            offset=offset,
            after=after,
            head_ord=head_ord,
        )
        total_stmt, total_params = counted
        # The three share the feed's parameter names, each with the same value.
        params |= total_params
        params |= _unseen_params(viewer_id, workspace_id, marks)
        both = _page_with_counts(page, total_stmt, middle=marks.archived_seq > marks.seen_seq)
        fetched = tx.fetch(both, params)
        if fetched:
            first = fetched[0]
            unseen = _unseen_from(first[ROW_WIDTH + 1 :], marks, head_ord)
            return [row_of(r) for r in fetched], int(first[ROW_WIDTH]), unseen
    if total is None:
        total, unseen = count_total_and_unseen(
            tx, viewer_id=viewer_id, workspace_id=workspace_id, marks=marks, q=q, head_ord=head_ord
        )
    else:
        unseen = count_unseen(
            tx, user_id=viewer_id, workspace_id=workspace_id, marks=marks, head_ord=head_ord
        )
    return rows, total, unseen


@cache
def _page_with_counts(page: Select[Any], total: Select[Any], *, middle: bool) -> Select[Any]:
    # The page as a subquery: its counts' subqueries read ``events`` and
    # ``event_states`` too, and beside the page's own FROM they would correlate with it.
    # ``page`` and ``total`` are built once per shape (``events``), so this holds one
    # statement per pair of shapes.
    rows = page.order_by(None).subquery("page")
    return select(
        *rows.c, total.scalar_subquery().label("total"), *_unseen_parts(middle=middle)
    ).order_by(rows.c.created_at.desc(), rows.c.seq.desc())


@cache
def _total_with_unseen(total: Select[Any], *, middle: bool) -> Select[Any]:
    # ``total`` is one of the feed's statements built once per shape (kept by
    # ``events``), so this holds one statement per shape too.
    return total.add_columns(*_unseen_parts(middle=middle))


def count_inbox(
    tx: Tx, *, user_id: str, workspace_id: str, marks: Watermarks, head_ord: int
) -> int:
    """Events in the Inbox (whatever their seen state), from watermarks and exceptions:
    the visible events above the archive watermark A, less the exceptions archived above
    it, plus those restored at or below it. One statement."""
    return _inbox_and_visible(tx, user_id, workspace_id, marks, head_ord, "inbox")[0]


def count_inbox_and_visible(
    tx: Tx, *, user_id: str, workspace_id: str, marks: Watermarks, head_ord: int
) -> tuple[int, int]:
    """``count_inbox`` and ``count_visible``, in one statement."""
    inbox, visible = _inbox_and_visible(
        tx, user_id, workspace_id, marks, head_ord, "inbox_and_visible"
    )
    assert visible is not None
    return inbox, visible


def _inbox_and_visible(
    tx: Tx, user_id: str, workspace_id: str, marks: Watermarks, head_ord: int, count: Count
) -> tuple[int, int | None]:
    stmt = _INBOX_PARTS if count == "inbox" else _INBOX_AND_VISIBLE_PARTS
    row = tx.conn.execute(stmt, _inbox_params(user_id, workspace_id, marks)).one()
    return _inbox_from(row, marks, head_ord, count)


def _inbox_params(user_id: str, workspace_id: str, marks: Watermarks) -> dict[str, Any]:
    a = marks.archived_seq
    return {"viewer": user_id, "user": user_id, "ws": workspace_id, "seq": a, "lo": a, "hi": a}


def _inbox_from(
    row: Sequence[Any], marks: Watermarks, head_ord: int, count: Count
) -> tuple[int, int | None]:
    """The Inbox's size (and with ``inbox_and_visible`` the visible events) from
    ``_INBOX_PARTS``' values (and ``_INBOX_AND_VISIBLE_PARTS``' fourth)."""
    if count == "nothing":
        return 0, None
    above = (head_ord - marks.archived_ord) - int(row[0])
    inbox = above - int(row[1]) + int(row[2])
    return inbox, (head_ord - int(row[3]) if count == "inbox_and_visible" else None)


def count_visible(tx: Tx, *, user_id: str, workspace_id: str, head_ord: int) -> int:
    return count_visible_above(
        tx, user_id=user_id, workspace_id=workspace_id, head_ord=head_ord, seq=0, ord_=0
    )


_UNSEEN_IN = _unseen_in_statement()
