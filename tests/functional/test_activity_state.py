"""Visibility and per-user state: mark-seen and archive/restore (PRODUCT.md, "Activity")."""

from __future__ import annotations

from datetime import timedelta

import pytest

from activityfeed.domain.events import Action, ResourceType
from tests.factories import Browser, event_body, ingest, make_key, make_user, personal_workspace
from tests.functional.feed_helpers import World, assert_error, ids, make_world, record_private

ROUTES = ["/api/activity/mark-seen", "/api/activity/archive"]


@pytest.fixture
def world(app, client, db, clock) -> World:
    return make_world(app, client, db, clock)


def _seen(world: World, browser: Browser | None = None) -> dict[str, bool]:
    feed = (browser or world.viewer).activity(limit=100)
    return {e["id"]: e["seen"] for e in feed["events"]}


def _state(browser: Browser) -> tuple[list[str], list[str], int]:
    """(Inbox ids, Archive ids, unseenCount), each list sorted."""
    inbox = browser.activity(limit=100)
    archive = browser.activity(limit=100, archived="true")
    assert inbox["unseenCount"] == archive["unseenCount"]
    return sorted(ids(inbox)), sorted(ids(archive)), inbox["unseenCount"]


# ---- visibility --------------------------------------------------------------------------


def test_private_types_are_seen_by_their_actor_only(world, db, clock):
    owner = world.browser(world.owner)
    for resource_type, action in [
        (ResourceType.SETTINGS, Action.UPDATED),
        (ResourceType.API_KEY, Action.CREATED),
        (ResourceType.ONBOARDING, Action.COMPLETED),
    ]:
        event_id = record_private(db, clock, world.owner, world.team, resource_type, action)
        mine = next(e for e in owner.activity(limit=100)["events"] if e["id"] == event_id)
        # Unseen for the actor too.
        assert mine["seen"] is False, resource_type
        assert world.viewer.activity()["total"] == 0, resource_type
        assert world.viewer.activity()["unseenCount"] == 0, resource_type
        # Nor can the member act on it: its id is ignored like an unknown one.
        seen = world.viewer.post("/api/activity/mark-seen", json={"eventIds": [event_id]})
        assert seen.json() == {"success": True, "unseenCount": 0}
        archived = world.viewer.post(
            "/api/activity/archive", json={"eventIds": [event_id], "archive": True}
        )
        assert archived.json() == {"success": True, "updated": 0}
        mine = next(e for e in owner.activity(limit=100)["events"] if e["id"] == event_id)
        assert mine["seen"] is False
        assert mine["archived"] is False


def test_other_events_are_seen_by_every_member_and_start_unseen(world, db, clock):
    sent = world.send(
        [
            event_body(1, resourceType=t)
            for t in ["project", "dataset", "model", "training", "export", "deployment"]
        ]
    )
    owner = world.browser(world.owner)
    for browser in (world.viewer, owner):
        feed = browser.activity(
            limit=100,
            resourceType=["project", "dataset", "model", "training", "export", "deployment"],
        )
        assert sorted(ids(feed)) == sorted(e["id"] for e in sent)
        assert all(e["seen"] is False and e["archived"] is False for e in feed["events"])
    # An event the platform records with an actor is unseen for the actor too.
    with_actor = record_private(
        db, clock, world.member, world.team, ResourceType.PROJECT, Action.CREATED
    )
    assert _seen(world)[with_actor] is False
    assert _seen(world, owner)[with_actor] is False


def test_the_owners_key_event_counts_for_the_owner_only(world):
    owner = world.browser(world.owner)
    feed = owner.activity()
    assert [e["resourceType"] for e in feed["events"]] == ["api_key"]
    assert feed["unseenCount"] == 1
    assert world.viewer.activity()["unseenCount"] == 0


# ---- mark-seen ---------------------------------------------------------------------------


def test_mark_seen_by_ids(world):
    sent = world.send([event_body(i) for i in range(5)])
    response = world.viewer.post(
        "/api/activity/mark-seen", json={"eventIds": [sent[0]["id"], sent[3]["id"]]}
    )
    assert response.status_code == 200
    assert response.json() == {"success": True, "unseenCount": 3}
    seen = _seen(world)
    assert [seen[e["id"]] for e in sent] == [True, False, False, True, False]
    # Again: nothing changes.
    again = world.viewer.post("/api/activity/mark-seen", json={"eventIds": [sent[0]["id"]]})
    assert again.json() == {"success": True, "unseenCount": 3}
    # Duplicates and an empty list are fine.
    dup = world.viewer.post("/api/activity/mark-seen", json={"eventIds": [sent[1]["id"]] * 3})
    assert dup.json() == {"success": True, "unseenCount": 2}
    assert world.viewer.post("/api/activity/mark-seen", json={"eventIds": []}).json() == {
        "success": True,
        "unseenCount": 2,
    }


@pytest.mark.parametrize("route", ROUTES)
def test_ids_no_event_can_have_are_ignored_like_unknown_ids(world, route):
    # Found by the OpenAPI fuzzer: PostgreSQL refused to compare an id holding NUL (a 500).
    sent = world.send([event_body(0)])
    # (A lone surrogate never gets this far: the wire schema refuses it with a 422.)
    strange = ["\x00", "a\x00b", sent[0]["id"] + "\x00"]
    response = world.viewer.post(route, json={"eventIds": [*strange, sent[0]["id"]]})
    assert response.status_code == 200, response.text
    _inbox, archive, unseen = _state(world.viewer)
    if route.endswith("mark-seen"):
        assert _seen(world)[sent[0]["id"]] is True
        assert unseen == 0
    else:
        assert response.json()["updated"] == 1
        assert archive == [sent[0]["id"]]


def test_mark_all_seen_then_new_events_are_unseen(world, clock):
    world.send([event_body(i) for i in range(4)])
    response = world.viewer.post("/api/activity/mark-seen", json={"all": True})
    assert response.json() == {"success": True, "unseenCount": 0}
    assert all(_seen(world).values())
    later = world.send(
        [
            event_body(10),
            event_body(11, occurredAt=clock.current.isoformat()),
        ]
    )
    seen = _seen(world)
    assert [seen[e["id"]] for e in later] == [False, False]
    assert world.viewer.activity()["unseenCount"] == 2
    # "all" wins over a list given with it.
    both = world.viewer.post("/api/activity/mark-seen", json={"all": True, "eventIds": []})
    assert both.json() == {"success": True, "unseenCount": 0}


def test_mark_all_seen_reaches_events_older_than_the_page(world, clock):
    """ "All" is every visible event up to now, not only the last 30 days on screen."""
    world.send([event_body(1, occurredAt=(clock.current - timedelta(days=363)).isoformat())])
    world.send([event_body(2)])
    assert world.viewer.activity()["unseenCount"] == 2
    assert (
        world.viewer.post("/api/activity/mark-seen", json={"all": True}).json()["unseenCount"] == 0
    )


def test_unseen_count_leaves_archived_events_out(world):
    sent = world.send([event_body(i) for i in range(4)])
    world.viewer.post("/api/activity/archive", json={"eventIds": [sent[0]["id"]], "archive": True})
    assert world.viewer.activity()["unseenCount"] == 3
    world.viewer.post("/api/activity/mark-seen", json={"eventIds": [sent[1]["id"]]})
    assert world.viewer.activity()["unseenCount"] == 2
    world.viewer.post("/api/activity/archive", json={"eventIds": [sent[0]["id"]], "archive": False})
    assert world.viewer.activity()["unseenCount"] == 3
    # The workspace list agrees with the feed.
    listed = world.viewer.get("/api/workspaces").json()["workspaces"]
    team = next(w for w in listed if w["slug"] == world.team.slug)
    assert team["unseenCount"] == 3


def test_seen_and_archived_state_is_per_user(world):
    sent = world.send([event_body(i) for i in range(4)])
    owner = world.browser(world.owner)
    world.viewer.post("/api/activity/mark-seen", json={"all": True})
    world.viewer.post("/api/activity/archive", json={"eventIds": [sent[0]["id"]], "archive": True})
    # The owner's view is untouched (4 ingested + their own key event).
    feed = owner.activity(limit=100)
    assert feed["unseenCount"] == 5
    assert feed["total"] == 5
    assert all(e["seen"] is False and e["archived"] is False for e in feed["events"])
    # And the owner's actions leave the member alone.
    owner.post("/api/activity/archive", json={"all": True, "archive": True})
    owner.post("/api/activity/mark-seen", json={"eventIds": [sent[1]["id"]]})
    inbox, archive, unseen = _state(world.viewer)
    assert inbox == sorted(e["id"] for e in sent[1:])
    assert archive == [sent[0]["id"]]
    assert unseen == 0
    inbox, archive, unseen = _state(owner)
    assert inbox == []
    assert len(archive) == 5
    assert unseen == 0


# ---- archive / restore -------------------------------------------------------------------


def test_archive_and_restore_by_ids_count_events_actually_moved(world):
    sent = world.send([event_body(i) for i in range(5)])
    a, b, c = (sent[i]["id"] for i in range(3))
    response = world.viewer.post(
        "/api/activity/archive", json={"eventIds": [a, b], "archive": True}
    )
    assert response.status_code == 200
    assert response.json() == {"success": True, "updated": 2}
    # Already archived ones do not count again.
    assert world.viewer.post(
        "/api/activity/archive", json={"eventIds": [a, b, c], "archive": True}
    ).json() == {
        "success": True,
        "updated": 1,
    }
    inbox, archive, unseen = _state(world.viewer)
    assert archive == sorted([a, b, c])
    assert len(inbox) == 2
    assert unseen == 2
    # Restore: archive false.
    restored = world.viewer.post(
        "/api/activity/archive", json={"eventIds": [a, sent[4]["id"]], "archive": False}
    )
    assert restored.json() == {"success": True, "updated": 1}
    inbox, archive, unseen = _state(world.viewer)
    assert archive == sorted([b, c])
    assert a in inbox
    assert unseen == 3
    # Without "archive", archiving is meant (the reference body shape).
    assert world.viewer.post("/api/activity/archive", json={"eventIds": [a]}).json()["updated"] == 1


def test_archive_all_moves_the_inbox_and_later_events_stay_in_it(world, clock):
    sent = world.send([event_body(i) for i in range(6)])
    world.viewer.post("/api/activity/archive", json={"eventIds": [sent[0]["id"]], "archive": True})
    response = world.viewer.post("/api/activity/archive", json={"all": True, "archive": True})
    assert response.json() == {"success": True, "updated": 5}
    inbox, archive, unseen = _state(world.viewer)
    assert inbox == []
    assert len(archive) == 6
    assert unseen == 0
    # Once more: nothing left to move.
    assert (
        world.viewer.post("/api/activity/archive", json={"all": True, "archive": True}).json()[
            "updated"
        ]
        == 0
    )
    # A new event, even one that says it happened before the "archive all", stays in the Inbox.
    past = (clock.current - timedelta(days=3)).isoformat()
    late = world.send([event_body(100, occurredAt=past), event_body(101)])
    inbox, archive, unseen = _state(world.viewer)
    assert inbox == sorted(e["id"] for e in late)
    assert unseen == 2
    assert all(e["seen"] is False for e in world.viewer.activity()["events"])
    # Restoring one archived event puts it back, unseen (nobody marked it seen).
    restored = world.viewer.post(
        "/api/activity/archive", json={"eventIds": [sent[2]["id"]], "archive": False}
    )
    assert restored.json()["updated"] == 1
    inbox, archive, unseen = _state(world.viewer)
    assert sent[2]["id"] in inbox
    assert unseen == 3
    assert len(archive) == 5


def test_restore_all(world):
    sent = world.send([event_body(i) for i in range(3)])
    world.viewer.post("/api/activity/archive", json={"all": True, "archive": True})
    world.send([event_body(9)])
    response = world.viewer.post("/api/activity/archive", json={"all": True, "archive": False})
    assert response.json() == {"success": True, "updated": 3}
    inbox, archive, _ = _state(world.viewer)
    assert len(inbox) == 4
    assert archive == []
    assert sent[0]["id"] in inbox


def test_archive_all_counts_only_what_the_caller_sees(world, db, clock):
    world.send([event_body(i) for i in range(2)])
    record_private(db, clock, world.owner, world.team, ResourceType.SETTINGS)
    assert (
        world.viewer.post("/api/activity/archive", json={"all": True, "archive": True}).json()[
            "updated"
        ]
        == 2
    )
    owner = world.browser(world.owner)
    # The owner: 2 events + the key event + the settings event.
    assert (
        owner.post("/api/activity/archive", json={"all": True, "archive": True}).json()["updated"]
        == 4
    )


# ---- ids that are not the caller's -------------------------------------------------------


def test_foreign_and_unknown_ids_are_ignored(app, world, db, clock):
    sent = world.send([event_body(i) for i in range(2)])
    stranger = make_user(db, clock)
    stranger_secret = make_key(db, clock, stranger)
    foreign = ingest(world.client, stranger_secret, event_body(7)).json()["event"]["id"]
    junk = ["nope", "", "x" * 128, foreign, "' OR 1=1 --", "%"]
    seen = world.viewer.post("/api/activity/mark-seen", json={"eventIds": [*junk, sent[0]["id"]]})
    assert seen.json() == {"success": True, "unseenCount": 1}
    archived = world.viewer.post(
        "/api/activity/archive", json={"eventIds": [*junk, sent[1]["id"]], "archive": True}
    )
    assert archived.json() == {"success": True, "updated": 1}
    only_foreign = world.viewer.post(
        "/api/activity/archive", json={"eventIds": junk, "archive": True}
    )
    assert only_foreign.json() == {"success": True, "updated": 0}
    # The stranger's event is untouched.
    mine = Browser(app, stranger.email).activity(resourceType="training")["events"]
    assert [(e["id"], e["seen"], e["archived"]) for e in mine] == [(foreign, False, False)]


def test_events_of_another_workspace_of_the_caller_are_ignored_without_owner(world, db, clock):
    """Ids act in the chosen workspace only; the member's personal events stay put."""
    personal = personal_workspace(db, world.member)
    secret = make_key(db, clock, world.member)
    own = ingest(world.client, secret, event_body(1)).json()["event"]["id"]
    response = world.viewer.post("/api/activity/archive", json={"eventIds": [own], "archive": True})
    assert response.json()["updated"] == 0
    response = world.viewer.post(
        f"/api/activity/archive?owner={personal.slug}", json={"eventIds": [own], "archive": True}
    )
    assert response.json()["updated"] == 1
    # mark-seen takes owner too, and answers that workspace's unseen count.
    response = world.viewer.post(
        f"/api/activity/mark-seen?owner={personal.slug}", json={"all": True}
    )
    assert response.json() == {"success": True, "unseenCount": 0}
    world.send([event_body(5)])
    assert world.viewer.activity()["unseenCount"] == 1
    response = world.viewer.post(
        f"/api/activity/mark-seen?owner={world.team.slug}", json={"all": True}
    )
    assert response.json() == {"success": True, "unseenCount": 0}


def test_a_foreign_or_unknown_owner_is_404_alike(world, db, clock):
    stranger = make_user(db, clock)
    foreign = personal_workspace(db, stranger)
    for route in ROUTES:
        body = {"all": True, "archive": True} if "archive" in route else {"all": True}
        a = world.viewer.post(f"{route}?owner={foreign.slug}", json=body)
        b = world.viewer.post(f"{route}?owner=nobody-here", json=body)
        assert_error(a, 404, "not_found", case=route)
        assert a.json() == b.json()
        assert a.status_code == b.status_code


# ---- bad bodies --------------------------------------------------------------------------


def test_1001_ids_are_refused_and_nothing_changes(world):
    sent = world.send([event_body(i) for i in range(3)])
    many = [sent[0]["id"]] * 1001
    for route in ROUTES:
        body = {"eventIds": many, "archive": True} if "archive" in route else {"eventIds": many}
        response = world.viewer.post(route, json=body)
        assert response.status_code in (413, 422), response.text
        error = response.json()["error"]
        assert error["code"] in ("payload_too_large", "invalid_request")
        assert "1000" in error["message"]
        assert "eventIds" in error["message"]
        inbox, archive, unseen = _state(world.viewer)
        assert len(inbox) == 3
        assert archive == []
        assert unseen == 3
    # Exactly 1000 is fine.
    for route in ROUTES:
        body = (
            {"eventIds": many[:1000], "archive": True}
            if "archive" in route
            else {"eventIds": many[:1000]}
        )
        assert world.viewer.post(route, json=body).status_code == 200


BAD_BODIES = [
    ({"eventIds": ["x" * 129]}, "eventIds[0]"),
    ({"eventIds": ["ok", "x" * 1000]}, "eventIds[1]"),
    ({}, "eventIds"),
    ({"all": False}, "eventIds"),
    ({"eventIds": None}, "eventIds"),
    ({"eventIds": "abc"}, "eventIds"),
    ({"eventIds": [1, 2]}, "eventIds[0]"),
    ({"eventIds": [None]}, "eventIds[0]"),
    ({"eventIds": {"a": 1}}, "eventIds"),
    ({"all": "yes"}, "all"),
    ({"all": 1}, "all"),
    ({"all": "true"}, "all"),
    ({"all": None}, "eventIds"),
    ({"all": True, "colour": "red"}, "colour"),
    ({"eventIds": [], "owner": "x"}, "owner"),
    ({"event_ids": ["a"]}, "event_ids"),
]


def test_bad_bodies_are_422_naming_the_field(world):
    sent = world.send([event_body(1)])
    for route in ROUTES:
        for body, field in BAD_BODIES:
            response = world.viewer.post(route, json=body)
            assert_error(response, 422, "invalid_request", field, case=(route, body))
    for body, field in [
        ({"eventIds": [sent[0]["id"]], "archive": "no"}, "archive"),
        ({"eventIds": [sent[0]["id"]], "archive": 0}, "archive"),
        ({"eventIds": [sent[0]["id"]], "archive": None}, "archive"),
    ]:
        response = world.viewer.post("/api/activity/archive", json=body)
        assert_error(response, 422, "invalid_request", field, case=body)
    # mark-seen takes no "archive".
    response = world.viewer.post("/api/activity/mark-seen", json={"all": True, "archive": True})
    assert_error(response, 422, "invalid_request", "archive")
    assert _state(world.viewer) == ([sent[0]["id"]], [], 1)


MALFORMED = [
    b"{not json",
    b"",
    b"[]",
    b'"all"',
    b"null",
    b"\xff\xfe",
    b'{"all": true,}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"all":' * 50_000 + b"true" + b"}" * 50_000,
]


def test_malformed_json_is_422(world):
    for route in ROUTES:
        for content in MALFORMED:
            response = world.viewer.post(
                route, content=content, headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 422, (route, content[:20], response.text[:300])
            assert response.json()["error"]["code"] == "invalid_request"


# ---- authentication ----------------------------------------------------------------------


def test_state_routes_need_a_session_and_csrf(world):
    body = {"all": True}
    for route in ROUTES:
        assert_error(world.client.post(route, json=body), 401, "not_authenticated")
        response = world.client.post(
            route, json=body, headers={"Authorization": f"Bearer {world.secret}"}
        )
        assert_error(response, 401, "browser_session_required")
        without_token = world.viewer.client.post(route, json=body)
        assert_error(without_token, 403, "csrf_failed")
        wrong_token = world.viewer.client.post(route, json=body, headers={"X-CSRF-Token": "wrong"})
        assert_error(wrong_token, 403, "csrf_failed")
    # Nothing was marked seen or archived by the refused requests.
    world.send([event_body(1)])
    assert world.viewer.activity()["unseenCount"] == 1
