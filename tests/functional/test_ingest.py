"""POST /api/events: producers report events with an API key (PRODUCT.md, "Producers")."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from activityfeed.web import create_app
from tests.factories import Browser, event_body, ingest, make_key, make_user, personal_workspace
from tests.functional.feed_helpers import World, assert_error, ids, iso, make_world


@pytest.fixture
def world(app, client, db, clock) -> World:
    return make_world(app, client, db, clock)


def _post_raw(client: TestClient, secret: str, content: bytes | str, **headers: str) -> Any:
    return client.post(
        "/api/events",
        content=content,
        headers={
            "Authorization": f"Bearer {secret}",
            "Content-Type": "application/json",
            **headers,
        },
    )


def _count(world: World) -> int:
    return int(world.viewer.activity(limit=1)["total"])


# ---- the happy paths ---------------------------------------------------------------------


def test_single_event_answers_201_with_the_event(world, clock):
    """One event answers 201 ``{"event"}`` in the public shape, unseen, in the Inbox."""
    response = ingest(world.client, world.secret, event_body(1, metadata={"epochs": 3}))
    assert response.status_code == 201, response.text
    assert set(response.json()) == {"event"}
    event = response.json()["event"]
    assert set(event) == {
        "id",
        "workspaceId",
        "resourceType",
        "resourceId",
        "resourceName",
        "action",
        "description",
        "actor",
        "source",
        "createdAt",
        "metadata",
        "seen",
        "archived",
        "resourceDeleted",
        "resourceState",
        "undoableUntil",
    }
    assert event["workspaceId"] == world.team.id
    assert event["resourceType"] == "training"
    assert event["action"] == "completed"
    assert event["resourceId"] == "run-1"
    assert event["resourceName"] == "yolo-run-1"
    assert event["description"] == "Completed training yolo-run-1"
    assert event["actor"] is None
    assert event["source"] == {"kind": "api_key", "apiKeyPrefix": world.secret[:12]}
    assert event["createdAt"] == iso(clock.current)
    assert event["metadata"] == {"epochs": 3}
    assert event["seen"] is False
    assert event["archived"] is False
    assert event["resourceDeleted"] is False
    assert event["resourceState"] is None
    assert event["undoableUntil"] is None
    feed = world.viewer.activity()
    assert feed["events"] == [event]


def test_batch_answers_201_with_the_events_in_order(world):
    """A batch answers 201 ``{"events"}`` in the order sent; each event is stored once."""
    bodies = [event_body(i) for i in range(5)]
    response = ingest(world.client, world.secret, {"events": bodies})
    assert response.status_code == 201, response.text
    assert set(response.json()) == {"events"}
    events = response.json()["events"]
    assert [e["resourceId"] for e in events] == [f"run-{i}" for i in range(5)]
    assert len({e["id"] for e in events}) == 5
    # Ids sort by creation: the batch's ids follow the order it was recorded in.
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert _count(world) == 5


def test_a_batch_of_1000_is_accepted(world):
    response = ingest(world.client, world.secret, {"events": [event_body(i) for i in range(1000)]})
    assert response.status_code == 201, response.text
    assert len(response.json()["events"]) == 1000
    assert _count(world) == 1000


def test_a_batch_is_decoded_validated_and_answered_off_the_event_loop(world, monkeypatch):
    """The body's decoding and validation and the answer's encoding run on a worker
    thread, not on the event loop that every live stream of the worker shares."""
    from activityfeed.web.api import events as events_api

    on_loop: dict[str, bool] = {}

    def spy(name: str, fn: Any) -> Any:
        def called(*args: Any, **kwargs: Any) -> Any:
            try:
                asyncio.get_running_loop()
                on_loop[name] = True
            except RuntimeError:
                on_loop[name] = False
            return fn(*args, **kwargs)

        return called

    monkeypatch.setattr(events_api, "_read_body", spy("read", events_api._read_body))
    monkeypatch.setattr(events_api, "json_response", spy("answer", events_api.json_response))
    response = ingest(world.client, world.secret, {"events": [event_body(i) for i in range(50)]})
    assert response.status_code == 201, response.text
    assert on_loop == {"read": False, "answer": False}


def test_a_batch_of_1001_is_refused_and_nothing_stored(world):
    response = ingest(world.client, world.secret, {"events": [event_body(i) for i in range(1001)]})
    assert response.status_code in (413, 422), response.text
    assert response.json()["error"]["code"] in ("payload_too_large", "invalid_request")
    assert _count(world) == 0


def test_every_action_and_ingestible_type_is_accepted(world):
    types = ["project", "dataset", "model", "training", "export", "deployment"]
    actions = [
        "created",
        "updated",
        "deleted",
        "trashed",
        "restored",
        "started",
        "completed",
        "failed",
        "cancelled",
        "uploaded",
        "shared",
        "unshared",
        "exported",
        "cloned",
        "analyzed",
    ]
    bodies = [
        event_body(i, resourceType=t, action=a)
        for i, (t, a) in enumerate((t, a) for t in types for a in actions)
    ]
    events = world.send(bodies)
    assert {(e["resourceType"], e["action"]) for e in events} == {
        (t, a) for t in types for a in actions
    }


DESCRIPTIONS = [
    ("project", "created", "my-project", "Created project my-project"),
    ("dataset", "uploaded", "coco8", "Uploaded to dataset coco8"),
    ("model", "exported", "yolo11n", "Exported model yolo11n"),
    ("training", "failed", "run-7", "Failed training run-7"),
    ("dataset", "analyzed", "coco8", "Analyzed dataset coco8"),
    ("project", "trashed", "old", "Moved project old to trash"),
]


def test_description_is_generated_when_absent(world):
    for i, (resource_type, action, name, expected) in enumerate(DESCRIPTIONS):
        body = event_body(i, resourceType=resource_type, action=action, resourceName=name)
        response = ingest(world.client, world.secret, body)
        assert response.status_code == 201, response.text
        assert response.json()["event"]["description"] == expected
    # An empty or blank description is no description.
    for blank in ("", "   "):
        response = ingest(world.client, world.secret, event_body(9, description=blank))
        assert response.json()["event"]["description"] == "Completed training yolo-run-9"


def test_given_description_is_kept(world):
    body = event_body(1, description="Training run 7 reached mAP 0.61")
    response = ingest(world.client, world.secret, body)
    assert response.json()["event"]["description"] == "Training run 7 reached mAP 0.61"


def test_events_go_to_the_keys_workspace_only(app, world, db, clock):
    """A team key writes into the team; the owner's personal workspace gets nothing."""
    world.send([event_body(1)])
    owner = Browser(app, world.owner.email)
    personal = personal_workspace(db, world.owner)
    assert owner.activity(owner=personal.slug)["total"] == 0
    # The owner sees the event and their own private "key created" event in the team.
    team = owner.activity(owner=world.team.slug)
    assert {e["resourceType"] for e in team["events"]} == {"training", "api_key"}
    # A personal key writes into the personal workspace only.
    own_secret = make_key(db, clock, world.owner)
    assert ingest(world.client, own_secret, event_body(2)).status_code == 201
    personal_feed = owner.activity(owner=personal.slug, resourceType="training")
    assert [e["resourceId"] for e in personal_feed["events"]] == ["run-2"]
    assert world.viewer.activity()["total"] == 1


# ---- occurredAt --------------------------------------------------------------------------


def test_occurred_at_becomes_created_at_in_utc(world, clock):
    moment = clock.current - timedelta(days=2, hours=3)
    with_offset = (moment + timedelta(hours=2)).replace(tzinfo=None).isoformat() + "+02:00"
    naive = (moment - timedelta(hours=1)).replace(tzinfo=None).isoformat()
    micro = (moment - timedelta(microseconds=123456)).isoformat()
    events = world.send(
        [
            event_body(1, occurredAt=with_offset),
            event_body(2, occurredAt=naive),
            event_body(3, occurredAt=micro),
        ]
    )
    assert events[0]["createdAt"] == iso(moment)
    assert events[1]["createdAt"] == iso(moment - timedelta(hours=1))
    assert events[2]["createdAt"] == iso(moment - timedelta(microseconds=123456))
    assert events[2]["createdAt"].endswith(".876544Z")


OCCURRED_AT_BOUNDS = [
    (timedelta(days=-364), True),
    (timedelta(days=-365), True),
    (timedelta(days=-365, seconds=-1), False),
    (timedelta(days=-400), False),
    (timedelta(minutes=4), True),
    (timedelta(minutes=5), True),
    (timedelta(minutes=5, seconds=1), False),
    (timedelta(days=2), False),
]


def test_occurred_at_bounds(world, clock):
    """At most 365 days back and 5 minutes ahead; outside → 422 naming occurredAt."""
    accepted = 0
    for delta, ok in OCCURRED_AT_BOUNDS:
        body = event_body(1, occurredAt=iso(clock.current + delta))
        response = ingest(world.client, world.secret, body)
        if ok:
            assert response.status_code == 201, (delta, response.text)
            accepted += 1
        else:
            assert_error(response, 422, "invalid_request", "occurredAt", case=delta)
    assert world.viewer.activity(start="2000-01-01", limit=1)["total"] == accepted


def test_occurred_at_bounds_name_the_batch_item(world, clock):
    bodies = [event_body(0), event_body(1, occurredAt=iso(clock.current - timedelta(days=500)))]
    response = ingest(world.client, world.secret, {"events": bodies})
    assert_error(response, 422, "invalid_request", "events[1].occurredAt")
    assert _count(world) == 0


# ---- validation: every bad item names itself and nothing is stored -----------------------


BAD_ITEMS = [
    ({"resourceType": "spaceship"}, "resourceType", "invalid_request"),
    ({"resourceType": "PROJECT"}, "resourceType", "invalid_request"),
    ({"resourceType": 3}, "resourceType", "invalid_request"),
    ({"resourceType": None}, "resourceType", "invalid_request"),
    ({"action": "exploded"}, "action", "invalid_request"),
    ({"action": ["created"]}, "action", "invalid_request"),
    ({"resourceId": ""}, "resourceId", "invalid_request"),
    ({"resourceId": 12}, "resourceId", "invalid_request"),
    ({"resourceId": "x" * 129}, "resourceId", "invalid_request"),
    ({"resourceName": ""}, "resourceName", "invalid_request"),
    ({"resourceName": "x" * 301}, "resourceName", "invalid_request"),
    ({"resourceName": {"a": 1}}, "resourceName", "invalid_request"),
    ({"description": 5}, "description", "invalid_request"),
    ({"description": "x" * 1001}, "description", "invalid_request"),
    ({"metadata": [1, 2]}, "metadata", "invalid_request"),
    ({"metadata": "text"}, "metadata", "invalid_request"),
    ({"occurredAt": "yesterday"}, "occurredAt", "invalid_request"),
    ({"occurredAt": "2026-13-45T00:00:00Z"}, "occurredAt", "invalid_request"),
    ({"idempotencyKey": ""}, "idempotencyKey", "invalid_request"),
    ({"idempotencyKey": "k" * 201}, "idempotencyKey", "invalid_request"),
    ({"colour": "red"}, "colour", "invalid_request"),
    ({"resource_id": "snake"}, "resource_id", "invalid_request"),
    ({"resourceType": "settings"}, "resourceType", "type_not_ingestible"),
    ({"resourceType": "api_key"}, "resourceType", "type_not_ingestible"),
    ({"resourceType": "onboarding", "action": "completed"}, "resourceType", "type_not_ingestible"),
    ({"resourceName": "nul\u0000byte"}, "resourceName", "invalid_request"),
    ({"description": "nul\u0000byte"}, "description", "invalid_request"),
    ({"metadata": {"k": "nul\u0000byte"}}, "metadata", "invalid_request"),
    ({"metadata": {"nul\u0000key": 1}}, "metadata", "invalid_request"),
]


def test_a_bad_single_event_names_the_field(world):
    for override, field, code in BAD_ITEMS:
        response = ingest(world.client, world.secret, event_body(1, **override))
        assert_error(response, 422, code, field, case=override)
    assert _count(world) == 0


def test_one_bad_item_fails_the_whole_batch(world):
    """A batch is atomic: one invalid item → 422 naming ``events[i].field``, nothing stored."""
    for override, field, code in BAD_ITEMS:
        bodies = [event_body(i) for i in range(4)]
        bodies[2] = event_body(2, **override)
        response = ingest(world.client, world.secret, {"events": bodies})
        assert_error(response, 422, code, f"events[2].{field}", case=override)
        assert response.json()["error"]["message"].startswith("events[2]")
    assert _count(world) == 0


def test_a_missing_required_field_is_named(world):
    for missing in ("resourceType", "action", "resourceId", "resourceName"):
        body = event_body(1)
        del body[missing]
        response = ingest(world.client, world.secret, body)
        assert_error(response, 422, "invalid_request", missing, case=missing)
        response = ingest(world.client, world.secret, {"events": [event_body(0), body]})
        assert_error(response, 422, "invalid_request", f"events[1].{missing}", case=missing)
    assert _count(world) == 0


def test_a_batch_item_that_is_not_an_object_is_named(world):
    for item in ("text", 5, None, [event_body(1)], True):
        response = ingest(world.client, world.secret, {"events": [event_body(0), item]})
        error = assert_error(response, 422, "invalid_request", case=item)
        assert error["field"] == "events[1]", item
    assert _count(world) == 0


MALFORMED = [
    (b"{not json", "body"),
    (b"", "body"),
    (b'{"resourceType": "project",', "body"),
    (b"\xff\xfe\x00garbage", "body"),
    (b"[]", "body"),
    (b'"an event"', "body"),
    (b"42", "body"),
    (b"null", "body"),
    (b'{"events": {}}', "events"),
    (b'{"events": "x"}', "events"),
    (b'{"events": []}', "events"),
    (b'{"events": [], "extra": 1}', "extra"),
    # Python's parser takes these; JSON and PostgreSQL do not.
    (
        b'{"resourceType": "project", "action": "created", "resourceId": "p", '
        b'"resourceName": "p", "metadata": {"x": NaN}}',
        "body",
    ),
    (
        b'{"resourceType": "project", "action": "created", "resourceId": "p", '
        b'"resourceName": "p", "metadata": {"x": -Infinity}}',
        "body",
    ),
    (
        b'{"resourceType": "project", "action": "created", "resourceId": "p", '
        b'"resourceName": "p", "metadata": {"x": 1e999}}',
        "body",
    ),
    (
        b'{"resourceType": "project", "action": "created", "resourceId": "p", '
        b'"resourceName": "p", "metadata": {"x": ' + b"9" * 5000 + b"}}",
        "body",
    ),
]


def test_malformed_bodies_are_422(world):
    for content, field in MALFORMED:
        response = _post_raw(world.client, world.secret, content)
        assert_error(response, 422, "invalid_request", field, case=content)
    assert _count(world) == 0


def test_a_lone_surrogate_is_refused_not_a_crash(world):
    raw = '{"resourceType": "project", "action": "created", "resourceId": "p", '
    raw += '"resourceName": "bad \\ud800 name"}'
    response = _post_raw(world.client, world.secret, raw)
    assert_error(response, 422, "invalid_request", "resourceName")
    assert _count(world) == 0


# ---- metadata ----------------------------------------------------------------------------


def test_metadata_is_kept_and_secret_looking_keys_are_redacted(world):
    metadata = {
        "epochs": 100,
        "map50": 0.61,
        "tags": ["a", "b"],
        "nested": {"password": "hunter2", "note": "kept", "list": [{"apiKey": "abc"}]},
        "access_token": "t0k3n",
        "Authorization": "Bearer abc",
        "client_secret": "s3cr3t",
        "privateKey": "-----BEGIN",
        "passed_tests": 12,
        "max_tokens": 256,
        "compass": "north",
        "empty_password": "",
        "none": None,
    }
    event = ingest(world.client, world.secret, event_body(1, metadata=metadata)).json()["event"]
    got = event["metadata"]
    assert got["epochs"] == 100
    assert got["map50"] == 0.61
    assert got["tags"] == ["a", "b"]
    assert got["nested"]["note"] == "kept"
    for value in (
        got["nested"]["password"],
        got["nested"]["list"][0]["apiKey"],
        got["access_token"],
        got["Authorization"],
        got["client_secret"],
        got["privateKey"],
    ):
        assert value == "[redacted]"
    # Keys that merely contain a secret-ish fragment are ordinary data.
    assert got["passed_tests"] == 12
    assert got["max_tokens"] == 256
    assert got["compass"] == "north"
    assert got["none"] is None
    # What was answered is what is stored and listed.
    assert world.viewer.activity()["events"][0]["metadata"] == got


def test_an_api_key_in_a_metadata_value_is_redacted(world):
    metadata = {"note": f"used {world.secret} here", "key_used": world.secret}
    event = ingest(world.client, world.secret, event_body(1, metadata=metadata)).json()["event"]
    assert world.secret not in json.dumps(event)


def test_an_api_key_in_a_metadata_key_name_is_redacted_and_nothing_is_lost(world):
    """Key names are text too: an API key or bearer token in one is redacted as in a
    value. Names that then coincide, with each other or with a name sent as it is, are
    numbered in order, so every member is kept."""
    other = "afk_" + "B" * 40
    metadata = {
        world.secret: 1,
        f"run {other} used": 2,
        "[redacted]": 3,
        "usage": {f"Bearer {other}": 4, "[redacted] (2)": 5, other: 6},
    }
    response = ingest(world.client, world.secret, event_body(1, metadata=metadata))
    assert response.status_code == 201, response.text
    assert world.secret not in response.text
    assert other not in response.text
    got = response.json()["event"]["metadata"]
    assert got == {
        "[redacted] (2)": 1,
        "run [redacted] used": 2,
        "[redacted]": 3,
        "usage": {"[redacted]": 4, "[redacted] (2)": 5, "[redacted] (3)": 6},
    }
    assert list(got) == ["[redacted] (2)", "run [redacted] used", "[redacted]", "usage"]
    assert world.viewer.activity()["events"][0]["metadata"] == got


def test_metadata_absent_or_null_is_an_empty_object(world):
    events = world.send([event_body(1), event_body(2, metadata=None), event_body(3, metadata={})])
    assert [e["metadata"] for e in events] == [{}, {}, {}]


def test_oversized_metadata_is_422(world, settings):
    big = {"blob": "x" * (settings.max_metadata_bytes + 1)}
    response = ingest(world.client, world.secret, event_body(1, metadata=big))
    assert_error(response, 422, "invalid_request", "metadata")
    response = ingest(
        world.client, world.secret, {"events": [event_body(0), event_body(1, metadata=big)]}
    )
    assert_error(response, 422, "invalid_request", "events[1].metadata")
    assert _count(world) == 0


def test_the_metadata_limit_counts_utf8_bytes_of_compact_json(world, settings):
    """The limit is on the UTF-8 bytes of compact JSON (no ``\\u00e9`` escapes), as a
    producer measures it, and a refusal reports that same size."""

    def size(metadata: dict[str, Any]) -> int:
        return len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())

    # '{"note":"' and '"}' around the text: the limit exactly, in two-byte characters.
    fits = {"note": "é" * ((settings.max_metadata_bytes - 11) // 2) + "x"}
    assert size(fits) == settings.max_metadata_bytes
    response = ingest(world.client, world.secret, event_body(1, metadata=fits))
    assert response.status_code == 201, response.text[:300]
    assert response.json()["event"]["metadata"] == fits
    assert world.viewer.activity()["events"][0]["metadata"] == fits
    over = {"note": fits["note"] + "x"}
    response = ingest(world.client, world.secret, event_body(2, metadata=over))
    error = assert_error(response, 422, "invalid_request", "metadata")
    assert f"this has {size(over)}." in error["message"]
    assert _count(world) == 1


def _nested(levels: int) -> str:
    """An event whose metadata is ``levels`` objects deep, as JSON text."""
    metadata = '{"a":' * (levels - 1) + '{"leaf": 1}' + "}" * (levels - 1)
    return json.dumps(event_body(1))[:-1] + ', "metadata": ' + metadata + "}"


def test_metadata_nesting_is_limited(world):
    response = _post_raw(world.client, world.secret, _nested(5))
    assert response.status_code == 201, response.text
    assert response.json()["event"]["metadata"] == {"a": {"a": {"a": {"a": {"leaf": 1}}}}}
    for levels in (9, 20, 600):
        response = _post_raw(world.client, world.secret, _nested(levels))
        assert_error(response, 422, "invalid_request", "metadata")
    # Deeper than the JSON parser goes, the body as a whole is refused.
    response = _post_raw(world.client, world.secret, _nested(5000))
    assert_error(response, 422, "invalid_request")
    assert _count(world) == 1


def test_metadata_checks_see_through_json_escapes(world):
    """Ingestion checks metadata on its JSON text first: what only looks suspicious
    there (an emoji's surrogate escapes, a literal backslash-u text) is kept, and a
    secret or a lone surrogate is caught however JSON spells it."""
    metadata = {
        "emoji": "done \U0001f600",
        "path": "C:\\udata\\u0000x",
        "tabbed": "Bearer\tsecret-token",
        "spaced": "see\u00a0Bearer\u2003x",
    }
    event = ingest(world.client, world.secret, event_body(1, metadata=metadata)).json()["event"]
    assert event["metadata"] == {
        "emoji": "done \U0001f600",
        "path": "C:\\udata\\u0000x",
        "tabbed": "[redacted]",
        "spaced": "see\u00a0[redacted]",
    }
    raw = json.dumps(event_body(2))[:-1] + ', "metadata": {"k": ["ok", "bad \\ud800"]}}'
    assert_error(_post_raw(world.client, world.secret, raw), 422, "invalid_request", "metadata")
    # Seven objects deep holds a value at level 8, the limit; eight objects is one more.
    assert _post_raw(world.client, world.secret, _nested(7)).status_code == 201
    assert_error(
        _post_raw(world.client, world.secret, _nested(8)), 422, "invalid_request", "metadata"
    )
    assert _count(world) == 2


def test_pathologically_deep_json_is_422_not_a_crash(world):
    depth = 200_000
    raw = '{"resourceType": "project", "action": "created", "resourceId": "p", '
    raw += '"resourceName": "p", "metadata": ' + '{"a":' * depth + "1" + "}" * depth + "}"
    response = _post_raw(world.client, world.secret, raw)
    assert response.status_code == 422, response.text[:300]
    assert response.json()["error"]["code"] == "invalid_request"
    raw = "[" * depth + "]" * depth
    response = _post_raw(world.client, world.secret, raw)
    assert response.status_code == 422, response.text[:300]
    assert _count(world) == 0


# ---- body size ---------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413(settings, db, clock):
    small = create_app(replace(settings, max_body_bytes=4000), db=db, clock=clock)
    user = make_user(db, clock)
    secret = make_key(db, clock, user)
    with TestClient(small, base_url="http://testserver") as client:
        fits = ingest(client, secret, {"events": [event_body(i) for i in range(5)]})
        assert fits.status_code == 201, fits.text
        response = ingest(client, secret, {"events": [event_body(i) for i in range(100)]})
        assert_error(response, 413, "payload_too_large")
        # Sent without a Content-Length (chunked), the limit holds all the same.
        body = json.dumps({"events": [event_body(i) for i in range(100)]}).encode()

        def chunks() -> Any:
            for start in range(0, len(body), 1000):
                yield body[start : start + 1000]

        response = client.post(
            "/api/events",
            content=chunks(),
            headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
        )
        assert_error(response, 413, "payload_too_large")
        browser = Browser(small, user.email)
        assert browser.activity(resourceType="training")["total"] == 5


# ---- authentication ----------------------------------------------------------------------


def test_no_key_is_401(world):
    response = world.client.post("/api/events", json=event_body(1))
    assert_error(response, 401, "not_authenticated")
    response = world.client.post(
        "/api/events", json=event_body(1), headers={"Authorization": "Basic abc"}
    )
    assert_error(response, 401, "not_authenticated")


def test_an_unknown_key_is_401_invalid_api_key(world):
    for secret in ("afk_unknown", "nonsense", "afk_" + "x" * 40, world.secret + "x"):
        response = ingest(world.client, secret, event_body(1))
        assert_error(response, 401, "invalid_api_key", case=secret)
    response = world.client.post(
        "/api/events", json=event_body(1), headers={"Authorization": "Bearer "}
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] in ("invalid_api_key", "not_authenticated")
    assert _count(world) == 0


def test_a_revoked_key_is_401_invalid_api_key(app, world):
    owner = world.browser(world.owner)
    keys = owner.get("/api/api-keys").json()["apiKeys"]
    assert len(keys) == 1
    assert ingest(world.client, world.secret, event_body(1)).status_code == 201
    assert owner.delete(f"/api/api-keys/{keys[0]['id']}").status_code == 200
    response = ingest(world.client, world.secret, event_body(2))
    assert_error(response, 401, "invalid_api_key")
    assert _count(world) == 1


def test_a_browser_session_cannot_ingest(world):
    """Ingestion is for API keys; a signed-in browser without one is not authenticated."""
    response = world.viewer.post("/api/events", json=event_body(1))
    assert_error(response, 401, "not_authenticated")


# ---- idempotency -------------------------------------------------------------------------


def test_a_replayed_idempotency_key_returns_the_original(world, clock):
    body = event_body(1, idempotencyKey="run-1-done", metadata={"map": 0.5})
    first = ingest(world.client, world.secret, body)
    assert first.status_code == 201, first.text
    clock.advance(seconds=30)
    again = ingest(world.client, world.secret, body)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert _count(world) == 1


def test_a_replay_may_spell_the_same_instant_differently(world, clock):
    moment = clock.current - timedelta(hours=1)
    first = event_body(1, idempotencyKey="when", occurredAt=iso(moment))
    assert ingest(world.client, world.secret, first).status_code == 201
    shifted = (moment + timedelta(hours=2)).replace(tzinfo=None).isoformat() + "+02:00"
    again = ingest(world.client, world.secret, dict(first, occurredAt=shifted))
    assert again.status_code == 200, again.text
    later = ingest(world.client, world.secret, dict(first, occurredAt=iso(clock.current)))
    assert_error(later, 422, "idempotency_key_reused", "idempotencyKey")
    assert _count(world) == 1


@pytest.mark.parametrize("occurred_at", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_a_replay_at_an_instant_past_the_calendar_is_another_payload(world, occurred_at):
    """A stored key skips the occurredAt bounds, so a replay may carry an instant that
    has no UTC time (year 10000, year 0): it is not the recorded event, so the key is
    ``idempotency_key_reused``, never a crash."""
    assert ingest(world.client, world.secret, event_body(1, idempotencyKey="k1")).status_code == 201
    response = ingest(
        world.client, world.secret, event_body(1, idempotencyKey="k1", occurredAt=occurred_at)
    )
    assert_error(response, 422, "idempotency_key_reused", "idempotencyKey")
    # Without a stored key the same instant is simply out of bounds.
    response = ingest(
        world.client, world.secret, event_body(1, idempotencyKey="k2", occurredAt=occurred_at)
    )
    assert_error(response, 422, "invalid_request", "occurredAt")
    assert _count(world) == 1


def test_the_same_key_with_another_payload_is_refused(world):
    assert ingest(world.client, world.secret, event_body(1, idempotencyKey="k1")).status_code == 201
    response = ingest(
        world.client, world.secret, event_body(1, idempotencyKey="k1", action="failed")
    )
    assert_error(response, 422, "idempotency_key_reused", "idempotencyKey")
    response = ingest(
        world.client,
        world.secret,
        {"events": [event_body(5), event_body(1, idempotencyKey="k1", resourceName="other")]},
    )
    assert_error(response, 422, "idempotency_key_reused", "events[1].idempotencyKey")
    assert _count(world) == 1


def test_a_replayed_batch_returns_the_original_events(world):
    bodies = [event_body(i, idempotencyKey=f"b-{i}") for i in range(3)]
    first = ingest(world.client, world.secret, {"events": bodies})
    assert first.status_code == 201
    again = ingest(world.client, world.secret, {"events": bodies})
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    # A batch that mixes a replay with a new item records only the new one.
    mixed = ingest(
        world.client, world.secret, {"events": [bodies[0], event_body(9, idempotencyKey="b-9")]}
    )
    assert mixed.status_code == 201
    assert mixed.json()["events"][0] == first.json()["events"][0]
    assert _count(world) == 4
    # The single-event form replays a key first sent in a batch.
    single = ingest(world.client, world.secret, bodies[1])
    assert single.status_code == 200
    assert single.json() == {"event": first.json()["events"][1]}


def test_a_key_repeated_inside_one_batch(world):
    same = event_body(1, idempotencyKey="dup")
    response = ingest(world.client, world.secret, {"events": [same, same]})
    assert response.status_code == 201, response.text
    events = response.json()["events"]
    assert events[0] == events[1]
    assert _count(world) == 1
    clash = {"events": [event_body(2, idempotencyKey="x"), event_body(3, idempotencyKey="x")]}
    assert_error(
        ingest(world.client, world.secret, clash),
        422,
        "idempotency_key_reused",
        "events[1].idempotencyKey",
    )
    assert _count(world) == 1


def test_idempotency_keys_are_per_workspace(world, db, clock):
    body = event_body(1, idempotencyKey="shared-key")
    assert ingest(world.client, world.secret, body).status_code == 201
    other_secret = make_key(db, clock, world.owner)
    response = ingest(world.client, other_secret, body)
    assert response.status_code == 201
    assert response.json()["event"]["workspaceId"] != world.team.id


def test_concurrent_retries_create_exactly_one_event(app, world):
    """Ten simultaneous retries of one key: one event, every answer carries it."""
    body = event_body(1, idempotencyKey="concurrent")
    barrier = threading.Barrier(10)
    results: list[Any] = [None] * 10

    def send(i: int) -> None:
        with TestClient(app, base_url="http://testserver") as client:
            barrier.wait()
            results[i] = ingest(client, world.secret, body)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] * 9 + [201], [r.text for r in results]
    assert len({r.json()["event"]["id"] for r in results}) == 1
    assert _count(world) == 1


def test_concurrent_batches_keep_every_event(app, world):
    """Parallel producers into one workspace lose nothing and number events densely."""
    results: list[Any] = [None] * 6

    def send(i: int) -> None:
        with TestClient(app, base_url="http://testserver") as client:
            results[i] = ingest(
                client, world.secret, {"events": [event_body(i * 10 + j) for j in range(10)]}
            )

    threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status_code == 201 for r in results), [r.text for r in results]
    feed = world.viewer.activity(limit=100)
    assert feed["total"] == 60
    assert feed["unseenCount"] == 60
    assert len(set(ids(feed))) == 60
