"""The activity feed of one viewer in one workspace: list, mark seen, archive, export."""

from __future__ import annotations

from collections.abc import Iterator, Sequence, Set
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from activityfeed.domain.accounts import Membership
from activityfeed.domain.events import Action, Event, EventView, ResourceType
from activityfeed.domain.profiles import undo_deadline, undoable_changes
from activityfeed.domain.query import ActivityQuery, Cursor
from activityfeed.domain.state import MarksAndHead, Watermarks
from activityfeed.domain.stream import StateAction
from activityfeed.errors import InvalidRequest
from activityfeed.services.accounts import is_storable
from activityfeed.services.resources import resource_states
from activityfeed.store import accounts as account_store
from activityfeed.store import events as event_store
from activityfeed.store import profiles as profile_store
from activityfeed.store import states as state_store
from activityfeed.store import stream as stream_store
from activityfeed.store.db import Tx

MAX_IDS = 1000
#: Rows per batch of look-ups (undo records, resource states) while exporting.
EXPORT_BATCH = 500


@dataclass(frozen=True, slots=True)
class ActivityPage:
    events: list[EventView]
    page: int
    limit: int
    total: int
    unseen_count: int
    #: Where the next page starts; the edge seals it for the client (``domain.sealing``).
    next_cursor: Cursor | None


def _may_undo(e: Event, viewer_id: str) -> bool:
    """Whether the event is the viewer's own settings change that undo can replay."""
    return (
        e.resource_type is ResourceType.SETTINGS
        and e.action is Action.UPDATED
        and e.actor is not None
        and e.actor.id == viewer_id
        and undoable_changes(e.metadata) is not None
    )


def _view(
    row: event_store.Row,
    *,
    viewer_id: str,
    now: datetime,
    undo_window: timedelta,
    undone: Set[str] = frozenset(),
) -> EventView:
    e = row.event
    undoable_until = None
    if _may_undo(e, viewer_id) and e.id not in undone:
        until = undo_deadline(e.created_at, undo_window)
        undoable_until = until if until > now else None
    return EventView(
        event=e, is_seen=row.is_seen, is_archived=row.is_archived, undoable_until=undoable_until
    )


def build_views(
    tx: Tx,
    rows: Sequence[event_store.Row],
    *,
    viewer_id: str,
    workspace_id: str,
    now: datetime,
    undo_window: timedelta,
) -> list[EventView]:
    """The rows as the viewer sees them, with two batched look-ups for the whole batch:
    undo records (only for rows that could be undoable at all: the viewer's own recent
    settings changes) and the live state of the rows' projects, datasets and models."""
    candidates = [
        r.event.id
        for r in rows
        if _may_undo(r.event, viewer_id) and undo_deadline(r.event.created_at, undo_window) > now
    ]
    undone = profile_store.select_undone(tx, candidates)
    views = [
        _view(r, viewer_id=viewer_id, now=now, undo_window=undo_window, undone=undone) for r in rows
    ]
    return _with_resource_states(tx, workspace_id, rows, views)


def _with_resource_states(
    tx: Tx, workspace_id: str, rows: Sequence[event_store.Row], views: list[EventView]
) -> list[EventView]:
    """Mark the rows whose project, dataset or model is in Trash or deleted: as read with
    the rows (the feed's and the export's), else with one query."""
    if all(r.has_resource_state for r in rows):
        states = {
            (r.event.resource_type.value, r.event.resource_id): r.resource_state
            for r in rows
            if r.resource_state is not None
        }
    else:
        states = resource_states(tx, workspace_id=workspace_id, events=[v.event for v in views])
    if not states:
        return views
    out = []
    for v in views:
        state = states.get((v.event.resource_type.value, v.event.resource_id))
        out.append(
            v if state is None else replace(v, is_resource_deleted=True, resource_state=state)
        )
    return out


def view_events(
    tx: Tx,
    *,
    viewer_id: str,
    workspace_id: str,
    event_ids: Sequence[str],
    now: datetime,
    undo_window: timedelta,
) -> list[EventView]:
    """The given events as the viewer sees them (state, undo deadline); invisible ones drop out."""
    marks = state_store.select_marks(tx, user_id=viewer_id, workspace_id=workspace_id)
    rows = event_store.select_visible_seqs(
        tx, viewer_id=viewer_id, workspace_id=workspace_id, ids=event_ids, marks=marks
    )
    return build_views(
        tx, rows, viewer_id=viewer_id, workspace_id=workspace_id, now=now, undo_window=undo_window
    )


def list_activity(
    tx: Tx,
    *,
    viewer_id: str,
    membership: Membership,
    q: ActivityQuery,
    now: datetime,
    undo_window: timedelta,
    marks_and_head: MarksAndHead | None = None,
) -> ActivityPage:
    """One page of the viewer's feed, newest first, with ``total`` and ``unseenCount``.

    With a cursor the page starts right after it (``page`` is then ignored); without,
    ``page`` counts from 1. ``nextCursor`` is set when more rows follow.
    ``marks_and_head``: the viewer's watermarks in this workspace and its head, when the
    caller read them in this transaction already (``accounts.resolve_session_for_feed``).
    """
    ws = membership.workspace.id
    # The head once: the page, the total and the unseen count all start from it.
    if marks_and_head is None:
        marks_and_head = state_store.select_marks_and_head(tx, user_id=viewer_id, workspace_id=ws)
    marks, (_, head_ord) = marks_and_head
    offset = 0 if q.cursor else q.offset
    rows, total, unseen = state_store.select_page_and_counts(
        tx,
        viewer_id=viewer_id,
        workspace_id=ws,
        marks=marks,
        q=q,
        limit=q.limit + 1,
        offset=offset,
        after=q.cursor,
        head_ord=head_ord,
    )
    has_more = len(rows) > q.limit
    rows = rows[: q.limit]
    next_cursor = (
        Cursor(created_at=rows[-1].event.created_at, seq=rows[-1].event.seq)
        if has_more and rows
        else None
    )
    return ActivityPage(
        events=build_views(
            tx, rows, viewer_id=viewer_id, workspace_id=ws, now=now, undo_window=undo_window
        ),
        page=q.page,
        limit=q.limit,
        total=total,
        unseen_count=unseen,
        next_cursor=next_cursor,
    )


def export_activity(
    tx: Tx,
    *,
    viewer_id: str,
    membership: Membership,
    q: ActivityQuery,
    now: datetime,
    undo_window: timedelta,
) -> Iterator[EventView]:
    """Every event matching the query (no paging), newest first, streamed in chunks."""
    ws = membership.workspace.id
    marks = state_store.select_marks(tx, user_id=viewer_id, workspace_id=ws)
    batch: list[event_store.Row] = []
    for row in event_store.iter_matching(
        tx, viewer_id=viewer_id, workspace_id=ws, marks=marks, q=replace(q, cursor=None)
    ):
        batch.append(row)
        if len(batch) >= EXPORT_BATCH:
            yield from build_views(
                tx, batch, viewer_id=viewer_id, workspace_id=ws, now=now, undo_window=undo_window
            )
            batch = []
    yield from build_views(
        tx, batch, viewer_id=viewer_id, workspace_id=ws, now=now, undo_window=undo_window
    )


def _checked_ids(event_ids: Sequence[str] | None) -> list[str]:
    """The ids worth looking up: at most ``MAX_IDS``, and without text no event id can be.

    An id with NUL or a lone surrogate names no stored event, so it is dropped like any
    unknown id (PostgreSQL would refuse to even compare it).
    """
    ids = list(event_ids or [])
    if len(ids) > MAX_IDS:
        raise InvalidRequest(
            f"'eventIds' holds at most {MAX_IDS} event ids at a time.", field="eventIds"
        )
    return [i for i in ids if is_storable(i)]


def _head(tx: Tx, workspace_id: str) -> tuple[int, int]:
    # Shared lock: wait for in-flight ingestion of this workspace to commit, so the
    # watermark taken now covers exactly the events that exist now, and no event of the
    # workspace commits until this transaction ends (the counts that follow agree).
    account_store.lock_workspace(tx, workspace_id, exclusive=False)
    return event_store.select_head(tx, workspace_id)


def mark_seen(
    tx: Tx,
    *,
    viewer_id: str,
    membership: Membership,
    event_ids: Sequence[str] | None,
    mark_all: bool,
) -> int:
    """Mark the given events (or all up to now) seen; return the new unseen count.

    Unknown and foreign ids are ignored. "All" moves the seen watermark to the newest
    event and costs the same at any history length.
    """
    ws = membership.workspace.id
    if mark_all:
        marks, (head_seq, head_ord) = state_store.lock_marks_and_head(
            tx, user_id=viewer_id, workspace_id=ws
        )
        # The user's other tabs (any process) follow through the stream's outbox.
        state_store.move_all(
            tx,
            user_id=viewer_id,
            workspace_id=ws,
            marks=marks,
            new_marks=replace(marks, seen_seq=head_seq, seen_ord=head_ord),
            head=(head_seq, head_ord),
            clear="is_seen",
            action=StateAction.SEEN,
        )
        # Every event is at or below the head, seen by the watermark, and the exceptions
        # that said otherwise are gone; no event commits before this transaction does
        # (the workspace's shared lock). So nothing is unseen: ``count_unseen`` would
        # read 0 (tests/functional/test_inbox_machine.py checks answers against a model).
        return 0
    marks = state_store.select_marks(tx, user_id=viewer_id, workspace_id=ws)
    ids = _checked_ids(event_ids)
    rows = event_store.select_visible_seqs(
        tx, viewer_id=viewer_id, workspace_id=ws, ids=ids, marks=marks
    )
    todo = sorted(r.event.seq for r in rows if not r.is_seen)
    state_store.upsert_exceptions(
        tx, user_id=viewer_id, workspace_id=ws, seqs=todo, is_seen=True, set_seen=True
    )
    if todo:
        stream_store.insert_change(
            tx,
            workspace_id=ws,
            user_id=viewer_id,
            action=StateAction.SEEN,
            event_ids=[r.event.id for r in rows if not r.is_seen],
            is_all=False,
        )
    # Under the shared lock, like the "all" operations: the head and the count of
    # other members' private events above the watermark must come from the same
    # moment, or an event committed between the two statements (each statement of a
    # PostgreSQL write transaction sees the latest commits) would be subtracted
    # without having been added.
    _, head_ord = _head(tx, ws)
    return state_store.count_unseen(
        tx, user_id=viewer_id, workspace_id=ws, marks=marks, head_ord=head_ord
    )


def archive_events(
    tx: Tx,
    *,
    viewer_id: str,
    membership: Membership,
    event_ids: Sequence[str] | None,
    archive_all: bool,
    archive: bool,
) -> int:
    """Archive (or, with ``archive=False``, restore) events; return how many moved.

    "All" with ``archive=True`` moves the archive watermark to the newest event: what
    arrives later stays in the Inbox. "All" with ``archive=False`` restores everything.
    Both cost the same at any history length. Unknown and foreign ids are ignored.
    """
    ws = membership.workspace.id
    if archive_all:
        marks, (head_seq, head_ord) = state_store.lock_marks_and_head(
            tx, user_id=viewer_id, workspace_id=ws
        )
        # Archive all moves the Inbox; restore all what is visible and not in it.
        inbox, visible = state_store.move_all(
            tx,
            user_id=viewer_id,
            workspace_id=ws,
            marks=marks,
            new_marks=replace(
                marks,
                archived_seq=head_seq if archive else 0,
                archived_ord=head_ord if archive else 0,
            ),
            head=(head_seq, head_ord),
            clear="is_archived",
            action=StateAction.ARCHIVED if archive else StateAction.RESTORED,
            count="inbox" if archive else "inbox_and_visible",
        )
        if archive:
            return inbox
        assert visible is not None
        return visible - inbox
    marks = state_store.select_marks(tx, user_id=viewer_id, workspace_id=ws)
    ids = _checked_ids(event_ids)
    rows = event_store.select_visible_seqs(
        tx, viewer_id=viewer_id, workspace_id=ws, ids=ids, marks=marks
    )
    moving = [r.event.seq for r in rows if r.is_archived != archive]
    # Store the exception only where the watermark says otherwise; elsewhere clear it.
    by_default = [s for s in moving if (s <= marks.archived_seq) == archive]
    overriding = [s for s in moving if (s <= marks.archived_seq) != archive]
    state_store.upsert_exceptions(
        tx,
        user_id=viewer_id,
        workspace_id=ws,
        seqs=sorted(overriding),
        is_archived=archive,
        set_archived=True,
    )
    state_store.upsert_exceptions(
        tx,
        user_id=viewer_id,
        workspace_id=ws,
        seqs=sorted(by_default),
        is_archived=None,
        set_archived=True,
    )
    if moving:
        stream_store.insert_change(
            tx,
            workspace_id=ws,
            user_id=viewer_id,
            action=StateAction.ARCHIVED if archive else StateAction.RESTORED,
            event_ids=[r.event.id for r in rows if r.is_archived != archive],
            is_all=False,
        )
    return len(moving)


def watermarks(tx: Tx, *, viewer_id: str, workspace_id: str) -> Watermarks:
    return state_store.select_marks(tx, user_id=viewer_id, workspace_id=workspace_id)
