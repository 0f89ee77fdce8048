"""Routes declare the authentication they accept (issue 6, item 7); session routes refuse
API keys with 401 ``browser_session_required``; the ingestion route refuses sessions.

The declarations live in web/auth_policy.py; ``create_app`` refuses to build an app with
an undeclared route, and these tests walk the same route table.
"""

from __future__ import annotations

import pytest
from fastapi import APIRouter, Depends
from fastapi.staticfiles import StaticFiles
from fastapi.testclient import TestClient

from activityfeed.config import Settings
from activityfeed.web import auth_policy, create_app
from activityfeed.web.auth_policy import Auth, UndeclaredAuthentication, problems, route_policies
from activityfeed.web.deps import api_key_auth, session_auth, session_in_handler
from tests.factories import Browser, event_body, make_key, make_user
from tests.security.recipes import RECIPES, route_key
from tests.security.world import Actor, build_world, diff, dump, send

#: The routes anyone may call. Adding one is a decision, so it is listed here by hand.
PUBLIC = {
    ("GET", "/api/openapi.json"),
    ("GET", "/api/docs"),
    ("POST", "/api/auth/login"),
    ("GET", "/"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("GET", "/settings"),
    ("GET", "/healthz"),
    ("ANY", "/static"),
    ("ANY", "/api/docs/assets"),
}
API_KEY = {("POST", "/api/events")}


def _app(tmp_path):
    return create_app(
        Settings(database_url=f"sqlite:///{tmp_path / 'unused.db'}", data_dir=tmp_path)
    )


def _by_auth(app) -> dict[Auth | None, set[tuple[str, str]]]:
    out: dict[Auth | None, set[tuple[str, str]]] = {}
    for entry in route_policies(app):
        out.setdefault(entry.auth, set()).update(route_key(entry.methods, entry.path))
    return out


def test_every_route_declares_what_it_accepts(tmp_path):
    """Session-only is the default; the public and API-key routes are exactly these."""
    app = _app(tmp_path)
    assert problems(app) == []
    by_auth = _by_auth(app)
    assert None not in by_auth
    assert by_auth[Auth.PUBLIC] == PUBLIC
    assert by_auth[Auth.API_KEY] == API_KEY
    # Every activity, settings, workspace and API-key route is session-only, pages too.
    guarded = ("/api/activity", "/api/settings", "/api/workspaces", "/api/api-keys")
    guarded += ("/activity", "/settings/", "/projects", "/datasets", "/models")
    others = by_auth[Auth.PUBLIC] | by_auth[Auth.API_KEY]
    assert not [key for key in others if key[1].startswith(guarded)]
    assert len([key for key in by_auth[Auth.SESSION] if key[1].startswith(guarded)]) >= 50


def test_a_route_that_declares_nothing_stops_the_build(tmp_path):
    """A plain APIRouter, a bare Starlette route and an undeclared mount are each named."""
    app = _app(tmp_path)
    bare = APIRouter()

    @bare.get("/api/new-thing")
    def new_thing() -> dict[str, str]:
        return {}

    app.include_router(bare)
    app.add_route("/raw", lambda _: None)
    app.mount("/files", StaticFiles(directory=str(tmp_path)), name="files")
    found = "\n".join(problems(app))
    for path in ("/api/new-thing", "/raw", "/files"):
        assert f" {path} " in found, found
    with pytest.raises(UndeclaredAuthentication, match="/api/new-thing"):
        auth_policy.check(app)


def test_declarations_must_agree_with_the_code(tmp_path):
    """An API-key route without api_key_auth, a session route that takes API keys and a
    public route that needs a session are refused."""
    app = _app(tmp_path)
    keyed = auth_policy.router(auth=Auth.API_KEY)
    public = auth_policy.router(auth=Auth.PUBLIC)
    sessions = auth_policy.router()

    @keyed.post("/api/keyed")
    def keyed_without_key() -> None: ...

    @sessions.post("/api/sessioned")
    def session_taking_key(key: object = Depends(api_key_auth)) -> None: ...

    @public.get("/open")
    def public_with_session(session: object = Depends(session_auth)) -> None: ...

    @sessions.post("/api/lookup")
    def writes_without_csrf(lookup: object = Depends(session_in_handler)) -> None: ...

    @sessions.get("/api/lookup")
    def reads_in_handler(lookup: object = Depends(session_in_handler)) -> None: ...

    for r in (keyed, public, sessions):
        app.include_router(r)
    found = "\n".join(problems(app))
    assert "/api/keyed (keyed_without_key) is declared api_key but does not depend" in found
    assert "/api/sessioned (session_taking_key) depends on api_key_auth" in found
    assert "/open (public_with_session) is declared public but depends on a session" in found
    # Reading the session in the handler skips the CSRF check: GET routes only.
    assert "POST /api/lookup (writes_without_csrf) depends on session_in_handler" in found
    assert "reads_in_handler" not in found


def test_accepts_overrides_the_router_in_either_order(tmp_path):
    app = _app(tmp_path)
    r = auth_policy.router()

    @r.get("/below")
    @auth_policy.accepts(Auth.PUBLIC)
    def below() -> None: ...

    @auth_policy.accepts(Auth.PUBLIC)
    @r.get("/above")
    def above() -> None: ...

    @r.get("/default")
    def default() -> None: ...

    app.include_router(r)
    by_auth = _by_auth(app)
    assert {("GET", "/below"), ("GET", "/above")} <= by_auth[Auth.PUBLIC]
    assert ("GET", "/default") in by_auth[Auth.SESSION]


def test_session_routes_refuse_api_keys(app, db, clock, settings):
    """Every session route (pages included), called with a live events:write key of the
    caller's own workspace and no session, or with any other bearer token, is 401
    ``browser_session_required`` and changes nothing, whatever ids it names."""
    world = build_world(app, db, clock)
    values = dict(world.own)
    checked = 0
    before = dump(db, settings.data_dir)
    for entry in route_policies(app):
        if entry.auth is not Auth.SESSION:
            continue
        for key in route_key(entry.methods, entry.path):
            recipe = RECIPES[key]
            req = recipe.build({name: values[kind] for name, kind in recipe.slots.items()})
            for bearer in (world.outsider_key, "afk_not-a-key"):
                actor = Actor("api key", TestClient(app), None, {}, {}, bearer=bearer)
                response = send(actor, req)
                assert response.status_code == 401, (key, response.text)
                assert response.json()["error"]["code"] == "browser_session_required", key
                checked += 1
    assert checked >= 2 * 80
    after = dump(db, settings.data_dir)
    assert after == before, diff(before, after)


def test_session_wins_over_a_bearer_header(app, db, clock):
    """A signed-in browser that also sends an Authorization header is still served by
    its session (the header is not a credential on these routes)."""
    user = make_user(db, clock)
    browser = Browser(app, user.email)
    key = make_key(db, clock, user)
    response = browser.get("/api/workspaces", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    assert browser.get("/activity", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_ingestion_refuses_a_session(app, db, clock, settings):
    """POST /api/events is API-key only: a signed-in browser with its CSRF token is 401
    ``not_authenticated`` and nothing is stored."""
    browser = Browser(app, make_user(db, clock).email)
    before = dump(db, settings.data_dir)
    response = browser.post("/api/events", json=event_body(9))
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "not_authenticated"
    assert dump(db, settings.data_dir) == before
