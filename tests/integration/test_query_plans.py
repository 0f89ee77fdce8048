"""The hot feed queries use the intended indexes and never scan the events table.

Each operation runs through its service while the engine records the statements it
sends; every recorded SELECT is then explained (``EXPLAIN QUERY PLAN`` on SQLite,
``EXPLAIN`` with sequential scans disabled on PostgreSQL, so that the planner shows the
index it would use on a big table instead of scanning a small one). The assertions name
indexes from store/schema.py (and the migration-only search indexes): a change that
alters a plan on purpose updates them here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, delete, event

from activityfeed.domain.events import ResourceType
from activityfeed.domain.query import ActivityQuery
from activityfeed.domain.state import Watermarks
from activityfeed.services import accounts, activity, workspaces
from activityfeed.services.bench_history import (
    BenchWorld,
    ensure_world,
)
from activityfeed.store import bulk
from activityfeed.store import chain as chain_store
from activityfeed.store import events as event_store
from activityfeed.store import states as state_store
from activityfeed.store.db import Database
from activityfeed.store.schema import memberships
from tests.integration.feed_reads import feed_page, sign_in

UNDO = timedelta(hours=1)


@pytest.fixture
def world(db: Database) -> BenchWorld:
    world = ensure_world(db, events=1200, others_factor=1, now=datetime.now(UTC))
    # Plans depend on statistics; production tables have them (autovacuum, ANALYZE).
    with db.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
    return world


@contextmanager
def recorded(db: Database) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def record(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append((statement, params))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


#: PostgreSQL's B-tree indexes that lead with ``workspace_id``: on a small table each of
#: them looks cheaper than the trigram index, which wins only on a long history.
WORKSPACE_BTREES = (
    "ix_events_feed",
    "ix_events_type_feed",
    "ix_events_resource",
    "ix_events_private",
    "ux_events_arrival",
    "ux_events_ord",
    "ux_events_idempotency",
)


def is_head_read(statement: str) -> bool:
    return "ORDER BY events.ws_ord DESC" in statement


def plans(
    db: Database,
    statements: list[tuple[str, Any]],
    *,
    without: tuple[str, ...] = (),
    skip: Callable[[str], bool] = lambda _: False,
) -> list[str]:
    """One plan text per statement that reads the events table. On PostgreSQL the
    indexes ``without`` are dropped first, inside the transaction that is rolled back."""
    out = []
    with db.engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        cur = raw.cursor()
        if db.dialect == "postgresql":
            cur.execute("SET enable_seqscan = off")
            for name in without:
                cur.execute(f"DROP INDEX {name}")
            if without:
                # Walking the primary key in full is a scan too: bitmap scans only, which
                # need an index condition.
                cur.execute("SET enable_indexscan = off")
                cur.execute("SET enable_indexonlyscan = off")
        for statement, params in statements:
            if not re.search(r"\bevents\b", statement) or skip(statement):
                continue
            prefix = "EXPLAIN QUERY PLAN " if db.dialect == "sqlite" else "EXPLAIN "
            cur.execute(prefix + statement, params)
            out.append("\n".join(" ".join(str(c) for c in row) for row in cur.fetchall()))
        cur.close()
        raw.rollback()
    return out


def assert_no_events_scan(db: Database, found: list[str]) -> None:
    for plan in found:
        if db.dialect == "sqlite":
            # "SEARCH events USING INDEX ..." seeks; "SCAN events" reads every row.
            assert not re.search(r"\bSCAN events\b(?! VIRTUAL)", plan), plan
        else:
            assert not re.search(r"Seq Scan on events\b", plan), plan


def run(
    db: Database,
    fn: Callable[[], Any],
    *,
    without: tuple[str, ...] = (),
    skip: Callable[[str], bool] = lambda _: False,
) -> list[str]:
    with recorded(db) as statements:
        fn()
    found = plans(db, statements, without=without, skip=skip)
    assert found, "no statement read the events table"
    assert_no_events_scan(db, found)
    return found


def page_of(db: Database, world: BenchWorld, q: ActivityQuery) -> activity.ActivityPage:
    with db.read() as tx:
        membership = workspaces.access_workspace(
            tx, user_id=world.user_id, workspace_id=world.team_id
        )
        return activity.list_activity(
            tx,
            viewer_id=world.user_id,
            membership=membership,
            q=q,
            now=datetime.now(UTC),
            undo_window=UNDO,
        )


def test_first_page_uses_the_feed_index(db: Database, world: BenchWorld) -> None:
    q = ActivityQuery(start=datetime.now(UTC) - timedelta(days=30))
    found = run(db, lambda: page_of(db, world, q))
    assert any("ix_events_feed" in p for p in found), found


@pytest.mark.parametrize("filtered", [False, True], ids=["unfiltered", "by_type"])
@pytest.mark.parametrize(
    ("start_hour", "end_hour"),
    [(3, 20), (15, 9)],
    ids=["partial_days_by_their_day", "partial_days_walked"],
)
def test_the_total_adds_whole_days_from_the_day_rollups(
    db: Database, world: BenchWorld, filtered: bool, start_hour: int, end_hour: int
) -> None:
    """``total`` over a range adds its whole days from a rollup by key: unfiltered from
    ``event_day_totals`` (a row a day and owner), filtered by type or action from
    ``event_day_counts`` (a row a day, owner, type and action). On PostgreSQL, once
    settled (autovacuum's work), the unfiltered sum reads the key's index alone: it
    carries ``n`` (migration 0011). The partial days at the edges are counted in the
    feed index on their shorter side: early in the day the start's whole day (from the
    same rollup) less the hours before it, late in the day the hours after it."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    q = ActivityQuery(
        start=today - timedelta(days=200) + timedelta(hours=start_hour, minutes=7),
        end=today - timedelta(days=2) + timedelta(hours=end_hour, minutes=7),
        resource_types=(ResourceType.MODEL,) if filtered else (),
    )
    bulk.settle(db)
    found = run(db, lambda: page_of(db, world, q))
    total = [p for p in found if "event_day_" in p]
    assert len(total) == 1, found
    used, unused = ("counts", "totals") if filtered else ("totals", "counts")
    assert f"pk_event_day_{used}" in total[0] or f"event_day_{used}" in total[0], total
    assert f"event_day_{unused}" not in total[0], total
    assert not re.search(rf"(Seq Scan on|SCAN) event_day_{used}\b", total[0]), total
    if db.dialect == "postgresql" and not filtered:
        assert "Index Only Scan using pk_event_day_totals" in total[0], total


def test_a_page_takes_its_keys_from_the_feed_index_and_its_rows_by_key(
    db: Database, world: BenchWorld
) -> None:
    """The page's one statement (``store.events._page_rows``): its keys still come from
    the feed index alone, LIMIT included, and only those rows are read, by primary key,
    with their resources' state; the watermarks' statement reads the head as one entry
    of ``ux_events_ord``."""
    q = ActivityQuery(start=datetime.now(UTC) - timedelta(days=30))
    with recorded(db) as statements:
        page_of(db, world, q)
    [page] = plans(db, [s for s in statements if s[0].startswith("SELECT page.seq, page.id")])
    assert_no_events_scan(db, [page])
    by_key = "INTEGER PRIMARY KEY" if db.dialect == "sqlite" else "pk_events"
    assert by_key in page, page
    # Each row's resource (its state in Trash) is looked up by index, never scanned for.
    assert "resources" in page, page
    assert not re.search(r"Seq Scan on resources|SCAN resources", page), page
    if db.dialect == "postgresql":
        assert re.search(r"Limit.*\n.*Index Only Scan Backward using ix_events_feed", page), page
    [marks_and_head] = plans(db, [s for s in statements if "viewer_marks" in s[0]])
    assert "ux_events_ord" in marks_and_head, marks_and_head


def test_the_feed_session_reads_the_marks_and_head_by_index(
    db: Database, world: BenchWorld
) -> None:
    """The page's first statement (``states.select_live_session_for_feed``): the session,
    its membership, the viewer's watermarks there and the head as one entry of
    ``ux_events_ord``; the same marks and head as their own statement reads, and none for
    a workspace the user has left."""
    cookie, settings = sign_in(db, world.team_slug)
    now = datetime.now(UTC)
    with db.write() as tx:
        head_seq, head_ord = event_store.select_head(tx, world.team_id)
        marks = Watermarks(seen_seq=head_seq, seen_ord=head_ord)
        state_store.upsert_marks(tx, user_id=world.user_id, workspace_id=world.team_id, marks=marks)

    def resolve() -> Any:
        with db.read() as tx:
            return accounts.resolve_session_for_feed(tx, cookie, now=now, settings=settings)

    found = run(db, resolve, skip=lambda s: "sessions" not in s)
    assert len(found) == 1, found
    assert "ux_events_ord" in found[0], found
    _, membership, marks_and_head = resolve()
    assert membership is not None
    assert membership.workspace.id == world.team_id
    with db.read() as tx:
        alone = state_store.select_marks_and_head(
            tx, user_id=world.user_id, workspace_id=world.team_id
        )
    assert marks_and_head == alone == (marks, (head_seq, head_ord))
    with db.write() as tx:
        tx.conn.execute(
            delete(memberships).where(
                memberships.c.user_id == world.user_id,
                memberships.c.workspace_id == world.team_id,
            )
        )
    assert resolve()[1:] == (None, None)


def test_cursor_page_uses_the_feed_index(db: Database, world: BenchWorld) -> None:
    q = ActivityQuery(start=datetime.now(UTC) - timedelta(days=366))
    first = page_of(db, world, q)
    assert first.next_cursor is not None
    deeper = replace(q, cursor=first.next_cursor)
    found = run(db, lambda: page_of(db, world, deeper))
    assert any("ix_events_feed" in p for p in found), found


def test_unseen_count_reads_the_arrival_indexes(db: Database, world: BenchWorld) -> None:
    def count() -> int:
        with db.read() as tx:
            return workspaces.unseen_count(tx, user_id=world.user_id, workspace_id=world.team_id)

    found = run(db, count)
    text = "\n".join(found)
    assert re.search(r"ux_events_arrival|ux_events_ord|ix_events_private", text), found


def test_every_workspaces_unseen_count_is_one_statement(db: Database, world: BenchWorld) -> None:
    """The workspace switcher's unseen counts: each workspace's watermarks, head and
    counts in one statement that reads indexes only, and the same numbers as counting
    workspace by workspace under the locks (the write transaction's way)."""
    ids = [world.team_id, world.small_id]

    def counts() -> dict[str, int]:
        with db.read() as tx:
            return state_store.count_unseen_in(tx, user_id=world.user_id, workspace_ids=ids)

    with recorded(db) as statements:
        got = counts()
    assert len(statements) == 1, statements
    found = run(db, counts)
    assert re.search(r"ux_events_ord", "\n".join(found)), found
    with db.write() as tx:
        one_by_one = workspaces.unseen_counts(tx, user_id=world.user_id, workspace_ids=ids)
    assert got == one_by_one
    assert got[world.team_id] > 0


def test_head_reads_take_one_entry_of_the_ord_index(db: Database, world: BenchWorld) -> None:
    """The newest event of a workspace (every count, every ingestion batch) comes from
    ``ux_events_ord``. Ordered by ``seq`` instead, PostgreSQL with real statistics walked
    the primary key backwards past every newer event of the other workspaces."""

    def heads() -> None:
        with db.read() as tx:
            event_store.select_head(tx, world.team_id)
            chain_store.select_head(tx, world.team_id)

    found = run(db, heads)
    assert len(found) == 2, found
    for plan in found:
        assert "ux_events_ord" in plan, plan
        assert "pk_events" not in plan, plan


def test_the_floors_head_read_takes_one_entry_of_the_ord_index(
    db: Database, world: BenchWorld
) -> None:
    """The benchmark's floor (``bulk.driver_insert``) reads the head with the bare driver,
    by ``ws_ord`` as the app's head reads do (above); by ``seq`` it took
    ``ux_events_arrival`` on SQLite and could walk the primary key on PostgreSQL."""
    (plan,) = plans(db, [(bulk.DRIVER_HEAD_SQL[db.dialect], (world.team_id,))])
    assert "ux_events_ord" in plan, plan
    assert "pk_events" not in plan, plan
    assert_no_events_scan(db, [plan])


def test_events_named_by_id_are_looked_up_by_id(db: Database, world: BenchWorld) -> None:
    """Marking events seen (or archiving them) by id reads each by its unique index, never
    the whole workspace: on SQLite the workspace's equality drew the planner to
    ``ux_events_ord``, and 1000 ids in a workspace of a million events took 0.5 s."""
    with db.read() as tx:
        rows = tx.conn.exec_driver_sql(
            "SELECT id FROM events WHERE workspace_id = ? ORDER BY seq DESC LIMIT 50"
            if db.dialect == "sqlite"
            else "SELECT id FROM events WHERE workspace_id = %s ORDER BY seq DESC LIMIT 50",
            (world.team_id,),
        )
        ids = [r[0] for r in rows]

    def view() -> None:
        with db.read() as tx:
            marks = state_store.select_marks(tx, user_id=world.user_id, workspace_id=world.team_id)
            found = event_store.select_visible_seqs(
                tx, viewer_id=world.user_id, workspace_id=world.team_id, ids=ids, marks=marks
            )
            assert len(found) == len(ids)

    found = run(db, view)
    assert len(found) == 1, found
    if db.dialect == "sqlite":
        assert re.search(r"SEARCH events USING INDEX \w+ \(id=\?\)", found[0]), found
    else:
        assert re.search(r"Index Cond: \(\(?id\)?(::text)? = ANY", found[0]), found


def test_the_totals_exceptions_are_looked_up_one_by_one(db: Database, world: BenchWorld) -> None:
    """After "Archive all" and a few restores, ``total`` corrects the watermark's count
    by the viewer's exceptions: driven from ``event_states``, each event looked up by its
    key in a correlated subquery. As a join, PostgreSQL without statistics walked the
    workspace's events once per exception instead (docs/reliability.md)."""
    with db.read() as tx:
        rows = tx.conn.exec_driver_sql(
            "SELECT id FROM events WHERE workspace_id = ? AND private_to IS NULL"
            " ORDER BY seq DESC LIMIT 5"
            if db.dialect == "sqlite"
            else "SELECT id FROM events WHERE workspace_id = %s AND private_to IS NULL"
            " ORDER BY seq DESC LIMIT 5",
            (world.team_id,),
        )
        ids = [r[0] for r in rows]
    for event_ids, archive in ((None, True), (ids, False)):
        with db.write() as tx:
            membership = workspaces.access_workspace(
                tx, user_id=world.user_id, workspace_id=world.team_id
            )
            activity.archive_events(
                tx,
                viewer_id=world.user_id,
                membership=membership,
                event_ids=event_ids,
                archive_all=event_ids is None,
                archive=archive,
            )
    q = ActivityQuery(start=datetime.now(UTC) - timedelta(days=30))
    assert page_of(db, world, q).total >= 5
    found = run(db, lambda: page_of(db, world, q), skip=lambda s: "event_states" not in s)
    if db.dialect == "sqlite":
        pattern = (
            r"SEARCH event_states USING (COVERING )?INDEX \w+.*\n.*"
            r"CORRELATED SCALAR SUBQUERY \d+\n.*SEARCH events USING INTEGER PRIMARY KEY"
        )
    else:
        pattern = (
            # Either unique key of an event: its primary key or (workspace, seq). The table
            # has an alias when the statement reads it more than once (the page's rows
            # with their counts).
            r"Scan using ix_event_states_\w+ on (?:event_states )?(event_states\w*)[^\n]*\n"
            r"(.*\n)*?\s*SubPlan \d+\n\s*->  Index Scan using (pk_events|ux_events_arrival)"
            r" on events\w*[^\n]*\n[^\n]*Index Cond: [^\n]*seq = \1\.event_seq"
        )
    assert any(re.search(pattern, plan) for plan in found), found


def test_search_uses_the_trigram_index(db: Database, world: BenchWorld) -> None:
    q = ActivityQuery(search="wildlife", start=datetime.now(UTC) - timedelta(days=366))
    # On a small table PostgreSQL rightly filters along a workspace B-tree; with those
    # out of the way (and no sequential scans) what is left must be the trigram index,
    # which proves the search predicate matches the index's expression.
    # The page's head read (the newest event, by ``ux_events_ord``) is not a search
    # statement: it is left out, since its index is among those dropped.
    found = run(db, lambda: page_of(db, world, q), without=WORKSPACE_BTREES, skip=is_head_read)
    text = "\n".join(found)
    wanted = "events_fts" if db.dialect == "sqlite" else "ix_events_search_trgm"
    assert wanted in text, found


def test_each_search_is_planned_for_its_own_pattern(db: Database, world: BenchWorld) -> None:
    """psycopg prepares a statement once a connection has run it five times, and
    PostgreSQL may then plan it once for every pattern: a plan that cannot know how
    many rows a pattern matches (4x slower on a long history). Searches are planned at
    each execution instead, however often they repeat."""
    if db.dialect != "postgresql":
        pytest.skip("SQLite plans every statement for its values")
    q = ActivityQuery(search="wildlife", start=datetime.now(UTC) - timedelta(days=366))
    # One connection at a time: the pool hands the same one back, as a busy worker does.
    for _ in range(15):
        page_of(db, world, q)
    with db.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE statement ILIKE '%%ILIKE%%'"
        ).all()
    assert rows, "the searches were not prepared: this test would prove nothing"
    assert sum(r.custom_plans for r in rows) >= 15
    assert sum(r.generic_plans for r in rows) == 0, rows


def test_a_plain_page_is_planned_once_per_connection(db: Database, world: BenchWorld) -> None:
    """The opposite of searches: a plain page's statements (the session with the marks
    and head, the rows with the total and unseen count) are planned once and their plan
    reused. Their values do not change the best plan, and planning anew cost PostgreSQL
    more than running them: the session's statement, with a bound ``LIMIT 1`` in its
    head reads, got a generic plan that sorted the workspace's events, so it was
    planned at every execution (0.3 ms of the server's CPU on every page); at 1,000,000
    events the rows and the total were too, until the session's statement set generic
    plans for the rest of the page's transaction."""
    if db.dialect != "postgresql":
        pytest.skip("SQLite plans every statement for its values")
    cookie, settings = sign_in(db, world.team_slug)
    q = ActivityQuery(start=datetime.now(UTC) - timedelta(days=30))
    # One connection, as a busy worker reuses its own: psycopg prepares a statement at
    # its sixth run on a connection, and PostgreSQL tries five custom plans before it
    # may settle on the generic one.
    one = Database(db.url, engine=create_engine(db.url, pool_size=1, max_overflow=0))

    def page() -> None:
        feed_page(one, cookie, settings, q)

    # Statistics as on a long history, where each workspace holds many events (here a
    # few hundred; a long history's workspace holds thousands).
    stats = "ALTER TABLE events ALTER COLUMN workspace_id SET (n_distinct = 2)"
    with db.engine.connect() as conn:
        conn.exec_driver_sql(stats)
        conn.exec_driver_sql("ANALYZE events")
        conn.commit()
    try:
        for _ in range(20):
            page()
        # The connection ran nothing but the pages: what it prepared is theirs.
        with one.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
            ).all()
    finally:
        one.dispose()
        with db.engine.connect() as conn:
            conn.exec_driver_sql("ALTER TABLE events ALTER COLUMN workspace_id RESET (n_distinct)")
            conn.exec_driver_sql("ANALYZE events")
            conn.commit()
    assert len(rows) == 2, rows
    assert all(r.generic_plans > 0 for r in rows), [tuple(r) for r in rows if not r.generic_plans]
    # The rows with their counts run on the generic plan from their first prepared run (the
    # session's statement sets it for the transaction; it is itself planned as usual):
    # on a long history PostgreSQL would otherwise price the generic plan above one
    # for the values at hand, and plan every page anew.
    after_session = [r for r in rows if not r.statement.startswith("SELECT sessions.")]
    assert len(after_session) == 1, rows
    assert all(r.custom_plans == 0 for r in after_session), after_session
