"""The server-rendered pages work without JavaScript: sign in, read, archive, restore."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from activityfeed.domain.events import Action, Actor, EventDraft, ResourceType, Source, SourceKind
from activityfeed.services.events import record_event
from activityfeed.store import accounts as account_store
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


def _signed_in_browser(app, email: str) -> tuple[TestClient, str]:
    browser = TestClient(app, base_url="http://testserver")
    browser.post("/login", data={"email": email, "password": PASSWORD})
    return browser, _csrf(browser.get("/activity").text)


def test_rows_fragment_renders_only_rows_of_the_view(app, client, db, clock):
    """GET /activity/rows gives the page's rows for its filters; with ids, only those
    of them that the view shows (a search or the Archive tab filters the others out)."""
    owner = make_user(db, clock)
    secret = make_key(db, clock, owner)
    made = ingest(client, secret, {"events": [event_body(i) for i in range(3)]}).json()["events"]
    ids = [e["id"] for e in made]
    browser, _ = _signed_in_browser(app, owner.email)

    everything = browser.get("/activity/rows")
    assert everything.status_code == 200
    assert everything.text.count('class="event unseen"') == 4
    assert everything.headers["X-Activity-Total"] == "4"
    assert everything.headers["X-Unseen-Count"] == "4"
    assert "<html" not in everything.text

    two = browser.get("/activity/rows", params={"ids": f"{ids[0]},{ids[2]}"})
    assert re.findall(r'data-id="([^"]+)"', two.text) == [ids[2], ids[0]]
    searched = browser.get("/activity/rows", params={"ids": ",".join(ids), "search": "yolo-run-1"})
    assert re.findall(r'data-id="([^"]+)"', searched.text) == [ids[1]]
    archived = browser.get("/activity/rows", params={"ids": ids[0], "archived": "true"})
    assert 'data-id="' not in archived.text
    # The rows' forms return to the page, not to the fragment.
    assert 'value="/activity?search=yolo-run-1"' in searched.text


def test_rows_fragment_needs_a_session_and_sees_no_foreign_events(app, client, db, clock):
    owner = make_user(db, clock)
    stranger = make_user(db, clock)
    made = ingest(client, make_key(db, clock, owner), event_body(1)).json()["event"]
    anonymous = TestClient(app, base_url="http://testserver").get("/activity/rows")
    assert anonymous.status_code == 401
    browser, _ = _signed_in_browser(app, stranger.email)
    foreign = browser.get("/activity/rows", params={"ids": made["id"]})
    assert foreign.status_code == 200
    assert made["id"] not in foreign.text


def test_mark_all_seen_form(app, client, db, clock):
    """The no-JavaScript "Mark all seen" clears the highlight and the badge."""
    owner = make_user(db, clock)
    ingest(client, make_key(db, clock, owner), {"events": [event_body(i) for i in range(2)]})
    browser, token = _signed_in_browser(app, owner.email)
    page = browser.get("/activity").text
    assert "<title>(3) Activity" in page
    done = browser.post(
        "/activity/mark-seen",
        data={"csrf_token": token, "return_to": "/activity?search=yolo"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/activity?search=yolo"
    page = browser.get("/activity").text
    assert 'class="event unseen"' not in page
    assert "<title>Activity" in page
    refused = browser.post("/activity/mark-seen", data={})
    assert refused.status_code == 403


def test_page_renders_the_live_hooks(app, client, db, clock):
    """The page carries what activity.js needs: the CSRF meta tag, the script (no inline
    code: the CSP forbids it), the view's flags and the sidebar links."""
    owner = make_user(db, clock)
    browser, token = _signed_in_browser(app, owner.email)
    page = browser.get("/activity").text
    assert f'<meta name="csrf-token" content="{token}">' in page
    assert '<script src="/static/activity.js" defer></script>' in page
    assert "<script>" not in page
    assert 'data-live="1"' in page
    for href in ("/projects", "/datasets", "/models", "/settings/profile", "/settings/api-keys"):
        assert f'href="{href}"' in page
    archive = browser.get("/activity?archived=true&page=2").text
    assert 'data-live="0"' in archive
    assert browser.get("/static/activity.js").status_code == 200


def test_undoable_settings_change_offers_undo(app, db, clock):
    """An own recent settings change has an Undo form (no-JS path); other rows do not."""
    owner = make_user(db, clock)
    with db.write() as tx:
        ws = account_store.select_personal_workspace(tx, owner.id)
        record_event(
            tx,
            EventDraft(
                workspace_id=ws.id,
                resource_type=ResourceType.SETTINGS,
                action=Action.UPDATED,
                resource_id=owner.id,
                resource_name="profile",
                actor=Actor(id=owner.id, name=owner.name, email=owner.email),
                source=Source(kind=SourceKind.UI),
                metadata={"changes": {"bio": {"before": "", "after": "Hi"}}},
            ),
            now=clock(),
        )
    browser, _ = _signed_in_browser(app, owner.email)
    page = browser.get("/activity").text
    assert page.count('action="/activity/undo"') == 1
    assert re.search(r'class="undo-form">\s*<input type="hidden" name="csrf_token"', page)
    clock.advance(hours=2)
    assert 'action="/activity/undo"' not in browser.get("/activity").text
