"""The live stream's use cases: where a viewer stands, and what they have not been sent.

Everything here runs inside the caller's (read) transaction. The per-process broker in
``web/sse.py`` calls ``catch_up`` for every connected client that a wake-up concerns, and
for every client that (re)connects: live delivery and replay are the same read, "what
is above this position", so a reconnecting tab gets exactly what it missed.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from activityfeed.config import Settings
from activityfeed.domain.events import EventView
from activityfeed.domain.stream import REPLAY_LIMIT, StreamPosition
from activityfeed.services import activity
from activityfeed.services.workspaces import access_workspace
from activityfeed.store import accounts as account_store
from activityfeed.store import events as event_store
from activityfeed.store import states as state_store
from activityfeed.store import stream as stream_store
from activityfeed.store.db import Tx


def _current(tx: Tx, *, user_id: str, workspace_id: str) -> StreamPosition:
    # The newest event *this viewer* may see, not the workspace's head: a position that
    # moved with a teammate's private event (their settings, their API keys) would tell,
    # sealed or not, that they did something.
    head_seq = event_store.select_visible_head_seq(tx, workspace_id, user_id)
    change_seq = stream_store.max_change_seq(tx, workspace_id=workspace_id, user_id=user_id)
    return StreamPosition(head_seq, change_seq)


def current_position(tx: Tx, *, user_id: str, workspace_id: str) -> StreamPosition:
    """The stream position of "now" for this viewer in this workspace.

    A page renders it (sealed) and opens ``/api/activity/stream?lastEventId=<it>``:
    whatever is recorded between the render and the connection is replayed, nothing is
    missed.
    """
    return _current(tx, user_id=user_id, workspace_id=workspace_id)


@dataclass(frozen=True, slots=True)
class ActivityItem:
    view: EventView
    position: StreamPosition


@dataclass(frozen=True, slots=True)
class ChangeItem:
    change: stream_store.Change
    position: StreamPosition


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a client is to be sent, in order, and where it then stands.

    ``is_reset``: the client's position was unknown or too far behind; it gets no items,
    only ``reset`` at ``position`` (now).
    """

    items: list[ActivityItem | ChangeItem]
    position: StreamPosition
    is_reset: bool = False


def catch_up(
    tx: Tx,
    *,
    user_id: str,
    workspace_id: str,
    position: StreamPosition | None,
    now: datetime,
    undo_window: timedelta,
    limit: int = REPLAY_LIMIT,
) -> Delivery:
    """The events and state changes above ``position`` for this viewer, oldest first.

    ``position`` None starts "now" with nothing to send (see ``Delivery.is_reset`` for
    an unknown one: the caller decides). A position ahead of the workspace (another
    database, a forged id) or more than ``limit`` messages behind, or behind a pruned
    state change, is a reset. Events private to others never appear.
    """
    current = _current(tx, user_id=user_id, workspace_id=workspace_id)
    if position is None:
        return Delivery(items=[], position=current)
    if position.event_seq > current.event_seq or position.change_seq > current.change_seq:
        return Delivery(items=[], position=current, is_reset=True)
    marks = state_store.select_marks(tx, user_id=user_id, workspace_id=workspace_id)
    rows = stream_store.select_events_after(
        tx,
        viewer_id=user_id,
        workspace_id=workspace_id,
        marks=marks,
        after_seq=position.event_seq,
        limit=limit + 1,
    )
    changes = stream_store.select_changes_after(
        tx,
        workspace_id=workspace_id,
        user_id=user_id,
        after_seq=position.change_seq,
        limit=limit + 1,
    )
    lost_changes = bool(changes) and changes[0].prev_seq > position.change_seq
    if len(rows) + len(changes) > limit or lost_changes:
        return Delivery(items=[], position=current, is_reset=True)
    # Events and changes have separate sequences; interleave them by time (both are
    # stamped by the server). Every activity message carries the viewer's state at
    # sending time, so the order cannot leave a tab showing a stale state.
    merged: list[tuple[datetime, int, event_store.Row | stream_store.Change]] = sorted(
        [(r.event.recorded_at, r.event.seq, r) for r in rows]
        + [(c.created_at, c.seq, c) for c in changes],
        key=lambda t: (t[0], isinstance(t[2], stream_store.Change), t[1]),
    )
    # The same per-viewer views as the list (seen, archived, undoableUntil, the resource's
    # live state), built with the list's batched look-ups.
    views = {
        v.event.seq: v
        for v in activity.build_views(
            tx, rows, viewer_id=user_id, workspace_id=workspace_id, now=now, undo_window=undo_window
        )
    }
    items: list[ActivityItem | ChangeItem] = []
    at = position
    for _, _, item in merged:
        if isinstance(item, stream_store.Change):
            at = at.advanced(change_seq=item.seq)
            items.append(ChangeItem(change=item, position=at))
        else:
            at = at.advanced(event_seq=item.event.seq)
            items.append(ActivityItem(view=views[item.event.seq], position=at))
    # Everything up to the viewer's newest visible event was read: the client stands
    # there (other members' private events above it are skipped again next time).
    return Delivery(items=items, position=current)


def stream_workspaces(tx: Tx, *, user_id: str, workspace_id: str) -> dict[str, str]:
    """The viewer's workspaces (id → slug) for a stream of ``workspace_id``.

    Raises ``NotFound`` when the viewer is no longer a member of that workspace.
    """
    access_workspace(tx, user_id=user_id, workspace_id=workspace_id)
    return {m.workspace.id: m.workspace.slug for m in account_store.select_memberships(tx, user_id)}


@dataclass(frozen=True, slots=True)
class StreamGrant:
    """What an open stream was allowed on: this session, this user, this workspace.

    ``session_hash`` None: a stream opened in-process without a browser session (only
    the membership is then checked).
    """

    session_hash: str | None
    user_id: str
    workspace_id: str


@dataclass(frozen=True, slots=True)
class Access:
    """The snapshot's answer for a set of grants (see ``check_access``)."""

    revoked: frozenset[StreamGrant]
    #: Every (workspace id, user id) membership of the grants' users.
    members: frozenset[tuple[str, str]]


def check_access(
    tx: Tx, grants: Collection[StreamGrant], *, now: datetime, settings: Settings
) -> Access:
    """Which open streams may go on: a grant is revoked once its session has ended,
    expired or idled out (the rule of ``accounts.resolve_session``) or its user is no
    longer a member of its workspace. Two queries however many grants.
    """
    idle_since = now - timedelta(seconds=settings.session_idle_seconds)
    live = account_store.select_live_session_hashes(
        tx,
        {g.session_hash for g in grants if g.session_hash is not None},
        now=now,
        idle_since=idle_since,
    )
    members = account_store.select_member_pairs(tx, {g.user_id for g in grants})
    revoked = frozenset(
        g
        for g in grants
        if (g.session_hash is not None and g.session_hash not in live)
        or (g.workspace_id, g.user_id) not in members
    )
    return Access(revoked=revoked, members=frozenset(members))
