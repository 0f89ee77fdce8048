"""Accounts, sessions and CSRF through HTTP: PRODUCT.md "Accounts and sessions"."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from activityfeed.errors import Conflict
from activityfeed.services import accounts
from activityfeed.web import create_app
from tests.factories import (
    PASSWORD,
    Browser,
    event_body,
    ingest,
    make_key,
    make_team,
    make_user,
)

LOGIN = "/api/auth/login"


def login(client: TestClient, email: str, password: str = PASSWORD, **kw: Any) -> Any:
    return client.post(LOGIN, json={"email": email, "password": password}, **kw)


def set_cookie_headers(response: Any) -> list[str]:
    return response.headers.get_list("set-cookie")


def session_cookie(response: Any, name: str = "af_session") -> str:
    """The attributes of the session cookie that ``response`` sets, as one header line."""
    lines = [h for h in set_cookie_headers(response) if h.startswith(f"{name}=")]
    assert len(lines) == 1, set_cookie_headers(response)
    return lines[0]


def cookie_value(line: str) -> str:
    return line.split(";", 1)[0].split("=", 1)[1]


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    return dict(body["error"])


@pytest.fixture
def fresh(app) -> Iterator[TestClient]:
    """A second, cookie-less client of the same app."""
    with TestClient(app, base_url="http://testserver") as c:
        yield c


# ---- login ------------------------------------------------------------------------------


def test_login_answers_user_workspace_and_csrf_token(app, client, db, clock):
    """Login → 200 with the user, their personal workspace and a CSRF token."""
    user = make_user(db, clock, email="ada@example.com", name="Ada")
    response = login(client, "ada@example.com")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"user", "workspace", "csrfToken"}
    assert body["user"]["id"] == user.id
    assert body["user"]["email"] == "ada@example.com"
    assert body["user"]["name"] == "Ada"
    assert "passwordHash" not in body["user"]
    assert "password_hash" not in body["user"]
    assert body["workspace"]["isPersonal"] is True
    assert body["workspace"]["slug"]
    assert isinstance(body["csrfToken"], str)
    assert len(body["csrfToken"]) >= 32


def test_login_email_is_case_and_space_insensitive(client, db, clock):
    """The e-mail is matched lower-cased and trimmed, as it was stored."""
    make_user(db, clock, email="grace@example.com")
    assert login(client, "  Grace@Example.COM ").status_code == 200


def test_session_cookie_is_httponly_and_samesite_lax(client, db, clock):
    """The cookie is HttpOnly, SameSite=Lax, Path=/, not Secure over plain HTTP."""
    user = make_user(db, clock)
    line = session_cookie(login(client, user.email)).lower()
    assert "httponly" in line
    assert "samesite=lax" in line
    assert "path=/" in line
    assert "secure" not in line.replace("samesite", "")


def test_secure_cookie_when_configured(settings, db, clock):
    """With cookie_secure the cookie is Secure and named __Host-af_session (no Domain)."""
    user = make_user(db, clock)
    app = create_app(dataclasses.replace(settings, cookie_secure=True), db=db, clock=clock)
    with TestClient(app, base_url="https://testserver") as c:
        response = login(c, user.email)
        assert response.status_code == 200, response.text
        line = session_cookie(response, "__Host-af_session")
        lowered = line.lower()
        assert "; secure" in lowered
        assert "httponly" in lowered
        assert "samesite=lax" in lowered
        assert "path=/" in lowered
        assert "domain=" not in lowered
        assert not any(h.startswith("af_session=") for h in set_cookie_headers(response))
        # The secure cookie carries the session.
        assert c.get("/api/workspaces").status_code == 200


def test_secure_cookie_behind_https_even_when_not_configured(app, db, clock):
    """A request over HTTPS gets the Secure __Host- cookie without configuration."""
    user = make_user(db, clock)
    with TestClient(app, base_url="https://testserver") as c:
        response = login(c, user.email)
        assert response.status_code == 200
        assert "; secure" in session_cookie(response, "__Host-af_session").lower()


@pytest.mark.parametrize(
    ("email", "password"),
    [("known@example.com", "wrong password!"), ("nobody@example.com", PASSWORD)],
    ids=["wrong-password", "unknown-email"],
)
def test_wrong_credentials_are_401_invalid_credentials(client, db, clock, email, password):
    """Wrong password and unknown e-mail give the same 401 and set no cookie."""
    make_user(db, clock, email="known@example.com")
    response = login(client, email, password)
    assert_error(response, 401, "invalid_credentials")
    assert not set_cookie_headers(response)
    assert client.get("/api/workspaces").status_code == 401


def test_wrong_password_and_unknown_email_are_indistinguishable(client, db, clock):
    """The two failures are byte-identical, so the answer does not reveal accounts."""
    make_user(db, clock, email="known@example.com")
    wrong = login(client, "known@example.com", "wrong password!")
    unknown = login(client, "nobody@example.com", "wrong password!")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.content == unknown.content


def test_every_login_gets_a_new_session_id(app, client, db, clock):
    """A new session id (and CSRF token) at every login, even from a signed-in browser."""
    user = make_user(db, clock)
    first = login(client, user.email)
    second = login(client, user.email)
    assert cookie_value(session_cookie(first)) != cookie_value(session_cookie(second))
    assert first.json()["csrfToken"] != second.json()["csrfToken"]


def test_signing_in_again_ends_the_browsers_previous_session(app, client, db, clock):
    """The browser forgets its old session id at a new sign-in, so the server ends it;
    a failed sign-in leaves the current session alone."""
    user = make_user(db, clock)
    old = cookie_value(session_cookie(login(client, user.email)))
    assert login(client, user.email, "wrong password!").status_code == 401
    assert client.get("/api/workspaces").status_code == 200
    assert client.cookies.get("af_session") == old
    new = cookie_value(session_cookie(login(client, user.email)))
    assert new != old
    assert client.get("/api/workspaces").status_code == 200
    with TestClient(app, base_url="http://testserver") as copy:
        copy.cookies.set("af_session", old)
        assert_error(copy.get("/api/workspaces"), 401, "not_authenticated")


def test_planted_session_id_is_not_adopted(client, db, clock):
    """A cookie value planted before login is replaced, never turned into a session."""
    user = make_user(db, clock)
    client.cookies.set("af_session", "planted-by-attacker")
    response = login(client, user.email)
    assert cookie_value(session_cookie(response)) != "planted-by-attacker"
    with TestClient(client.app, base_url="http://testserver") as other:
        other.cookies.set("af_session", "planted-by-attacker")
        assert_error(other.get("/api/workspaces"), 401, "not_authenticated")


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b"{not json", "body"),
        (b'{"email": "a@example.com"}', "password"),
        (b'{"password": "12345678"}', "email"),
        (b"{}", "email"),
        (b'{"email": "a@example.com", "password": "12345678", "remember": true}', "remember"),
        (b'{"email": 42, "password": "12345678"}', "email"),
        (b'{"email": "a@example.com", "password": null}', "password"),
        (b"[]", "body"),
        (b'"a string"', "body"),
    ],
    ids=[
        "malformed",
        "no-password",
        "no-email",
        "empty",
        "unknown-field",
        "email-not-string",
        "password-null",
        "array",
        "string",
    ],
)
def test_bad_login_bodies_are_422_naming_the_field(client, db, clock, content, field):
    """Malformed JSON, missing, mistyped and unknown fields → 422 invalid_request."""
    response = client.post(LOGIN, content=content, headers={"Content-Type": "application/json"})
    error = assert_error(response, 422, "invalid_request")
    assert error["field"] == field
    assert field in error["message"] or field == "body"


@pytest.mark.parametrize(
    "content",
    [
        b'{"email": "a\\u0000@example.com", "password": "12345678"}',
        b'{"email": "a@example.com", "password": "\\u0000 password"}',
    ],
    ids=["nul-email", "nul-password"],
)
def test_nul_characters_are_a_plain_failed_login(client, db, clock, content):
    """Text PostgreSQL cannot hold (NUL) is a failed sign-in, never a 500, and it is
    counted like any other failure."""
    make_user(db, clock, email="a@example.com")
    headers = {"Content-Type": "application/json"}
    for _ in range(10):
        response = client.post(LOGIN, content=content, headers=headers)
        assert_error(response, 401, "invalid_credentials")
    assert_error(client.post(LOGIN, content=content, headers=headers), 429, "too_many_attempts")


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b'{"email": "\\ud800@example.com", "password": "12345678"}', "email"),
        (b'{"email": "a@example.com", "password": "\\udfff pass"}', "password"),
    ],
    ids=["email", "password"],
)
def test_lone_surrogates_are_422(client, db, clock, content, field):
    """A lone UTF-16 surrogate is not text: 422 naming the field, never a 500."""
    make_user(db, clock, email="a@example.com")
    response = client.post(LOGIN, content=content, headers={"Content-Type": "application/json"})
    assert assert_error(response, 422, "invalid_request")["field"] == field


def test_oversized_login_fields_are_422(client):
    """An e-mail over 320 or a password over 1024 characters is refused before hashing."""
    response = login(client, "a" * 400 + "@example.com")
    assert assert_error(response, 422, "invalid_request")["field"] == "email"
    response = login(client, "a@example.com", "p" * 2000)
    assert assert_error(response, 422, "invalid_request")["field"] == "password"


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}],
    ids=["evil-origin", "null-origin", "fetch-site"],
)
def test_login_from_another_site_is_refused(client, db, clock, headers):
    """Login CSRF: a cross-site page cannot sign the browser in to the attacker's account."""
    user = make_user(db, clock)
    response = login(client, user.email, headers=headers)
    assert_error(response, 403, "csrf_failed")
    assert not set_cookie_headers(response)


def test_oversized_body_is_413(settings, db, clock):
    """A body over max_body_bytes → 413 payload_too_large, declared or streamed."""
    app = create_app(dataclasses.replace(settings, max_body_bytes=1000), db=db, clock=clock)
    with TestClient(app, base_url="http://testserver") as c:
        big = b'{"email": "a@example.com", "password": "' + b"p" * 2000 + b'"}'
        response = c.post(LOGIN, content=big, headers={"Content-Type": "application/json"})
        assert_error(response, 413, "payload_too_large")

        def chunks() -> Iterator[bytes]:
            yield big[:600]
            yield big[600:]

        streamed = c.post(LOGIN, content=chunks(), headers={"Content-Type": "application/json"})
        assert_error(streamed, 413, "payload_too_large")
        # A route that reads the body itself (ingestion) answers the same.
        secret = make_key(db, clock, make_user(db, clock))
        streamed = c.post(
            "/api/events",
            content=chunks(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {secret}"},
        )
        assert_error(streamed, 413, "payload_too_large")


def test_api_answers_carry_security_headers(client, db, clock):
    """API answers are never cached and carry the usual hardening headers."""
    user = make_user(db, clock)
    for response in (login(client, user.email), client.get("/api/workspaces")):
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


# ---- login rate limit -------------------------------------------------------------------


def test_more_than_ten_failures_for_one_account_lock_it(app, client, db, clock, settings):
    """After 10 failures within 5 minutes the account answers 429 with Retry-After, even
    to the right password; other accounts are untouched; after the window it works."""
    assert settings.login_max_failures_per_account == 10
    assert settings.login_window_seconds == 300
    victim = make_user(db, clock)
    bystander = make_user(db, clock)
    for _ in range(10):
        assert_error(login(client, victim.email, "wrong password!"), 401, "invalid_credentials")
        clock.advance(seconds=5)
    response = login(client, victim.email, "wrong password!")
    assert_error(response, 429, "too_many_attempts")
    retry_after = int(response.headers["Retry-After"])
    # The first failure was 50 s ago; the window is 300 s.
    assert 240 <= retry_after <= 300
    assert not set_cookie_headers(response)

    # The right password is refused too while the account is locked.
    locked = login(client, victim.email)
    assert_error(locked, 429, "too_many_attempts")
    assert "Retry-After" in locked.headers
    assert not set_cookie_headers(locked)
    # The e-mail is matched however it is written.
    assert_error(login(client, victim.email.upper()), 429, "too_many_attempts")

    # Another account from the same address is not locked.
    assert login(client, bystander.email).status_code == 200

    clock.advance(seconds=retry_after)
    assert login(client, victim.email).status_code == 200


def test_lockout_does_not_extend_itself(client, db, clock):
    """Attempts refused with 429 are not counted, so the lock ends when the window does."""
    user = make_user(db, clock)
    for _ in range(10):
        login(client, user.email, "wrong password!")
    first = login(client, user.email, "wrong password!")
    assert first.status_code == 429
    for _ in range(5):
        clock.advance(seconds=30)
        assert login(client, user.email, "wrong password!").status_code == 429
    clock.advance(seconds=151)
    assert login(client, user.email).status_code == 200


def test_failures_for_an_unknown_email_are_limited_too(client, db, clock):
    """Guessing at an address that has no account is throttled the same way."""
    for _ in range(10):
        assert login(client, "ghost@example.com", "wrong password!").status_code == 401
    assert_error(login(client, "ghost@example.com", "x" * 8), 429, "too_many_attempts")


def test_a_successful_login_resets_the_account_count(client, db, clock):
    """Failures before a successful sign-in no longer count against the account."""
    user = make_user(db, clock)
    for _ in range(9):
        login(client, user.email, "wrong password!")
    assert login(client, user.email).status_code == 200
    for _ in range(9):
        assert login(client, user.email, "wrong password!").status_code == 401
    assert login(client, user.email).status_code == 200


def test_the_owners_sign_in_does_not_reset_a_guessers_count(app, db, clock):
    """Failures from another address still count after the owner signs in."""
    victim = make_user(db, clock)
    with (
        TestClient(app, base_url="http://testserver", client=("203.0.113.66", 4000)) as guesser,
        TestClient(app, base_url="http://testserver", client=("198.51.100.7", 4000)) as owner,
    ):
        for _ in range(8):
            assert login(guesser, victim.email, "wrong password!").status_code == 401
        assert login(owner, victim.email, "typo password").status_code == 401
        # The owner's success clears the owner's typo, not the guesser's eight.
        assert login(owner, victim.email).status_code == 200
        for _ in range(2):
            assert login(guesser, victim.email, "wrong password!").status_code == 401
        assert_error(login(guesser, victim.email, "wrong password!"), 429, "too_many_attempts")


def test_failures_from_one_address_lock_the_address(settings, db, clock):
    """More than the per-address limit of failures (50 by default; 6 here to stay fast)
    from one address → 429 for every account from there, until the window passes."""
    assert settings.login_max_failures_per_address == 50
    limited = dataclasses.replace(settings, login_max_failures_per_address=6)
    app = create_app(limited, db=db, clock=clock)
    user = make_user(db, clock)
    with TestClient(app, base_url="http://testserver") as c:
        for i in range(6):
            # Different accounts each time, so the per-account limit is never reached.
            assert login(c, f"spray{i}@example.com", "wrong password!").status_code == 401
            clock.advance(seconds=1)
        response = login(c, user.email)
        assert_error(response, 429, "too_many_attempts")
        assert 290 <= int(response.headers["Retry-After"]) <= 300
        clock.advance(seconds=300)
        assert login(c, user.email).status_code == 200


def test_default_address_limit_is_fifty(client, db, clock):
    """With the default settings, 50 failures from one address lock it; 49 do not."""
    user = make_user(db, clock)
    for i in range(49):
        login(client, f"spray{i % 10}-{i}@example.com", "wrong password!")
    assert login(client, user.email).status_code == 200
    # The success above cleared only that account's failures, not the address's.
    login(client, "spray-last@example.com", "wrong password!")
    assert_error(login(client, user.email), 429, "too_many_attempts")


# ---- logout and lifetimes ---------------------------------------------------------------


def test_logout_ends_only_that_session_at_once(app, db, clock):
    """Logout kills this session on the server (the old cookie is dead); another session
    of the same user keeps working."""
    user = make_user(db, clock)
    laptop = Browser(app, user.email)
    phone = Browser(app, user.email)
    stolen = laptop.client.cookies.get("af_session")
    assert stolen

    response = laptop.post("/api/auth/logout")
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    # The browser is told to forget the cookie ...
    assert any(
        h.startswith("af_session=") and ("max-age=0" in h.lower() or "expires=" in h.lower())
        for h in set_cookie_headers(response)
    )
    assert_error(laptop.get("/api/workspaces"), 401, "not_authenticated")
    # ... and a copy of it kept elsewhere is dead on the server, at once.
    with TestClient(app, base_url="http://testserver") as thief:
        thief.cookies.set("af_session", stolen)
        assert_error(thief.get("/api/workspaces"), 401, "not_authenticated")
        assert_error(thief.get("/api/activity"), 401, "not_authenticated")
        assert_error(
            thief.post("/api/auth/logout", headers={"X-CSRF-Token": laptop.csrf}),
            401,
            "not_authenticated",
        )

    assert phone.get("/api/workspaces").status_code == 200
    assert phone.activity()["total"] >= 0


def test_logout_without_session_is_401(client):
    assert_error(client.post("/api/auth/logout"), 401, "not_authenticated")


def test_logout_needs_the_csrf_token(app, db, clock):
    """A cross-site page cannot sign the user out."""
    user = make_user(db, clock)
    browser = Browser(app, user.email)
    assert_error(browser.client.post("/api/auth/logout"), 403, "csrf_failed")
    assert browser.get("/api/workspaces").status_code == 200


def test_session_dies_after_idle_timeout(app, db, clock, settings):
    """Activity keeps the session alive; a gap longer than the idle timeout ends it."""
    user = make_user(db, clock)
    browser = Browser(app, user.email)
    idle = settings.session_idle_seconds
    for _ in range(3):
        clock.advance(seconds=idle - 60)
        assert browser.get("/api/workspaces").status_code == 200
    clock.advance(seconds=idle + 1)
    assert_error(browser.get("/api/workspaces"), 401, "not_authenticated")
    # It stays dead: a later request does not revive it.
    assert_error(browser.get("/api/workspaces"), 401, "not_authenticated")


def test_session_dies_at_absolute_lifetime_even_when_busy(settings, db, clock):
    """However active, a session ends at its absolute lifetime."""
    short = dataclasses.replace(settings, session_idle_seconds=600, session_absolute_seconds=3000)
    app = create_app(short, db=db, clock=clock)
    user = make_user(db, clock)
    browser = Browser(app, user.email)
    for _ in range(5):
        clock.advance(seconds=590)
        assert browser.get("/api/workspaces").status_code == 200  # 2950 s
    clock.advance(seconds=50)  # 3000 s
    assert_error(browser.get("/api/workspaces"), 401, "not_authenticated")


def test_default_absolute_lifetime(app, db, clock, settings):
    """With the default settings, a session used every few hours still ends on time."""
    user = make_user(db, clock)
    browser = Browser(app, user.email)
    step = settings.session_idle_seconds - 60
    elapsed = 0
    while elapsed + step < settings.session_absolute_seconds:
        clock.advance(seconds=step)
        elapsed += step
        assert browser.get("/api/auth/me").status_code == 200
    clock.advance(seconds=settings.session_absolute_seconds - elapsed)
    assert_error(browser.get("/api/auth/me"), 401, "not_authenticated")


def test_me_returns_user_workspace_and_token(app, db, clock):
    user = make_user(db, clock)
    browser = Browser(app, user.email)
    body = browser.get("/api/auth/me").json()
    assert body["user"]["id"] == user.id
    assert body["workspace"]["id"] == browser.login["workspace"]["id"]
    assert body["csrfToken"] == browser.csrf


# ---- CSRF -------------------------------------------------------------------------------


@pytest.fixture
def signed_in(app, db, clock) -> dict[str, Any]:
    """A team owner signed in, with an event to act on and a key to revoke."""
    owner = make_user(db, clock)
    team = make_team(db, clock, owner)
    secret = make_key(db, clock, owner, team)
    event_id = ingest(TestClient(app), secret, event_body()).json()["event"]["id"]
    browser = Browser(app, owner.email)
    browser.switch(team.slug)
    key_id = browser.get("/api/api-keys").json()["apiKeys"][0]["id"]
    return {"browser": browser, "team": team, "event_id": event_id, "key_id": key_id}


def api_routes(app: Any) -> Iterator[tuple[str, str, list[str]]]:
    """(method, path, names of the dependencies) of every JSON API route of ``app``."""

    def calls(dependant: Any) -> Iterator[str]:
        for sub in dependant.dependencies:
            yield getattr(sub.call, "__name__", "")
            yield from calls(sub)

    def walk(routes: Any, prefix: str) -> Iterator[tuple[str, str, list[str]]]:
        for route in routes:
            if isinstance(route, APIRoute):
                for method in sorted(route.methods):
                    yield method, prefix + route.path, list(calls(route.dependant))
            elif hasattr(route, "original_router"):  # FastAPI's included routers
                yield from walk(route.original_router.routes, prefix + route.include_context.prefix)
            elif hasattr(route, "routes") and not hasattr(route, "app"):
                yield from walk(route.routes, prefix + getattr(route, "path", ""))

    return (r for r in walk(app.routes, "") if r[1].startswith("/api/"))


def _has_undo_route(app: Any) -> bool:
    return any(
        method == "POST" and path.startswith("/api/activity/{") and path.endswith("}/undo")
        for method, path, _ in api_routes(app)
    )


def state_changing_requests(s: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(method, url, json) for every state-changing route a session can call."""
    team = s["team"].slug
    app = s["browser"].client.app
    # Undo is built by another issue; it is checked here as soon as it exists.
    undo = [("POST", f"/api/activity/{s['event_id']}/undo", None)] if _has_undo_route(app) else []
    return [
        *undo,
        ("POST", "/api/activity/mark-seen", {"eventIds": [s["event_id"]]}),
        ("POST", "/api/activity/archive", {"eventIds": [s["event_id"]], "archive": True}),
        ("POST", "/api/activity/mark-seen", {"all": True}),
        ("POST", "/api/activity/archive", {"all": True, "archive": True}),
        ("POST", "/api/workspaces", {"name": "Another team"}),
        ("POST", f"/api/workspaces/{team}/members", {"email": "x@example.com", "role": "member"}),
        ("POST", f"/api/workspaces/{team}/switch", None),
        ("POST", "/api/api-keys", {"name": "ci"}),
        ("DELETE", f"/api/api-keys/{s['key_id']}", None),
        ("POST", "/api/auth/logout", None),
    ]


def _send(client: TestClient, method: str, url: str, body: Any, headers: dict[str, str]) -> Any:
    return client.request(method, url, json=body, headers=headers)


def _assert_nothing_changed(s: dict[str, Any]) -> None:
    browser: Browser = s["browser"]
    feed = browser.activity()
    assert s["event_id"] in [e["id"] for e in feed["events"]]
    assert feed["unseenCount"] == feed["total"] == 2
    assert [w["slug"] for w in browser.get("/api/workspaces").json()["workspaces"]][1:] == [
        s["team"].slug
    ]
    keys = browser.get("/api/api-keys").json()["apiKeys"]
    assert [k["revokedAt"] for k in keys] == [None]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-CSRF-Token": ""},
        {"X-CSRF-Token": "wrong-token"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://testserver.evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
    ids=["none", "empty", "wrong", "evil-origin", "null-origin", "lookalike", "fetch-site"],
)
def test_state_changing_requests_need_csrf(signed_in, headers):
    """Every state-changing session route refuses a missing or wrong token, and a
    cross-site Origin or Sec-Fetch-Site even with the right token: 403 csrf_failed,
    and nothing changes."""
    browser: Browser = signed_in["browser"]
    if "X-CSRF-Token" not in headers and set(headers) != set():
        headers = {"X-CSRF-Token": browser.csrf, **headers}
    for method, url, body in state_changing_requests(signed_in):
        response = _send(browser.client, method, url, body, headers)
        assert response.status_code == 403, (method, url, response.text)
        assert response.json()["error"]["code"] == "csrf_failed", (method, url)
    _assert_nothing_changed(signed_in)


def test_same_origin_requests_with_the_token_pass(signed_in):
    """The page's own requests (same Origin, same-origin fetch) go through."""
    browser: Browser = signed_in["browser"]
    response = browser.post(
        "/api/activity/mark-seen",
        json={"eventIds": [signed_in["event_id"]]},
        headers={"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
    )
    assert response.status_code == 200, response.text
    response = browser.post(
        "/api/workspaces", json={"name": "Ops"}, headers={"Sec-Fetch-Site": "none"}
    )
    assert response.status_code == 201, response.text


def test_another_sessions_token_does_not_pass(app, signed_in, db, clock):
    """A CSRF token is bound to its session: another user's token is wrong here."""
    other = Browser(app, make_user(db, clock).email)
    browser: Browser = signed_in["browser"]
    response = browser.client.post(
        "/api/activity/mark-seen", json={"all": True}, headers={"X-CSRF-Token": other.csrf}
    )
    assert_error(response, 403, "csrf_failed")


def test_trusted_origin_is_allowed(settings, db, clock):
    """An origin listed in trusted_origins may send state-changing requests."""
    trusted = dataclasses.replace(settings, trusted_origins=("https://app.example",))
    app = create_app(trusted, db=db, clock=clock)
    browser = Browser(app, make_user(db, clock).email)
    ok = browser.post(
        "/api/workspaces", json={"name": "T"}, headers={"Origin": "https://app.example"}
    )
    assert ok.status_code == 201, ok.text
    bad = browser.post(
        "/api/workspaces", json={"name": "T"}, headers={"Origin": "https://evil.example"}
    )
    assert_error(bad, 403, "csrf_failed")


def test_get_never_needs_the_token(signed_in):
    """Reads go through without the token, whatever the Origin says."""
    browser: Browser = signed_in["browser"]
    for url in ("/api/activity", "/api/workspaces", "/api/api-keys", "/api/auth/me"):
        assert browser.client.get(url).status_code == 200, url
        assert browser.client.get(url, headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200


def test_json_routes_refuse_form_bodies_even_with_the_token(app, db, clock):
    """The JSON API never takes a form: an HTML form on another site could send one
    without a preflight. HTML forms post to the pages' routes (``/logout`` here), which
    take the ``csrf_token`` field."""
    user = make_user(db, clock)
    browser = Browser(app, user.email)
    for data in ({"csrf_token": "nope"}, {"other": "x"}, {"csrf_token": browser.csrf}):
        refused = browser.client.post("/api/auth/logout", data=data)
        assert_error(refused, 403, "csrf_failed")
    assert browser.get("/api/workspaces").status_code == 200
    ok = browser.client.post("/logout", data={"csrf_token": browser.csrf}, follow_redirects=False)
    assert ok.status_code == 303, ok.text
    assert_error(browser.get("/api/workspaces"), 401, "not_authenticated")


@pytest.mark.parametrize(
    ("form", "headers"),
    [
        ({}, {}),
        ({"csrf_token": "wrong"}, {}),
        ({"csrf_token": "<token>"}, {"Origin": "https://evil.example"}),
        ({"csrf_token": "<token>"}, {"Origin": "null"}),
        ({"csrf_token": "<token>"}, {"Sec-Fetch-Site": "cross-site"}),
    ],
    ids=["missing", "wrong", "evil-origin", "null-origin", "fetch-site"],
)
def test_page_forms_need_the_csrf_token_field(app, db, clock, form, headers):
    """The no-JavaScript pages' forms refuse a post without the right csrf_token field or
    from another site, and change nothing."""
    owner = make_user(db, clock)
    team = make_team(db, clock, owner)
    browser = Browser(app, owner.email)
    fields = {k: (browser.csrf if v == "<token>" else v) for k, v in form.items()}
    posts = [
        ("/activity/switch", {"slug": team.slug}),
        ("/activity/archive", {"all": "1", "archive": "1"}),
        ("/logout", {}),
    ]
    for url, data in posts:
        response = browser.client.post(
            url, data={**data, **fields}, headers=headers, follow_redirects=False
        )
        assert_error(response, 403, "csrf_failed")
    assert browser.get("/api/auth/me").json()["workspace"]["isPersonal"] is True
    ok = browser.client.post(
        "/activity/switch",
        data={"slug": team.slug, "csrf_token": browser.csrf},
        follow_redirects=False,
    )
    assert ok.status_code == 303
    assert browser.get("/api/auth/me").json()["workspace"]["slug"] == team.slug


# ---- API keys cannot stand in for a session ---------------------------------------------


def session_routes(
    event_id: str = "e_unknown", key_id: str = "k_unknown"
) -> list[tuple[str, str, Any]]:
    return [
        ("GET", "/api/activity", None),
        ("GET", "/api/activity?export=true", None),
        ("POST", "/api/activity/mark-seen", {"all": True}),
        ("POST", "/api/activity/archive", {"all": True, "archive": True}),
        ("GET", "/api/workspaces", None),
        ("POST", "/api/workspaces", {"name": "x"}),
        ("POST", "/api/workspaces/some-team/members", {"email": "a@example.com"}),
        ("POST", "/api/workspaces/some-team/switch", None),
        ("GET", "/api/api-keys", None),
        ("POST", "/api/api-keys", {"name": "x"}),
        ("DELETE", f"/api/api-keys/{key_id}", None),
    ]


@pytest.mark.parametrize("kind", ["valid", "revoked-format", "garbage", "empty"])
def test_bearer_key_without_session_is_browser_session_required(app, client, db, clock, kind):
    """Session routes answer 401 browser_session_required to a bearer token, whatever it is."""
    user = make_user(db, clock)
    token = {
        "valid": make_key(db, clock, user),
        "revoked-format": "afk_" + "x" * 40,
        "garbage": "not-a-key",
        "empty": "",
    }[kind]
    headers = {"Authorization": f"Bearer {token}"}
    for method, url, body in session_routes():
        response = client.request(method, url, json=body, headers=headers)
        assert_error(response, 401, "browser_session_required")


def test_no_credentials_is_not_authenticated(client):
    """Without cookie or key every session route answers 401 not_authenticated."""
    for method, url, body in session_routes():
        response = client.request(method, url, json=body)
        assert_error(response, 401, "not_authenticated")
    assert_error(client.get("/api/auth/me"), 401, "not_authenticated")


#: The only API routes that are not for a signed-in browser.
NOT_SESSION_ROUTES = {("POST", "/api/auth/login"), ("POST", "/api/events")}


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def test_every_api_route_needs_a_session_and_state_changes_need_csrf(app, db, clock):
    """Walks the route table, so a route added later cannot forget the rule: every API
    route but login and ingestion takes the session (401 without it, 401
    browser_session_required with only a key), and every state-changing one the token."""
    routes = list(api_routes(app))
    # The walk sees the dependencies (the list handler reads the session in its own
    # transaction: ``session_in_handler``, which only a safe method may use).
    assert any(
        (method, path) == ("GET", "/api/activity") and "session_in_handler" in deps
        for method, path, deps in routes
    )
    user = make_user(db, clock)
    browser = Browser(app, user.email)
    with TestClient(app, base_url="http://testserver") as anonymous:
        for method, path, deps in routes:
            if (method, path) in NOT_SESSION_ROUTES:
                continue
            assert "session_auth" in deps or (
                "session_in_handler" in deps and method in ("GET", "HEAD")
            ), (method, path)
            url = _concrete(path)
            assert_error(anonymous.request(method, url), 401, "not_authenticated")
            keyed = anonymous.request(method, url, headers={"Authorization": "Bearer afk_x"})
            assert_error(keyed, 401, "browser_session_required")
            if method not in ("GET", "HEAD", "OPTIONS"):
                refused = browser.client.request(method, url, json={})
                assert_error(refused, 403, "csrf_failed")


def test_other_authorization_schemes_are_not_authenticated(client):
    response = client.get("/api/activity", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_error(response, 401, "not_authenticated")


def test_a_session_with_a_bearer_header_still_works(app, db, clock):
    """A browser that also sends some Authorization header is served by its session."""
    user = make_user(db, clock)
    browser = Browser(app, user.email)
    response = browser.get("/api/activity", headers={"Authorization": "Bearer whatever"})
    assert response.status_code == 200


# ---- creating users (the CLI's service) -------------------------------------------------


def test_create_user_rejects_a_duplicate_email(db, clock):
    """``activityfeed user create`` with a taken e-mail: 409 already_exists, nothing added."""
    make_user(db, clock, email="dup@example.com")
    for email in ("dup@example.com", " DUP@Example.com "):
        with pytest.raises(Conflict) as caught, db.write() as tx:
            accounts.create_user(tx, email=email, name="Dup", password=PASSWORD, now=clock())
        assert caught.value.status == 409
        assert caught.value.code == "already_exists"


def test_cli_user_create_duplicate_email(database_url, db, clock):
    """The command prints the error and exits 1 instead of a traceback."""
    from typer.testing import CliRunner

    from activityfeed.cli.main import app as cli

    runner = CliRunner()
    args = ["user", "create", "--email", "cli@example.com", "--name", "Cli", "--password", PASSWORD]
    first = runner.invoke(cli, [*args, "--database-url", database_url])
    assert first.exit_code == 0, first.output
    second = runner.invoke(cli, [*args, "--database-url", database_url])
    assert second.exit_code == 1
    assert "already_exists" in second.output


def test_new_user_can_sign_in_and_has_a_personal_workspace(app, client, db, clock):
    user = make_user(db, clock, name="Lin")
    body = login(client, user.email).json()
    workspaces = client.get("/api/workspaces").json()["workspaces"]
    assert len(workspaces) == 1
    assert workspaces[0]["isPersonal"] is True
    assert workspaces[0]["id"] == body["workspace"]["id"]
    assert workspaces[0]["role"] == "owner"
