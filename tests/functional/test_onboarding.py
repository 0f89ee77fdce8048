"""POST /api/onboarding/complete records the onboarding event once (PRODUCT.md "Producers")."""

from __future__ import annotations

import threading
from typing import Any

from activityfeed.domain.workspaces import Role
from tests.factories import Browser, make_key, make_team, make_user
from tests.functional.feed_helpers import assert_error, iso


def onboarding_events(browser: Browser) -> list[dict[str, Any]]:
    return list(browser.activity(resourceType="onboarding")["events"])


def test_complete_records_the_event_once(app, db, clock):
    user = make_user(db, clock)
    browser = Browser(app, user.email)
    first = browser.post("/api/onboarding/complete")
    assert first.status_code == 200, first.text
    body = first.json()
    assert set(body) == {"completedAt", "alreadyCompleted", "event"}
    assert body["completedAt"] == iso(clock())
    assert body["alreadyCompleted"] is False
    event = body["event"]
    assert event["resourceType"] == "onboarding"
    assert event["action"] == "completed"
    assert event["description"] == "Completed onboarding"
    assert event["actor"]["id"] == user.id
    assert event["workspaceId"] == browser.login["workspace"]["id"]
    assert event["undoableUntil"] is None

    clock.advance(minutes=5)
    again = browser.post("/api/onboarding/complete")
    assert again.status_code == 200, again.text
    assert again.json() == {**body, "alreadyCompleted": True}
    assert [e["id"] for e in onboarding_events(browser)] == [event["id"]]


def test_the_event_is_private_and_in_the_personal_workspace(app, db, clock):
    user, other = make_user(db, clock), make_user(db, clock)
    team = make_team(db, clock, user, [(other, Role.MEMBER)])
    browser = Browser(app, user.email)
    browser.switch(team.slug)
    event = browser.post("/api/onboarding/complete").json()["event"]
    assert event["workspaceId"] != team.id
    assert onboarding_events(browser) == []
    other_browser = Browser(app, other.email)
    other_browser.switch(team.slug)
    assert onboarding_events(other_browser) == []
    browser.switch(browser.login["workspace"]["slug"])
    assert [e["id"] for e in onboarding_events(browser)] == [event["id"]]


def test_concurrent_completions_record_one_event(app, db, clock):
    user = make_user(db, clock)
    tabs = [Browser(app, user.email) for _ in range(3)]
    barrier = threading.Barrier(len(tabs))
    results: list[Any] = [None] * len(tabs)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = tabs[i].post("/api/onboarding/complete")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(tabs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [r.status_code for r in results] == [200, 200, 200]
    assert sorted(r.json()["alreadyCompleted"] for r in results) == [False, True, True]
    assert len({r.json()["event"]["id"] for r in results}) == 1
    assert len(onboarding_events(tabs[0])) == 1


def test_complete_needs_a_session_and_csrf(app, client, db, clock):
    user = make_user(db, clock)
    assert_error(client.post("/api/onboarding/complete"), 401, "not_authenticated")
    secret = make_key(db, clock, user)
    assert_error(
        client.post("/api/onboarding/complete", headers={"Authorization": f"Bearer {secret}"}),
        401,
        "browser_session_required",
    )
    browser = Browser(app, user.email)
    assert_error(browser.client.post("/api/onboarding/complete"), 403, "csrf_failed")
    assert onboarding_events(browser) == []
