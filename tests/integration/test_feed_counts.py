"""The feed's fast ``total`` and pages agree with a naive count, at the range's edges.

``store.events`` counts and pages the feed over the feed index alone: the viewer's
archive state is the watermark test corrected by their few exceptions (no join per
row), and a page's rows are found by ``seq`` first, then read. Hypothesis drives a
viewer and a teammate through events at a handful of instants (so that many sit exactly
on a range's ``start`` or ``end``), private ones of either, "archive all", "restore
all", archive/restore of single events, "mark all seen" and marking single events seen,
then compares ``total``, ``unseenCount``, the whole list, and OFFSET pages (the last
one empty) with a model that applies the rules one event at a
time, for both tabs, several ranges, a type filter and searches (on SQLite with both
search plans: by the matches, and by the feed index).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activityfeed.domain.accounts import Membership, User
from activityfeed.domain.events import Action, Actor, EventDraft, ResourceType, Source, SourceKind
from activityfeed.domain.query import ActivityQuery
from activityfeed.domain.workspaces import Role
from activityfeed.services import accounts, activity, workspaces
from activityfeed.services.events import record_events
from activityfeed.store import events as event_store
from activityfeed.store.db import Database

T0 = datetime(2026, 3, 1, tzinfo=UTC)
#: Few instants, two of them a microsecond apart: events pile up on every range edge.
#: Midnights, and times early and late in a day: a range's partial days are counted on
#: their shorter side (the day's total less the rest), so both sides are taken.
INSTANTS = [T0 + timedelta(days=d) for d in (0, 1, 2, 3)] + [
    T0 + timedelta(days=2, microseconds=-1),
    T0 + timedelta(days=1, hours=3),
    T0 + timedelta(days=2, hours=20),
]
NOW = T0 + timedelta(days=5)
NAMES = ["alpha-run", "Beta gamma", "delta"]

_names = itertools.count()

event_st = st.tuples(
    st.sampled_from(range(len(INSTANTS))),
    st.sampled_from([None, "me", "mate"]),
    st.sampled_from(range(len(NAMES))),
    st.booleans(),
)
op_st = st.one_of(
    st.tuples(st.just("add"), st.lists(event_st, min_size=1, max_size=4)),
    st.tuples(st.sampled_from(["archive_all", "restore_all", "seen_all"]), st.just(None)),
    st.tuples(
        st.sampled_from(["archive", "restore", "seen"]),
        st.lists(st.integers(0, 30), min_size=1, max_size=3),
    ),
)


@dataclass
class Ev:
    id: str
    created_at: datetime
    private_to: str | None
    name: str
    is_dataset: bool


@pytest.fixture
def people(db: Database) -> dict[str, User]:
    with db.write() as tx:
        return {
            who: accounts.create_user(
                tx, email=f"{who}@example.com", name=who, password="pw-123456789", now=T0
            )
            for who in ("me", "mate")
        }


def _query(
    *, archived: bool, start: int | None, end: int | None, search: str | None, dataset: bool
) -> ActivityQuery:
    return ActivityQuery(
        is_archived=archived,
        start=INSTANTS[start] if start is not None else None,
        end=INSTANTS[end] if end is not None else None,
        search=search,
        resource_types=(ResourceType.DATASET,) if dataset else (),
        limit=100,
    )


# (FTS_PROBE, SMALL_SIDE): each search plan, and each way of counting the Inbox
# (directly above the archive watermark, everything less below it, or the index walk).
@pytest.mark.parametrize(("probe", "small_side"), [(10_000, 10_000), (1, 2), (1, 0)])
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    first=st.lists(event_st, min_size=1, max_size=8),
    ops=st.lists(op_st, min_size=1, max_size=8),
    data=st.data(),
)
def test_total_and_pages_agree_with_a_naive_count(
    db: Database,
    people: dict[str, User],
    probe: int,
    small_side: int,
    monkeypatch: pytest.MonkeyPatch,
    first: list[object],
    ops: list[tuple[str, object]],
    data: st.DataObject,
) -> None:
    monkeypatch.setattr(event_store, "FTS_PROBE", probe)
    monkeypatch.setattr(event_store, "SMALL_SIDE", small_side)
    me, mate = people["me"], people["mate"]
    with db.write() as tx:
        ws = workspaces.create_workspace(tx, user_id=mate.id, name=f"T{next(_names)}", now=T0)
        workspaces.add_member(
            tx, user_id=mate.id, slug=ws.slug, email=me.email, role=Role.MEMBER, now=T0
        )
    membership = Membership(workspace=ws, role=Role.MEMBER)
    evs: list[Ev] = []
    archived: set[str] = set()
    seen: set[str] = set()

    def mine() -> list[Ev]:
        return [e for e in evs if e.private_to in (None, me.id)]

    for op, arg in [("add", first), *ops]:
        with db.write() as tx:
            if op == "add":
                assert isinstance(arg, list)
                drafts = []
                for at, owner, name, is_dataset in arg:
                    # A settings change is private to its actor.
                    private = {"me": me, "mate": mate}.get(owner) if owner else None
                    actor = private or mate
                    rtype = ResourceType.DATASET if is_dataset else ResourceType.TRAINING
                    drafts.append(
                        EventDraft(
                            workspace_id=ws.id,
                            resource_type=ResourceType.SETTINGS if private else rtype,
                            action=Action.UPDATED,
                            resource_id=f"r{len(drafts)}",
                            resource_name=NAMES[name],
                            actor=Actor(id=actor.id, name=actor.name, email=actor.email),
                            source=Source(kind=SourceKind.UI),
                            occurred_at=INSTANTS[at],
                        )
                    )
                for d, e in zip(drafts, record_events(tx, drafts, now=NOW), strict=True):
                    evs.append(
                        Ev(
                            id=e.id,
                            created_at=e.created_at,
                            private_to=d.private_to,
                            name=d.resource_name,
                            is_dataset=d.resource_type is ResourceType.DATASET,
                        )
                    )
            elif op in ("archive_all", "restore_all"):
                activity.archive_events(
                    tx,
                    viewer_id=me.id,
                    membership=membership,
                    event_ids=None,
                    archive_all=True,
                    archive=op == "archive_all",
                )
                archived = {e.id for e in mine()} if op == "archive_all" else set()
            elif op == "seen_all":
                activity.mark_seen(
                    tx, viewer_id=me.id, membership=membership, event_ids=None, mark_all=True
                )
                seen = {e.id for e in mine()}
            else:
                assert isinstance(arg, list)
                ids = [evs[i].id for i in arg if i < len(evs)]
                if op == "seen":
                    activity.mark_seen(
                        tx, viewer_id=me.id, membership=membership, event_ids=ids, mark_all=False
                    )
                    seen |= set(ids) & {e.id for e in mine()}
                    continue
                activity.archive_events(
                    tx,
                    viewer_id=me.id,
                    membership=membership,
                    event_ids=ids,
                    archive_all=False,
                    archive=op == "archive",
                )
                visible = {e.id for e in mine()}
                for i in ids:
                    if i in visible:
                        (archived.add if op == "archive" else archived.discard)(i)

    for _ in range(4):
        start = data.draw(st.sampled_from([None, *range(len(INSTANTS))]), label="start")
        end = data.draw(st.sampled_from([None, *range(len(INSTANTS))]), label="end")
        search = data.draw(st.sampled_from([None, "alp", "GAMMA", "a-r", "zzz"]), label="search")
        q = _query(
            archived=data.draw(st.booleans(), label="archived"),
            start=start,
            end=end,
            search=search,
            dataset=data.draw(st.booleans(), label="dataset"),
        )
        expected = sorted(
            (
                e
                for e in mine()
                if (e.id in archived) == q.is_archived
                and (q.start is None or e.created_at >= q.start)
                and (q.end is None or e.created_at < q.end)
                and (not q.search or q.search.lower() in f"{e.name} ".lower())
                and (not q.resource_types or e.is_dataset)
            ),
            key=lambda e: (e.created_at, evs.index(e)),
            reverse=True,
        )
        want = [e.id for e in expected]
        # The Inbox's unseen events, whatever the query (the badge).
        unseen = sum(1 for e in mine() if e.id not in archived and e.id not in seen)
        with db.read() as tx:
            page = activity.list_activity(
                tx,
                viewer_id=me.id,
                membership=membership,
                q=q,
                now=NOW,
                undo_window=timedelta(minutes=1),
            )
            assert (page.total, page.unseen_count) == (len(want), unseen), q
            assert [v.event.id for v in page.events] == want, q
            assert all(v.is_archived == q.is_archived for v in page.events)
            # OFFSET pages of two: the same rows, in the same order.
            paged: list[str] = []
            for number in range(1, len(want) // 2 + 2):
                got = activity.list_activity(
                    tx,
                    viewer_id=me.id,
                    membership=membership,
                    q=ActivityQuery(
                        is_archived=q.is_archived,
                        start=q.start,
                        end=q.end,
                        search=q.search,
                        resource_types=q.resource_types,
                        page=number,
                        limit=2,
                    ),
                    now=NOW,
                    undo_window=timedelta(minutes=1),
                )
                # The last page is empty (its counts are read without rows).
                assert (got.total, got.unseen_count) == (len(want), unseen)
                paged.extend(v.event.id for v in got.events)
            assert paged == want, q
