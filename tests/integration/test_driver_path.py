"""The feed page's statements run on the driver's cursor (``Tx.fetch``), not through
SQLAlchemy's execution layer, and give exactly what SQLAlchemy would."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, event, exc, literal_column, make_url, select, text

from activityfeed.config import Settings
from activityfeed.domain.events import Action, ResourceType
from activityfeed.domain.query import ActivityQuery
from activityfeed.services import accounts, activity
from activityfeed.services.bench_history import ensure_world
from activityfeed.store import db as db_module
from activityfeed.store import events as event_store
from activityfeed.store import states as state_store
from activityfeed.store.db import Database
from tests.integration.feed_reads import feed_page, sign_in


def assert_same(a: Any, b: Any, path: str = "") -> None:
    """Equal, and of the same types all the way down: ``1 == True`` and two aware
    datetimes in different zones compare equal, but would be different answers."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, datetime):
        assert (a, a.tzinfo, a.utcoffset()) == (b, b.tzinfo, b.utcoffset()), path
    else:
        assert a == b, path


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
    return sign_in(db, world.team_slug)


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
    # The session's statement and the page's with its counts: none through SQLAlchemy.
    assert seen == [], seen
    with through_sqlalchemy(db), sqlalchemy_executions(db) as seen:
        slow = feed_page(db, cookie, settings, q)
    assert len(seen) == 2, seen
    # Equal values of equal types: aware UTC datetimes, the metadata's JSON, booleans.
    assert_same(fast, slow)
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
        assert_same(fast, slow)
        assert fast[3].events


def test_filters_and_a_closed_range_read_the_same_either_way(
    db: Database, signed_in: tuple[str, Settings]
) -> None:
    """Type and action filters expand an ``IN`` per request: those statements run
    through SQLAlchemy; a range with an end is another shape. Same answers as SQLAlchemy
    reads."""
    cookie, settings = signed_in
    now = datetime.now(UTC)
    queries = [
        ActivityQuery(start=now - timedelta(days=200), end=now - timedelta(days=3)),
        ActivityQuery(
            start=now - timedelta(days=366),
            resource_types=(ResourceType.MODEL, ResourceType.DATASET),
            actions=(Action.CREATED,),
        ),
    ]
    for q in queries:
        fast = feed_page(db, cookie, settings, q)
        with through_sqlalchemy(db):
            slow = feed_page(db, cookie, settings, q)
        assert_same(fast, slow)
        assert fast[3].total > 0


def test_no_session_and_no_membership_read_the_same_either_way(
    db: Database, signed_in: tuple[str, Settings]
) -> None:
    cookie, settings = signed_in
    now = datetime.now(UTC)

    def resolve(value: str) -> Any:
        with db.read() as tx:
            return accounts.resolve_session_for_feed(tx, value, now=now, settings=settings)

    assert resolve("x" * 40) is None
    with db.write() as tx:
        tx.conn.execute(text("DELETE FROM memberships"))
    fast = resolve(cookie)
    with through_sqlalchemy(db):
        slow = resolve(cookie)
    assert fast[1:] == (None, None)
    assert_same(fast, slow)


def test_an_error_is_sqlalchemys_and_leaves_the_connection_usable(db: Database) -> None:
    """A statement that fails (not a dropped connection) raises SQLAlchemy's error for
    it, rolls its transaction back, and the pooled connection serves the next read."""
    if db.dialect != "postgresql":
        pytest.skip("needs a server-side statement timeout")
    one = Database(db.url, engine=create_engine(db.url, pool_size=1, max_overflow=0))
    params = {"id_hash": "x", "now": datetime.now(UTC), "idle_since": datetime.now(UTC)}

    def read_behind_a_lock() -> None:
        with one.read() as tx:
            tx.conn.exec_driver_sql("SET LOCAL lock_timeout = '50ms'")
            state_store.select_live_session_for_feed(tx, **params)

    try:
        with db.engine.connect() as holder:
            holder.exec_driver_sql("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(exc.OperationalError) as raised:
                read_behind_a_lock()
            assert "lock timeout" in str(raised.value)
            holder.rollback()
        with one.read() as tx:
            assert state_store.select_live_session_for_feed(tx, **params) is None
    finally:
        one.dispose()


def test_past_the_cache_statements_run_through_sqlalchemy(
    db: Database, signed_in: tuple[str, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller that built a statement per call cannot grow the cache without end: past
    its size the rest run through SQLAlchemy, with the same answers."""
    cookie, settings = signed_in
    monkeypatch.setattr(db_module, "_COMPILED", {})
    monkeypatch.setattr(db_module, "_COMPILED_MAX", 1)
    q = ActivityQuery(start=datetime.now(UTC) - timedelta(days=60))
    with sqlalchemy_executions(db) as seen:
        fast = feed_page(db, cookie, settings, q)
    assert len(db_module._COMPILED) == 1
    # The session's statement compiled; the page's, with its counts, not.
    assert len(seen) == 1, seen
    with through_sqlalchemy(db):
        slow = feed_page(db, cookie, settings, q)
    assert_same(fast, slow)


def test_the_feed_transaction_plans_generically_without_parallel_workers(
    db: Database, signed_in: tuple[str, Settings]
) -> None:
    """The session's statement sets, for the rest of the page's transaction only, that
    prepared statements run on their generic plan and that no parallel workers start
    (two workers to count an empty Inbox cost 5 ms a page); a search sets both back for
    its own statements (a plan for its pattern; workers for a long scan)."""
    if db.dialect != "postgresql":
        pytest.skip("PostgreSQL's planner settings")
    cookie, settings = signed_in
    show = text(
        "SELECT current_setting('plan_cache_mode'), "
        "current_setting('max_parallel_workers_per_gather')"
    )
    with db.read() as tx:
        server = tuple(tx.conn.execute(show).one())
    assert server[0] == "auto"
    assert server[1] != "0"
    now = datetime.now(UTC)
    with db.read() as tx:
        assert accounts.resolve_session_for_feed(tx, cookie, now=now, settings=settings)
        assert tuple(tx.conn.execute(show).one()) == ("force_generic_plan", "0")
        event_store.search_clause(tx, "wildlife")
        assert tuple(tx.conn.execute(show).one()) == ("force_custom_plan", server[1])
    with db.read() as tx:
        assert tuple(tx.conn.execute(show).one()) == server


@pytest.mark.postgres
@pytest.mark.parametrize("pooled", [True, False], ids=["pooled", "unpooled"])
def test_postgresql_sessions_give_times_in_utc_itself(pg_database: str, pooled: bool) -> None:
    """Whatever zone the server would give a session (here Asia/Kathmandu, +05:45, set
    by the connection's options as a server's default would), ours run in UTC: psycopg
    then hands out ``timestamptz`` values with ``datetime.UTC`` itself, which
    ``UTCDateTime`` passes through instead of converting value by value."""
    url = make_url(pg_database).update_query_dict({"options": "-c TimeZone=Asia/Kathmandu"})
    as_text = url.render_as_string(hide_password=False)
    engine = db_module.make_engine(as_text) if pooled else db_module.make_unpooled_engine(as_text)
    try:
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute(
                "SELECT current_setting('TimeZone'), "
                "timestamptz '2026-11-27 12:00:00+00', timestamptz '2026-11-27 23:59:59+05:45'"
            )
            zone, noon, late = cur.fetchone()
        finally:
            raw.close()
    finally:
        engine.dispose()
    assert zone == "UTC"
    assert noon.tzinfo is UTC
    assert late.tzinfo is UTC
    assert noon == datetime(2026, 11, 27, 12, tzinfo=UTC)
    assert (late.day, late.hour, late.minute) == (27, 18, 14)


@pytest.mark.postgres
@pytest.mark.parametrize(("server", "in_search"), [("4MB", "16MB"), ("64MB", "64MB")])
def test_a_search_raises_work_mem_for_its_transaction_only(
    pg_database: str, server: str, in_search: str
) -> None:
    """A search's transaction has ``work_mem`` of at least ``SEARCH_WORK_MEM_KB`` (its
    bitmap of trigram matches stays exact, not lossy), a server's larger value stays,
    and the next transaction has the server's again."""
    assert event_store.SEARCH_WORK_MEM_KB == 16 * 1024
    url = make_url(pg_database).update_query_dict({"options": f"-c work_mem={server}"})
    db = Database(url.render_as_string(hide_password=False))
    show = text("SELECT current_setting('work_mem')")
    try:
        with db.read() as tx:
            assert tx.conn.execute(show).scalar_one() == server
            event_store.search_clause(tx, "wildlife")
            assert tx.conn.execute(show).scalar_one() == in_search
        with db.read() as tx:
            assert tx.conn.execute(show).scalar_one() == server
    finally:
        db.dispose()


def test_postgresql_placeholders_are_numbered_once(
    db: Database, signed_in: tuple[str, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the page's statements carry ``$n`` placeholders, numbered when they
    are compiled: psycopg would otherwise number ``%(name)s`` anew at every execution of
    a statement over its cache's 4,096 bytes (the page with its counts is), 7% of a
    worker's CPU. psycopg's numbering function is watched: a page never calls it."""
    if db.dialect != "postgresql":
        pytest.skip("psycopg's placeholders")
    from psycopg import _queries

    calls: list[bytes] = []
    numbering = _queries._query2pg_nocache

    def watched(query: bytes, encoding: str) -> Any:
        calls.append(query[:60])
        return numbering(query, encoding)

    monkeypatch.setattr(_queries, "_query2pg_nocache", watched)
    cookie, settings = signed_in
    q = ActivityQuery(start=datetime.now(UTC) - timedelta(days=60))
    with sqlalchemy_executions(db) as seen:
        fast = feed_page(db, cookie, settings, q)
    assert seen == [], seen
    assert calls == [], calls
    assert any(len(c.sql) > _queries.MAX_CACHED_STATEMENT_LENGTH for c in _page_compiled(db))
    with through_sqlalchemy(db):
        slow = feed_page(db, cookie, settings, q)
    assert_same(fast, slow)


def _page_compiled(db: Database) -> list[Any]:
    return [
        made
        for dialect, _stmt, made in db_module._COMPILED.values()
        if made is not None and dialect is db.engine.dialect
    ]


def test_numbered_placeholders_follow_psycopg() -> None:
    """A name used twice keeps its number, as psycopg numbers them; ``%%`` is a ``%``."""
    sql = "SELECT %(a)s, %(b)s || '%%', %(a)s WHERE x LIKE 'p%%' AND y = %(c)s"
    query, order = db_module._numbered(sql)
    assert query == b"SELECT $1, $2 || '%', $1 WHERE x LIKE 'p%' AND y = $3"
    assert order == ("a", "b", "c")


def test_a_statement_without_parameters_runs_on_the_driver(db: Database) -> None:
    """No placeholders, no parameters: an empty sequence for psycopg's raw cursor (it
    refuses a mapping), the empty mapping for SQLite's."""
    stmt = select(literal_column("1").label("one"))
    with db.read() as tx, sqlalchemy_executions(db) as seen:
        rows = tx.fetch(stmt, {})
    assert seen == [], seen
    assert [tuple(r) for r in rows] == [(1,)]
    assert rows[0].one == 1
