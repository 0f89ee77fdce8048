"""Events whose ``createdAt`` the server gives are listed in the order they arrived.

A live tab shows a workspace's events as they arrive (``seq`` order); a reload lists
them newest ``createdAt`` first. Ingestion reads the clock before it holds the
workspace's lock (on SQLite, before BEGIN IMMEDIATE), so of two racing batches the one
that read the clock first can commit second. Its server-given ``createdAt`` must not
fall below what the workspace committed meanwhile, or the reload lists it under an
event the live tab showed below it.

The batch that holds the lock is open before the other starts, so the other commits
second on every run; the other signals once it has read the clock, and only then does
the clock move on: no sleeps.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from activityfeed.config import Settings
from activityfeed.domain.accounts import Membership
from activityfeed.domain.query import ActivityQuery
from activityfeed.domain.workspaces import Role
from activityfeed.services import activity
from activityfeed.services.ingest import IngestItem, ingest_events
from activityfeed.store import accounts as account_store
from activityfeed.store.db import Database
from tests.factories import make_api_key, make_team, make_user
from tests.integration.test_state_races import in_other_tab

MAX_METADATA = Settings().max_metadata_bytes


def _item(name: str, occurred_at: datetime | None = None) -> IngestItem:
    return IngestItem(
        resource_type="training",
        action="completed",
        resource_id=name,
        resource_name=name,
        occurred_at=occurred_at,
    )


def test_a_batch_that_read_the_clock_first_but_committed_second_is_listed_first(
    db: Database, clock
) -> None:
    """Batch A reads the clock, then waits for the lock that batch B holds; B reads a
    later time and commits, then A commits. The reload lists A's server-timed event
    above B's, as the live tab showed it; A's backdated item keeps its ``occurredAt``."""
    user = make_user(db, clock)
    team = make_team(db, clock, user, name="Order")
    membership = Membership(workspace=team, role=Role.OWNER)
    key = make_api_key(db, clock, user, team).key
    backdated = clock() - timedelta(days=3)
    has_read_clock = threading.Event()

    def batch_a() -> None:
        # What the ingestion handler does: the clock, then the transaction.
        now = clock()
        has_read_clock.set()
        with db.write() as tx:
            ingest_events(
                tx,
                key=key,
                items=[_item("a"), _item("a-backdated", backdated)],
                is_batch=True,
                now=now,
                max_metadata_bytes=MAX_METADATA,
            )

    with db.write() as tx:
        # Batch B holds the workspace's lock (SQLite: this transaction's BEGIN IMMEDIATE).
        account_store.lock_workspace(tx, team.id, exclusive=True)
        thread, errors = in_other_tab(batch_a)
        assert has_read_clock.wait(timeout=30)
        clock.advance(seconds=1)
        ingest_events(
            tx,
            key=key,
            items=[_item("b")],
            is_batch=False,
            now=clock(),
            max_metadata_bytes=MAX_METADATA,
        )
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert errors == []

    with db.read() as tx:
        page = activity.list_activity(
            tx,
            viewer_id=user.id,
            membership=membership,
            q=ActivityQuery(limit=100, start=backdated - timedelta(days=1)),
            now=clock(),
            undo_window=timedelta(hours=1),
        )
    listed = [v.event for v in page.events if v.event.resource_id in ("a", "b", "a-backdated")]
    by_arrival = sorted(listed, key=lambda e: e.seq)
    assert [e.resource_id for e in by_arrival] == ["b", "a", "a-backdated"]
    # The reload: newest createdAt first. The server-timed events in arrival order...
    assert [e.resource_id for e in listed] == ["a", "b", "a-backdated"]
    a, b, old = listed
    assert a.created_at >= b.created_at
    assert a.recorded_at >= b.recorded_at
    # ...and the producer's own time as it sent it.
    assert old.created_at == backdated
