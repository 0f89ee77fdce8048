"""A small world with two workspaces' worth of everything, and what each actor may reach.

The team workspace T (owner, viewer) holds a project, a dataset and a model, an API key,
an ingested event and the owner's private settings event; an outsider has the same in
a personal workspace of their own. ``Actor`` says, for the isolation matrix, which ids
the actor must not reach (``theirs``), which of their own fill the other slots
(``baseline``), and which kinds of ids are varied.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text

from activityfeed.domain.workspaces import Role
from activityfeed.store.db import Database
from tests.factories import Browser, event_body, ingest, make_team, make_user
from tests.security.recipes import (
    EMAIL,
    EVENT,
    KEY,
    PNG,
    RESOURCE_KINDS,
    WORKSPACE,
    Req,
)


@dataclass
class Actor:
    name: str
    client: TestClient
    csrf: str | None
    #: A value for every kind of slot that is not being varied.
    baseline: dict[str, str]
    #: Per kind of id, the values this actor must not be able to tell from unknown ones.
    theirs: dict[str, list[str]]
    #: Only routes that need a writer's role (the viewer).
    writes_only: bool = False
    bearer: str | None = None


@dataclass
class World:
    owner: Browser
    outsider: Browser
    viewer: Browser
    team_slug: str
    #: T's things, by kind (lists: more than one of a kind is probed).
    team: dict[str, list[str]]
    #: The outsider's own things, one per kind.
    own: dict[str, str]
    outsider_key: str
    actors: list[Actor] = field(default_factory=list)


def _resource(b: Browser, kind: str, name: str) -> str:
    plural = {"project": "projects", "dataset": "datasets", "model": "models"}[kind]
    response = b.post(f"/api/{plural}", json={"name": name})
    assert response.status_code == 201, response.text
    return str(response.json()[kind]["id"])


def _own_things(b: Browser, tag: str) -> dict[str, str]:
    things = {kind: _resource(b, kind, f"{tag}-{kind}") for kind in RESOURCE_KINDS}
    created = b.post("/api/api-keys", json={"name": f"{tag} key"})
    assert created.status_code == 201, created.text
    things[KEY] = created.json()["apiKey"]["id"]
    things["secret"] = created.json()["secret"]
    return things


def build_world(app: FastAPI, db: Database, clock: Any) -> World:
    owner_u, viewer_u, outsider_u = (make_user(db, clock) for _ in range(3))
    team = make_team(db, clock, owner_u, [(viewer_u, Role.VIEWER)], name="Team")
    owner, viewer, outsider = (Browser(app, u.email) for u in (owner_u, viewer_u, outsider_u))

    owner.switch(team.slug)
    t = _own_things(owner, "team")
    shown = ingest(owner.client, t["secret"], event_body(1))
    assert shown.status_code == 201, shown.text
    settings_change = owner.patch("/api/settings/profile", json={"bio": "Owner's bio"})
    assert settings_change.status_code == 200, settings_change.text
    personal = owner.post(
        "/api/api-keys", json={"name": "personal", "workspace": owner.login["workspace"]["slug"]}
    )
    assert personal.status_code == 201, personal.text

    own = _own_things(outsider, "own")
    own_event = ingest(outsider.client, own["secret"], event_body(2)).json()["event"]["id"]
    outsider_slug = outsider.login["workspace"]["slug"]
    viewer.switch(team.slug)

    team_things: dict[str, list[str]] = {kind: [t[kind]] for kind in RESOURCE_KINDS}
    team_things[KEY] = [t[KEY], personal.json()["apiKey"]["id"]]
    team_things[EVENT] = [shown.json()["event"]["id"], settings_change.json()["event"]["id"]]
    team_things[WORKSPACE] = [team.slug, owner.login["workspace"]["slug"]]
    world = World(
        owner=owner,
        outsider=outsider,
        viewer=viewer,
        team_slug=team.slug,
        team=team_things,
        own={
            **{kind: own[kind] for kind in RESOURCE_KINDS},
            KEY: own[KEY],
            EVENT: own_event,
            WORKSPACE: outsider_slug,
            EMAIL: owner_u.email,
        },
        outsider_key=own["secret"],
    )
    world.actors = [
        Actor(
            name="non-member",
            client=outsider.client,
            csrf=outsider.csrf,
            baseline=dict(world.own),
            theirs=team_things,
        ),
        Actor(
            name="viewer",
            client=viewer.client,
            csrf=viewer.csrf,
            # The viewer names T itself wherever a workspace is asked for: T is no secret
            # to its members; what varies is the thing inside it.
            baseline={
                WORKSPACE: team.slug,
                EMAIL: outsider_u.email,
                **{kind: t[kind] for kind in RESOURCE_KINDS},
                KEY: t[KEY],
                EVENT: team_things[EVENT][0],
            },
            theirs={
                **{kind: [t[kind]] for kind in RESOURCE_KINDS},
                KEY: [t[KEY]],
                EMAIL: [outsider_u.email],
            },
            writes_only=True,
        ),
        Actor(
            name="logged-out",
            client=TestClient(app, base_url="http://testserver"),
            csrf=None,
            baseline={
                **{kind: v[0] for kind, v in team_things.items()},
                EMAIL: outsider_u.email,
            },
            # Refused before any id is read: one id of each kind is enough.
            theirs={**{kind: v[:1] for kind, v in team_things.items()}, EMAIL: [outsider_u.email]},
        ),
    ]
    return world


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def unknown_like(value: str, rng: random.Random) -> str:
    """An id of the same shape and length as ``value`` that names nothing."""
    if "@" in value:
        local, _, domain = value.partition("@")
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in local) + "@" + domain
    prefix, sep, rest = value.partition("_")
    if sep and len(prefix) <= 3:
        return prefix + "_" + "".join(rng.choice(_CROCKFORD) for _ in rest)
    if value.isupper() or value[:1].isdigit():
        return "".join(rng.choice(_CROCKFORD) for _ in value)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in value)


def send(actor: Actor, req: Req) -> Any:
    headers: dict[str, str] = {}
    if actor.csrf:
        headers["X-CSRF-Token"] = actor.csrf
    if actor.bearer:
        headers["Authorization"] = f"Bearer {actor.bearer}"
    data: dict[str, str] | None = dict(req.form) if req.form is not None else None
    files = None
    if req.upload:
        data = {}
        files = {"file": ("cat.png", PNG, "image/png")}
    if data is not None and actor.csrf:
        data["csrf_token"] = actor.csrf
    return actor.client.request(
        req.method,
        req.url,
        params=dict(req.params) if req.params else None,
        json=req.json,
        data=data,
        files=files,
        headers=headers,
        follow_redirects=False,
    )


#: Headers that differ between two identical answers for reasons of no interest.
IGNORED_HEADERS = {"date", "content-length"}


def comparable(response: Any, replace: Mapping[str, str]) -> tuple[int, str, list[tuple[str, str]]]:
    """Status, body and headers with the request's own ids blanked out (an id echoed back
    from the request, as in a sign-in redirect's ``next``, tells nothing)."""
    from urllib.parse import quote

    def clean(text_: str) -> str:
        for value, placeholder in replace.items():
            text_ = text_.replace(value, placeholder).replace(quote(value, safe=""), placeholder)
        return text_

    headers = sorted(
        (k.lower(), clean(v))
        for k, v in response.headers.items()
        if k.lower() not in IGNORED_HEADERS
    )
    return response.status_code, clean(response.text), headers


_TABLES: dict[str, list[str]] = {}


def dump(db: Database, data_dir: Path) -> dict[str, Any]:
    """Every row of every table (the migrations' FTS tables included) and every stored file."""
    out: dict[str, Any] = {}
    with db.read() as tx:
        # The catalogue is read once per database: reflection is slow on PostgreSQL.
        url = str(tx.conn.engine.url)
        if url not in _TABLES:
            _TABLES[url] = sorted(inspect(tx.conn).get_table_names())
        for name in _TABLES[url]:
            # The names come from the database's own catalogue, not from a request.
            rows = tx.conn.execute(text(f'SELECT * FROM "{name}"')).all()  # noqa: S608
            out[name] = sorted(repr(tuple(r)) for r in rows)
    out["<files>"] = sorted(
        str(p.relative_to(data_dir))
        for p in data_dir.rglob("*")
        if p.is_file() and not p.name.startswith("test.db")
    )
    return out


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    lines = []
    for name in sorted(set(before) | set(after)):
        old, new = set(before.get(name, [])), set(after.get(name, []))
        if old != new:
            lines.append(f"  {name}: -{sorted(old - new)[:3]} +{sorted(new - old)[:3]}")
    return "\n".join(lines)
