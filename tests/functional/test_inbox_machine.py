"""The inbox, driven through the HTTP API, agrees with a pure model at every step.

``tests/integration/test_state_model.py`` checks the services against the same kind of
model; this one goes through everything a browser and a producer touch: the session
and its CSRF token, the active workspace (``switch``) and ``owner``, ingestion with an
API key (batches, back-dated ``occurredAt`` so that ``createdAt`` ties, replayed
idempotency keys), ``mark-seen`` by ids and all, ``archive`` and restore by ids and
all, Inbox and Archive views, and keyset pages followed by ``nextCursor``. After every
step the unseen count (list and ``GET /api/workspaces``) and both lists, flags included,
must match the model; the order of steps is what Hypothesis varies, so an ordering bug
(a watermark overtaking an exception, a restore after archive-all) shows up as a
minimal sequence.

CI runs ``MACHINE_EXAMPLES`` sequences of up to ``MACHINE_STEPS`` steps per backend;
``ACTIVITYFEED_MACHINE_EXAMPLES=500`` runs a longer search.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from activityfeed.domain.workspaces import Role
from tests.factories import PASSWORD, make_key, make_team, make_user, personal_workspace
from tests.functional.feed_helpers import iso

_LONG = os.environ.get("ACTIVITYFEED_MACHINE_EXAMPLES")
MACHINE_EXAMPLES = {"sqlite": int(_LONG or 10), "postgresql": int(_LONG or 5)}
MACHINE_STEPS = 25
MAX_EVENTS = 60
#: Back-dating choices: few distinct instants, so createdAt often ties.
AGES = [None, timedelta(hours=1), timedelta(hours=1), timedelta(days=3)]
VIEWS = ("team", "personal")


@dataclass
class Ev:
    id: str
    created_at: datetime
    arrival: int


@dataclass
class View:
    """One workspace as the viewer sees it: its events and the viewer's marks."""

    slug: str
    secret: str
    events: dict[str, Ev] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    archived: set[str] = field(default_factory=set)

    def listing(self, *, archived: bool) -> list[tuple[str, bool, bool]]:
        rows = [e for e in self.events.values() if (e.id in self.archived) == archived]
        rows.sort(key=lambda e: (e.created_at, e.arrival), reverse=True)
        return [(e.id, e.id in self.seen, e.id in self.archived) for e in rows]

    def unseen(self) -> int:
        return sum(1 for i in self.events if i not in self.seen and i not in self.archived)


class Http:
    """The signed-in viewer's browser and the producers, over one TestClient."""

    def __init__(self, client: TestClient, email: str) -> None:
        self.client = client
        response = client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        assert response.status_code == 200, response.text
        self.csrf = response.json()["csrfToken"]

    def post(self, url: str, body: Any = None, **kw: Any) -> Any:
        response = self.client.post(url, json=body, headers={"X-CSRF-Token": self.csrf}, **kw)
        assert response.status_code == 200, (url, body, response.text)
        return response.json()

    def get(self, url: str, **params: Any) -> Any:
        response = self.client.get(url, params=params)
        assert response.status_code == 200, (url, params, response.text)
        return response.json()


def make_machine(app: Any, db: Any, clock: Any) -> type[RuleBasedStateMachine]:
    owner = make_user(db, clock)

    class Inbox(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            # A new viewer per sequence (and a new team): no state leaks between them.
            viewer = make_user(db, clock)
            team = make_team(db, clock, owner, [(viewer, Role.MEMBER)], name="Team")
            personal = personal_workspace(db, viewer)
            self.client = TestClient(app, base_url="http://testserver")
            self.http = Http(self.client, viewer.email)
            self.views = {
                "team": View(team.slug, make_key(db, clock, owner, team)),
                # The viewer's own key: its private api_key event is in the feed too.
                "personal": View(personal.slug, make_key(db, clock, viewer, personal)),
            }
            self.active = "personal"
            self.arrival = itertools.count()
            self.keys = itertools.count()
            self.replays: list[tuple[str, dict[str, Any], str]] = []
            # The views a step may have changed: only their lists are re-read after it.
            self.dirty: set[str] = set(VIEWS)
            for event in self.fetch(self.views["personal"], archived=False):
                self.add(self.views["personal"], event["id"], event["createdAt"])

        def teardown(self) -> None:
            self.client.close()

        # -- helpers -----------------------------------------------------------------

        def add(self, view: View, event_id: str, created_at: str) -> None:
            at = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
            view.events[event_id] = Ev(event_id, at, next(self.arrival))

        def fetch(self, view: View, *, archived: bool, limit: int = 100) -> list[Any]:
            """The whole list, page by page (always with ``owner``, whatever is active)."""
            out: list[Any] = []
            params: dict[str, Any] = {
                "owner": view.slug,
                "archived": str(archived).lower(),
                "limit": limit,
                "start": "2000-01-01",
            }
            for _ in range(MAX_EVENTS + 2):
                page = self.http.get("/api/activity", **params)
                out.extend(page["events"])
                if page["nextCursor"] is None:
                    return out
                assert len(page["events"]) == limit
                params["cursor"] = page["nextCursor"]
            raise AssertionError("the cursor walk does not end")

        def pick(self, data: st.DataObject, view: View) -> list[str]:
            """Ids: mostly the view's own (hot ones repeat), some of the other workspace's
            (foreign: ignored) and unknown ones."""
            own = list(view.events)
            other = [i for v in self.views.values() if v is not view for i in v.events]
            pool = st.just("0" * 26)
            if own:
                pool = st.sampled_from(own[-3:]) | st.sampled_from(own) | pool
            if other:
                pool = pool | st.sampled_from(other)
            return data.draw(st.lists(pool, max_size=5), label="ids")

        def target(self, data: st.DataObject) -> tuple[View, dict[str, Any]]:
            """The active workspace, or another named by ``owner``."""
            name = data.draw(st.sampled_from(VIEWS), label="owner")
            self.dirty.add(name)
            if name == self.active and data.draw(st.booleans(), label="implicit"):
                return self.views[name], {}
            return self.views[name], {"params": {"owner": self.views[name].slug}}

        # -- rules -------------------------------------------------------------------

        @precondition(lambda self: sum(len(v.events) for v in self.views.values()) < MAX_EVENTS)
        @rule(
            data=st.data(),
            where=st.sampled_from(VIEWS),
            count=st.integers(1, 3),
            with_key=st.booleans(),
            tick=st.sampled_from([0, 0, 1]),
        )
        def ingest(
            self, data: st.DataObject, where: str, count: int, with_key: bool, tick: int
        ) -> None:
            clock.advance(seconds=tick)
            view = self.views[where]
            self.dirty.add(where)
            bodies = []
            for _ in range(count):
                n = next(self.keys)
                body: dict[str, Any] = {
                    "resourceType": "training",
                    "action": "completed",
                    "resourceId": f"run-{n}",
                    "resourceName": f"run {n}",
                }
                age = data.draw(st.sampled_from(AGES), label="age")
                if age is not None:
                    body["occurredAt"] = iso(clock.current.replace(microsecond=0) - age)
                if with_key:
                    body["idempotencyKey"] = f"k-{n}"
                bodies.append(body)
            response = self.client.post(
                "/api/events",
                json={"events": bodies},
                headers={"Authorization": f"Bearer {view.secret}"},
            )
            assert response.status_code == 201, response.text
            for body, event in zip(bodies, response.json()["events"], strict=True):
                self.add(view, event["id"], event["createdAt"])
                if with_key:
                    self.replays.append((where, body, event["id"]))

        @precondition(lambda self: bool(self.replays))
        @rule(data=st.data())
        def replay(self, data: st.DataObject) -> None:
            """A retried item returns the original (200) and adds nothing."""
            where, body, event_id = data.draw(st.sampled_from(self.replays), label="replay")
            response = self.client.post(
                "/api/events",
                json=body,
                headers={"Authorization": f"Bearer {self.views[where].secret}"},
            )
            assert response.status_code == 200, response.text
            assert response.json()["event"]["id"] == event_id

        @rule(name=st.sampled_from(VIEWS))
        def switch(self, name: str) -> None:
            """Switch the active workspace; its unseen count comes back."""
            body = self.http.post(f"/api/workspaces/{self.views[name].slug}/switch")
            self.active = name
            assert body["workspace"]["unseenCount"] == self.views[name].unseen()

        @rule(data=st.data())
        def mark_seen_ids(self, data: st.DataObject) -> None:
            view, kw = self.target(data)
            ids = self.pick(data, view)
            body = self.http.post("/api/activity/mark-seen", {"eventIds": ids}, **kw)
            view.seen |= set(ids) & set(view.events)
            assert body == {"success": True, "unseenCount": view.unseen()}

        @rule(data=st.data())
        def mark_all_seen(self, data: st.DataObject) -> None:
            view, kw = self.target(data)
            body = self.http.post("/api/activity/mark-seen", {"all": True}, **kw)
            view.seen |= set(view.events)
            assert body == {"success": True, "unseenCount": view.unseen()}

        @rule(data=st.data(), archive=st.booleans())
        def archive_ids(self, data: st.DataObject, archive: bool) -> None:
            """Archive (or restore) by ids; ``updated`` counts the events that moved."""
            view, kw = self.target(data)
            ids = self.pick(data, view)
            moving = {i for i in set(ids) & set(view.events) if (i in view.archived) != archive}
            body = self.http.post(
                "/api/activity/archive", {"eventIds": ids, "archive": archive}, **kw
            )
            if archive:
                view.archived |= moving
            else:
                view.archived -= moving
            assert body == {"success": True, "updated": len(moving)}

        @rule(data=st.data(), archive=st.booleans())
        def archive_all(self, data: st.DataObject, archive: bool) -> None:
            """Archive all (or restore all)."""
            view, kw = self.target(data)
            if archive:
                moving = set(view.events) - view.archived
                view.archived |= moving
            else:
                moving = set(view.archived)
                view.archived.clear()
            body = self.http.post("/api/activity/archive", {"all": True, "archive": archive}, **kw)
            assert body == {"success": True, "updated": len(moving)}

        @rule(name=st.sampled_from(VIEWS), archived=st.booleans(), limit=st.sampled_from([1, 2, 5]))
        def paginate(self, name: str, archived: bool, limit: int) -> None:
            """Following nextCursor in small pages returns the list once, in order."""
            view = self.views[name]
            got = [
                (e["id"], e["seen"], e["archived"])
                for e in self.fetch(view, archived=archived, limit=limit)
            ]
            assert got == view.listing(archived=archived)

        @rule(archived=st.booleans(), page=st.integers(1, 3))
        def numbered_page(self, archived: bool, page: int) -> None:
            """The active workspace's view by ``page`` (no owner): a slice of the model."""
            view = self.views[self.active]
            body = self.http.get(
                "/api/activity",
                archived=str(archived).lower(),
                page=page,
                limit=4,
                start="2000-01-01",
            )
            expected = view.listing(archived=archived)
            got = [(e["id"], e["seen"], e["archived"]) for e in body["events"]]
            assert got == expected[(page - 1) * 4 : page * 4]
            assert body["total"] == len(expected)
            assert body["unseenCount"] == view.unseen()

        # -- after every step --------------------------------------------------------

        @invariant()
        def counts_agree(self) -> None:
            listed = {
                w["slug"]: w["unseenCount"] for w in self.http.get("/api/workspaces")["workspaces"]
            }
            for view in self.views.values():
                assert listed[view.slug] == view.unseen(), view.slug

        @invariant()
        def lists_agree(self) -> None:
            for name in sorted(self.dirty):
                view = self.views[name]
                for archived in (False, True):
                    got = [
                        (e["id"], e["seen"], e["archived"])
                        for e in self.fetch(view, archived=archived)
                    ]
                    assert got == view.listing(archived=archived), (view.slug, archived)
            self.dirty.clear()

    return Inbox


@pytest.mark.slow
def test_the_inbox_over_http_agrees_with_a_model(app, db, clock, backend):
    """Every step's answers, counts, lists and pages match the model."""
    run_state_machine_as_test(
        make_machine(app, db, clock),
        settings=settings(
            max_examples=MACHINE_EXAMPLES[backend],
            stateful_step_count=MACHINE_STEPS,
            deadline=None,
            derandomize=_LONG is None,
            database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
