"""Lost updates: concurrent state changes and ingestion agree with a sequential model.

Several members of one team workspace, each signed in twice (two tabs), hammer a real
``activityfeed serve --workers 2`` with a random mix of mark-seen (ids and all),
archive and restore (ids and all) and API key creation (a private event), while two
producers ingest. Every request must succeed: no "database is locked", no
serialisation failure or deadlock.

The serialisation order is observed, not guessed: every state change that changed
something wrote one row to the stream's outbox (``stream_changes``) in its own
transaction, in the order the viewer's changes committed, and an "all" row says which
events it covered (``uptoSeq``, the head when it ran). Replaying each user's rows on a
plain in-memory model gives the state a sequential execution would have reached; the
final Inbox and Archive (every event's ``seen`` and ``archived``), their ``total`` and
``unseenCount``, and the workspace list's count must equal it. The clients' own
observations tie the record to what happened: every "all" request left exactly one
row, and the ``updated`` of each archive/restore response equals what that row moved
in the model. A lost update (a watermark written back stale by a racing tab, an
exception lost) makes the stored state differ from the replay.

``ACTIVITYFEED_LONG=1`` runs ten times as many operations.
"""

from __future__ import annotations

import os
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from activityfeed.domain.workspaces import Role
from activityfeed.store.db import Database
from activityfeed.store.schema import events, stream_changes
from tests.conftest import Clock
from tests.e2e.test_serve import server_process
from tests.factories import PASSWORD, make_key, make_team, make_user

SCALE = 10 if os.environ.get("ACTIVITYFEED_LONG") == "1" else 1
OPS_PER_TAB = 40 * SCALE
BATCHES_PER_PRODUCER = 25 * SCALE
TABS_PER_USER = 2
SEED_EVENTS = 30


@dataclass
class Tab:
    """One signed-in browser tab of a user, with what its requests observed."""

    user_id: str
    http: httpx.Client
    csrf: str
    all_requests: Counter[str] = field(default_factory=Counter)
    #: (kind, updated) of every archive/restore response.
    updates: list[tuple[str, int]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self.http.post(path, json=body, headers={"X-CSRF-Token": self.csrf})
        except httpx.TransportError as exc:
            self.failures.append(f"{path} {body} -> {exc!r}")
            return {}
        if response.status_code not in (200, 201):
            self.failures.append(f"{path} {body} -> {response.status_code} {response.text}")
            return {}
        return dict(response.json())


def sign_in(base: str, email: str, slug: str, user_id: str) -> Tab:
    http = httpx.Client(base_url=base, timeout=60)
    login = http.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    csrf = login.json()["csrfToken"]
    switched = http.post(f"/api/workspaces/{slug}/switch", headers={"X-CSRF-Token": csrf})
    assert switched.status_code == 200, switched.text
    return Tab(user_id=user_id, http=http, csrf=csrf)


class Known:
    """The ids of acknowledged events, shared by producers and tabs."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.lock = threading.Lock()

    def add(self, ids: list[str]) -> None:
        with self.lock:
            self.ids.extend(ids)

    def sample(self, rng: random.Random) -> list[str]:
        with self.lock:
            pool = list(self.ids)
        picked = rng.sample(pool, min(len(pool), rng.randint(1, 8)))
        # Unknown ids are ignored, never an error.
        return [*picked, "ev_unknown"] if rng.random() < 0.1 else picked


def produce(base: str, secret: str, name: str, batches: int, known: Known, errors: list[str]):
    rng = random.Random(name)
    with httpx.Client(base_url=base, timeout=60) as http:
        for b in range(batches):
            body = {
                "events": [
                    {
                        "resourceType": rng.choice(["training", "dataset", "model"]),
                        "action": "updated" if rng.random() < 0.5 else "created",
                        "resourceId": f"{name}-{b}-{i}",
                        "resourceName": f"{name} {b}.{i}",
                        "idempotencyKey": f"{name}-{b}-{i}",
                    }
                    for i in range(rng.randint(1, 4))
                ]
            }
            try:
                response = http.post(
                    "/api/events", json=body, headers={"Authorization": f"Bearer {secret}"}
                )
            except httpx.TransportError as exc:
                errors.append(f"ingest -> {exc!r}")
                continue
            if response.status_code != 201:
                errors.append(f"ingest -> {response.status_code} {response.text}")
                continue
            known.add([e["id"] for e in response.json()["events"]])


def triage(tab: Tab, seed: str, ops: int, known: Known) -> None:
    rng = random.Random(seed)
    for n in range(ops):
        roll = rng.random()
        if roll < 0.25:
            tab.post("/api/activity/mark-seen", {"eventIds": known.sample(rng)})
        elif roll < 0.45:
            r = tab.post("/api/activity/archive", {"eventIds": known.sample(rng), "archive": True})
            tab.updates.append(("archived", r.get("updated", -1)))
        elif roll < 0.62:
            r = tab.post("/api/activity/archive", {"eventIds": known.sample(rng), "archive": False})
            tab.updates.append(("restored", r.get("updated", -1)))
        elif roll < 0.74:
            tab.all_requests["seen"] += 1
            tab.post("/api/activity/mark-seen", {"all": True})
        elif roll < 0.86:
            tab.all_requests["archived"] += 1
            r = tab.post("/api/activity/archive", {"all": True, "archive": True})
            tab.updates.append(("archived-all", r.get("updated", -1)))
        elif roll < 0.91:
            tab.all_requests["restored"] += 1
            r = tab.post("/api/activity/archive", {"all": True, "archive": False})
            tab.updates.append(("restored-all", r.get("updated", -1)))
        elif roll < 0.95:
            # A private event (api_key created) of this user in the team workspace.
            tab.post("/api/api-keys", {"name": f"{seed}-{n}", "scopes": ["events:write"]})
        else:
            try:
                listed = tab.http.get("/api/activity", params={"limit": 5})
            except httpx.TransportError as exc:
                tab.failures.append(f"list -> {exc!r}")
                continue
            if listed.status_code != 200:
                tab.failures.append(f"list -> {listed.status_code} {listed.text}")


@dataclass
class Model:
    """One viewer's state as a sequential execution of their recorded changes leaves it."""

    visible: dict[int, str]  # seq -> id
    seen: set[int] = field(default_factory=set)
    archived: set[int] = field(default_factory=set)
    #: (kind, number of events moved) of each archive/restore change, in order.
    moves: list[tuple[str, int]] = field(default_factory=list)

    def apply(self, action: str, ids: list[str], is_all: bool, upto: int | None) -> None:
        by_id = {i: s for s, i in self.visible.items()}
        if is_all:
            assert upto is not None, "an 'all' change must say what it covered"
            covered = {s for s in self.visible if s <= upto}
            if action == "seen":
                self.seen |= covered
            elif action == "archived":
                self.moves.append(("archived-all", len(covered - self.archived)))
                self.archived = set(covered)
            else:
                self.moves.append(("restored-all", len(self.archived)))
                self.archived = set()
            return
        seqs = [by_id[i] for i in ids]
        assert len(set(seqs)) == len(seqs), "a change lists an event twice"
        if action == "seen":
            assert not self.seen & set(seqs), "marked seen an event that was seen already"
            self.seen |= set(seqs)
        elif action == "archived":
            assert not self.archived & set(seqs), "archived an event that was archived"
            self.archived |= set(seqs)
            self.moves.append(("archived", len(seqs)))
        else:
            assert set(seqs) <= self.archived, "restored an event that was not archived"
            self.archived -= set(seqs)
            self.moves.append(("restored", len(seqs)))


def replay(db: Database, workspace_id: str, user_id: str) -> tuple[Model, Counter[str]]:
    with db.read() as tx:
        rows = tx.conn.execute(
            select(events.c.seq, events.c.id, events.c.private_to).where(
                events.c.workspace_id == workspace_id
            )
        ).all()
        changes = tx.conn.execute(
            select(stream_changes.c.action, stream_changes.c.payload)
            .where(
                stream_changes.c.workspace_id == workspace_id,
                stream_changes.c.user_id == user_id,
            )
            .order_by(stream_changes.c.seq)
        ).all()
    model = Model(visible={r.seq: r.id for r in rows if r.private_to in (None, user_id)})
    alls: Counter[str] = Counter()
    last_upto = 0
    for action, payload in changes:
        upto = payload.get("uptoSeq")
        if payload["all"]:
            alls[action] += 1
            # One viewer's changes run one after the other, and the head only grows.
            assert upto >= last_upto, "an 'all' change covered less than an earlier one"
            last_upto = upto
        model.apply(action, payload["eventIds"], payload["all"], upto)
    return model, alls


def feed(tab: Tab, *, archived: bool) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    got: dict[str, dict[str, Any]] = {}
    page, first = 1, None
    while True:
        response = tab.http.get(
            "/api/activity",
            params={"limit": 100, "page": page, "archived": str(archived).lower()},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        first = first or body
        for e in body["events"]:
            assert e["id"] not in got, "an event listed twice"
            got[e["id"]] = e
        if not body["events"] or len(got) >= body["total"]:
            return got, first
        page += 1


@pytest.mark.slow
def test_concurrent_triage_and_ingestion_agree_with_a_sequential_model(
    database_url: str, backend: str
) -> None:
    clock = Clock()
    db = Database(database_url)
    try:
        owner = make_user(db, clock)
        members = [make_user(db, clock) for _ in range(2)]
        team = make_team(db, clock, owner, [(m, Role.MEMBER) for m in members])
        secret = make_key(db, clock, owner, team)
        users = [owner, *members]
        with server_process(database_url, workers=2) as running:
            base = running.base
            known = Known()
            errors: list[str] = []
            produce(base, secret, "seed", SEED_EVENTS // 2, known, errors)
            tabs = [
                sign_in(base, u.email, team.slug, u.id) for u in users for _ in range(TABS_PER_USER)
            ]
            threads = [
                threading.Thread(
                    target=produce,
                    args=(base, secret, f"p{i}", BATCHES_PER_PRODUCER, known, errors),
                )
                for i in range(2)
            ] + [
                threading.Thread(target=triage, args=(tab, f"tab{i}", OPS_PER_TAB, known))
                for i, tab in enumerate(tabs)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=600)
            assert not any(t.is_alive() for t in threads)
            failures = errors + [f for tab in tabs for f in tab.failures]
            assert failures == [], running.output()

            # Every acknowledged event is stored exactly once.
            with db.read() as tx:
                stored = Counter(
                    tx.conn.execute(
                        select(events.c.id).where(
                            events.c.workspace_id == team.id, events.c.resource_type != "api_key"
                        )
                    ).scalars()
                )
            assert stored == Counter(known.ids)

            for user in users:
                mine = [tab for tab in tabs if tab.user_id == user.id]
                model, alls = replay(db, team.id, user.id)
                assert alls == sum((tab.all_requests for tab in mine), Counter())
                responses = Counter(u for tab in mine for u in tab.updates if u[1] > 0)
                recorded = Counter(m for m in model.moves if m[1] > 0)
                assert responses == recorded

                tab = mine[0]
                inbox, inbox_body = feed(tab, archived=False)
                archive, archive_body = feed(tab, archived=True)
                want_inbox = {
                    model.visible[s]: s in model.seen
                    for s in model.visible
                    if s not in model.archived
                }
                want_archive = {model.visible[s]: s in model.seen for s in model.archived}
                assert {i: e["seen"] for i, e in inbox.items()} == want_inbox
                assert {i: e["seen"] for i, e in archive.items()} == want_archive
                assert not any(e["archived"] for e in inbox.values())
                assert all(e["archived"] for e in archive.values())
                unseen = sum(1 for seen in want_inbox.values() if not seen)
                assert inbox_body["total"] == len(want_inbox)
                assert archive_body["total"] == len(want_archive)
                assert inbox_body["unseenCount"] == archive_body["unseenCount"] == unseen
                listed = tab.http.get("/api/workspaces").json()["workspaces"]
                assert [w["unseenCount"] for w in listed if w["slug"] == team.slug] == [unseen]
            for tab in tabs:
                tab.http.close()
        print(
            f"\n{backend}: {len(known.ids)} events ingested, "
            f"{sum(len(t.updates) for t in tabs)} archive/restore and "
            f"{len(tabs) * OPS_PER_TAB} triage requests from {len(tabs)} tabs, no failure"
        )
    finally:
        db.dispose()
