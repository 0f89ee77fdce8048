"""The feed page's statements run on the driver's cursor (``Tx.fetch``), not through
SQLAlchemy's execution layer, and give exactly what SQLAlchemy would."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event

from activityfeed.config import Settings
from activityfeed.domain.query import ActivityQuery
from activityfeed.services import accounts, activity, workspaces
from activityfeed.services.bench_history import USER_EMAIL, USER_PASSWORD, ensure_world
from activityfeed.store.db import Database

UNDO = timedelta(hours=1)


@contextmanager
def sqlalchemy_executions(db: Database) -> Iterator[list[str]]:
    """Statements run through SQLAlchemy's ``Connection.execute`` (the listener watches
    whole executions, not cursors, so it leaves ``Tx.fetch``'s own path in use)."""
    seen: list[str] = []

    def record(_conn: Any, clause: Any, *_args: Any) -> None:
        seen.append(str(clause)[:60])

    event.listen(db.engine, "before_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_execute", record)


@contextmanager
def through_sqlalchemy(db: Database) -> Iterator[None]:
    """A cursor listener, with which ``Tx.fetch`` runs everything through SQLAlchemy."""

    def watch(*_args: Any) -> None:
        return None

    event.listen(db.engine, "before_cursor_execute", watch)
    try:
        yield
    finally:
        event.remove(db.engine, "before_cursor_execute", watch)


@pytest.fixture
def signed_in(db: Database) -> tuple[str, Settings]:
    world = ensure_world(db, events=300, others_factor=1, now=datetime.now(UTC))
    settings = Settings(database_url=db.url)
    with db.write() as tx:
        signed = accounts.sign_in(
            tx,
            email=USER_EMAIL,
            password=USER_PASSWORD,
            address="127.0.0.1",
            now=datetime.now(UTC),
            settings=settings,
        )
        workspaces.switch_workspace(tx, signed.session, world.team_slug)
    return signed.cookie_value, settings


def feed_page(db: Database, cookie: str, settings: Settings, q: ActivityQuery) -> Any:
    """A page as ``GET /api/activity`` reads it: the session with its marks and head,
    then the page with its total and unseen count, in one read transaction."""
    now = datetime.now(UTC)
    with db.read() as tx:
        found = accounts.resolve_session_for_feed(tx, cookie, now=now, settings=settings)
        assert found is not None
        session, membership, marks_and_head = found
        assert membership is not None
        page = activity.list_activity(
            tx,
            viewer_id=session.user.id,
            membership=membership,
            q=q,
            now=now,
            undo_window=UNDO,
            marks_and_head=marks_and_head,
        )
    return session, membership, marks_and_head, page


@pytest.mark.parametrize("archived", [False, True], ids=["inbox", "archive"])
def test_a_page_reads_on_the_driver_what_sqlalchemy_reads(
    db: Database, signed_in: tuple[str, Settings], archived: bool
) -> None:
    cookie, settings = signed_in
    q = ActivityQuery(start=datetime.now(UTC) - timedelta(days=60), is_archived=archived)
    if archived:
        # Everything archived, but the newest event restored: the Archive tab's total
        # from the watermark and an exception.
        session, membership, _, page = feed_page(db, cookie, settings, ActivityQuery())
        for ids, archive in ((None, True), ([page.events[0].event.id], False)):
            with db.write() as tx:
                activity.archive_events(
                    tx,
                    viewer_id=session.user.id,
                    membership=membership,
                    event_ids=ids,
                    archive_all=ids is None,
                    archive=archive,
                )
    with sqlalchemy_executions(db) as seen:
        fast = feed_page(db, cookie, settings, q)
    # The session's, the page's and the total's statements: none through SQLAlchemy.
    assert seen == [], seen
    with through_sqlalchemy(db), sqlalchemy_executions(db) as seen:
        slow = feed_page(db, cookie, settings, q)
    assert len(seen) == 3, seen
    # Equal values of equal types: aware UTC datetimes, the metadata's JSON, booleans.
    assert fast == slow
    page = fast[3]
    assert page.events
    for view in page.events:
        assert view.event.created_at.tzinfo is not None
        assert view.event.created_at.utcoffset() == timedelta(0)
        assert isinstance(view.event.metadata, dict)
    assert fast[0].created_at.utcoffset() == timedelta(0)


def test_a_deeper_page_and_a_cursor_read_on_the_driver_too(
    db: Database, signed_in: tuple[str, Settings]
) -> None:
    cookie, settings = signed_in
    start = datetime.now(UTC) - timedelta(days=366)
    first = feed_page(db, cookie, settings, ActivityQuery(start=start))[3]
    assert first.next_cursor is not None
    for q in (
        ActivityQuery(start=start, page=3),
        ActivityQuery(start=start, cursor=first.next_cursor),
    ):
        with sqlalchemy_executions(db) as seen:
            fast = feed_page(db, cookie, settings, q)
        assert seen == [], seen
        with through_sqlalchemy(db):
            slow = feed_page(db, cookie, settings, q)
        assert fast == slow
        assert fast[3].events
