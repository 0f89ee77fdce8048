"""Requests shaped by the platform's own published OpenAPI document work against ours.

``/work/shared/reference/platform-activity-openapi.json`` (copied into the repository as
``tests/functional/data/platform-activity-openapi.json`` so that a clone runs alone)
describes ``GET /api/activity`` and the ``mark-seen``/``archive`` bodies. Every query
parameter and body property it lists is replayed here with values of its declared type.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.factories import event_body
from tests.functional.feed_helpers import World, ids, iso, make_world

SPEC_PATH = Path(__file__).parent / "data" / "platform-activity-openapi.json"
SPEC: dict[str, Any] = json.loads(SPEC_PATH.read_text())
LIST_PARAMS = {p["name"]: p for p in SPEC["paths"]["/api/activity"]["get"]["parameters"]}


def _body_schema(path: str) -> dict[str, Any]:
    content = SPEC["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    return dict(content["schema"])


@pytest.fixture
def world(app, client, db, clock) -> World:
    return make_world(app, client, db, clock)


def test_the_reference_lists_the_parameters_we_replay():
    """If the reference changes, this file must be revisited."""
    assert set(LIST_PARAMS) == {
        "limit",
        "page",
        "archived",
        "search",
        "start",
        "end",
        "export",
        "owner",
    }
    for path in ("/api/activity/mark-seen", "/api/activity/archive"):
        params = SPEC["paths"][path]["post"]["parameters"]
        assert [p["name"] for p in params] == ["owner"]
    assert set(_body_schema("/api/activity/mark-seen")["properties"]) == {"eventIds", "all"}
    assert set(_body_schema("/api/activity/archive")["properties"]) == {
        "eventIds",
        "archive",
        "all",
    }


def _value(name: str, world: World, clock: Any) -> list[str]:
    """Values of the parameter's declared type, as a client built from the spec sends them."""
    schema = LIST_PARAMS[name]["schema"]
    if name == "owner":
        return [world.team.slug]
    if name == "search":
        return ["model", "yolo"]
    if schema["type"] == "number":
        # A generated client may render a "number" as 20 or 20.0.
        return ["1", "20", "20.0", "100"] if name == "limit" else ["1", "1.0", "2"]
    if schema["type"] == "boolean":
        return ["true", "false"]
    if schema.get("format") == "date-time":
        # The pattern asks for "...T..:..(:..(.fff))Z".
        moment = clock.current - timedelta(days=2 if name == "start" else -1)
        return [
            iso(moment.replace(microsecond=0)),
            iso(moment.replace(microsecond=0))[:-4] + "Z",  # minutes only
            iso(moment.replace(microsecond=0))[:-1] + ".123Z",
        ]
    raise AssertionError(f"no sample for {name}")


@pytest.mark.parametrize("name", sorted(LIST_PARAMS))
def test_each_list_parameter_of_the_reference_is_accepted(world, clock, name):
    world.send([event_body(1, resourceType="model", resourceName="yolo-model")])
    for value in _value(name, world, clock):
        response = world.viewer.get("/api/activity", params={name: value})
        assert response.status_code == 200, (name, value, response.text)
        body = response.json()
        if name == "export" and value == "true":
            for key in ("exportedAt", "owner", "filters", "activity"):
                assert key in body
            assert "archived" in body["filters"]
            assert "attachment" in response.headers["content-disposition"]
        else:
            # The reference's required response fields are all there (ours are richer).
            for key in ("events", "total", "unseenCount"):
                assert key in body


def test_the_reference_example_requests(world, clock):
    """The seed's curl examples (with a session instead of the key they show)."""
    world.send([event_body(1, resourceType="model", resourceName="yolo-model"), event_body(2)])
    feed = world.viewer.get("/api/activity").json()
    assert feed["total"] == 2
    feed = world.viewer.get("/api/activity?archived=false&search=model&page=1&limit=20").json()
    assert [e["resourceName"] for e in feed["events"]] == ["yolo-model"]
    everything = world.viewer.get(
        "/api/activity",
        params={
            "limit": "20",
            "page": "1",
            "archived": "false",
            "search": "model",
            "start": iso(clock.current - timedelta(days=1)),
            "end": iso(clock.current),
            "owner": world.team.slug,
        },
    ).json()
    assert ids(everything) == ids(feed)
    export = world.viewer.get(
        "/api/activity",
        params={
            "export": "true",
            "archived": "false",
            "search": "model",
            "start": iso(clock.current - timedelta(days=1)),
            "end": iso(clock.current),
            "owner": world.team.slug,
        },
    ).json()
    assert [e["id"] for e in export["activity"]] == ids(feed)
    assert export["owner"] == world.team.slug
    assert export["filters"]["archived"] is False
    assert export["filters"]["search"] == "model"


def test_mark_seen_bodies_of_the_reference(world):
    sent = world.send([event_body(i) for i in range(3)])
    owner = f"?owner={world.team.slug}"
    response = world.viewer.post(
        "/api/activity/mark-seen" + owner, json={"eventIds": [sent[0]["id"]]}
    )
    assert response.status_code == 200
    assert response.json()["success"] is True
    response = world.viewer.post("/api/activity/mark-seen", json={"all": True})
    assert response.json() == {"success": True, "unseenCount": 0}
    # An empty object is valid by the reference schema but says nothing to do.
    response = world.viewer.post("/api/activity/mark-seen", json={})
    assert response.status_code == 422


def test_archive_bodies_of_the_reference(world):
    sent = world.send([event_body(i) for i in range(3)])
    owner = f"?owner={world.team.slug}"
    response = world.viewer.post(
        "/api/activity/archive", json={"eventIds": [sent[0]["id"]], "archive": True}
    )
    assert response.json() == {"success": True, "updated": 1}
    response = world.viewer.post(
        "/api/activity/archive" + owner, json={"eventIds": [sent[0]["id"]], "archive": False}
    )
    assert response.json() == {"success": True, "updated": 1}
    response = world.viewer.post(
        "/api/activity/archive" + owner, json={"all": True, "archive": True}
    )
    assert response.json() == {"success": True, "updated": 3}
    assert world.viewer.activity()["total"] == 0


@pytest.mark.parametrize("path", ["/api/activity/mark-seen", "/api/activity/archive"])
def test_the_reference_limits_on_event_ids(world, path):
    """``maxItems`` and the items' ``maxLength`` hold exactly; ``additionalProperties`` too."""
    schema = _body_schema(path)
    max_items = schema["properties"]["eventIds"]["maxItems"]
    max_length = schema["properties"]["eventIds"]["items"]["maxLength"]
    assert (max_items, max_length) == (1000, 128)
    ok = world.viewer.post(path, json={"eventIds": ["x" * max_length] * max_items})
    assert ok.status_code == 200, ok.text
    too_many = world.viewer.post(path, json={"eventIds": ["x"] * (max_items + 1)})
    assert too_many.status_code in (413, 422)
    too_long = world.viewer.post(path, json={"eventIds": ["x" * (max_length + 1)]})
    assert too_long.status_code == 422
    assert schema["additionalProperties"] is False
    extra = world.viewer.post(path, json={"eventIds": [], "reason": "tidy"})
    assert extra.status_code == 422
