"""The server-rendered pages work without JavaScript: sign in, read, archive, restore."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.factories import PASSWORD, event_body, ingest, make_key, make_team, make_user


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page carries its CSRF token in forms"
    return match.group(1)


def test_activity_redirects_to_sign_in(client):
    """An anonymous visit to /activity lands on /login and comes back after."""
    response = client.get("/activity?archived=true", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Factivity%3Farchived%3Dtrue"


def test_sign_in_form_wrong_password_says_so(client, db, clock):
    user = make_user(db, clock)
    response = client.post("/login", data={"email": user.email, "password": "nope-nope"})
    assert response.status_code == 401
    assert "wrong" in response.text


def test_no_javascript_triage(app, client, db, clock):
    """Sign in by form, see the events, archive one, restore it, archive all."""
    owner = make_user(db, clock)
    team = make_team(db, clock, owner, name="Vision")
    secret = make_key(db, clock, owner, team)
    ingest(client, secret, {"events": [event_body(i) for i in range(3)]})

    browser = TestClient(app, base_url="http://testserver")
    signed = browser.post(
        "/login",
        data={"email": owner.email, "password": PASSWORD, "next": "/activity"},
        follow_redirects=False,
    )
    assert signed.status_code == 303
    page = browser.get("/activity")
    token = _csrf(page.text)
    browser.post("/activity/switch", data={"csrf_token": token, "slug": team.slug})
    page = browser.get("/activity")
    assert page.text.count('class="event unseen"') == 4  # 3 trainings + the key's event
    first_id = re.search(r'name="event_id" value="([^"]+)"', page.text).group(1)

    moved = browser.post(
        "/activity/archive",
        data={"csrf_token": token, "event_id": first_id, "archive": "1"},
        follow_redirects=False,
    )
    assert moved.status_code == 303
    assert browser.get("/activity").text.count('name="event_id"') == 3
    archive = browser.get("/activity?archived=true")
    assert first_id in archive.text
    assert "Restore" in archive.text

    browser.post(
        "/activity/archive", data={"csrf_token": token, "event_id": first_id, "archive": "0"}
    )
    assert browser.get("/activity").text.count('name="event_id"') == 4
    browser.post("/activity/archive", data={"csrf_token": token, "all": "1", "archive": "1"})
    assert "all caught up" in browser.get("/activity").text


def test_forms_need_the_csrf_token(app, client, db, clock):
    owner = make_user(db, clock)
    browser = TestClient(app, base_url="http://testserver")
    browser.post("/login", data={"email": owner.email, "password": PASSWORD})
    refused = browser.post("/activity/archive", data={"all": "1", "archive": "1"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "csrf_failed"


def test_login_form_refuses_open_redirects(client, db, clock):
    user = make_user(db, clock)
    response = client.post(
        "/login",
        data={"email": user.email, "password": PASSWORD, "next": "//evil.example/x"},
        follow_redirects=False,
    )
    assert response.headers["location"] == "/activity"


def test_login_form_lockout_says_when_to_retry(settings, db, clock):
    """After too many failures the form answers 429 with Retry-After, like the API."""
    from dataclasses import replace

    from activityfeed.web import create_app

    app = create_app(replace(settings, login_max_failures_per_account=2), db=db, clock=clock)
    user = make_user(db, clock)
    browser = TestClient(app, base_url="http://testserver")
    for _ in range(2):
        assert (
            browser.post("/login", data={"email": user.email, "password": "x" * 9}).status_code
            == 401
        )
    locked = browser.post("/login", data={"email": user.email, "password": PASSWORD})
    assert locked.status_code == 429
    assert int(locked.headers["Retry-After"]) > 0
