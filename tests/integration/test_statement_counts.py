""" "Mark all seen", "archive all", "restore all" and the unseen count do not grow with history.

Two team workspaces differ only in how many events they hold (100 and 10,000). The same
triage runs in each while a ``before_cursor_execute`` listener records every statement:
the statements must be the same SQL, as many of them, and the writes among them must
touch as many rows. A watermark design passes; an UPDATE per event, or a loop per
event, fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, text

from activityfeed.domain.accounts import Membership, User, Workspace
from activityfeed.domain.events import Action, Actor, EventDraft, ResourceType, Source, SourceKind
from activityfeed.domain.query import parse_activity_query
from activityfeed.domain.workspaces import Role
from activityfeed.services import activity, workspaces
from activityfeed.services.events import record_events
from activityfeed.store import events as event_store
from activityfeed.store import states as state_store
from activityfeed.store.db import Database
from tests.factories import Browser, make_team, make_user

BATCH = 1000


@dataclass
class Recorder:
    """Statements run on an engine, and the rows each write touched."""

    statements: list[str] = field(default_factory=list)
    writes: list[tuple[str, int]] = field(default_factory=list)


def _verb(statement: str) -> str:
    return statement.lstrip().split(None, 1)[0].upper()


_TOUCHED = (
    "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_xact_user_tables"
)


@contextmanager
def recording(db: Database) -> Iterator[Recorder]:
    recorder = Recorder()

    # Writes in data-modifying CTEs (PostgreSQL): the rows the statement touched, from
    # the backend's statistics counters read before and after it on the driver's
    # connection (so not recorded as statements).
    touched_before = [0]

    def touched(cursor: Any) -> int:
        return int(cursor.connection.execute(_TOUCHED).fetchone()[0])

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        recorder.statements.append(statement)
        if _verb(statement) == "WITH" and db.dialect == "postgresql":
            touched_before[0] = touched(cursor)

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        verb = _verb(statement)
        if verb in ("INSERT", "UPDATE", "DELETE"):
            recorder.writes.append((verb, cursor.rowcount))
        elif verb == "WITH" and db.dialect == "postgresql":
            recorder.writes.append((verb, touched(cursor) - touched_before[0]))

    event.listen(db.engine, "before_cursor_execute", before)
    event.listen(db.engine, "after_cursor_execute", after)
    try:
        yield recorder
    finally:
        event.remove(db.engine, "before_cursor_execute", before)
        event.remove(db.engine, "after_cursor_execute", after)


def fill(
    db: Database, clock: Callable[[], Any], team: Workspace, users: list[User], n: int
) -> list[str]:
    """``n`` events in ``team``, in batches of 1000, by each user in turn; one in ten is
    a settings change private to its actor."""
    ids: list[str] = []
    start = clock() - timedelta(days=30)
    for first in range(0, n, BATCH):
        drafts = []
        for i in range(first, min(n, first + BATCH)):
            user = users[i % len(users)]
            private = i % 20 < 2
            drafts.append(
                EventDraft(
                    workspace_id=team.id,
                    resource_type=ResourceType.SETTINGS if private else ResourceType.TRAINING,
                    action=Action.UPDATED if private else Action.COMPLETED,
                    resource_id=f"run-{i}",
                    resource_name=f"run {i}",
                    actor=Actor(id=user.id, name=user.name, email=user.email),
                    source=Source(kind=SourceKind.UI),
                    occurred_at=start + timedelta(seconds=i),
                )
            )
        with db.write() as tx:
            ids.extend(e.id for e in record_events(tx, drafts, now=clock()))
    return ids


def triage(
    db: Database, user: User, team: Workspace, ids: list[str]
) -> dict[str, tuple[Recorder, int]]:
    """Some clicks on single events (so exceptions exist), then each "all" operation
    and unseen counts, each recorded on its own with what it returned."""
    membership = Membership(workspace=team, role=Role.MEMBER)
    with db.write() as tx:
        activity.mark_seen(
            tx, viewer_id=user.id, membership=membership, event_ids=ids[-5:], mark_all=False
        )
        activity.archive_events(
            tx,
            viewer_id=user.id,
            membership=membership,
            event_ids=ids[-10:-3],
            archive_all=False,
            archive=True,
        )

    def mark_all_seen() -> int:
        with db.write() as tx:
            return activity.mark_seen(
                tx, viewer_id=user.id, membership=membership, event_ids=None, mark_all=True
            )

    def archive_all(archive: bool) -> int:
        with db.write() as tx:
            return activity.archive_events(
                tx,
                viewer_id=user.id,
                membership=membership,
                event_ids=None,
                archive_all=True,
                archive=archive,
            )

    def unseen_count() -> int:
        with db.read() as tx:
            return workspaces.unseen_count(tx, user_id=user.id, workspace_id=team.id)

    steps: list[tuple[str, Callable[[], int]]] = [
        ("unseen count", unseen_count),
        ("archive all", lambda: archive_all(True)),
        ("unseen count after archive all", unseen_count),
        ("restore all", lambda: archive_all(False)),
        ("mark all seen", mark_all_seen),
        ("unseen count after mark all seen", unseen_count),
        ("archive all after mark all seen", lambda: archive_all(True)),
    ]
    out: dict[str, tuple[Recorder, int]] = {}
    for name, step in steps:
        with recording(db) as recorder:
            result = step()
        out[name] = (recorder, result)
    return out


def expected_results(visible: int) -> dict[str, int]:
    """What each step returns for a viewer who sees ``visible`` events: the ten newest
    were clicked (five seen, seven archived, two of them both)."""
    return {
        "unseen count": visible - 10,
        "archive all": visible - 7,
        "unseen count after archive all": 0,
        "restore all": visible,
        "mark all seen": 0,
        "unseen count after mark all seen": 0,
        "archive all after mark all seen": visible,
    }


def test_all_operations_cost_the_same_at_100_and_10000_events(db, clock):
    """The same statements, touching the same number of rows, whatever the history;
    and the answers are exact at both sizes."""
    alice = make_user(db, clock)
    bob = make_user(db, clock)
    small = make_team(db, clock, alice, [(bob, Role.MEMBER)], name="Small")
    big = make_team(db, clock, alice, [(bob, Role.MEMBER)], name="Big")
    small_ids = fill(db, clock, small, [alice, bob], 100)
    big_ids = fill(db, clock, big, [alice, bob], 10_000)

    at_100 = triage(db, bob, small, small_ids)
    at_10000 = triage(db, bob, big, big_ids)

    # A tenth of the events are private, half of those alice's, which bob never sees.
    assert {name: result for name, (_, result) in at_100.items()} == expected_results(95)
    assert {name: result for name, (_, result) in at_10000.items()} == expected_results(9500)
    for name in at_100:
        few, many = at_100[name][0], at_10000[name][0]
        assert len(few.statements) == len(many.statements), name
        assert few.statements == many.statements, name
        assert few.writes == many.writes, name
    # The listener saw the work (a silent listener would pass the comparison above).
    assert len(at_100["archive all"][0].statements) >= 3
    assert at_100["archive all"][0].writes


#: The round trips of "Mark all seen" / "Archive all" / "Restore all" on PostgreSQL
#: besides BEGIN and COMMIT: both locks; watermarks with head; one statement whose
#: data-modifying CTEs write the new watermark, forget the exceptions it makes moot and
#: record the stream's outbox row, and whose SELECT sends the wake-up (and for archive
#: and restore counts what moves). They were ten to thirteen, then six
#: (docs/performance.md, "Sixth round" and "Seventh round").
ALL_OPERATION_STATEMENTS = {"mark all seen": 3, "archive all": 3, "restore all": 3}


def test_all_operations_are_three_round_trips(db, clock):
    if db.dialect != "postgresql":
        pytest.skip("SQLite's statements are calls in the same process, not round trips")
    alice = make_user(db, clock)
    team = make_team(db, clock, alice, [], name="Trips")
    ids = fill(db, clock, team, [alice], 50)
    steps = triage(db, alice, team, ids)
    counts = {
        name: len([s for s in steps[name][0].statements if not s.lstrip().startswith("COMMIT")])
        for name in ALL_OPERATION_STATEMENTS
    }
    assert counts == ALL_OPERATION_STATEMENTS, {n: steps[n][0].statements for n in counts}


def test_a_state_change_reaches_the_stream_outbox_in_one_statement(db, clock):
    """Recording a change for the user's other tabs is one round trip: the insert reads
    the previous change's ``seq`` itself (``prev_seq``) and sends PostgreSQL's wake-up,
    and the chain of changes stays exact."""
    alice = make_user(db, clock)
    team = make_team(db, clock, alice, [], name="Outbox")
    ids = fill(db, clock, team, [alice], 20)
    membership = Membership(workspace=team, role=Role.OWNER)
    for event_id in ids[:2]:
        with recording(db) as recorder, db.write() as tx:
            activity.mark_seen(
                tx, viewer_id=alice.id, membership=membership, event_ids=[event_id], mark_all=False
            )
        outbox = [s for s in recorder.statements if "stream_changes" in s]
        assert len(outbox) == 1, outbox
        assert "INSERT INTO stream_changes" in outbox[0], outbox
        # PostgreSQL's wake-up for the other processes rides on the same statement.
        assert [s for s in recorder.statements if "pg_notify" in s] == (
            outbox if db.dialect == "postgresql" else []
        )
    with db.read() as tx:
        chain = tx.conn.execute(
            text("SELECT seq, prev_seq FROM stream_changes WHERE workspace_id = :ws ORDER BY seq"),
            {"ws": team.id},
        ).all()
    assert [r.prev_seq for r in chain] == [0, chain[0].seq]


#: The statements of one first page of ``GET /api/activity`` besides BEGIN and COMMIT
#: (and the pool's ping on PostgreSQL): the session with its membership, the viewer's
#: watermarks there and the head; then the page's rows (its keys a subquery, the live
#: state of its projects, datasets and models joined), each carrying the total and the
#: unseen count. It was ten, each a round trip to PostgreSQL (docs/performance.md,
#: "Fewer round trips"), then four (the watermarks with the head in a statement of their
#: own), then three (the counts in a statement of their own).
FEED_PAGE_STATEMENTS = 2


@pytest.mark.parametrize("triaged", [False, True], ids=["fresh", "triaged"])
def test_a_feed_page_is_two_statements(app, db, clock, triaged):
    """A viewer who never triaged, and one with both watermarks set (archive above seen)
    and exceptions on each side: the same statements, and the same numbers as the
    standalone counts."""
    alice = make_user(db, clock)
    bob = make_user(db, clock)
    team = make_team(db, clock, alice, [(bob, Role.MEMBER)])
    ids = fill(db, clock, team, [alice, bob], 100)
    membership = Membership(workspace=team, role=Role.MEMBER)
    if triaged:
        with db.write() as tx:
            activity.mark_seen(
                tx, viewer_id=bob.id, membership=membership, event_ids=ids[:40], mark_all=False
            )
            activity.archive_events(
                tx, viewer_id=bob.id, membership=membership, event_ids=None,
                archive_all=True, archive=True,
            )  # fmt: skip
        ids += fill(db, clock, team, [alice, bob], 50)
        with db.write() as tx:
            activity.archive_events(
                tx, viewer_id=bob.id, membership=membership, event_ids=ids[-3:],
                archive_all=False, archive=True,
            )  # fmt: skip
            activity.archive_events(
                tx, viewer_id=bob.id, membership=membership, event_ids=ids[50:52],
                archive_all=False, archive=False,
            )  # fmt: skip
            activity.mark_seen(
                tx, viewer_id=bob.id, membership=membership, event_ids=ids[-6:-4], mark_all=False
            )
    project = EventDraft(
        workspace_id=team.id,
        resource_type=ResourceType.PROJECT,
        action=Action.CREATED,
        resource_id="p-1",
        resource_name="p-1",
        actor=Actor(id=alice.id, name=alice.name, email=alice.email),
        source=Source(kind=SourceKind.UI),
    )
    with db.write() as tx:
        record_events(tx, [project], now=clock())
    browser = Browser(app, bob.email)
    browser.switch(team.slug)
    # A process reads the installation's key once, on its first page (web/sealing.py).
    app.state.sealers.get()

    with recording(db) as recorder:
        page = browser.activity()

    # SQLite's BEGIN is a statement of ours (``db._sqlite_on_begin``); PostgreSQL's is
    # psycopg's own, unseen here.
    statements = [s for s in recorder.statements if not s.startswith("BEGIN")]
    assert len(statements) == FEED_PAGE_STATEMENTS, statements
    assert len(page["events"]) == 20
    with db.read() as tx:
        marks = state_store.select_marks(tx, user_id=bob.id, workspace_id=team.id)
        _, head_ord = event_store.select_head(tx, team.id)
        q = parse_activity_query({}, now=clock())
        total = event_store.count_matching(
            tx, viewer_id=bob.id, workspace_id=team.id, marks=marks, q=q, head_ord=head_ord
        )
        unseen = state_store.count_unseen(
            tx, user_id=bob.id, workspace_id=team.id, marks=marks, head_ord=head_ord
        )
        rows = event_store.select_page(
            tx, viewer_id=bob.id, workspace_id=team.id, marks=marks, q=q, limit=20
        )
    assert (page["total"], page["unseenCount"]) == (total, unseen)
    assert [e["id"] for e in page["events"]] == [r.event.id for r in rows]
    assert (marks.archived_seq > marks.seen_seq) is triaged


@pytest.mark.parametrize("page_number", [1, 3, 99], ids=["first", "third", "past_the_end"])
def test_a_sqlite_search_of_common_text_builds_its_match_set_once(
    app, db, clock, monkeypatch, page_number
):
    """On SQLite a search of common text reads its page's keys and its total in one
    statement over the trigram table (``count(*) OVER ()``): the match set is built
    once, not once for the keys and again for the count. A page past the last match
    carries no count, which then takes its own statement. The numbers are those of the
    standalone count."""
    if db.dialect != "sqlite":
        pytest.skip("SQLite's trigram table")
    # Every text with a match is "common": read from the feed index, not by key.
    monkeypatch.setattr(event_store, "FTS_PROBE", 1)
    alice = make_user(db, clock)
    team = make_team(db, clock, alice, [])
    fill(db, clock, team, [alice], 300)
    browser = Browser(app, alice.email)
    browser.switch(team.slug)
    app.state.sealers.get()

    with recording(db) as recorder:
        page = browser.activity(search="run 1", page=page_number, limit=20)

    over_fts = [s for s in recorder.statements if "events_fts" in s]
    # The probe of how many match, then the keys with their count (and, past the end,
    # the count's own probe and count).
    assert len(over_fts) == (4 if page_number == 99 else 2), over_fts
    with db.read() as tx:
        marks = state_store.select_marks(tx, user_id=alice.id, workspace_id=team.id)
        q = parse_activity_query({"search": ["run 1"]}, now=clock())
        total = event_store.count_matching(
            tx, viewer_id=alice.id, workspace_id=team.id, marks=marks, q=q
        )
    assert page["total"] == total > 60
    assert len(page["events"]) == (0 if page_number == 99 else 20)
