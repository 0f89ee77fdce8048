"""Cross-site request forgery, over every state-changing route of the app's route table.

The route list is read from the app, so a new route is covered the day it lands (or the
test fails and says what to add). Exempt by design: ``POST /api/events`` (API key in the
Authorization header, never a cookie). Sign-in has no session and so no token: it is
covered by the Origin and Sec-Fetch-Site checks only.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import PASSWORD, Browser
from tests.security._hardening import (
    CSRF_EXEMPT,
    PRE_SESSION,
    Call,
    World,
    changed_tables,
    dump,
    make_world,
    route_table,
    state_changing_routes,
    valid_call,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
RIGHT = "<right token>"

#: (name, token to send, extra headers): each must be refused with 403 csrf_failed.
FORGERIES = [
    ("missing-token", None, {}),
    ("wrong-token", "wrong-token", {}),
    # Non-ASCII: once a TypeError in the comparison, so a 500 instead of a 403.
    ("non-ascii-token", "tökén-☃", {}),
    ("cross-site", RIGHT, {"Sec-Fetch-Site": "cross-site"}),
    ("foreign-origin", RIGHT, {"Origin": "https://evil.example"}),
    ("null-origin", RIGHT, {"Origin": "null"}),
    ("lookalike-origin", RIGHT, {"Origin": "http://testserver.evil.example"}),
]


@pytest.fixture
def world(app, db, clock) -> World:
    return make_world(app, db, clock)


def is_json_route(path: str) -> bool:
    return path.startswith("/api/") and not path.endswith(("/uploads", "/upload"))


def send(
    client: TestClient,
    method: str,
    url: str,
    call: Call,
    *,
    token: str | None,
    headers: dict[str, str],
    form_on_json: bool = False,
) -> Any:
    """The request as the page (or its script) would send it, with ``token``."""
    headers = dict(headers)
    on_api = url.startswith("/api/")
    files = {"file": ("cat.png", PNG, "image/png")} if call.file else None
    if call.form is not None or call.file or form_on_json:
        fields = dict(call.form or {})
        if form_on_json:
            # What an auto-submitting form on another site sends: the JSON's fields,
            # url-encoded, and (for the attacker's best case) the right token too.
            fields.update({k: str(v) for k, v in (call.json or {}).items()})
        if token is not None and (not on_api or form_on_json):
            fields["csrf_token"] = token
        elif token is not None:
            headers["X-CSRF-Token"] = token.encode()
        return client.request(
            method, url, data=fields, files=files, headers=headers, follow_redirects=False
        )
    if token is not None:
        # Bytes: a header's value as it travels (UTF-8 here), whatever its characters.
        headers["X-CSRF-Token"] = token.encode()
    return client.request(method, url, json=call.json, headers=headers, follow_redirects=False)


def assert_refused(response: Any, what: str) -> None:
    assert response.status_code == 403, (what, response.status_code, response.text[:300])
    if response.headers.get("content-type", "").startswith("application/json"):
        assert response.json()["error"]["code"] == "csrf_failed", what
    else:
        # The upload form checks its token only once it has streamed the body, and then
        # shows the resource page with the message (still 403, still nothing stored).
        assert "CSRF token" in response.text, what


def test_every_state_changing_route_refuses_forgeries(world: World):
    """For each non-GET route: a missing or wrong token, a cross-site Sec-Fetch-Site,
    a foreign, look-alike or ``null`` Origin (those three with the right token), and on
    JSON routes a form-encoded body (with the right token in it) are all 403
    csrf_failed, and the database is exactly as before."""
    routes = state_changing_routes(world.app)
    assert ("POST", "/api/activity/mark-seen") in routes
    assert ("POST", "/activity/archive") in routes
    client = world.browser.client
    before = dump(world.db)
    checked = 0
    for method, path in routes:
        if (method, path) in CSRF_EXEMPT:
            continue
        call = valid_call(world, method, path)
        url = world.url(path)
        for name, token, headers in FORGERIES:
            if (method, path) in PRE_SESSION and token != RIGHT:
                continue  # no session, no token: only the cross-site checks apply
            sent = world.browser.csrf if token == RIGHT else token
            response = send(client, method, url, call, token=sent, headers=headers)
            assert_refused(response, f"{name}: {method} {path}")
            checked += 1
        if is_json_route(path) and (method, path) not in PRE_SESSION:
            response = send(
                client, method, url, call, token=world.browser.csrf, headers={}, form_on_json=True
            )
            assert_refused(response, f"form body: {method} {path}")
            checked += 1
    assert changed_tables(before, dump(world.db)) == []
    assert checked > 300


def _prepare(w: World, method: str, path: str) -> tuple[str, Call]:
    """Fresh things for one positive request, so the requests do not spoil each other
    (a key revoked twice, a resource deleted before it is shared, an undo done twice)."""
    b = w.browser
    call = valid_call(w, method, path)
    kind = next((k for k in ("projects", "datasets", "models") if f"/{k}/" in path), None)
    if kind and "{resource_id}" in path:
        made = b.post(f"/api/{kind}", json={"name": "fresh"})
        w.resources[kind] = next(iter(made.json().values()))["id"]
        rid = w.resources[kind]
        if path.endswith("/restore"):
            assert b.post(f"/api/{kind}/{rid}/trash").status_code == 200
        if path.endswith("/unshare"):
            assert b.post(f"/api/{kind}/{rid}/share").status_code == 200
    if "{email}" in path and w.newcomer is not None:
        # Removal needs a member to remove: (re-)add the newcomer (409 if still one).
        added = b.post(f"/api/workspaces/{w.team.slug}/members", json={"email": w.newcomer.email})
        assert added.status_code in (201, 409), added.text
    if "{key_id}" in path:
        made = b.post("/api/api-keys", json={"name": "fresh"})
        w.key_id = made.json()["apiKey"]["id"]
    if path.endswith("undo"):
        bio = f"bio {len(path)} {method}"
        changed = b.patch("/api/settings/profile", json={"bio": bio})
        w.settings_event_id = changed.json()["event"]["id"]
        if call.form is not None:
            call = Call(form={"event_id": w.settings_event_id})
    return w.url(path), call


def test_the_same_requests_with_the_token_go_through(world: World):
    """Control for the test above: each forged request, sent as the page sends it (right
    token, same origin), is not refused, so the 403s above are the CSRF check's alone."""
    app = world.app
    # Sign-out ends the session: it runs on browsers of its own. The password changes
    # run last (they end the spare sessions) and each moves the world's password on.
    spare = {
        ("POST", "/api/auth/logout"): Browser(app, world.owner.email),
        ("POST", "/logout"): Browser(app, world.owner.email),
    }
    routes = sorted(state_changing_routes(app), key=lambda r: r[1].endswith("/password"))
    for method, path in routes:
        url, call = _prepare(world, method, path)
        browser = spare.get((method, path), world.browser)
        headers = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
        if (method, path) in CSRF_EXEMPT:
            headers = {"Authorization": f"Bearer {world.secret}"}
            response = browser.client.post(url, json=call.json, headers=headers)
        elif (method, path) in PRE_SESSION:
            # Signing in from this browser would end its session: use a new one.
            with TestClient(app, base_url="http://testserver") as fresh:
                response = send(fresh, method, url, call, token=None, headers=headers)
        else:
            response = send(browser.client, method, url, call, token=browser.csrf, headers=headers)
        # Projects take no uploads (422 upload_not_supported): still past the CSRF check.
        expected_refusal = path.startswith(("/api/projects", "/projects")) and "upload" in path
        ok = response.status_code < 400 or (expected_refusal and response.status_code == 422)
        assert ok, (method, path, response.status_code, response.text[:300])
        if path.endswith("/password"):
            world.password += "!"
    assert world.browser.get("/api/auth/me").status_code == 200


def test_no_get_changes_anything(world: World):
    """Every GET (and HEAD) route of the route table, signed in, with real ids and the
    query parameters that make it do most: the database is the same afterwards."""
    extra = {
        "/api/activity": ["?export=true", "?archived=true&search=yolo"],
        "/activity": ["?page=2", "?archived=true"],
        "/activity/rows": [f"?ids={world.event_id}"],
        "/login": ["?next=/projects"],
        "/projects": ["?trash=1"],
    }
    #: Routes a plain GET cannot finish: the live stream never ends. It is read-only by
    #: construction (services.stream.catch_up runs in read transactions).
    unbounded = {"/api/activity/stream"}
    before = dump(world.db)
    gets = [p for m, p in route_table(world.app) if m == "GET"]
    assert "/activity" in gets
    assert "/api/activity" in gets
    client = world.browser.client
    for path in gets:
        if path in unbounded:
            continue
        for query in ["", *extra.get(path, [])]:
            url = world.url(path) + query
            for method in ("GET", "HEAD"):
                response = client.request(method, url, follow_redirects=False)
                assert response.status_code < 500, (method, url, response.status_code)
    # The same, signed out (pages redirect, the API says 401).
    with TestClient(world.app, base_url="http://testserver") as anonymous:
        for path in gets:
            if path not in unbounded:
                anonymous.get(world.url(path), follow_redirects=False)
    assert changed_tables(before, dump(world.db)) == []


# ---- sign-in: login CSRF ---------------------------------------------------------------


def test_sign_in_from_another_site_is_refused(world: World):
    """A page on another site cannot sign the browser in (to the attacker's account):
    a cross-site Sec-Fetch-Site, a foreign or a ``null`` Origin on either sign-in route
    is 403 csrf_failed, sets no cookie and records nothing (not even a failure)."""
    before = dump(world.db)
    forged = [
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
    ]
    with TestClient(world.app, base_url="http://testserver") as anonymous:
        for headers in forged:
            for path in ("/api/auth/login", "/login"):
                call = valid_call(world, "POST", path)
                response = send(anonymous, "POST", path, call, token=None, headers=headers)
                assert_refused(response, f"{path} {headers}")
                assert "set-cookie" not in response.headers
    assert changed_tables(before, dump(world.db)) == []


# ---- open redirects ---------------------------------------------------------------------

EVIL_TARGETS = [
    "//evil.example/",
    "/\\evil.example/",
    "\\\\evil.example",
    "/\\/evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/%5Cevil.example",
    "/%2F/evil.example",
    "/%252F%252Fevil.example",
    "/%09/evil.example",
    "https://evil.example/",
    "http:/evil.example",
    "javascript:alert(1)",
    " /evil",
]


#: Redirect targets are plain string handling: one backend is enough.
@pytest.mark.parametrize("backend", ["sqlite"])
def test_no_open_redirect(world: World):
    """Every redirect that takes its target from the request (sign-in's ``next``, the
    forms' ``return_to``) goes to /activity instead of anything that could leave the
    site: ``//host``, ``/\\host``, tabs and newlines, encoded slashes and backslashes,
    absolute and scheme URLs."""
    for target in EVIL_TARGETS:
        _check_redirects(world, target)
    # The ordinary case still works: a local path with its query comes back.
    target = "/activity?search=a%20b&page=2"
    response = world.browser.client.get("/login", params={"next": target}, follow_redirects=False)
    assert response.headers["location"] == target


def _check_redirects(world: World, target: str) -> None:
    b = world.browser
    signed_in = b.client.get("/login", params={"next": target}, follow_redirects=False)
    assert signed_in.headers["location"] == "/activity"
    with TestClient(world.app, base_url="http://testserver") as anonymous:
        form = anonymous.post(
            "/login",
            data={"email": world.owner.email, "password": PASSWORD, "next": target},
            follow_redirects=False,
        )
        assert form.status_code == 303, form.text
        assert form.headers["location"] == "/activity"
    for url, fields in (
        ("/activity/mark-seen", {}),
        ("/activity/archive", {"event_id": world.event_id, "archive": "1"}),
        ("/activity/undo", {"event_id": "e_unknown"}),
    ):
        response = b.client.post(
            url,
            data={**fields, "return_to": target, "csrf_token": b.csrf},
            follow_redirects=False,
        )
        if response.status_code == 303:
            assert response.headers["location"] == "/activity", url
        else:  # the undo of an unknown event shows a page with a "back" link instead
            assert target not in response.text, url
