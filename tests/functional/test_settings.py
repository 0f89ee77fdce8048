"""Settings and undo through HTTP (PRODUCT.md "Producers", "Activity" undo, "Precise rules").

* GET/PATCH /api/settings/profile: fields, validation, one ``settings updated`` event per
  change (private, in the personal workspace) holding every field's before and after;
* POST /api/activity/{eventId}/undo: the revert and its event, and every refusal:
  undo_expired, already_undone, undo_not_supported, undo_conflict, not_found;
* ``undoableUntil`` in the feed; concurrent undos; a failed change leaves nothing behind.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from activityfeed.domain.events import SourceKind
from activityfeed.domain.workspaces import Role
from activityfeed.errors import AppError
from activityfeed.services import settings as settings_service
from activityfeed.store.schema import events
from activityfeed.web import create_app
from tests.factories import Browser, event_body, ingest, make_key, make_team, make_user
from tests.functional.feed_helpers import assert_error, iso

PROFILE = "/api/settings/profile"


@pytest.fixture
def alice(app, db, clock):
    user = make_user(db, clock, name="Alice")
    return user, Browser(app, user.email)


def patch(browser: Browser, body: dict[str, Any]) -> dict[str, Any]:
    response = browser.patch(PROFILE, json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def undo(browser: Browser, event_id: str) -> Any:
    return browser.post(f"/api/activity/{event_id}/undo")


def settings_events(browser: Browser) -> list[dict[str, Any]]:
    return list(browser.activity(resourceType="settings", limit=100)["events"])


def count_events(db) -> int:
    with db.read() as tx:
        return int(tx.conn.execute(select(func.count()).select_from(events)).scalar_one())


# ---- profile --------------------------------------------------------------------------------


def test_a_new_profile_has_the_defaults(alice):
    _, browser = alice
    response = browser.get(PROFILE)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "profile": {
            "name": "Alice",
            "email": browser.login["user"]["email"],
            "bio": "",
            "company": "",
            "timezone": "UTC",
            "notifications": {
                "trainingFailures": True,
                "weeklyDigest": False,
                "emailDigest": "off",
            },
            "updatedAt": None,
        }
    }


def test_patch_changes_the_fields_and_records_one_private_event(app, db, clock, alice):
    """One PATCH → one ``settings updated`` event in the personal workspace, with every
    changed field's before and after, seen by the actor only."""
    user, browser = alice
    body = patch(
        browser,
        {
            "name": "Alice Liddell",
            "bio": "Trains\nmodels",
            "company": "Wonderland",
            "timezone": "Europe/Paris",
            "notifications": {"weeklyDigest": True, "emailDigest": "daily"},
        },
    )
    profile = body["profile"]
    assert profile["name"] == "Alice Liddell"
    assert profile["bio"] == "Trains\nmodels"
    assert profile["company"] == "Wonderland"
    assert profile["timezone"] == "Europe/Paris"
    assert profile["notifications"] == {
        "trainingFailures": True,
        "weeklyDigest": True,
        "emailDigest": "daily",
    }
    assert profile["updatedAt"] == iso(clock())
    assert browser.get(PROFILE).json()["profile"] == profile
    # The name is the account's name: the next sign-in shows it.
    assert Browser(app, user.email).login["user"]["name"] == "Alice Liddell"

    event = body["event"]
    assert event["resourceType"] == "settings"
    assert event["action"] == "updated"
    assert event["workspaceId"] == browser.login["workspace"]["id"]
    assert event["actor"]["id"] == user.id
    assert event["source"] == {"kind": "ui"}
    assert event["metadata"] == {
        "changes": {
            "name": {"before": "Alice", "after": "Alice Liddell"},
            "bio": {"before": "", "after": "Trains\nmodels"},
            "company": {"before": "", "after": "Wonderland"},
            "timezone": {"before": "UTC", "after": "Europe/Paris"},
            "notifications.weeklyDigest": {"before": False, "after": True},
            "notifications.emailDigest": {"before": "off", "after": "daily"},
        }
    }
    assert event["undoableUntil"] == iso(clock() + timedelta(hours=1))
    assert [e["id"] for e in settings_events(browser)] == [event["id"]]
    assert settings_events(browser)[0] == event


def test_settings_events_are_private_to_the_actor(app, db, clock, alice):
    user, browser = alice
    other = make_user(db, clock)
    team = make_team(db, clock, user, [(other, Role.ADMIN)])
    event_id = patch(browser, {"bio": "hi"})["event"]["id"]
    browser.switch(team.slug)
    assert settings_events(browser) == []
    other_browser = Browser(app, other.email)
    other_browser.switch(team.slug)
    assert settings_events(other_browser) == []
    # Even the id is unknown to another user.
    assert_error(undo(other_browser, event_id), 404, "not_found")


def test_undoing_a_teammates_visible_event_is_404(app, db, clock, alice):
    """PRODUCT.md: undoing another user's event → 404, even an event the caller sees
    (a teammate's project in the team's feed), with the unknown id's message."""
    user, browser = alice
    other = make_user(db, clock)
    team = make_team(db, clock, user, [(other, Role.MEMBER)])
    browser.switch(team.slug)
    assert browser.post("/api/projects", json={"name": "p1"}).status_code == 201
    other_browser = Browser(app, other.email)
    other_browser.switch(team.slug)
    [event] = other_browser.activity(resourceType="project")["events"]
    theirs = assert_error(undo(other_browser, event["id"]), 404, "not_found")
    unknown = assert_error(undo(other_browser, "e_" + "0" * 26), 404, "not_found")
    assert theirs == unknown
    # Their own project event is theirs, and not undoable: 409.
    assert_error(undo(browser, event["id"]), 409, "undo_not_supported")


def test_patch_that_changes_nothing_records_nothing(db, alice):
    _, browser = alice
    patch(browser, {"timezone": "Asia/Tokyo"})
    before = count_events(db)
    body = patch(
        browser,
        {"timezone": "Asia/Tokyo", "name": "  Alice ", "notifications": {"trainingFailures": True}},
    )
    assert body["event"] is None
    assert body["profile"]["timezone"] == "Asia/Tokyo"
    assert patch(browser, {})["event"] is None
    assert count_events(db) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"timezone": "europe/paris"}, "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"timezone": ""}, "timezone"),
        ({"name": "   "}, "name"),
        ({"name": "a\x07b"}, "name"),
        ({"name": None}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"bio": "x" * 1001}, "bio"),
        ({"company": 5}, "company"),
        ({"email": "new@example.com"}, "email"),
        ({"theme": "dark"}, "theme"),
        ({"notifications": {"weeklyDigest": "yes"}}, "notifications.weeklyDigest"),
        ({"notifications": {"emailDigest": "hourly"}}, "notifications.emailDigest"),
        ({"notifications": {"sms": True}}, "notifications.sms"),
        ({"notifications": None}, "notifications"),
        ({"time_zone": "UTC"}, "time_zone"),
    ],
)
def test_invalid_patch_is_422_naming_the_field_and_changes_nothing(db, alice, body, field):
    _, browser = alice
    before = count_events(db)
    profile = browser.get(PROFILE).json()
    assert_error(browser.patch(PROFILE, json=body), 422, "invalid_request", field, case=body)
    assert browser.get(PROFILE).json() == profile
    assert count_events(db) == before


def test_an_invalid_field_rejects_the_whole_patch(db, alice):
    _, browser = alice
    assert_error(
        browser.patch(PROFILE, json={"bio": "new", "timezone": "Nowhere/Land"}),
        422,
        "invalid_request",
        "timezone",
    )
    assert browser.get(PROFILE).json()["profile"]["bio"] == ""


def test_profile_routes_need_a_session_and_csrf(app, client, db, clock, alice):
    user, browser = alice
    assert_error(client.get(PROFILE), 401, "not_authenticated")
    assert_error(client.patch(PROFILE, json={"bio": "x"}), 401, "not_authenticated")
    secret = make_key(db, clock, user)
    bearer = {"Authorization": f"Bearer {secret}"}
    assert_error(client.get(PROFILE, headers=bearer), 401, "browser_session_required")
    response = browser.client.patch(PROFILE, json={"bio": "x"})
    assert_error(response, 403, "csrf_failed")
    response = browser.patch(PROFILE, json={"bio": "x"}, headers={"Origin": "https://evil.test"})
    assert_error(response, 403, "csrf_failed")
    assert browser.get(PROFILE).json()["profile"]["bio"] == ""


def test_a_failed_transaction_leaves_neither_the_change_nor_its_event(db, clock, alice):
    """The change and its event commit together: when the transaction fails after both
    were written, neither is there."""
    user, browser = alice
    before = count_events(db)

    class Boom(Exception):
        pass

    def change_then_fail() -> None:
        with db.write() as tx:
            change = settings_service.update_profile(
                tx,
                user=user,
                patch={"timezone": "Europe/Berlin", "bio": "lost"},
                source=SourceKind.UI,
                now=clock(),
                undo_window=timedelta(hours=1),
            )
            # Both were written inside the transaction ...
            assert change.event is not None
            assert change.profile.values["timezone"] == "Europe/Berlin"
            inside = tx.conn.execute(select(func.count()).select_from(events)).scalar_one()
            assert inside == before + 1
            raise Boom

    with pytest.raises(Boom):
        change_then_fail()
    # ... and neither outside it after the rollback.
    assert browser.get(PROFILE).json()["profile"]["timezone"] == "UTC"
    assert browser.get(PROFILE).json()["profile"]["bio"] == ""
    assert count_events(db) == before
    assert settings_events(browser) == []


# ---- undo -----------------------------------------------------------------------------------


def test_undo_reverts_and_records_its_own_event(clock, alice):
    user, browser = alice
    original = patch(browser, {"timezone": "Europe/Paris", "company": "Acme"})["event"]
    clock.advance(minutes=10)
    response = undo(browser, original["id"])
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"event"}
    revert = response.json()["event"]
    assert revert["resourceType"] == "settings"
    assert revert["action"] == "updated"
    assert revert["actor"]["id"] == user.id
    assert revert["createdAt"] == iso(clock())
    assert revert["metadata"] == {
        "changes": {
            "timezone": {"before": "Europe/Paris", "after": "UTC"},
            "company": {"before": "Acme", "after": ""},
        },
        "undoOf": original["id"],
    }
    profile = browser.get(PROFILE).json()["profile"]
    assert profile["timezone"] == "UTC"
    assert profile["company"] == ""

    listed = {e["id"]: e for e in settings_events(browser)}
    assert set(listed) == {original["id"], revert["id"]}
    # The undone event is no longer undoable; the revert itself is (it is a change too).
    assert listed[original["id"]]["undoableUntil"] is None
    assert listed[revert["id"]]["undoableUntil"] == iso(clock() + timedelta(hours=1))
    assert listed[revert["id"]] == revert


def test_undo_twice_is_already_undone(alice):
    _, browser = alice
    event_id = patch(browser, {"bio": "one"})["event"]["id"]
    assert undo(browser, event_id).status_code == 200
    assert_error(undo(browser, event_id), 409, "already_undone")
    assert browser.get(PROFILE).json()["profile"]["bio"] == ""


def test_undo_after_the_window_is_expired(clock, alice):
    _, browser = alice
    event_id = patch(browser, {"bio": "one"})["event"]["id"]
    clock.advance(seconds=3599)
    assert settings_events(browser)[0]["undoableUntil"] is not None
    clock.advance(seconds=1)
    assert settings_events(browser)[0]["undoableUntil"] is None
    assert_error(undo(browser, event_id), 409, "undo_expired")
    assert browser.get(PROFILE).json()["profile"]["bio"] == "one"


def test_the_window_comes_from_the_settings(db, clock, settings):
    short = create_app(replace(settings, undo_window_seconds=60), db=db, clock=clock)
    browser = Browser(short, make_user(db, clock).email)
    event = patch(browser, {"bio": "one"})["event"]
    assert event["undoableUntil"] == iso(clock() + timedelta(seconds=60))
    clock.advance(seconds=61)
    assert_error(undo(browser, event["id"]), 409, "undo_expired")


def test_undo_after_a_newer_edit_of_the_same_field_is_a_conflict(clock, alice):
    """Never overwrite a newer edit silently: nothing changes, nothing is recorded."""
    _, browser = alice
    first = patch(browser, {"timezone": "Europe/Paris", "bio": "one"})["event"]
    clock.advance(minutes=1)
    patch(browser, {"timezone": "Asia/Tokyo"})
    before = [e["id"] for e in settings_events(browser)]
    error = assert_error(undo(browser, first["id"]), 409, "undo_conflict")
    assert "time zone" in error["message"]
    profile = browser.get(PROFILE).json()["profile"]
    assert profile["timezone"] == "Asia/Tokyo"
    assert profile["bio"] == "one"
    assert [e["id"] for e in settings_events(browser)] == before


def test_an_edit_of_another_field_does_not_block_undo(clock, alice):
    """Older and newer edits of other fields are left alone by the undo."""
    _, browser = alice
    patch(browser, {"company": "Acme"})
    clock.advance(minutes=1)
    target = patch(browser, {"timezone": "Europe/Paris"})["event"]
    clock.advance(minutes=1)
    patch(browser, {"bio": "later"})
    assert undo(browser, target["id"]).status_code == 200
    profile = browser.get(PROFILE).json()["profile"]
    assert profile == {**profile, "timezone": "UTC", "company": "Acme", "bio": "later"}


def test_undoing_the_undo_redoes(alice):
    _, browser = alice
    original = patch(browser, {"timezone": "Europe/Paris"})["event"]
    revert = undo(browser, original["id"]).json()["event"]
    redo = undo(browser, revert["id"])
    assert redo.status_code == 200, redo.text
    assert browser.get(PROFILE).json()["profile"]["timezone"] == "Europe/Paris"
    # The original stays undone: undoing it again would be a silent overwrite.
    assert_error(undo(browser, original["id"]), 409, "already_undone")


def test_other_events_are_not_undoable(app, client, db, clock, alice):
    user, browser = alice
    secret = make_key(db, clock, user)
    training = ingest(client, secret, event_body())
    assert training.status_code == 201, training.text
    key_event = next(
        e for e in browser.activity(resourceType="api_key")["events"] if e["action"] == "created"
    )
    onboarding = browser.post("/api/onboarding/complete").json()["event"]
    for event_id in (training.json()["event"]["id"], key_event["id"], onboarding["id"]):
        assert_error(undo(browser, event_id), 409, "undo_not_supported", case=event_id)
    # A producer's "settings"-looking event cannot exist: settings are not ingestible.
    sneaky = ingest(
        client, secret, event_body(resourceType="settings", action="updated", metadata={})
    )
    assert sneaky.status_code == 422


def test_unknown_and_foreign_event_ids_are_not_found(app, client, db, clock, alice):
    _, browser = alice
    stranger = make_user(db, clock)
    stranger_browser = Browser(app, stranger.email)
    theirs = patch(stranger_browser, {"bio": "mine"})["event"]["id"]
    # A team event in a workspace Alice is not in looks exactly like an unknown id.
    team = make_team(db, clock, stranger, name="Elsewhere")
    foreign = ingest(client, make_key(db, clock, stranger, team), event_body()).json()["event"]
    for event_id in ("nope", theirs, foreign["id"], "x" * 500):
        assert_error(undo(browser, event_id), 404, "not_found", case=event_id)
    assert stranger_browser.get(PROFILE).json()["profile"]["bio"] == "mine"


def test_undo_needs_a_browser_session_and_csrf(app, client, db, clock, alice):
    user, browser = alice
    event_id = patch(browser, {"bio": "one"})["event"]["id"]
    secret = make_key(db, clock, user)
    bearer = {"Authorization": f"Bearer {secret}"}
    assert_error(
        client.post(f"/api/activity/{event_id}/undo", headers=bearer),
        401,
        "browser_session_required",
    )
    assert_error(client.post(f"/api/activity/{event_id}/undo"), 401, "not_authenticated")
    assert_error(browser.client.post(f"/api/activity/{event_id}/undo"), 403, "csrf_failed")
    assert browser.get(PROFILE).json()["profile"]["bio"] == "one"


def test_concurrent_undos_succeed_once(app, db, clock, alice):
    """Two tabs undo the same change at once: one 200, one already_undone, one revert."""
    user, browser = alice
    event_id = patch(browser, {"timezone": "Europe/Paris", "bio": "one"})["event"]["id"]
    tabs = [Browser(app, user.email), Browser(app, user.email)]
    barrier = threading.Barrier(len(tabs))
    results: list[Any] = [None] * len(tabs)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = undo(tabs[i], event_id)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(tabs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(r.status_code for r in results) == [200, 409], [r.text for r in results]
    refused = next(r for r in results if r.status_code == 409)
    assert_error(refused, 409, "already_undone")
    reverts = [e for e in settings_events(browser) if e["metadata"].get("undoOf") == event_id]
    assert len(reverts) == 1
    assert browser.get(PROFILE).json()["profile"]["timezone"] == "UTC"


def test_concurrent_edit_and_undo_never_overwrite(app, db, clock, alice):
    """An edit of the same field racing an undo: either the undo wins (and then the edit
    applies on top) or it is refused; the edit's value is never lost."""
    user, browser = alice
    event_id = patch(browser, {"timezone": "Europe/Paris"})["event"]["id"]
    tabs = [Browser(app, user.email), Browser(app, user.email)]
    barrier = threading.Barrier(2)
    results: dict[str, Any] = {}

    def do_undo() -> None:
        barrier.wait()
        results["undo"] = undo(tabs[0], event_id)

    def do_edit() -> None:
        barrier.wait()
        results["edit"] = tabs[1].patch(PROFILE, json={"timezone": "Asia/Tokyo"})

    threads = [threading.Thread(target=do_undo), threading.Thread(target=do_edit)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results["edit"].status_code == 200, results["edit"].text
    assert results["undo"].status_code in (200, 409), results["undo"].text
    if results["undo"].status_code == 409:
        assert_error(results["undo"], 409, "undo_conflict")
    assert browser.get(PROFILE).json()["profile"]["timezone"] == "Asia/Tokyo"


def test_an_undo_waiting_on_an_open_undo_finds_it_done(db, clock, alice):
    """The second of two overlapping undo transactions waits for the first and then
    answers already_undone (on PostgreSQL it must not slip past the check and fail on
    the undo record's key; on SQLite the write lock queues it)."""
    user, browser = alice
    event_id = patch(browser, {"timezone": "Europe/Paris"})["event"]["id"]
    first_done, second_started = threading.Event(), threading.Event()
    outcome: dict[str, str] = {}

    def call() -> str:
        try:
            with db.write() as tx:
                settings_service.undo_settings_change(
                    tx,
                    user=user,
                    event_id=event_id,
                    source=SourceKind.UI,
                    now=clock(),
                    undo_window=timedelta(hours=1),
                )
                if not first_done.is_set():
                    first_done.set()
                    second_started.wait(10)
                    # Keep the transaction open while the second one reaches the lock.
                    time.sleep(0.3)
        except AppError as exc:
            return exc.code
        return "ok"

    def first() -> None:
        outcome["first"] = call()

    def second() -> None:
        first_done.wait(10)
        second_started.set()
        outcome["second"] = call()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert outcome == {"first": "ok", "second": "already_undone"}
    reverts = [e for e in settings_events(browser) if e["metadata"].get("undoOf") == event_id]
    assert len(reverts) == 1
