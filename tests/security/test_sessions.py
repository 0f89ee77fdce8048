"""Sessions and passwords: random ids stored hashed, a new id at sign-in, server-side
ends (sign-out, password change), idle and absolute timeouts, the ``__Host-`` cookie,
argon2id parameters and the sign-in rate limits."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from activityfeed.store.schema import sessions, users
from activityfeed.web import create_app
from tests.factories import PASSWORD, Browser, make_user
from tests.security._hardening import dump

LOGIN = "/api/auth/login"
NEW_PASSWORD = "a much better passphrase"


def login(client: TestClient, email: str, password: str = PASSWORD) -> Any:
    return client.post(LOGIN, json={"email": email, "password": password})


def cookie_of(response: Any, name: str = "af_session") -> str:
    lines = [v for k, v in response.headers.multi_items() if k == "set-cookie"]
    return next(line for line in lines if line.startswith(name + "="))


def value_of(line: str) -> str:
    return line.split(";", 1)[0].split("=", 1)[1]


def anonymous(app: Any, base: str = "http://testserver") -> TestClient:
    return TestClient(app, base_url=base)


def with_cookie(app: Any, value: str, name: str = "af_session") -> TestClient:
    client = anonymous(app)
    client.cookies.set(name, value)
    return client


def is_live(app: Any, value: str) -> bool:
    return with_cookie(app, value).get("/api/auth/me").status_code == 200


@pytest.mark.parametrize("backend", ["sqlite"])  # no database behaviour here
def test_session_ids_are_128_bit_random_and_stored_hashed(app, db, clock):
    """The cookie carries at least 128 random bits (here 256), differs at every sign-in,
    and the database holds only its SHA-256: the value itself is nowhere in it."""
    user = make_user(db, clock)
    values = [value_of(cookie_of(login(anonymous(app), user.email))) for _ in range(3)]
    assert len(set(values)) == 3
    for value in values:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        assert len(raw) >= 16
    with db.read() as tx:
        stored = set(tx.conn.execute(select(sessions.c.id_hash)).scalars())
    assert {hashlib.sha256(v.encode()).hexdigest() for v in values} <= stored
    everything = repr(dump(db))
    assert not any(v in everything for v in values)


def test_a_planted_session_id_is_replaced_at_sign_in(app, db, clock):
    """Session fixation: an id the attacker chose before sign-in is never adopted, and a
    browser's own earlier session ends when it signs in again."""
    user = make_user(db, clock)
    client = with_cookie(app, "planted-by-attacker")
    first = value_of(cookie_of(login(client, user.email)))
    assert first != "planted-by-attacker"
    assert not is_live(app, "planted-by-attacker")
    second = value_of(cookie_of(login(client, user.email)))
    assert second != first
    assert not is_live(app, first)
    assert is_live(app, second)


@pytest.mark.parametrize("route", ["/api/auth/logout", "/logout"])
def test_sign_out_ends_the_session_on_the_server(app, db, clock, route):
    """After sign-out the old cookie value, replayed by anyone, is refused at once."""
    user = make_user(db, clock)
    browser = Browser(app, user.email)
    other = Browser(app, user.email)
    value = browser.client.cookies.get("af_session")
    if route.startswith("/api/"):
        assert browser.post(route).status_code == 200
    else:
        response = browser.client.post(
            route, data={"csrf_token": browser.csrf}, follow_redirects=False
        )
        assert response.status_code == 303
    assert not is_live(app, value)
    assert other.get("/api/auth/me").status_code == 200
    with db.read() as tx:
        ended = tx.conn.execute(
            select(sessions.c.ended_at).where(
                sessions.c.id_hash == hashlib.sha256(value.encode()).hexdigest()
            )
        ).scalar_one()
    assert ended is not None


def test_password_change_ends_every_other_session(app, db, clock):
    """Changing the password keeps this browser signed in and ends every other session
    (a thief's included) on the server; the old password stops working."""
    user = make_user(db, clock)
    here, laptop, thief = (Browser(app, user.email) for _ in range(3))
    before = here.client.cookies["af_session"]
    response = here.post(
        "/api/auth/password", json={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "endedSessions": 2}
    # This browser goes on under a new session id; a copy of its old cookie is dead.
    after = value_of(cookie_of(response))
    assert after != before
    assert not is_live(app, before)
    assert is_live(app, after)
    assert here.get("/api/auth/me").status_code == 200
    # The page's CSRF token carries over to the new session.
    assert here.post("/api/workspaces", json={"name": "After the change"}).status_code == 201
    for gone in (laptop, thief):
        assert gone.get("/api/auth/me").status_code == 401
    assert login(anonymous(app), user.email).status_code == 401
    assert login(anonymous(app), user.email, NEW_PASSWORD).status_code == 200
    # The change is on record for its owner, with no secret in it.
    newest = here.activity()["events"][0]
    assert newest["description"] == "Changed the password"
    assert newest["metadata"] == {"passwordChanged": True, "endedSessions": 2}
    assert newest["undoableUntil"] is None


def test_password_change_needs_the_current_password_and_the_token(app, db, clock):
    """A wrong current password (422 naming it), a short new one (422) or a missing
    CSRF token (403) change nothing and end no session."""
    user = make_user(db, clock)
    here, other = Browser(app, user.email), Browser(app, user.email)
    before = dump(db)
    wrong = here.post(
        "/api/auth/password", json={"currentPassword": "not it at all", "newPassword": "x" * 12}
    )
    assert wrong.status_code == 422
    assert wrong.json()["error"]["field"] == "currentPassword"
    short = here.post("/api/auth/password", json={"currentPassword": PASSWORD, "newPassword": "x"})
    assert short.status_code == 422
    assert short.json()["error"]["field"] == "newPassword"
    forged = here.client.post(
        "/api/auth/password", json={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}
    )
    assert forged.status_code == 403
    after = dump(db)
    # Only the failed guess was recorded (it counts against the sign-in limit).
    assert [t for t in before if before[t] != after[t]] == ["login_failures"]
    assert other.get("/api/auth/me").status_code == 200
    assert login(anonymous(app), user.email).status_code == 200


def test_password_guesses_through_a_session_are_rate_limited(app, db, clock):
    """A stolen session cannot guess the password faster than the sign-in form: wrong
    current passwords count as failed sign-ins, and the 11th attempt is 429."""
    user = make_user(db, clock)
    here = Browser(app, user.email)
    body = {"currentPassword": "guess", "newPassword": NEW_PASSWORD}
    for _ in range(10):
        assert here.post("/api/auth/password", json=body).status_code == 422
    locked = here.post("/api/auth/password", json={**body, "currentPassword": PASSWORD})
    assert locked.status_code == 429
    assert locked.json()["error"]["code"] == "too_many_attempts"
    assert int(locked.headers["Retry-After"]) > 0


# The feed reads its session in its own transaction (``SessionLookup``): it must keep a
# session alive just as every other route does.
@pytest.mark.parametrize("path", ["/api/auth/me", "/api/activity"])
def test_idle_timeout(app, db, clock, settings, path):
    """A session unused for the idle limit is dead; one in use stays alive."""
    user = make_user(db, clock)
    busy, idle = Browser(app, user.email), Browser(app, user.email)
    idle_seconds = settings.session_idle_seconds
    for _ in range(3):
        clock.advance(seconds=idle_seconds - 60)
        assert busy.get(path).status_code == 200
    assert idle.get("/api/auth/me").status_code == 401


def test_absolute_timeout(app, db, clock, settings):
    """However busy, a session ends at its absolute lifetime after sign-in."""
    user = make_user(db, clock)
    browser = Browser(app, user.email)
    step = settings.session_idle_seconds - 60
    lived = 0
    while lived + step < settings.session_absolute_seconds:
        clock.advance(seconds=step)
        lived += step
        assert browser.get("/api/auth/me").status_code == 200, lived
    clock.advance(seconds=settings.session_absolute_seconds - lived)
    assert browser.get("/api/auth/me").status_code == 401


@pytest.mark.parametrize("backend", ["sqlite"])  # no database behaviour here
@pytest.mark.parametrize("configured", [False, True], ids=["https-request", "cookie-secure"])
def test_host_prefixed_cookie_over_https(settings, db, clock, configured):
    """Over HTTPS the cookie is ``__Host-af_session``: Secure, Path=/, no Domain,
    HttpOnly, SameSite=Lax; and a plain ``af_session`` (which a sibling subdomain or an
    HTTP page could have planted) is not accepted there."""
    app = create_app(dataclasses.replace(settings, cookie_secure=configured), db=db, clock=clock)
    user = make_user(db, clock)
    client = anonymous(app, "https://testserver")
    response = login(client, user.email)
    line = cookie_of(response, "__Host-af_session")
    attrs = {a.strip().split("=")[0].lower() for a in line.split(";")[1:]}
    assert {"secure", "httponly", "path", "samesite"} <= attrs
    assert "domain" not in attrs
    assert re.search(r"(?i);\s*path=/(;|$)", line)
    assert re.search(r"(?i);\s*samesite=lax", line)
    assert client.get("/api/auth/me").status_code == 200
    planted = anonymous(app, "https://testserver")
    planted.cookies.set("af_session", value_of(line))
    assert planted.get("/api/auth/me").status_code == 401


def _argon2_parameters(encoded: str) -> dict[str, Any]:
    match = re.fullmatch(r"\$(argon2(?:id|i|d))\$v=(\d+)\$m=(\d+),t=(\d+),p=(\d+)\$.+", encoded)
    assert match, encoded
    kind, version, m, t, p = match.groups()
    return {"type": kind, "v": int(version), "m": int(m), "t": int(t), "p": int(p)}


@pytest.mark.parametrize("backend", ["sqlite"])  # no database behaviour here
def test_stored_password_hashes_meet_owasp_minimum(app, db, clock):
    """Every stored hash, at creation and after a password change, is argon2id with
    m >= 19 MiB, t >= 2, p >= 1 (OWASP's minimum), read from the hash itself."""
    user = make_user(db, clock)
    browser = Browser(app, user.email)
    browser.post(
        "/api/auth/password", json={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}
    )
    make_user(db, clock)
    with db.read() as tx:
        hashes = list(tx.conn.execute(select(users.c.password_hash)).scalars())
    assert len(hashes) == 2
    for encoded in hashes:
        params = _argon2_parameters(encoded)
        assert params["type"] == "argon2id"
        assert params["v"] == 19
        assert params["m"] >= 19 * 1024
        assert params["t"] >= 2
        assert params["p"] >= 1


def test_sign_in_is_limited_per_account(app, db, clock):
    """10 failures for one account within 5 minutes: the next attempt, even with the
    right password and on either sign-in route, is 429 with a Retry-After that ends the
    wait; then the right password works."""
    user = make_user(db, clock)
    client = anonymous(app)
    for _ in range(10):
        assert login(client, user.email, "wrong password!").status_code == 401
        clock.advance(seconds=1)
    api = login(client, user.email)
    assert api.status_code == 429
    assert api.json()["error"]["code"] == "too_many_attempts"
    page = client.post(
        "/login", data={"email": user.email, "password": PASSWORD}, follow_redirects=False
    )
    assert page.status_code == 429
    wait = int(api.headers["Retry-After"])
    assert int(page.headers["Retry-After"]) == wait
    assert wait == 300 - 10  # the first failure was 10 s ago
    clock.advance(seconds=wait - 1)
    assert login(client, user.email).status_code == 429
    clock.advance(seconds=1)
    assert login(client, user.email).status_code == 200


def test_sign_in_is_limited_per_address(settings, db, clock):
    """Failures from one address (over many e-mails) up to the address limit within 5
    minutes: that address gets 429 with Retry-After, even for an account it never
    tried. (The default of 50 is checked in tests/functional/test_auth.py; 5 here keeps
    the test quick, each failure costing an argon2 verification.)"""
    app = create_app(
        dataclasses.replace(settings, login_max_failures_per_address=5), db=db, clock=clock
    )
    user = make_user(db, clock)
    client = anonymous(app)
    for n in range(5):
        assert login(client, f"guess{n}@example.com", "wrong password!").status_code == 401
    response = login(client, user.email)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "too_many_attempts"
    # Nothing moved the clock: the first failure leaves the window in exactly 300 s.
    assert response.headers["Retry-After"] == "300"


def test_password_change_from_the_settings_page(app, db, clock):
    """The no-JavaScript form does the same: a wrong current password shows the page
    with the message (422) and changes nothing; the right one ends every other session
    and comes back to the profile with a notice."""
    user = make_user(db, clock)
    here, other = Browser(app, user.email), Browser(app, user.email)

    def post(current: str) -> Any:
        fields = {"current_password": current, "new_password": NEW_PASSWORD}
        return here.client.post(
            "/settings/password", data={**fields, "csrf_token": here.csrf}, follow_redirects=False
        )

    wrong = post("not it at all")
    assert wrong.status_code == 422
    assert "The current password is wrong." in wrong.text
    assert other.get("/api/auth/me").status_code == 200
    before = here.client.cookies["af_session"]
    done = post(PASSWORD)
    assert done.status_code == 303
    assert not is_live(app, before)
    assert is_live(app, value_of(cookie_of(done)))
    assert done.headers["location"] == "/settings/profile?saved=password"
    assert "every other browser was signed out" in here.get(done.headers["location"]).text
    assert other.get("/api/auth/me").status_code == 401
    assert login(anonymous(app), user.email, NEW_PASSWORD).status_code == 200
