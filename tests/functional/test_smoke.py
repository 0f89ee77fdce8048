"""The path a newcomer takes: sign in, send events with a key, triage them."""

from __future__ import annotations

from tests.factories import Browser, event_body, ingest, make_key, make_team, make_user


def test_sign_in_ingest_and_triage(app, client, db, clock):
    """Events ingested with a key show in the Inbox, unseen, and can be seen and archived."""
    owner = make_user(db, clock)
    team = make_team(db, clock, owner)
    secret = make_key(db, clock, owner, team)
    response = ingest(client, secret, {"events": [event_body(i) for i in range(3)]})
    assert response.status_code == 201, response.text
    ids = [e["id"] for e in response.json()["events"]]

    browser = Browser(app, owner.email)
    browser.switch(team.slug)
    feed = browser.activity()
    # The api_key "created" event is private to the owner and in the team workspace too.
    assert feed["total"] == 4
    assert feed["unseenCount"] == 4
    assert [e["id"] for e in feed["events"]][:3] == ids[::-1]

    seen = browser.post("/api/activity/mark-seen", json={"eventIds": ids[:2]})
    assert seen.json() == {"success": True, "unseenCount": 2}
    archived = browser.post("/api/activity/archive", json={"eventIds": ids[:1], "archive": True})
    assert archived.json() == {"success": True, "updated": 1}
    assert browser.activity()["total"] == 3
    assert browser.activity(archived="true")["total"] == 1
