"""State changes that race each other lose nothing and count right.

* Two state changes of one viewer (two open tabs): "Mark all seen" and "Archive all"
  each rewrite the viewer's watermarks; if the second read them before the first
  committed, it would write back the first one's watermark stale (a lost update).
* "Archive all" and ingestion (the archive-all race): events committed before the
  archive are archived and counted in ``updated``; events committed after it stay in
  the Inbox; none is archived without being counted, or skipped by the watermark.

Each test holds one transaction open until the other is provably waiting (PostgreSQL
shows it in ``pg_stat_activity``; SQLite's writers queue on BEGIN IMMEDIATE), then
commits, so the interleaving is the same on every run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from activityfeed.domain.accounts import Membership, User, Workspace
from activityfeed.domain.events import (
    Action,
    Actor,
    EventDraft,
    ResourceType,
    Source,
    SourceKind,
)
from activityfeed.domain.query import ActivityQuery
from activityfeed.domain.workspaces import Role
from activityfeed.services import activity, workspaces
from activityfeed.services.events import record_events
from activityfeed.store.db import Database
from tests.factories import make_team, make_user


def wait_until_blocked(
    db: Database, timeout: float = 10.0, *, or_done: threading.Thread | None = None
) -> None:
    """Return once another transaction waits for a lock (PostgreSQL), or after a pause
    long enough for it to reach SQLite's write lock. With ``or_done``, also return once
    that thread has finished without waiting (the caller's assertions on the outcome
    then say what went wrong)."""
    if db.dialect != "postgresql":
        time.sleep(0.3)
        return
    deadline = time.monotonic() + timeout
    with db.engine.connect() as conn:
        while time.monotonic() < deadline:
            if or_done is not None and not or_done.is_alive():
                return
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
            conn.rollback()
            if waiting:
                return
            time.sleep(0.02)
    raise AssertionError("the other transaction never waited for a lock")


def in_other_tab(work: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # handed to the test, which re-raises it
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def drafts(team: Workspace, count: int) -> list[EventDraft]:
    return [
        EventDraft(
            workspace_id=team.id,
            resource_type=ResourceType.TRAINING,
            action=Action.COMPLETED,
            resource_id=f"run-{i}",
            resource_name=f"run {i}",
            actor=None,
            source=Source(kind=SourceKind.SYSTEM),
        )
        for i in range(count)
    ]


def setup(db: Database, clock: Callable[[], datetime]) -> tuple[User, Workspace, Membership]:
    alice = make_user(db, clock)
    team = make_team(db, clock, alice)
    with db.write() as tx:
        record_events(tx, drafts(team, 3), now=clock())
    return alice, team, Membership(workspace=team, role=Role.OWNER)


def archive_all(db: Database, user: User, membership: Membership) -> int:
    with db.write() as tx:
        return activity.archive_events(
            tx,
            viewer_id=user.id,
            membership=membership,
            event_ids=None,
            archive_all=True,
            archive=True,
        )


def inbox_size(db: Database, user: User, membership: Membership) -> int:
    with db.read() as tx:
        return activity.list_activity(
            tx,
            viewer_id=user.id,
            membership=membership,
            q=ActivityQuery(limit=100),
            now=datetime.now(UTC),
            undo_window=timedelta(hours=1),
        ).total


def test_archive_all_while_mark_all_seen_is_in_flight(db, clock):
    """Both watermarks survive: after restoring, nothing is unseen."""
    alice, team, membership = setup(db, clock)

    moved: list[int] = []
    with db.write() as tx:
        assert (
            activity.mark_seen(
                tx, viewer_id=alice.id, membership=membership, event_ids=None, mark_all=True
            )
            == 0
        )
        thread, errors = in_other_tab(lambda: moved.append(archive_all(db, alice, membership)))
        wait_until_blocked(db)
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert errors == []
    assert moved == [3]

    with db.write() as tx:
        restored = activity.archive_events(
            tx,
            viewer_id=alice.id,
            membership=membership,
            event_ids=None,
            archive_all=True,
            archive=False,
        )
        assert restored == 3
        assert workspaces.unseen_count(tx, user_id=alice.id, workspace_id=team.id) == 0


def test_mark_all_seen_while_archive_all_is_in_flight(db, clock):
    """The archive watermark survives a concurrent "mark all seen"."""
    alice, team, membership = setup(db, clock)

    def mark_all_seen() -> None:
        with db.write() as tx:
            activity.mark_seen(
                tx, viewer_id=alice.id, membership=membership, event_ids=None, mark_all=True
            )

    with db.write() as tx:
        activity.archive_events(
            tx,
            viewer_id=alice.id,
            membership=membership,
            event_ids=None,
            archive_all=True,
            archive=True,
        )
        thread, errors = in_other_tab(mark_all_seen)
        wait_until_blocked(db)
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert errors == []

    with db.read() as tx:
        marks = activity.watermarks(tx, viewer_id=alice.id, workspace_id=team.id)
    assert marks.archived_ord == 3
    assert marks.seen_ord == 3


def test_archive_all_waits_for_ingestion_in_flight(db, clock):
    """Events committed just before "Archive all" is served are archived and counted."""
    alice, team, membership = setup(db, clock)
    moved: list[int] = []
    with db.write() as tx:
        record_events(tx, drafts(team, 2), now=clock())
        thread, errors = in_other_tab(lambda: moved.append(archive_all(db, alice, membership)))
        wait_until_blocked(db)
    thread.join(timeout=30)
    assert errors == []
    assert moved == [5]
    assert inbox_size(db, alice, membership) == 0


def test_ingestion_during_archive_all_stays_in_the_inbox(db, clock):
    """Events committed after "Archive all" are in the Inbox, unseen; the count of the
    archive did not include them."""
    alice, team, membership = setup(db, clock)

    def ingest() -> None:
        with db.write() as tx:
            record_events(tx, drafts(team, 2), now=clock())

    with db.write() as tx:
        moved = activity.archive_events(
            tx,
            viewer_id=alice.id,
            membership=membership,
            event_ids=None,
            archive_all=True,
            archive=True,
        )
        thread, errors = in_other_tab(ingest)
        wait_until_blocked(db)
    thread.join(timeout=30)
    assert errors == []
    assert moved == 3
    assert inbox_size(db, alice, membership) == 2
    with db.read() as tx:
        assert workspaces.unseen_count(tx, user_id=alice.id, workspace_id=team.id) == 2


def test_unseen_count_of_mark_seen_ignores_a_private_event_committed_meanwhile(
    db, clock, monkeypatch
):
    """Another member's private event (an API key they create) commits while
    "mark seen" counts: it is invisible to the viewer, so the count must not move.

    The count is (head - watermark) - (others' private events above the watermark); on
    PostgreSQL each statement of a write transaction sees what was committed when it
    started, so a private event committed between reading the head and counting the
    private ones would be subtracted without having been added (one too few). The count
    therefore runs under the workspace's shared lock, like the "all" operations.
    """
    alice, team, membership = setup(db, clock)
    bob = make_user(db, clock)
    with db.write() as tx:
        workspaces.add_member(
            tx, user_id=alice.id, slug=team.slug, email=bob.email, role=Role.MEMBER, now=clock()
        )
    with db.read() as tx:
        first = activity.list_activity(
            tx,
            viewer_id=alice.id,
            membership=membership,
            q=ActivityQuery(limit=1),
            now=datetime.now(UTC),
            undo_window=timedelta(hours=1),
        ).events[0]

    def bobs_private_event() -> None:
        with db.write() as tx:
            record_events(
                tx,
                [
                    EventDraft(
                        workspace_id=team.id,
                        resource_type=ResourceType.API_KEY,
                        action=Action.CREATED,
                        resource_id="key-1",
                        resource_name="bob's key",
                        actor=Actor(id=bob.id, name=bob.name, email=bob.email),
                        source=Source(kind=SourceKind.UI),
                    )
                ],
                now=clock(),
            )

    original = activity.state_store.count_unseen
    started: list[tuple[threading.Thread, list[BaseException]]] = []

    def count_with_a_commit_in_between(*args, **kw):
        # The other transaction gets its chance to commit before the count; holding the
        # workspace lock, this one makes it wait instead.
        started.append(in_other_tab(bobs_private_event))
        started[0][0].join(timeout=1.0)
        return original(*args, **kw)

    monkeypatch.setattr(activity.state_store, "count_unseen", count_with_a_commit_in_between)
    with db.write() as tx:
        unseen = activity.mark_seen(
            tx,
            viewer_id=alice.id,
            membership=membership,
            event_ids=[first.event.id],
            mark_all=False,
        )
    monkeypatch.undo()
    thread, errors = started[0]
    thread.join(timeout=30)
    assert errors == []
    with db.read() as tx:
        assert workspaces.unseen_count(tx, user_id=alice.id, workspace_id=team.id) == 2
    assert unseen == 2
