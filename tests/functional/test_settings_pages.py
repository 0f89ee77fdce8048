"""The Settings pages work without JavaScript: profile form, API keys (create, list,
revoke), and Undo from the activity page, each a plain form with its CSRF token."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from activityfeed.domain.workspaces import Role
from tests.factories import PASSWORD, Browser, event_body, ingest, make_team, make_user
from tests.functional.feed_helpers import assert_error


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "the page carries its CSRF token in forms"
    return match.group(1)


@pytest.fixture
def signed_in(app, db, clock) -> tuple[Any, TestClient]:
    user = make_user(db, clock, name="Bob")
    browser = TestClient(app, base_url="http://testserver")
    signed = browser.post(
        "/login", data={"email": user.email, "password": PASSWORD}, follow_redirects=False
    )
    assert signed.status_code == 303
    return user, browser


def profile_form(token: str, **fields: str) -> dict[str, str]:
    form = {
        "csrf_token": token,
        "name": "Bob",
        "bio": "",
        "company": "",
        "timezone": "UTC",
        "training_failures": "on",
        "email_digest": "off",
    }
    form.update(fields)
    return {k: v for k, v in form.items() if v is not None}


@pytest.mark.parametrize("path", ["/settings/profile", "/settings/api-keys"])
def test_settings_pages_redirect_to_sign_in(client, path):
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")


def test_profile_page_shows_the_profile_and_the_export_link(signed_in):
    _, browser = signed_in
    page = browser.get("/settings/profile")
    assert page.status_code == 200
    assert "<title>Profile · Activity Feed</title>" in page.text
    assert 'value="Bob"' in page.text
    assert 'href="/api/settings/profile/export"' in page.text
    assert "Export my data" in page.text
    for link in ("/activity", "/settings/profile", "/settings/api-keys", "/projects"):
        assert f'href="{link}"' in page.text
    assert '<option value="Europe/Paris">' in page.text
    assert browser.get("/settings", follow_redirects=False).headers["location"] == (
        "/settings/profile"
    )


def test_profile_form_saves_and_records_the_event(app, db, clock, signed_in):
    user, browser = signed_in
    token = _csrf(browser.get("/settings/profile").text)
    saved = browser.post(
        "/settings/profile",
        data=profile_form(
            token,
            name="Bobby",
            company="Acme",
            timezone="America/New_York",
            training_failures=None,  # unticked
            weekly_digest="on",
            email_digest="weekly",
        ),
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"] == "/settings/profile?saved=1"
    page = browser.get(saved.headers["location"])
    assert "Profile saved." in page.text
    assert 'value="America/New_York"' in page.text

    api = Browser(app, user.email)
    profile = api.get("/api/settings/profile").json()["profile"]
    assert profile["name"] == "Bobby"
    assert profile["company"] == "Acme"
    assert profile["notifications"] == {
        "trainingFailures": False,
        "weeklyDigest": True,
        "emailDigest": "weekly",
    }
    (event,) = api.activity(resourceType="settings")["events"]
    assert set(event["metadata"]["changes"]) == {
        "name",
        "company",
        "timezone",
        "notifications.trainingFailures",
        "notifications.weeklyDigest",
        "notifications.emailDigest",
    }

    # The same form again changes nothing and records nothing.
    again = browser.post(
        "/settings/profile",
        data=profile_form(
            token,
            name="Bobby",
            company="Acme",
            timezone="America/New_York",
            training_failures=None,
            weekly_digest="on",
            email_digest="weekly",
        ),
        follow_redirects=False,
    )
    assert again.headers["location"] == "/settings/profile?saved=0"
    assert len(api.activity(resourceType="settings")["events"]) == 1


def test_profile_form_shows_what_is_wrong(app, signed_in):
    user, browser = signed_in
    token = _csrf(browser.get("/settings/profile").text)
    refused = browser.post(
        "/settings/profile", data=profile_form(token, timezone="Moon/Base", bio="kept")
    )
    assert refused.status_code == 422
    assert "timezone" in refused.text
    assert 'aria-invalid="true"' in refused.text
    # What the person typed is still in the form.
    assert "kept" in refused.text
    assert Browser(app, user.email).get("/api/settings/profile").json()["profile"]["bio"] == ""


def test_profile_form_needs_the_csrf_token(app, signed_in):
    user, browser = signed_in
    refused = browser.post("/settings/profile", data={"name": "Mallory"})
    assert_error(refused, 403, "csrf_failed")
    assert Browser(app, user.email).get("/api/settings/profile").json()["profile"]["name"] == "Bob"


def test_api_keys_create_list_and_revoke_without_javascript(app, client, signed_in):
    user, browser = signed_in
    page = browser.get("/settings/api-keys")
    assert page.status_code == 200
    assert "<title>API keys · Activity Feed</title>" in page.text
    assert "No keys yet." in page.text
    token = _csrf(page.text)

    created = browser.post(
        "/settings/api-keys", data={"csrf_token": token, "name": "Runner", "scopes": "events:write"}
    )
    assert created.status_code == 200, created.text
    assert created.headers["cache-control"] == "no-store"
    secret = html.unescape(re.search(r'id="secret"[^>]*value="([^"]+)"', created.text).group(1))
    assert secret.startswith("afk_")
    assert "shown only this once" in created.text
    assert 'data-copy="#secret"' in created.text
    assert "/static/settings.js" in created.text
    assert ingest(client, secret, event_body()).status_code == 201

    listed = browser.get("/settings/api-keys")
    assert secret not in listed.text
    assert "Runner" in listed.text
    assert secret[:12] in listed.text  # the prefix
    assert "events:write" in listed.text
    assert "Active" in listed.text
    key_id = re.search(r'action="/settings/api-keys/([^/"]+)/revoke"', listed.text).group(1)

    api = Browser(app, user.email)
    (key,) = api.get("/api/api-keys").json()["apiKeys"]
    assert key["id"] == key_id
    assert key["lastUsedAt"] is not None

    revoked = browser.post(
        f"/settings/api-keys/{key_id}/revoke", data={"csrf_token": token}, follow_redirects=False
    )
    assert revoked.status_code == 303
    page = browser.get(revoked.headers["location"])
    assert "Revoked" in page.text
    assert "was revoked" in page.text
    assert f"/settings/api-keys/{key_id}/revoke" not in page.text
    assert ingest(client, secret, event_body(2)).status_code == 401
    actions = sorted(e["action"] for e in api.activity(resourceType="api_key")["events"])
    assert actions == ["created", "deleted"]


def test_api_key_forms_need_the_csrf_token_and_valid_input(app, db, clock, signed_in):
    user, browser = signed_in
    token = _csrf(browser.get("/settings/api-keys").text)
    refused = browser.post("/settings/api-keys", data={"name": "Sneaky"})
    assert_error(refused, 403, "csrf_failed")
    bad = browser.post("/settings/api-keys", data={"csrf_token": token, "name": "  "})
    assert bad.status_code == 422
    assert "name" in bad.text
    bad_scope = browser.post(
        "/settings/api-keys", data={"csrf_token": token, "name": "x", "scopes": "admin"}
    )
    assert bad_scope.status_code == 422
    api = Browser(app, user.email)
    assert api.get("/api/api-keys").json()["apiKeys"] == []

    # Someone else's key looks like no key; revoking needs the token too.
    other = Browser(app, make_user(db, clock).email)
    other_key = other.post("/api/api-keys", json={"name": "theirs"}).json()["apiKey"]["id"]
    missing = browser.post(f"/settings/api-keys/{other_key}/revoke", data={"csrf_token": token})
    assert missing.status_code == 404
    assert other.get("/api/api-keys").json()["apiKeys"][0]["revokedAt"] is None
    mine = api.post("/api/api-keys", json={"name": "mine"}).json()["apiKey"]["id"]
    assert_error(browser.post(f"/settings/api-keys/{mine}/revoke"), 403, "csrf_failed")
    assert api.get("/api/api-keys").json()["apiKeys"][0]["revokedAt"] is None


def test_undo_form_reverts_and_returns_to_the_page(app, clock, signed_in):
    user, browser = signed_in
    api = Browser(app, user.email)
    event_id = api.patch("/api/settings/profile", json={"bio": "oops"}).json()["event"]["id"]
    token = _csrf(browser.get("/settings/profile").text)
    done = browser.post(
        "/activity/undo",
        data={"csrf_token": token, "event_id": event_id, "return_to": "/activity?page=1"},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/activity?page=1"
    assert api.get("/api/settings/profile").json()["profile"]["bio"] == ""

    again = browser.post(
        "/activity/undo",
        data={"csrf_token": token, "event_id": event_id, "return_to": "//evil.test/"},
    )
    assert again.status_code == 409
    assert "already been undone" in again.text
    assert 'href="/activity"' in again.text  # never back to another site

    refused = browser.post("/activity/undo", data={"event_id": event_id})
    assert_error(refused, 403, "csrf_failed")


def test_undo_form_says_why_it_could_not(app, clock, signed_in):
    user, browser = signed_in
    api = Browser(app, user.email)
    event_id = api.patch("/api/settings/profile", json={"bio": "oops"}).json()["event"]["id"]
    token = _csrf(browser.get("/settings/profile").text)
    clock.advance(hours=2)
    expired = browser.post("/activity/undo", data={"csrf_token": token, "event_id": event_id})
    assert expired.status_code == 409
    assert "too old" in expired.text
    unknown = browser.post("/activity/undo", data={"csrf_token": token, "event_id": "nope"})
    assert unknown.status_code == 404
    assert api.get("/api/settings/profile").json()["profile"]["bio"] == "oops"


def test_revoke_buttons_only_for_keys_one_may_revoke(app, db, clock):
    """A member sees a Revoke button for their own key, not for another member's (the
    route would answer as for an unknown key); an owner sees both."""
    owner, alice, bob = (make_user(db, clock) for _ in range(3))
    team = make_team(db, clock, owner, [(alice, Role.MEMBER), (bob, Role.MEMBER)])
    browsers = {u: Browser(app, u.email) for u in (owner, alice, bob)}
    for b in browsers.values():
        b.switch(team.slug)
    mine = browsers[alice].post("/api/api-keys", json={"name": "alice key"}).json()["apiKey"]
    theirs = browsers[bob].post("/api/api-keys", json={"name": "bob key"}).json()["apiKey"]
    page = browsers[alice].get("/settings/api-keys").text
    assert f"/settings/api-keys/{mine['id']}/revoke" in page
    assert f"/settings/api-keys/{theirs['id']}/revoke" not in page
    assert "bob key" in page
    owner_page = browsers[owner].get("/settings/api-keys").text
    assert f"/settings/api-keys/{mine['id']}/revoke" in owner_page
    assert f"/settings/api-keys/{theirs['id']}/revoke" in owner_page
