"""A PostgreSQL server that dropped the pool's connections (a restart, a failover, an
operator's ``pg_terminate_backend``) costs no request an error.

Most checkouts ping the connection first when the server has sent anything on it since
it went idle (``store.db``'s checkout listener, what ``pool_pre_ping`` did for every
checkout). The feed's page skips the ping, a round trip on every request,
and reads once more on a new connection when its own was dropped
(``Database.read_retrying``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.pool import NullPool

from activityfeed.store.db import Database
from tests.factories import Browser, make_team, make_user

# With a timeout, pg_terminate_backend returns once each process has exited (its
# connection closed), so the test's next request meets connections already dropped.
KILL = (
    "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


def drop_connections(db: Database) -> int:
    """Terminate every server process of the database but this one's: the pool's
    connections now lead nowhere, though the pool cannot know it yet."""
    killer = create_engine(db.url, poolclass=NullPool)
    with killer.connect() as conn:
        killed = int(conn.execute(text(KILL)).scalar_one())
    killer.dispose()
    return killed


@contextmanager
def disconnects(db: Database) -> Iterator[list[Any]]:
    """The disconnect errors that statements met (not pings: SQLAlchemy's own
    ``pool_pre_ping`` reports its failures here too)."""
    seen: list[Any] = []

    def record(ctx: Any) -> None:
        if ctx.is_disconnect and not ctx.is_pre_ping:
            seen.append(ctx.original_exception)

    event.listen(db.engine, "handle_error", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "handle_error", record)


@pytest.fixture
def browser(backend, app, db, clock) -> Browser:
    if backend != "postgresql":
        pytest.skip("SQLite has no server to drop connections")
    user = make_user(db, clock)
    team = make_team(db, clock, user)
    browser = Browser(app, user.email)
    browser.switch(team.slug)
    return browser


def test_the_feed_reads_again_on_a_dropped_connection(browser, db):
    first = browser.activity()
    assert drop_connections(db) >= 1
    with disconnects(db) as seen:
        again = browser.activity()
    assert again == first
    # The page met the dead connection (no ping saved it) and read once more.
    assert len(seen) == 1, seen
    with disconnects(db) as seen:
        assert browser.activity() == first
    assert seen == []


def test_other_routes_ping_their_connection_first(browser, db):
    workspaces = browser.get("/api/workspaces")
    assert workspaces.status_code == 200
    assert drop_connections(db) >= 1
    with disconnects(db) as seen:
        response = browser.get("/api/workspaces")
        marked = browser.post("/api/activity/mark-seen", json={"all": True})
    assert response.status_code == 200, response.text
    assert response.json() == workspaces.json()
    assert marked.status_code == 200, marked.text
    assert seen == []


def test_a_connection_the_server_left_alone_is_not_pinged(browser, db, monkeypatch):
    """A ping is a round trip: checkouts of healthy idle connections skip it (the
    server has said nothing on them), while one the server dropped is pinged (above)."""
    pings: list[Any] = []
    ping = db.engine.dialect.do_ping
    monkeypatch.setattr(db.engine.dialect, "do_ping", lambda c: pings.append(c) or ping(c))
    assert browser.get("/api/workspaces").status_code == 200
    for _ in range(3):
        assert browser.post("/api/activity/mark-seen", json={"all": True}).status_code == 200
    assert pings == []
    assert drop_connections(db) >= 1
    assert browser.get("/api/workspaces").status_code == 200
    assert pings
