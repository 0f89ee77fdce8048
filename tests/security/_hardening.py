"""Shared by the CSRF, limits and headers tests: the app's route table, a small world to
aim every route at, one valid request per state-changing route, and a database dump.

The route table is read from the app itself, so a route added later is either covered
here or makes the tests that walk it fail with a message saying what to add.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import select
from starlette.routing import Mount, Route

from activityfeed.domain.accounts import User, Workspace
from activityfeed.store.db import Database
from activityfeed.store.schema import metadata
from tests.factories import PASSWORD, Browser, event_body, ingest, make_key, make_team, make_user

KINDS = ("projects", "datasets", "models")

#: Not protected by the CSRF token, by design. Ingestion authenticates with an API key
#: in the Authorization header, which a browser never attaches on its own, and ignores
#: cookies, so a forged cross-site request has nothing to ride on.
CSRF_EXEMPT = {("POST", "/api/events")}
#: Sign-in has no session yet, so no token: it is guarded by the Origin and
#: Sec-Fetch-Site checks only (login CSRF), which the tests check separately.
PRE_SESSION = {("POST", "/api/auth/login"), ("POST", "/login")}


def route_table(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every route the app serves, HEAD left out."""
    out: list[tuple[str, str]] = []

    def walk(routes: Any, prefix: str) -> None:
        for route in routes:
            if isinstance(route, Mount):
                out.append(("GET", prefix + route.path + "/{path}"))
            elif isinstance(route, (APIRoute, Route)):
                out.extend(
                    (m, prefix + route.path) for m in sorted(route.methods or ()) if m != "HEAD"
                )
            elif hasattr(route, "original_router"):  # FastAPI's included routers
                walk(route.original_router.routes, prefix + route.include_context.prefix)
            elif hasattr(route, "routes"):
                walk(route.routes, prefix + getattr(route, "path", ""))

    walk(app.routes, "")
    return sorted(set(out))


def state_changing_routes(app: FastAPI) -> list[tuple[str, str]]:
    return [(m, p) for m, p in route_table(app) if m not in ("GET", "HEAD", "OPTIONS")]


@dataclass
class World:
    """A team owner signed in (active workspace: the team) and one of everything."""

    app: FastAPI
    db: Database
    owner: User
    team: Workspace
    browser: Browser
    secret: str
    event_id: str
    settings_event_id: str
    key_id: str
    resources: dict[str, str] = field(default_factory=dict)
    newcomer: User | None = None
    #: The owner's password now (the password-change routes change it).
    password: str = PASSWORD

    def url(self, path: str) -> str:
        """``path`` with its parameters pointing at this world's things."""
        kind = path.strip("/").split("/")[-2] if "{resource_id}" in path else ""
        if kind not in KINDS:
            kind = next((k for k in KINDS if f"/{k}/" in path), "")
        values = {
            "slug": self.team.slug,
            "key_id": self.key_id,
            "event_id": self.settings_event_id,
            "resource_id": self.resources.get(kind, "r_unknown"),
            "path": "activity.js",
            "email": self.newcomer.email if self.newcomer else "nobody@example.com",
        }
        return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: values[m.group(1)], path)


def make_world(app: FastAPI, db: Database, clock: Callable[[], Any]) -> World:
    owner = make_user(db, clock, name="Owner")
    team = make_team(db, clock, owner, name="Team")
    secret = make_key(db, clock, owner, team)
    event_id = ingest(app_client(app), secret, event_body()).json()["event"]["id"]
    browser = Browser(app, owner.email)
    browser.switch(team.slug)
    changed = browser.patch("/api/settings/profile", json={"bio": "before"})
    assert changed.status_code == 200, changed.text
    key_id = browser.get("/api/api-keys").json()["apiKeys"][0]["id"]
    world = World(
        app=app,
        db=db,
        owner=owner,
        team=team,
        browser=browser,
        secret=secret,
        event_id=event_id,
        settings_event_id=changed.json()["event"]["id"],
        key_id=key_id,
        newcomer=make_user(db, clock, name="Newcomer"),
    )
    for kind in KINDS:
        made = browser.post(f"/api/{kind}", json={"name": f"{kind} one"})
        assert made.status_code == 201, made.text
        world.resources[kind] = next(iter(made.json().values()))["id"]
    return world


def app_client(app: FastAPI) -> Any:
    from fastapi.testclient import TestClient

    return TestClient(app, base_url="http://testserver")


@dataclass(frozen=True)
class Call:
    """A request that would succeed with the right token: a JSON body, or form fields
    (and a file) for the pages' forms and the uploads."""

    json: Any = None
    form: dict[str, str] | None = None
    file: bool = False


def _valid_calls(w: World) -> dict[tuple[str, str], Call]:
    newcomer = w.newcomer.email if w.newcomer else "nobody@example.com"
    calls: dict[tuple[str, str], Call] = {
        ("POST", "/api/auth/login"): Call(json={"email": w.owner.email, "password": w.password}),
        ("POST", "/api/auth/logout"): Call(),
        ("POST", "/api/auth/password"): Call(
            json={"currentPassword": w.password, "newPassword": w.password + "!"}
        ),
        ("POST", "/api/workspaces"): Call(json={"name": "Another"}),
        ("POST", "/api/workspaces/{slug}/members"): Call(
            json={"email": newcomer, "role": "member"}
        ),
        ("DELETE", "/api/workspaces/{slug}/members/{email}"): Call(),
        ("POST", "/api/workspaces/{slug}/switch"): Call(),
        ("POST", "/api/activity/mark-seen"): Call(json={"all": True}),
        ("POST", "/api/activity/archive"): Call(json={"all": True, "archive": True}),
        ("POST", "/api/activity/{event_id}/undo"): Call(),
        ("POST", "/api/api-keys"): Call(json={"name": "ci"}),
        ("DELETE", "/api/api-keys/{key_id}"): Call(),
        ("POST", "/api/events"): Call(json=event_body(2)),
        ("PATCH", "/api/settings/profile"): Call(json={"bio": "after"}),
        ("POST", "/api/onboarding/complete"): Call(),
        ("POST", "/login"): Call(form={"email": w.owner.email, "password": w.password}),
        ("POST", "/logout"): Call(form={}),
        ("POST", "/activity/mark-seen"): Call(form={"return_to": "/activity"}),
        ("POST", "/activity/archive"): Call(form={"all": "1", "archive": "1"}),
        ("POST", "/activity/switch"): Call(form={"slug": w.team.slug}),
        ("POST", "/activity/undo"): Call(form={"event_id": w.settings_event_id}),
        ("POST", "/settings/profile"): Call(
            form={"name": "Owner", "bio": "form", "timezone": "UTC", "email_digest": "daily"}
        ),
        ("POST", "/settings/password"): Call(
            form={"current_password": w.password, "new_password": w.password + "!"}
        ),
        ("POST", "/settings/api-keys"): Call(form={"name": "form key"}),
        ("POST", "/settings/api-keys/{key_id}/revoke"): Call(form={}),
    }
    for kind in KINDS:
        calls.update(
            {
                ("POST", f"/api/{kind}"): Call(json={"name": "new"}),
                ("PATCH", f"/api/{kind}/{{resource_id}}"): Call(json={"name": "renamed"}),
                ("DELETE", f"/api/{kind}/{{resource_id}}"): Call(),
                ("POST", f"/api/{kind}/{{resource_id}}/clone"): Call(
                    json={"workspace": w.team.slug}
                ),
                ("POST", f"/api/{kind}/{{resource_id}}/uploads"): Call(file=True),
                ("POST", f"/{kind}"): Call(form={"name": "new"}),
                ("POST", f"/{kind}/{{resource_id}}/rename"): Call(form={"name": "renamed"}),
                ("POST", f"/{kind}/{{resource_id}}/clone"): Call(form={"workspace": w.team.slug}),
                ("POST", f"/{kind}/{{resource_id}}/upload"): Call(form={}, file=True),
            }
        )
        for action in ("trash", "restore", "share", "unshare"):
            calls[("POST", f"/api/{kind}/{{resource_id}}/{action}")] = Call()
        for action in ("trash", "restore", "delete", "share", "unshare"):
            calls[("POST", f"/{kind}/{{resource_id}}/{action}")] = Call(form={})
    return calls


def valid_call(w: World, method: str, path: str) -> Call:
    calls = _valid_calls(w)
    assert (method, path) in calls, (
        f"{method} {path} is a new state-changing route: add the request that would "
        "succeed to tests/security/_hardening.py (_valid_calls), so the CSRF tests cover it"
    )
    return calls[(method, path)]


#: Columns that record bookkeeping, not state a person sees (none today: with the test
#: clock standing still, even a session's ``last_seen_at`` is not refreshed).
IGNORED_COLUMNS: dict[str, set[str]] = {}


def dump(db: Database) -> dict[str, list[str]]:
    """Every row of every table, as sorted text, to compare before and after."""
    out: dict[str, list[str]] = {}
    with db.read() as tx:
        for table in metadata.sorted_tables:
            skip = IGNORED_COLUMNS.get(table.name, set())
            cols = [c for c in table.columns if c.name not in skip]
            rows = tx.conn.execute(select(*cols)).all()
            out[table.name] = sorted(repr(tuple(r)) for r in rows)
    return out


def changed_tables(before: dict[str, list[str]], after: dict[str, list[str]]) -> list[str]:
    return [name for name in before if before[name] != after.get(name)]
