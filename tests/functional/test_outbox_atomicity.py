"""Outbox atomicity: a change and its record stand or fall together.

Every user-visible write records its event (or, for seen/archive state, its
``stream_changes`` row, the live stream's outbox) in the transaction of the change. Here
each kind of recording write is sent through HTTP while a fault is injected at one point
of its transaction:

* ``before_record``: the change is made, then writing its record fails;
* ``after_record``: the change and its record are written, then the transaction fails
  before commit (the wake-up that follows the record raises);
* ``at_commit``: everything is written and the COMMIT itself fails.

The request answers 500, and the whole database (every table but the session and
login-failure bookkeeping, which are written in their own transactions) is exactly as
before: never a change without its record, nor a record without its change. The same
request without the fault then succeeds and adds both, the change and exactly one
record, so the fault was on the path the write really takes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select

from activityfeed.services import activity as activity_service
from activityfeed.services import events as events_service
from activityfeed.store import schema
from activityfeed.store.db import Database
from tests.factories import Browser, make_key, make_user, personal_workspace

#: Written outside the request's own transaction, by design (see ARCHITECTURE.md).
BOOKKEEPING = {"sessions", "login_failures"}


# On PostgreSQL the events arrive by COPY, which no cursor listener sees; the batch's
# hash-chain checkpoint is inserted in the same transaction and marks it instead.
RECORD_INSERTS = (
    "INSERT INTO EVENTS ",
    "INSERT INTO EVENT_CHECKPOINTS ",
    "INSERT INTO STREAM_CHANGES ",
)


class InjectedFault(RuntimeError):
    """The failure a test injects; nothing in the app raises it."""


def snapshot(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (but the bookkeeping), in a comparable form."""
    out = {}
    with db.read() as tx:
        for table in schema.metadata.sorted_tables:
            if table.name in BOOKKEEPING:
                continue
            rows = tx.conn.execute(select(table)).all()
            out[table.name] = sorted((tuple(map(repr, r)) for r in rows), key=repr)
    return out


def added(before: dict[str, list[Any]], after: dict[str, list[Any]]) -> dict[str, int]:
    """Tables whose rows changed, with the number of rows that are new or different."""
    return {
        name: len(set(after[name]) - set(before[name]))
        for name in after
        if after[name] != before[name]
    }


@dataclass
class World:
    db: Database
    browser: Browser
    secret: str
    key_id: str
    project_id: str
    settings_event_id: str


@pytest.fixture
def world(app: Any, db: Database, clock: Any) -> World:
    user = make_user(db, clock)
    secret = make_key(db, clock, user, personal_workspace(db, user))
    browser = Browser(app, user.email)
    # Faults must come back as responses, not as exceptions in the test.
    browser.client = TestClient(
        app,
        base_url="http://testserver",
        raise_server_exceptions=False,
        cookies=browser.client.cookies,
    )
    key = browser.post("/api/api-keys", json={"name": "to revoke"})
    assert key.status_code == 201, key.text
    project = browser.post("/api/projects", json={"name": "to trash"})
    assert project.status_code == 201, project.text
    patched = browser.patch("/api/settings/profile", json={"bio": "before undo"})
    assert patched.status_code == 200, patched.text
    feed = browser.get("/api/activity", params={"resourceType": "settings"}).json()
    return World(
        db=db,
        browser=browser,
        secret=secret,
        key_id=key.json()["apiKey"]["id"],
        project_id=project.json()["project"]["id"],
        settings_event_id=feed["events"][0]["id"],
    )


def _ingest(w: World) -> Any:
    return w.browser.client.post(
        "/api/events",
        json={
            "resourceType": "training",
            "action": "completed",
            "resourceId": "run-1",
            "resourceName": "run 1",
            "idempotencyKey": "run-1-completed",
        },
        headers={"Authorization": f"Bearer {w.secret}"},
    )


def _first_event_id(w: World) -> str:
    return str(w.browser.get("/api/activity", params={"limit": 1}).json()["events"][0]["id"])


#: name → (the request, the tables its change touches, the (type, action) of its event,
#: or None for a seen/archive change, which is recorded in ``stream_changes``).
WRITES: dict[str, tuple[Callable[[World], Any], set[str], tuple[str, str] | None]] = {
    "ingest": (_ingest, set(), ("training", "completed")),
    "api_key_create": (
        lambda w: w.browser.post("/api/api-keys", json={"name": "new"}),
        {"api_keys"},
        ("api_key", "created"),
    ),
    "api_key_revoke": (
        lambda w: w.browser.delete(f"/api/api-keys/{w.key_id}"),
        {"api_keys"},
        ("api_key", "deleted"),
    ),
    "settings_change": (
        lambda w: w.browser.patch("/api/settings/profile", json={"company": "Acme"}),
        {"profiles"},
        ("settings", "updated"),
    ),
    "resource_create": (
        lambda w: w.browser.post("/api/projects", json={"name": "new project"}),
        {"resources"},
        ("project", "created"),
    ),
    "resource_trash": (
        lambda w: w.browser.post(f"/api/projects/{w.project_id}/trash"),
        {"resources"},
        ("project", "trashed"),
    ),
    "undo": (
        lambda w: w.browser.post(f"/api/activity/{w.settings_event_id}/undo"),
        {"profiles", "undos"},
        ("settings", "updated"),
    ),
    "onboarding": (
        lambda w: w.browser.post("/api/onboarding/complete"),
        {"profiles"},
        ("onboarding", "completed"),
    ),
    "mark_seen": (
        lambda w: w.browser.post(
            "/api/activity/mark-seen", json={"eventIds": [_first_event_id(w)]}
        ),
        {"event_states"},
        None,
    ),
    "archive_all": (
        lambda w: w.browser.post("/api/activity/archive", json={"all": True, "archive": True}),
        {"viewer_marks"},
        None,
    ),
}


@contextmanager
def fault(
    monkeypatch: pytest.MonkeyPatch, db: Database, where: str, is_event: bool
) -> Iterator[list[int]]:
    """Inject ``InjectedFault`` at ``where``; yields a list that counts the faults."""
    fired: list[int] = []

    def boom(*_: Any, **__: Any) -> None:
        fired.append(1)
        raise InjectedFault(where)

    def wrap(original: Callable[..., Any], *, after: bool) -> Callable[..., Any]:
        def wrapper(*args: Any, **kw: Any) -> Any:
            if not after:
                boom()
            result = original(*args, **kw)
            if after:
                boom()
            return result

        return wrapper

    if where == "at_commit":
        # Only the commit of the transaction that wrote the record fails (reads and the
        # session bookkeeping commit too).
        def note(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            # PostgreSQL writes the change inside a CTE (WITH change AS (INSERT ...)).
            upper = statement.upper()
            if any(insert in upper for insert in RECORD_INSERTS):
                conn.info["wrote_record"] = True

        def commit(conn: Any) -> None:
            if conn.info.pop("wrote_record", False):
                boom()

        def rollback(conn: Any) -> None:
            conn.info.pop("wrote_record", None)

        hooks = [("before_cursor_execute", note), ("commit", commit), ("rollback", rollback)]
        for name, fn in hooks:
            event.listen(db.engine, name, fn)
        try:
            yield fired
        finally:
            for name, fn in hooks:
                event.remove(db.engine, name, fn)
        return
    with monkeypatch.context() as m:
        after = where == "after_record"
        if is_event:
            # The event row is written by insert_events; the wake-up is queued right after.
            m.setattr(
                events_service.store,
                "insert_events",
                wrap(events_service.store.insert_events, after=after),
            )
        else:
            # A state change records its outbox row on its own, or with an "all"
            # operation's other writes in ``move_all``.
            m.setattr(
                activity_service.stream_store,
                "insert_change",
                wrap(activity_service.stream_store.insert_change, after=after),
            )
            m.setattr(
                activity_service.state_store,
                "move_all",
                wrap(activity_service.state_store.move_all, after=after),
            )
        yield fired


@pytest.mark.parametrize("write", list(WRITES))
def test_a_failed_write_leaves_neither_change_nor_record(
    world: World, monkeypatch: pytest.MonkeyPatch, write: str
) -> None:
    send, change_tables, kind = WRITES[write]
    before = snapshot(world.db)
    # Each failed attempt leaves the database as it was, so the next starts the same.
    for where in ("before_record", "after_record", "at_commit"):
        with fault(monkeypatch, world.db, where, kind is not None) as fired:
            response = send(world)
        assert fired, f"{where}: the fault was not on the write's path"
        assert response.status_code == 500, (where, response.text)
        assert response.json()["error"]["code"] == "internal_error"
        assert snapshot(world.db) == before, where

    response = send(world)
    assert response.status_code in (200, 201), response.text
    after = snapshot(world.db)
    changed = added(before, after)
    record_table = "events" if kind is not None else "stream_changes"
    assert changed.get(record_table) == 1, changed
    assert change_tables <= set(changed), changed
    if kind is not None:
        with world.db.read() as tx:
            newest = tx.conn.execute(
                select(schema.events.c.resource_type, schema.events.c.action)
                .order_by(schema.events.c.seq.desc())
                .limit(1)
            ).one()
        assert tuple(newest) == kind
