"""Replay from a position (services.stream): exact, bounded, and safe after pruning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from activityfeed.domain.events import Action, ResourceType
from activityfeed.domain.stream import StreamPosition
from activityfeed.services import activity, workspaces
from activityfeed.services import stream as stream_service
from activityfeed.store import stream as stream_store
from activityfeed.store.db import Database
from tests.factories import make_user, personal_workspace, record_system_event

WINDOW = timedelta(hours=1)


def _setup(db: Database, clock: Any) -> tuple[Any, Any]:
    user = make_user(db, clock)
    return user, personal_workspace(db, user)


def _record(db: Database, clock: Any, ws_id: str, n: int) -> str:
    return record_system_event(
        db, ws_id, n, now=clock(), resource_type=ResourceType.MODEL, action=Action.CREATED
    )


def _position(db: Database, user_id: str, ws_id: str) -> StreamPosition:
    with db.read() as tx:
        return stream_service.current_position(tx, user_id=user_id, workspace_id=ws_id)


def _catch_up(db: Database, clock: Any, user_id: str, ws_id: str, position: StreamPosition) -> Any:
    with db.read() as tx:
        return stream_service.catch_up(
            tx,
            user_id=user_id,
            workspace_id=ws_id,
            position=position,
            now=clock(),
            undo_window=WINDOW,
        )


def _mark_seen(db: Database, user_id: str, ws_id: str, event_id: str) -> None:
    with db.write() as tx:
        membership = workspaces.access_workspace(tx, user_id=user_id, workspace_id=ws_id)
        activity.mark_seen(
            tx, viewer_id=user_id, membership=membership, event_ids=[event_id], mark_all=False
        )


def test_the_rendered_position_misses_nothing_recorded_after_it(db: Database, clock: Any) -> None:
    user, ws = _setup(db, clock)
    _record(db, clock, ws.id, 0)
    rendered = _position(db, user.id, ws.id)
    later = [_record(db, clock, ws.id, n) for n in (1, 2)]
    delivery = _catch_up(db, clock, user.id, ws.id, rendered)
    assert not delivery.is_reset
    assert [i.view.event.id for i in delivery.items] == later
    assert delivery.position == _position(db, user.id, ws.id)
    assert _catch_up(db, clock, user.id, ws.id, delivery.position).items == []


def test_a_position_ahead_of_the_workspace_is_a_reset(db: Database, clock: Any) -> None:
    user, ws = _setup(db, clock)
    now = _position(db, user.id, ws.id)
    ahead = StreamPosition(now.event_seq + 5, now.change_seq)
    assert _catch_up(db, clock, user.id, ws.id, ahead).is_reset


def test_pruned_changes_reset_only_tabs_that_needed_them(db: Database, clock: Any) -> None:
    """Pruning keeps each user's newest change, so a tab behind a pruned change is told
    to reload, and a tab that is up to date is not."""
    user, ws = _setup(db, clock)
    ids = [_record(db, clock, ws.id, n) for n in range(3)]
    start = _position(db, user.id, ws.id)
    _mark_seen(db, user.id, ws.id, ids[0])
    after_first = _position(db, user.id, ws.id)
    _mark_seen(db, user.id, ws.id, ids[1])
    after_second = _position(db, user.id, ws.id)
    _mark_seen(db, user.id, ws.id, ids[2])
    newest = _position(db, user.id, ws.id)
    with db.write() as tx:
        pruned = stream_store.prune_changes(tx, before=datetime.now(UTC) + timedelta(days=1))
    assert pruned == 2
    assert _catch_up(db, clock, user.id, ws.id, start).is_reset
    assert _catch_up(db, clock, user.id, ws.id, after_first).is_reset
    only_last = _catch_up(db, clock, user.id, ws.id, after_second)
    assert not only_last.is_reset
    assert [i.change.event_ids for i in only_last.items] == [[ids[2]]]
    up_to_date = _catch_up(db, clock, user.id, ws.id, newest)
    assert (up_to_date.is_reset, up_to_date.items) == (False, [])


def test_recent_changes_are_not_pruned(db: Database, clock: Any) -> None:
    user, ws = _setup(db, clock)
    ids = [_record(db, clock, ws.id, n) for n in range(2)]
    for event_id in ids:
        _mark_seen(db, user.id, ws.id, event_id)
    with db.write() as tx:
        assert stream_store.prune_changes(tx, before=datetime.now(UTC) - timedelta(hours=1)) == 0
