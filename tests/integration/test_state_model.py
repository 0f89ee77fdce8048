"""Seen/archived state agrees with a simple in-memory model under random interleavings.

The store keeps seen/archived state as per-viewer watermarks plus sparse per-event
exceptions (``activityfeed.domain.state``), and counts with arithmetic over dense
per-workspace ordinals. The model here is the obvious one: a set of seen ids and a set
of archived ids per user. Hypothesis drives two members of one team workspace through
ingestion (now and back-dated, public and private, replayed idempotency keys, events of
another workspace), mark-seen by ids and all, archive by ids and all, restore by ids
and all, and checks after every step that counts, both lists, every flag and every
"updated" number agree with the model; a cursor walk must return each visible event
exactly once, ties on ``createdAt`` included.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select, text

from activityfeed.domain.accounts import ApiKey, Membership, Scope, User, Workspace
from activityfeed.domain.events import Action, Actor, EventDraft, ResourceType, Source, SourceKind
from activityfeed.domain.ids import digest, new_id
from activityfeed.domain.query import ActivityQuery, Cursor
from activityfeed.domain.workspaces import Role
from activityfeed.services import accounts, activity, workspaces
from activityfeed.services.events import record_events
from activityfeed.services.ingest import IngestItem, ingest_events
from activityfeed.store import apikeys as apikey_store
from activityfeed.store.db import Database
from activityfeed.store.schema import event_states, events, viewer_marks

UNDO_WINDOW = timedelta(hours=1)
MAX_TEAM_EVENTS = 90
USERS = ("alice", "bob")
# Few distinct past instants (some with microseconds), so that back-dated events often
# share a createdAt with each other: the keyset tie-break on seq must hold them apart.
PAST = [
    timedelta(hours=h, microseconds=us) for h in (1, 26, 24 * 9) for us in (0, 500_000, 999_999)
]


@dataclass(frozen=True)
class World:
    """What every example starts from: two members of a team, and a producer key."""

    users: dict[str, User]
    team: Workspace
    elsewhere: Workspace
    key: ApiKey


class FreshDatabases:
    """A database with the world in it and no events, fresh for every example.

    SQLite: a copy of a file prepared once. PostgreSQL: the same database with the
    event tables truncated (the users, workspaces and key stay).
    """

    def __init__(self, backend: str, database_url: str, tmp_path: Path) -> None:
        self.backend = backend
        self.path = tmp_path / "example.db"
        self.current: Database | None = None
        now = datetime.now(UTC)
        setup = Database(database_url)
        with setup.write() as tx:
            users = {
                name: accounts.create_user(
                    tx, email=f"{name}@example.com", name=name.title(), password="x" * 12, now=now
                )
                for name in USERS
            }
            team = workspaces.create_workspace(tx, user_id=users["alice"].id, name="Team", now=now)
            workspaces.add_member(
                tx, user_id=users["alice"].id, slug=team.slug, email="bob@example.com",
                role=Role.MEMBER, now=now,
            )  # fmt: skip
            elsewhere = workspaces.create_workspace(
                tx, user_id=users["alice"].id, name="Elsewhere", now=now
            )
            # Inserted directly: creating a key through the service records an event,
            # and the examples start with none.
            key = ApiKey(
                id=new_id("k_"),
                workspace_id=team.id,
                created_by=users["alice"].id,
                name="runner",
                prefix="afk_test",
                scopes=(Scope.EVENTS_WRITE,),
                created_at=now,
                last_used_at=None,
                revoked_at=None,
            )
            apikey_store.insert_api_key(tx, key, secret_hash=digest("afk_test_secret"))
        self.world = World(users=users, team=team, elsewhere=elsewhere, key=key)
        if backend == "sqlite":
            setup.dispose()
            self.template = Path(database_url.removeprefix("sqlite:///"))
            assert not Path(f"{self.template}-wal").exists()
        else:
            self.current = setup

    def fresh(self) -> Database:
        if self.backend == "sqlite":
            # One engine for every example (its statement cache survives), with the
            # file under it replaced while no connection is open.
            if self.current is None:
                self.current = Database(f"sqlite:///{self.path}")
            self.current.dispose()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            shutil.copy(self.template, self.path)
            return self.current
        assert self.current is not None
        with self.current.engine.begin() as conn:
            conn.execute(
                text(
                    "TRUNCATE event_states, viewer_marks, undos, event_checkpoints, events"
                    " RESTART IDENTITY"
                )
            )
        return self.current

    def close(self) -> None:
        if self.current is not None:
            self.current.dispose()


@pytest.fixture
def fresh_databases(backend: str, database_url: str, tmp_path: Path) -> Iterator[FreshDatabases]:
    databases = FreshDatabases(backend, database_url, tmp_path)
    yield databases
    databases.close()


@dataclass
class ModelEvent:
    id: str
    created_at: datetime
    arrival: int
    private_to: str | None


@dataclass
class ModelViewer:
    seen: set[str] = field(default_factory=set)
    archived: set[str] = field(default_factory=set)


def _draft(
    *,
    workspace: Workspace,
    kind: str,
    actor: User | None,
    occurred_at: datetime | None,
) -> EventDraft:
    n = new_id()
    private = kind == "settings"
    return EventDraft(
        workspace_id=workspace.id,
        resource_type=ResourceType.SETTINGS if private else ResourceType.TRAINING,
        action=Action.UPDATED if private else Action.COMPLETED,
        resource_id=f"r-{n}",
        resource_name="profile" if private else f"run-{n[-6:]}",
        actor=Actor(id=actor.id, name=actor.name, email=actor.email) if actor else None,
        source=Source(kind=SourceKind.UI if actor else SourceKind.SYSTEM),
        occurred_at=occurred_at,
    )


def make_machine(databases: FreshDatabases) -> type[RuleBasedStateMachine]:
    world = databases.world

    class StateModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.db = databases.fresh()
            self.start = datetime.now(UTC).replace(microsecond=0)
            self.now = self.start
            self.events: dict[str, ModelEvent] = {}
            self.foreign_ids: list[str] = []
            self.viewers = {name: ModelViewer() for name in USERS}
            self.idempotent: dict[str, tuple[IngestItem, str]] = {}
            self.keys = itertools.count(1)
            # Whose lists a step may have changed: the invariant re-reads only those
            # (the counts of both are checked after every step regardless).
            self.dirty = set(USERS)

        # -- helpers ---------------------------------------------------------------

        def user(self, name: str) -> User:
            return world.users[name]

        def membership(self) -> Membership:
            return Membership(workspace=world.team, role=Role.MEMBER)

        def visible(self, name: str) -> list[ModelEvent]:
            uid = self.user(name).id
            return [e for e in self.events.values() if e.private_to in (None, uid)]

        def expected_list(self, name: str, *, archived: bool) -> list[tuple[str, bool, bool]]:
            v = self.viewers[name]
            rows = [e for e in self.visible(name) if (e.id in v.archived) == archived]
            rows.sort(key=lambda e: (e.created_at, e.arrival), reverse=True)
            return [(e.id, e.id in v.seen, e.id in v.archived) for e in rows]

        def expected_unseen(self, name: str) -> int:
            v = self.viewers[name]
            return sum(
                1 for e in self.visible(name) if e.id not in v.seen and e.id not in v.archived
            )

        def add(
            self, recorded_ids: list[str], private_to: list[str | None], times: list[datetime]
        ) -> None:
            for event_id, owner, at in zip(recorded_ids, private_to, times, strict=True):
                self.events[event_id] = ModelEvent(
                    id=event_id, created_at=at, arrival=len(self.events), private_to=owner
                )

        def query(
            self, *, archived: bool, limit: int = 100, cursor: Cursor | None = None
        ) -> ActivityQuery:
            return ActivityQuery(
                is_archived=archived,
                limit=limit,
                start=self.start - timedelta(days=400),
                end=self.now + timedelta(days=1),
                cursor=cursor,
            )

        def list_page(self, name: str, q: ActivityQuery) -> activity.ActivityPage:
            with self.db.read() as tx:
                return activity.list_activity(
                    tx,
                    viewer_id=self.user(name).id,
                    membership=self.membership(),
                    q=q,
                    now=self.now,
                    undo_window=UNDO_WINDOW,
                )

        def advance(self, seconds: int) -> None:
            self.now += timedelta(seconds=seconds)

        def pick_ids(self, data: st.DataObject) -> list[str]:
            """Ids to act on: the workspace's (anyone's private ones too), another
            workspace's, unknown ones, and repeats. Most are one of three "hot" events,
            so that the same event is often seen, archived, restored, archived again."""
            ids = list(self.events)
            others = st.integers(0, 3).map(lambda n: f"0000000000000000000000000{n}")
            if ids or self.foreign_ids:
                others = others | st.sampled_from(ids + self.foreign_ids)
            hot_ids: list[str] = []
            if ids:
                hot = st.sampled_from(ids[:2] + ids[-1:])
                hot_ids = data.draw(st.lists(hot, max_size=3), label="hot ids")
            return hot_ids + data.draw(st.lists(others, max_size=3), label="other ids")

        # -- rules -----------------------------------------------------------------

        @precondition(lambda self: len(self.events) < MAX_TEAM_EVENTS)
        @rule(
            data=st.data(),
            count=st.integers(1, 4),
            by=st.sampled_from([None, *USERS]),
            step=st.sampled_from([0, 0, 1, 60]),
        )
        def record(self, data: st.DataObject, count: int, by: str | None, step: int) -> None:
            """The platform records events in-process, some back-dated."""
            self.advance(step)
            times = data.draw(
                st.lists(st.sampled_from([None, *PAST]), min_size=count, max_size=count),
                label="ages",
            )
            actor = self.user(by) if by else None
            drafts = [
                _draft(
                    workspace=world.team,
                    kind="training",
                    actor=actor,
                    occurred_at=None if age is None else self.start - age,
                )
                for age in times
            ]
            with self.db.write() as tx:
                recorded = record_events(tx, drafts, now=self.now)
            self.dirty |= set(USERS)
            self.add(
                [e.id for e in recorded],
                [None] * count,
                [self.now if age is None else self.start - age for age in times],
            )

        @precondition(lambda self: len(self.events) < MAX_TEAM_EVENTS)
        @rule(by=st.sampled_from(USERS), age=st.sampled_from([None, *PAST]))
        def record_private(self, by: str, age: timedelta | None) -> None:
            """A settings change: only its actor sees it."""
            at = self.now if age is None else self.start - age
            draft = _draft(
                workspace=world.team, kind="settings", actor=self.user(by), occurred_at=at
            )
            with self.db.write() as tx:
                (recorded,) = record_events(tx, [draft], now=self.now)
            assert recorded.private_to == self.user(by).id
            self.dirty.add(by)
            self.add([recorded.id], [self.user(by).id], [at])

        @precondition(lambda self: len(self.events) < MAX_TEAM_EVENTS)
        @rule(
            data=st.data(),
            count=st.integers(1, 3),
            with_key=st.booleans(),
            step=st.sampled_from([0, 1]),
        )
        def ingest(self, data: st.DataObject, count: int, with_key: bool, step: int) -> None:
            """A producer reports a batch through an API key."""
            self.advance(step)
            ages = data.draw(
                st.lists(st.sampled_from([None, *PAST]), min_size=count, max_size=count),
                label="ages",
            )
            items = [
                IngestItem(
                    resource_type="export",
                    action="completed",
                    resource_id=f"x-{i}",
                    resource_name=f"export {i}",
                    occurred_at=None if age is None else self.start - age,
                    idempotency_key=f"key-{next(self.keys)}" if with_key else None,
                )
                for i, age in enumerate(ages)
            ]
            with self.db.write() as tx:
                result = ingest_events(
                    tx, key=world.key, items=items, is_batch=True, now=self.now,
                    max_metadata_bytes=16 * 1024,
                )  # fmt: skip
            assert result.is_new
            ids = [e.id for e in result.events]
            self.dirty |= set(USERS)
            self.add(ids, [None] * count, [self.now if a is None else self.start - a for a in ages])
            for item, event_id in zip(items, ids, strict=True):
                if item.idempotency_key:
                    self.idempotent[item.idempotency_key] = (item, event_id)

        @precondition(lambda self: bool(self.idempotent))
        @rule(data=st.data())
        def replay(self, data: st.DataObject) -> None:
            """A producer retries: the original comes back and nothing new is stored."""
            key = data.draw(st.sampled_from(sorted(self.idempotent)), label="key")
            item, event_id = self.idempotent[key]
            with self.db.write() as tx:
                result = ingest_events(
                    tx, key=world.key, items=[item], is_batch=False, now=self.now,
                    max_metadata_bytes=16 * 1024,
                )  # fmt: skip
            assert not result.is_new
            assert [e.id for e in result.events] == [event_id]

        @rule(by=st.sampled_from([*USERS, None]))
        def record_elsewhere(self, by: str | None) -> None:
            """Events of another workspace: their ids are foreign to the team's feed."""
            draft = _draft(
                workspace=world.elsewhere,
                kind="settings" if by else "training",
                actor=self.user(by) if by else None,
                occurred_at=None,
            )
            with self.db.write() as tx:
                (recorded,) = record_events(tx, [draft], now=self.now)
            self.foreign_ids.append(recorded.id)

        @rule(name=st.sampled_from(USERS), data=st.data())
        def mark_seen_ids(self, name: str, data: st.DataObject) -> None:
            self.dirty.add(name)
            ids = self.pick_ids(data)
            with self.db.write() as tx:
                unseen = activity.mark_seen(
                    tx,
                    viewer_id=self.user(name).id,
                    membership=self.membership(),
                    event_ids=ids,
                    mark_all=False,
                )
            visible = {e.id for e in self.visible(name)}
            self.viewers[name].seen |= visible & set(ids)
            assert unseen == self.expected_unseen(name)

        @rule(name=st.sampled_from(USERS))
        def mark_all_seen(self, name: str) -> None:
            self.dirty.add(name)
            with self.db.write() as tx:
                unseen = activity.mark_seen(
                    tx,
                    viewer_id=self.user(name).id,
                    membership=self.membership(),
                    event_ids=None,
                    mark_all=True,
                )
            self.viewers[name].seen |= {e.id for e in self.visible(name)}
            assert unseen == 0

        @rule(name=st.sampled_from(USERS), archive=st.booleans(), data=st.data())
        def archive_ids(self, name: str, archive: bool, data: st.DataObject) -> None:
            """Archive (or restore) by ids; ``updated`` counts the events that moved."""
            self.dirty.add(name)
            ids = self.pick_ids(data)
            with self.db.write() as tx:
                updated = activity.archive_events(
                    tx,
                    viewer_id=self.user(name).id,
                    membership=self.membership(),
                    event_ids=ids,
                    archive_all=False,
                    archive=archive,
                )
            v = self.viewers[name]
            targets = {e.id for e in self.visible(name)} & set(ids)
            moving = {i for i in targets if (i in v.archived) != archive}
            if archive:
                v.archived |= moving
            else:
                v.archived -= moving
            assert updated == len(moving)

        @rule(name=st.sampled_from(USERS))
        def archive_all(self, name: str) -> None:
            self.dirty.add(name)
            with self.db.write() as tx:
                updated = activity.archive_events(
                    tx,
                    viewer_id=self.user(name).id,
                    membership=self.membership(),
                    event_ids=None,
                    archive_all=True,
                    archive=True,
                )
            v = self.viewers[name]
            moving = {e.id for e in self.visible(name)} - v.archived
            v.archived |= moving
            assert updated == len(moving)

        @rule(name=st.sampled_from(USERS))
        def restore_all(self, name: str) -> None:
            self.dirty.add(name)
            with self.db.write() as tx:
                updated = activity.archive_events(
                    tx,
                    viewer_id=self.user(name).id,
                    membership=self.membership(),
                    event_ids=None,
                    archive_all=True,
                    archive=False,
                )
            v = self.viewers[name]
            moving = {e.id for e in self.visible(name)} & v.archived
            v.archived -= moving
            assert updated == len(moving)

        @rule(
            name=st.sampled_from(USERS), archived=st.booleans(), limit=st.sampled_from([2, 5, 11])
        )
        def cursor_walk(self, name: str, archived: bool, limit: int) -> None:
            """Following nextCursor returns every event of the list once, in order."""
            walked: list[str] = []
            cursor: Cursor | None = None
            for _ in range(MAX_TEAM_EVENTS + 2):
                page = self.list_page(
                    name, self.query(archived=archived, limit=limit, cursor=cursor)
                )
                walked.extend(v.event.id for v in page.events)
                if page.next_cursor is None:
                    break
                assert len(page.events) == limit
                cursor = page.next_cursor
            expected = [row[0] for row in self.expected_list(name, archived=archived)]
            assert walked == expected

        # -- after every step --------------------------------------------------------

        @invariant()
        def exceptions_stay_sparse(self) -> None:
            """The store's own rules (``store.states``): an exception exists only where
            it overrides its watermark, only for an event its viewer can see."""
            with self.db.read() as tx:
                marks = {m.user_id: m for m in tx.conn.execute(select(viewer_marks))}
                rows = tx.conn.execute(
                    select(
                        event_states,
                        events.c.workspace_id.label("event_workspace_id"),
                        events.c.private_to,
                    ).join(events, events.c.seq == event_states.c.event_seq)
                ).all()
            for row in rows:
                mark = marks.get(row.user_id)
                seen_seq = mark.seen_seq if mark else 0
                archived_seq = mark.archived_seq if mark else 0
                assert row.workspace_id == row.event_workspace_id == world.team.id
                assert row.private_to in (None, row.user_id)
                assert row.is_seen is not None or row.is_archived is not None, row
                assert row.is_seen in (None, True), row
                assert row.is_seen is None or row.event_seq > seen_seq, row
                assert row.is_archived in (None, row.event_seq > archived_seq), row

        @invariant()
        def agrees_with_model(self) -> None:
            for name in USERS:
                uid = self.user(name).id
                expected_unseen = self.expected_unseen(name)
                with self.db.read() as tx:
                    unseen = workspaces.unseen_count(tx, user_id=uid, workspace_id=world.team.id)
                assert unseen == expected_unseen, name
                if name not in self.dirty:
                    continue
                for archived in (False, True):
                    page = self.list_page(name, self.query(archived=archived))
                    expected = self.expected_list(name, archived=archived)
                    got = [(v.event.id, v.is_seen, v.is_archived) for v in page.events]
                    assert got == expected, (name, archived)
                    assert page.total == len(expected)
                    assert page.unseen_count == expected_unseen
                    assert page.next_cursor is None
            self.dirty.clear()

    return StateModel


#: Examples per backend: the rules are the same, so PostgreSQL (where each statement
#: is a round trip) runs fewer, to keep the suite fast.
EXAMPLES = {"sqlite": 30, "postgresql": 20}


def test_seen_and_archived_state_agrees_with_a_model(
    fresh_databases: FreshDatabases, backend: str
) -> None:
    """Every step's counts, lists, flags and ``updated`` numbers match the model."""
    machine = make_machine(fresh_databases)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES[backend],
            stateful_step_count=15,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
