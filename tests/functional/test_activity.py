"""GET /api/activity: the feed, its parameters, cursors and the export (PRODUCT.md)."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from activityfeed.domain.events import ResourceType
from activityfeed.services import activity as activity_service
from activityfeed.web.api import activity as activity_route
from activityfeed.web.deps import SessionLookup
from tests.factories import Browser, event_body, make_user, personal_workspace
from tests.functional.feed_helpers import World, assert_error, ids, iso, make_world, record_private

EVENT_FIELDS = {
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


@pytest.fixture
def world(app, client, db, clock) -> World:
    return make_world(app, client, db, clock)


def _at(clock: Any, **delta: float) -> str:
    return iso(clock.current - timedelta(**delta))


# ---- authentication ----------------------------------------------------------------------


def test_the_feed_needs_a_browser_session(world):
    """No session → 401 not_authenticated; an API key instead → browser_session_required."""
    assert_error(world.client.get("/api/activity"), 401, "not_authenticated")
    for secret in (world.secret, "afk_unknown", "garbage"):
        response = world.client.get("/api/activity", headers={"Authorization": f"Bearer {secret}"})
        assert_error(response, 401, "browser_session_required")


# ---- shape and order ---------------------------------------------------------------------


def test_response_and_event_shape(world, clock):
    sent = world.send([event_body(1, metadata={"epochs": 3, "nested": {"a": [1, 2]}})])[0]
    response = world.viewer.get("/api/activity")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    feed = response.json()
    assert set(feed) == {"events", "page", "limit", "total", "unseenCount", "nextCursor"}
    assert feed["page"] == 1
    assert feed["limit"] == 20
    assert feed["total"] == 1
    assert feed["unseenCount"] == 1
    assert feed["nextCursor"] is None
    (event,) = feed["events"]
    assert set(event) == EVENT_FIELDS
    assert event == sent
    assert event["workspaceId"] == world.team.id
    assert event["source"] == {"kind": "api_key", "apiKeyPrefix": world.secret[:12]}
    assert event["actor"] is None
    assert event["metadata"] == {"epochs": 3, "nested": {"a": [1, 2]}}
    created = event["createdAt"]
    assert created.endswith("Z")
    assert datetime.fromisoformat(created.replace("Z", "+00:00")) == clock.current
    assert event["seen"] is False
    assert event["archived"] is False
    assert event["resourceDeleted"] is False
    assert event["resourceState"] is None
    assert event["undoableUntil"] is None


def test_actor_is_snapshotted_for_platform_events(world, db, clock):
    """A platform event carries its actor ``{id, name, email}``; only the actor sees it."""
    event_id = record_private(db, clock, world.member, world.team, ResourceType.SETTINGS)
    (event,) = world.viewer.activity()["events"]
    assert event["id"] == event_id
    assert event["actor"] == {
        "id": world.member.id,
        "name": world.member.name,
        "email": world.member.email,
    }
    assert event["source"] == {"kind": "ui"}
    assert event["description"] == "Updated settings settings"


def test_newest_first_by_created_at_then_arrival(world, clock):
    sent = world.send(
        [
            event_body(1, occurredAt=_at(clock, hours=5)),
            event_body(2, occurredAt=_at(clock, hours=1)),
            event_body(3, occurredAt=_at(clock, hours=3)),
            event_body(4),
            event_body(5, occurredAt=_at(clock, hours=3)),
        ]
    )
    feed = world.viewer.activity()
    by_id = {e["id"]: e["resourceId"] for e in sent}
    # Same createdAt: the later arrival first.
    assert [by_id[i] for i in ids(feed)] == ["run-4", "run-2", "run-5", "run-3", "run-1"]


def test_get_never_changes_seen_state(world):
    world.send([event_body(i) for i in range(3)])
    for _ in range(3):
        feed = world.viewer.activity()
        assert feed["unseenCount"] == 3
        assert all(e["seen"] is False for e in feed["events"])
    world.viewer.activity(archived="true")
    world.viewer.get("/api/activity", params={"export": "true"})
    assert world.viewer.activity()["unseenCount"] == 3


def test_unknown_query_parameters_are_ignored(world):
    world.send([event_body(1)])
    feed = world.viewer.activity(colour="red", sort="oldest", foo="", **{"limit[]": "x"})
    assert feed["total"] == 1


# ---- archived ----------------------------------------------------------------------------


def test_inbox_by_default_and_archive_with_archived_true(world):
    sent = world.send([event_body(i) for i in range(4)])
    archived = world.viewer.post(
        "/api/activity/archive", json={"eventIds": [sent[0]["id"], sent[2]["id"]], "archive": True}
    )
    assert archived.json() == {"success": True, "updated": 2}
    inbox = world.viewer.activity()
    assert sorted(ids(inbox)) == sorted([sent[1]["id"], sent[3]["id"]])
    assert all(e["archived"] is False for e in inbox["events"])
    assert world.viewer.activity(archived="false") == inbox
    archive = world.viewer.activity(archived="true")
    assert sorted(ids(archive)) == sorted([sent[0]["id"], sent[2]["id"]])
    assert all(e["archived"] is True for e in archive["events"])
    assert archive["total"] == 2
    # unseenCount is about the Inbox, whichever tab is shown.
    assert archive["unseenCount"] == inbox["unseenCount"] == 2


def test_a_bad_archived_value_is_422(world):
    for value in ("maybe", "2", "yes please", "null"):
        response = world.viewer.get("/api/activity", params={"archived": value})
        assert_error(response, 422, "invalid_request", "archived", case=value)


# ---- page and limit ----------------------------------------------------------------------


def test_pages_and_limits(world):
    sent = world.send([event_body(i) for i in range(45)])
    newest_first = [e["id"] for e in reversed(sent)]
    first = world.viewer.activity()
    assert first["page"] == 1
    assert first["limit"] == 20
    assert first["total"] == 45
    assert ids(first) == newest_first[:20]
    assert ids(world.viewer.activity(page=2)) == newest_first[20:40]
    third = world.viewer.activity(page=3)
    assert ids(third) == newest_first[40:]
    assert third["page"] == 3
    assert third["total"] == 45
    assert world.viewer.activity(page=4)["events"] == []
    assert ids(world.viewer.activity(limit=100)) == newest_first
    assert ids(world.viewer.activity(limit=1, page=7)) == newest_first[6:7]
    assert ids(world.viewer.activity(limit=7, page=2)) == newest_first[7:14]


BAD_PAGING = [
    ("limit", "0"),
    ("limit", "101"),
    ("limit", "-1"),
    ("limit", "abc"),
    ("limit", "1.5"),
    ("limit", "1e400"),
    ("limit", "nan"),
    ("limit", "9" * 5000),
    ("page", "0"),
    ("page", "-3"),
    ("page", "abc"),
    ("page", "2.5"),
    ("page", "99999999999999999999999"),
]


def test_bad_page_or_limit_is_422_naming_it(world):
    for name, value in BAD_PAGING:
        response = world.viewer.get("/api/activity", params={name: value})
        assert_error(response, 422, "invalid_request", name, case=(name, value[:20]))


def test_number_style_paging_from_the_reference_is_accepted(world):
    for params, page, limit in [
        ({"limit": "20.0", "page": "1.0"}, 1, 20),
        ({"limit": "5", "page": "2"}, 2, 5),
        ({"limit": "100.00"}, 1, 100),
        ({"limit": " 7 "}, 1, 7),
        ({"limit": "", "page": ""}, 1, 20),
    ]:
        feed = world.viewer.activity(**params)
        assert (feed["page"], feed["limit"]) == (page, limit), params


# ---- search ------------------------------------------------------------------------------


def _search_world(world: World) -> dict[str, str]:
    """Events whose names, types and descriptions exercise search; name → id."""
    bodies = [
        event_body(1, resourceType="dataset", action="uploaded", resourceName="Coco8-Images"),
        event_body(2, resourceType="model", action="created", resourceName="yolo11n"),
        event_body(3, resourceType="project", action="created", resourceName="Traffic Cams"),
        event_body(
            4,
            resourceType="deployment",
            action="started",
            resourceName="edge-1",
            description="Rolled out to Berlin",
        ),
        event_body(5, resourceType="export", action="completed", resourceName="100%_done"),
        event_body(6, resourceType="export", action="completed", resourceName="100X-done"),
        event_body(7, resourceType="model", action="updated", resourceName='say "hi"'),
        event_body(8, resourceType="model", action="updated", resourceName="back\\slash"),
        event_body(9, resourceType="model", action="updated", resourceName="it's ' OR 1=1 --"),
        event_body(10, resourceType="model", action="updated", resourceName="Ünïcode-Straße"),
    ]
    return {e["resourceName"]: e["id"] for e in world.send(bodies)}


def test_search_matches_name_type_and_description_case_insensitively(world):
    names = _search_world(world)

    def found(term: str) -> set[str]:
        feed = world.viewer.activity(search=term, limit=100)
        by_id = {v: k for k, v in names.items()}
        return {by_id[i] for i in ids(feed)}

    # Resource name, any case, fragments of every length.
    assert found("coco8-images") == {"Coco8-Images"}
    assert found("COCO") == {"Coco8-Images"}
    assert found("yolo11N") == {"yolo11n"}
    assert found("traffic cams") == {"Traffic Cams"}
    # Resource type.
    assert found("deployment") == {"edge-1"}
    assert found("DATASET") == {"Coco8-Images"}
    # Description, given or generated.
    assert found("berlin") == {"edge-1"}
    assert found("rolled out") == {"edge-1"}
    assert found("uploaded to") == {"Coco8-Images"}
    assert found("created project") == {"Traffic Cams"}
    # One and two characters.
    assert found("8") == {"Coco8-Images"}
    assert found("Ü") == {"Ünïcode-Straße"}
    assert found("ü") == {"Ünïcode-Straße"}
    assert found("ÜNÏCODE") == {"Ünïcode-Straße"}
    assert found("straße") == {"Ünïcode-Straße"}
    assert found("ff") == {"Traffic Cams"}
    assert found("1n") == {"yolo11n"}
    assert found("xx") == set()
    # No match at all.
    assert found("nothing like this") == set()
    # Surrounding blanks are not part of the search; blank search is no search.
    assert found("  coco8  ") == {"Coco8-Images"}
    assert world.viewer.activity(search="   ")["total"] == 10
    assert world.viewer.activity(search="")["total"] == 10


# Letters that look like others (ruff's RUF001 would flag them written out).
DOTLESS_I = "\N{LATIN SMALL LETTER DOTLESS I}"
LONG_S = "\N{LATIN SMALL LETTER LONG S}"
MICRO = "\N{MICRO SIGN}"
CAPITAL_SIGMA, SMALL_SIGMA = "\N{GREEK CAPITAL LETTER SIGMA}", "\N{GREEK SMALL LETTER SIGMA}"
CAPITAL_MU, SMALL_MU = "\N{GREEK CAPITAL LETTER MU}", "\N{GREEK SMALL LETTER MU}"


def _named_models(world, names: tuple[str, ...]):
    """Record a model event per name; the search that answers with the names found."""
    sent = world.send(
        [
            event_body(n, resourceType="model", action="created", resourceName=name)
            for n, name in enumerate(names)
        ]
    )
    by_id = {e["id"]: e["resourceName"] for e in sent}

    def found(term: str) -> set[str]:
        return {by_id[i] for i in ids(world.viewer.activity(search=term, limit=100))}

    return found


def test_short_searches_match_only_the_same_letter_in_another_case(world):
    """Dotless i, long s and the micro sign upper-case to 'I', 'S' and Greek capital mu,
    but are other letters: a short search finds only the letter it names."""
    turkish = f"k{DOTLESS_I}rm{DOTLESS_I}z{DOTLESS_I}-model"
    long_s = f"{LONG_S}tra\N{LATIN SMALL LETTER SHARP S}e-{LONG_S}et"
    micro = f"{MICRO}m-scale"
    greek = f"{CAPITAL_SIGMA}-{SMALL_MU}-sum"
    names = (turkish, "mini-bike", long_s, "street", micro, greek)
    found = _named_models(world, names)

    for term in (DOTLESS_I, f"m{DOTLESS_I}", f"{DOTLESS_I}rm", f"K{DOTLESS_I}"):
        assert found(term) == {turkish}, term
    # Below three characters too, both databases keep them apart.
    for term in (LONG_S, f"{LONG_S}t", f"{LONG_S}T"):
        assert found(term) == {long_s}, term
    for term in (MICRO, f"{MICRO}m", f"{MICRO}M"):
        assert found(term) == {micro}, term
    # Letters that really have another case still find it, and only it.
    assert found("I") == {"mini-bike"}
    assert found("MI") == {"mini-bike"}
    assert found("St") == {"street"}
    assert found(SMALL_SIGMA) == {greek}
    assert found(CAPITAL_MU) == {greek}
    assert found(f"{SMALL_SIGMA}-{CAPITAL_MU}") == {greek}


GEORGIAN_CAPITALS = "\u1c90\u1c91\u1c92"  # Mtavruli AN, BAN, GAN (Unicode 11)
GEORGIAN_SMALL = "\u10d0\u10d1\u10d2"  # Mkhedruli an, ban, gan: their lower case
FINAL_SIGMA = "\N{GREEK SMALL LETTER FINAL SIGMA}"
DOTTED_I = "\N{LATIN CAPITAL LETTER I WITH DOT ABOVE}"


def test_long_searches_fold_case_as_postgresql_does(world):
    """From three characters on (SQLite's trigram index, PostgreSQL's ILIKE), both
    databases fold case the same way, by lower-casing letter by letter: Georgian
    capitals find their small letters; long s and the micro sign stay other letters;
    a word-final capital sigma is a plain small sigma; dotted capital I is i."""
    georgian = f"{GEORGIAN_CAPITALS}-dataset"
    long_s = f"{LONG_S}trange-run"
    micro = f"{MICRO}m-scale"
    greek = f"{CAPITAL_SIGMA}{CAPITAL_SIGMA}{CAPITAL_SIGMA}-model"  # final sigma, lowered
    turkish = f"{DOTTED_I}stanbul-edge"
    names = (georgian, long_s, "strange-walk", micro, f"{SMALL_MU}m-scale", greek, turkish)
    found = _named_models(world, names)

    assert found(GEORGIAN_SMALL) == {georgian}
    assert found(GEORGIAN_CAPITALS) == {georgian}
    assert found(f"{GEORGIAN_SMALL}-data") == {georgian}
    assert found("strange") == {"strange-walk"}
    assert found(f"{LONG_S}tr") == {long_s}
    assert found(f"{MICRO}m-") == {micro}
    assert found(f"{SMALL_MU}m-") == {f"{SMALL_MU}m-scale"}
    assert found(SMALL_SIGMA * 3) == {greek}
    assert found(f"{SMALL_SIGMA}{SMALL_SIGMA}{FINAL_SIGMA}") == set()
    assert found("istanbul") == {turkish}
    assert found(f"{DOTTED_I}STANBUL") == {turkish}


SPECIAL_SEARCHES = [
    ("%", {"100%_done"}),
    ("_", {"100%_done"}),
    ("%_", {"100%_done"}),
    ("0%", {"100%_done"}),
    ("100%", {"100%_done"}),
    ('"', {'say "hi"'}),
    ('"hi"', {'say "hi"'}),
    ('say "', {'say "hi"'}),
    ("\\", {"back\\slash"}),
    ("k\\s", {"back\\slash"}),
    ("back\\slash", {"back\\slash"}),
    ("' OR 1=1 --", {"it's ' OR 1=1 --"}),
    ("'", {"it's ' OR 1=1 --"}),
    ("it's", {"it's ' OR 1=1 --"}),
    ("'; DROP TABLE events; --", set()),
    ("1=1", {"it's ' OR 1=1 --"}),
    ("' OR", {"it's ' OR 1=1 --"}),
    ("OR 1", {"it's ' OR 1=1 --"}),
    ("OR", {"it's ' OR 1=1 --", "100%_done", "100X-done"}),
    ("NEAR(a b)", set()),
    ("*", set()),
    ("a*", set()),
    ("^", set()),
    ("-", None),
    ("--", {"it's ' OR 1=1 --"}),
    ("(", set()),
    (":", set()),
    ("\\%", set()),
    ("[a-z]", set()),
    ("%%%", set()),
    ("___", set()),
    ("\x00", set()),
    ("abc\x00def", set()),
    ("😀", set()),
]


def test_search_treats_special_characters_literally(world):
    names = _search_world(world)
    by_id = {v: k for k, v in names.items()}
    for term, expected in SPECIAL_SEARCHES:
        response = world.viewer.get("/api/activity", params={"search": term, "limit": 100})
        assert response.status_code == 200, (term, response.text)
        got = {by_id[i] for i in ids(response.json())}
        if expected is None:
            expected = {n for n in names if term in n.lower()} | {"edge-1"}
        assert got == expected, term


def test_search_length_limit(world):
    world.send([event_body(1)])
    assert world.viewer.activity(search="x" * 200)["total"] == 0
    for length in (201, 10_000):
        response = world.viewer.get("/api/activity", params={"search": "x" * length})
        assert_error(response, 422, "invalid_request", "search")


def test_search_combines_with_other_filters(world, clock):
    world.send(
        [
            event_body(1, resourceType="model", resourceName="alpha-model", action="created"),
            event_body(2, resourceType="dataset", resourceName="alpha-data", action="created"),
            event_body(3, resourceType="model", resourceName="beta-model", action="created"),
            event_body(
                4,
                resourceType="model",
                resourceName="alpha-old",
                action="created",
                occurredAt=_at(clock, days=40),
            ),
        ]
    )
    feed = world.viewer.activity(search="alpha", resourceType="model")
    assert [e["resourceName"] for e in feed["events"]] == ["alpha-model"]
    feed = world.viewer.activity(search="alpha", start=_at(clock, days=50))
    assert sorted(e["resourceName"] for e in feed["events"]) == [
        "alpha-data",
        "alpha-model",
        "alpha-old",
    ]


def test_search_never_reaches_other_workspaces(app, world, db, clock):
    world.send([event_body(1, resourceName="shared-name")])
    stranger = make_user(db, clock)
    browser = Browser(app, stranger.email)
    assert browser.activity(search="shared-name")["total"] == 0
    assert browser.activity(search="sh")["total"] == 0


# ---- dates -------------------------------------------------------------------------------


def test_default_range_is_the_last_30_days(world, clock):
    sent = world.send(
        [
            event_body(1, occurredAt=_at(clock, days=31)),
            event_body(2, occurredAt=_at(clock, days=29, hours=23)),
            event_body(3),
        ]
    )
    assert sorted(ids(world.viewer.activity())) == sorted([sent[1]["id"], sent[2]["id"]])
    assert world.viewer.activity(start=_at(clock, days=60))["total"] == 3


def test_start_and_end_with_dates_and_datetimes(world, clock):
    base = datetime(2026, 3, 10, tzinfo=UTC)
    clock.current = base + timedelta(days=5)
    sent = world.send(
        [
            event_body(1, occurredAt=iso(base - timedelta(seconds=1))),  # 03-09 23:59:59
            event_body(2, occurredAt=iso(base)),  # 03-10 00:00
            event_body(3, occurredAt=iso(base + timedelta(hours=23, minutes=59, seconds=59))),
            event_body(4, occurredAt=iso(base + timedelta(days=1))),  # 03-11 00:00
            event_body(5, occurredAt=iso(base + timedelta(days=1, hours=12))),
        ]
    )
    run = {e["id"]: e["resourceId"] for e in sent}

    def runs(**params: str) -> list[str]:
        return sorted(run[i] for i in ids(world.viewer.activity(**params)))

    # A date-only end includes its whole day.
    assert runs(start="2026-03-10", end="2026-03-10") == ["run-2", "run-3"]
    assert runs(**{"from": "2026-03-10", "to": "2026-03-10"}) == ["run-2", "run-3"]
    assert runs(start="2026-03-09", end="2026-03-11") == [
        "run-1",
        "run-2",
        "run-3",
        "run-4",
        "run-5",
    ]
    # A datetime end is inclusive of that instant.
    assert runs(start="2026-03-10T00:00:00Z", end="2026-03-11T00:00:00Z") == [
        "run-2",
        "run-3",
        "run-4",
    ]
    assert runs(start="2026-03-10T00:00:01Z", end="2026-03-10T23:59:59Z") == ["run-3"]
    # Offsets are honoured; a datetime without one is UTC.
    assert runs(start="2026-03-10T02:00:00+02:00", end="2026-03-10T01:00:00+01:00") == ["run-2"]
    assert runs(start="2026-03-10T00:00:00", end="2026-03-10T00:00:00") == ["run-2"]
    assert runs(start="2026-03-10T00:00:00.000Z", end="2026-03-10T00:00:00.000Z") == ["run-2"]
    # One bound alone: the other side is open.
    assert runs(start="2026-03-11") == ["run-4", "run-5"]
    assert runs(end="2026-03-09") == ["run-1"]
    assert runs(to="2026-03-09") == ["run-1"]
    # Blank values are no values (an HTML form sends them).
    assert runs(start="", end="") == ["run-1", "run-2", "run-3", "run-4", "run-5"]


def test_a_date_only_bound_is_written_yyyy_mm_dd(world, clock):
    """Python also reads '20260310' and '2026-W11-2' as dates, and would read them as
    midnight instants; a date alone must be written 2026-03-10, or it is refused."""
    base = datetime(2026, 3, 10, tzinfo=UTC)
    clock.current = base + timedelta(days=5)
    sent = world.send([event_body(1, occurredAt=iso(base + timedelta(hours=12)))])
    assert ids(world.viewer.activity(start="2026-03-10", end="2026-03-10")) == [sent[0]["id"]]
    for name, value in (
        ("end", "20260310"),
        ("end", "2026-W11-2"),
        ("end", "2026W112"),
        ("to", "2026-W11"),
        ("start", "20260310"),
        ("from", "2026-W11-2"),
    ):
        params = {name: value}
        if name in ("end", "to"):
            params["start"] = "2026-03-01"
        response = world.viewer.get("/api/activity", params=params)
        assert_error(response, 422, "invalid_request", name, case=params)
    # A date-time is an instant whichever way its date is written.
    assert ids(world.viewer.activity(start="20260310T120000Z")) == [sent[0]["id"]]


BAD_DATES = [
    ({"start": "yesterday"}, "start"),
    ({"start": "2026-02-30"}, "start"),
    ({"start": "2026-13-01"}, "start"),
    ({"end": "2026-01-01T25:00:00Z"}, "end"),
    ({"end": "01/02/2026"}, "end"),
    ({"from": "not a date"}, "from"),
    ({"to": "2026-1-1"}, "to"),
    ({"start": "1700000000"}, "start"),
    ({"start": "2026-03-11", "end": "2026-03-10"}, "start"),
    ({"start": "2026-03-10T12:00:00Z", "end": "2026-03-10T11:59:59Z"}, "start"),
    ({"from": "2026-03-11", "to": "2026-03-10"}, "from"),
]


def test_bad_dates_are_422_naming_the_parameter(world):
    for params, field in BAD_DATES:
        response = world.viewer.get("/api/activity", params=params)
        assert_error(response, 422, "invalid_request", field, case=params)


def test_extreme_dates_never_crash(world):
    world.send([event_body(1)])
    for params in (
        {"start": "0001-01-01", "end": "9999-12-31"},
        {"end": "9999-12-31T23:59:59.999999Z"},
        {"start": "0001-01-01T00:00:00+01:00"},
        {"start": "0001-01-01T00:00:00-14:00", "end": "9999-12-31T23:59:59-14:00"},
        {"start": "0001-01-01", "end": "9999-12-30"},
    ):
        response = world.viewer.get("/api/activity", params=params)
        assert response.status_code in (200, 422), (params, response.text)
        if response.status_code == 422:
            assert response.json()["error"]["code"] == "invalid_request"
    wide = world.viewer.activity(start="0001-01-01", end="9999-12-30")
    assert wide["total"] == 1


def test_a_range_on_the_last_representable_day_is_counted(world, clock):
    """The day counts round a start up to the next midnight; on 9999-12-31 there is none."""
    world.send([event_body(1)])
    since = iso(clock.current - timedelta(days=1))
    for params, total in (
        ({"start": "9999-12-31T12:00:00Z"}, 0),
        ({"start": "9999-12-31T06:00:00Z", "end": "9999-12-31T12:00:00Z"}, 0),
        ({"start": "2000-01-01", "end": "9999-12-31T12:00:00Z"}, 1),
        ({"start": since, "end": "9999-12-31T12:00:00Z"}, 1),
        ({"start": since, "end": "9999-12-30"}, 1),
    ):
        for archived in ("false", "true"):
            query = dict(params, archived=archived)
            response = world.viewer.get("/api/activity", params=query)
            assert response.status_code == 200, (query, response.text)
            assert response.json()["total"] == (total if archived == "false" else 0), query


# ---- resourceType and action filters -----------------------------------------------------


def test_resource_type_and_action_filters_repeat(world):
    world.send(
        [
            event_body(1, resourceType="model", action="created"),
            event_body(2, resourceType="model", action="deleted"),
            event_body(3, resourceType="dataset", action="created"),
            event_body(4, resourceType="training", action="failed"),
            event_body(5, resourceType="export", action="analyzed"),
        ]
    )

    def runs(params: list[tuple[str, str]]) -> list[str]:
        response = world.viewer.get("/api/activity", params=params)
        assert response.status_code == 200, response.text
        return sorted(e["resourceId"] for e in response.json()["events"])

    assert runs([("resourceType", "model")]) == ["run-1", "run-2"]
    assert runs([("resourceType", "model"), ("resourceType", "dataset")]) == [
        "run-1",
        "run-2",
        "run-3",
    ]
    assert runs([("resourceType", "model,dataset")]) == ["run-1", "run-2", "run-3"]
    assert runs([("action", "created")]) == ["run-1", "run-3"]
    assert runs([("action", "failed"), ("action", "analyzed")]) == ["run-4", "run-5"]
    assert runs([("resourceType", "model"), ("action", "created")]) == ["run-1"]
    assert runs([("resourceType", "settings")]) == []
    feed = world.viewer.get("/api/activity", params=[("resourceType", "model")]).json()
    assert feed["total"] == 2
    # unseenCount stays the Inbox's, whatever the filter.
    assert feed["unseenCount"] == 5


def test_unknown_filter_values_are_422(world):
    for params, field in [
        ([("resourceType", "spaceship")], "resourceType"),
        ([("resourceType", "model"), ("resourceType", "Model")], "resourceType"),
        ([("resourceType", "model,nope")], "resourceType"),
        ([("action", "exploded")], "action"),
        ([("action", "created"), ("action", "CREATED")], "action"),
    ]:
        response = world.viewer.get("/api/activity", params=params)
        assert_error(response, 422, "invalid_request", field, case=params)


# ---- owner -------------------------------------------------------------------------------


def test_owner_picks_a_workspace_of_the_caller(app, world, db):
    world.send([event_body(1)])
    personal = personal_workspace(db, world.member)
    # The member's session is on the team; owner= picks either workspace explicitly.
    assert world.viewer.activity()["total"] == 1
    assert world.viewer.activity(owner=world.team.slug)["total"] == 1
    assert world.viewer.activity(owner=personal.slug)["total"] == 0
    world.viewer.switch(personal.slug)
    assert world.viewer.activity()["total"] == 0
    assert world.viewer.activity(owner=world.team.slug)["total"] == 1
    assert world.viewer.activity(owner="")["total"] == 0


def test_a_foreign_or_unknown_owner_is_404_alike(app, world, db, clock):
    stranger = make_user(db, clock)
    foreign = personal_workspace(db, stranger)
    foreign_response = world.viewer.get("/api/activity", params={"owner": foreign.slug})
    unknown_response = world.viewer.get("/api/activity", params={"owner": "no-such-workspace"})
    assert_error(foreign_response, 404, "not_found")
    assert foreign_response.json() == unknown_response.json()
    assert foreign_response.status_code == unknown_response.status_code
    export = world.viewer.get("/api/activity", params={"owner": foreign.slug, "export": "true"})
    assert export.status_code == 404
    assert export.json() == unknown_response.json()


# ---- cursor ------------------------------------------------------------------------------


def _walk(browser: Browser, **params: Any) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(1000):
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        feed = browser.activity(**query)
        seen.extend(ids(feed))
        cursor = feed["nextCursor"]
        if cursor is None:
            return seen
        assert isinstance(cursor, str)
        assert cursor
    raise AssertionError("the cursor walk did not end")


def test_a_cursor_walk_returns_every_event_exactly_once(world, clock):
    """Keyset paging with many events sharing one createdAt, and microsecond times."""
    bodies = []
    for i in range(57):
        if i % 3 == 0:
            bodies.append(event_body(i))  # many share "now"
        elif i % 3 == 1:
            bodies.append(event_body(i, occurredAt=_at(clock, hours=2)))  # and another moment
        else:
            bodies.append(event_body(i, occurredAt=_at(clock, minutes=i, microseconds=123457 + i)))
    sent = world.send(bodies)
    everything = ids(world.viewer.activity(limit=100))
    assert sorted(everything) == sorted(e["id"] for e in sent)
    for limit in (1, 7, 10, 19, 57, 100):
        walked = _walk(world.viewer, limit=limit)
        assert walked == everything, limit
    # The cursor carries the other filters' results too.
    walked = _walk(world.viewer, limit=4, resourceType="training", search="run")
    assert walked == everything


def test_cursor_walk_is_stable_while_events_arrive(world):
    sent = world.send([event_body(i) for i in range(10)])
    first = world.viewer.activity(limit=4)
    world.send([event_body(100 + i) for i in range(5)])
    rest = _walk(world.viewer, limit=4, cursor=first["nextCursor"])
    assert ids(first) + rest == [e["id"] for e in reversed(sent)]


def test_page_and_cursor_pages_agree(world):
    world.send([event_body(i) for i in range(25)])
    first = world.viewer.activity(limit=10)
    second = world.viewer.activity(limit=10, cursor=first["nextCursor"])
    assert ids(second) == ids(world.viewer.activity(limit=10, page=2))
    assert second["total"] == 25
    last = world.viewer.activity(limit=10, cursor=second["nextCursor"])
    assert len(last["events"]) == 5
    assert last["nextCursor"] is None
    assert world.viewer.activity(limit=25)["nextCursor"] is None


GARBAGE_CURSORS = [
    "garbage",
    "!!!!",
    "MTo5OTk5OTk5OTk5OTk5OTk5OTk5OTk5Ojk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5",
    "MjoxOjE",  # version 2
    "MTphYmM6MQ",  # 1:abc:1
    "MTotOTk5OTk5OTk5OTk5OTk5OTk5OjE",  # far before year 1
    "MToxOjE6MQ",  # too many parts
    "x" * 5000,
    "\u0000",
]


def test_a_garbage_cursor_is_422(world):
    world.send([event_body(1)])
    for cursor in GARBAGE_CURSORS:
        response = world.viewer.get("/api/activity", params={"cursor": cursor})
        assert_error(response, 422, "invalid_request", "cursor", case=cursor[:40])


def test_a_cursor_with_out_of_range_numbers_is_422_not_a_crash(world):
    world.send([event_body(1)])
    for raw in ("1:0:" + "9" * 30, "1:0:-5", "1:" + "9" * 25 + ":1"):
        cursor = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
        response = world.viewer.get("/api/activity", params={"cursor": cursor})
        assert response.status_code in (200, 422), response.text
        if response.status_code == 422:
            assert response.json()["error"]["field"] == "cursor"


# ---- export ------------------------------------------------------------------------------


def test_export_streams_every_matching_event(world, clock):
    """``export=true``: a JSON download of every match, newest first, with no paging."""
    bodies = [event_body(i, occurredAt=_at(clock, seconds=i % 50)) for i in range(1100)]
    bodies.append(
        event_body(5000, resourceType="model", resourceName="old", occurredAt=_at(clock, days=45))
    )
    world.send(bodies)
    response = world.viewer.get(
        "/api/activity", params={"export": "true", "limit": "5", "page": "3"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert f'filename="activity-{world.team.slug}-' in disposition
    assert disposition.endswith('.json"')
    body = json.loads(response.content)
    assert set(body) == {"exportedAt", "owner", "filters", "activity"}
    assert body["owner"] == world.team.slug
    assert body["exportedAt"] == iso(clock.current)
    assert body["filters"]["archived"] is False
    assert len(body["activity"]) == 1100
    assert len({e["id"] for e in body["activity"]}) == 1100
    assert all(set(e) == EVENT_FIELDS for e in body["activity"])
    listed = _walk(world.viewer, limit=100)
    assert [e["id"] for e in body["activity"]] == listed
    # It is streamed: the body arrives in several pieces, not as one buffer.
    with world.viewer.client.stream("GET", "/api/activity", params={"export": "true"}) as stream:
        pieces = [piece for piece in stream.iter_raw() if piece]
    assert len(pieces) > 2
    assert json.loads(b"".join(pieces))["activity"] == body["activity"]
    # Filters apply as in the list, and are written back.
    start = _at(clock, days=60)
    body = world.viewer.get(
        "/api/activity",
        params={"export": "true", "resourceType": "model", "start": start, "search": "old"},
    ).json()
    assert [e["resourceName"] for e in body["activity"]] == ["old"]
    assert body["filters"]["resourceType"] == ["model"]
    assert body["filters"]["search"] == "old"
    assert body["filters"]["start"] == start


def test_export_filters_written_back_select_the_same_events(world, clock):
    """The export's ``filters`` echo the view as a URL would write it: the same rows, and
    ``end`` as the last instant included, not the exclusive bound."""
    base = datetime(2026, 3, 10, tzinfo=UTC)
    clock.current = base + timedelta(days=5)
    world.send(
        [
            event_body(1, occurredAt="2026-03-10T12:00:00Z"),
            event_body(2, occurredAt="2026-03-10T23:59:59.999999Z"),
            event_body(3, occurredAt="2026-03-11T00:00:00Z"),  # the next midnight
        ]
    )
    for params, end in (
        ({"start": "2026-03-10", "end": "2026-03-10"}, "2026-03-10T23:59:59.999999Z"),
        ({"end": "2026-03-10T23:59:59.999999Z"}, "2026-03-10T23:59:59.999999Z"),
        ({"start": "2026-03-10", "end": "2026-03-10T12:00:00Z"}, "2026-03-10T12:00:00Z"),
        ({"start": "2026-03-10", "end": "2026-03-11T00:00:00+00:00"}, "2026-03-11T00:00:00Z"),
        ({"start": "2026-03-10", "end": "2026-03-11T01:00:00+01:00"}, "2026-03-11T00:00:00Z"),
    ):
        export = world.viewer.get("/api/activity", params=dict(params, export="true")).json()
        assert export["filters"]["end"] == end, params
        again = {k: v for k, v in export["filters"].items() if k in ("start", "end")}
        written_back = world.viewer.get("/api/activity", params=dict(again, export="true"))
        assert written_back.json()["activity"] == export["activity"], (params, again)
        assert written_back.json()["filters"] == export["filters"], params


def test_export_of_the_archive_and_of_nothing(world):
    sent = world.send([event_body(i) for i in range(3)])
    world.viewer.post("/api/activity/archive", json={"eventIds": [sent[1]["id"]], "archive": True})
    body = world.viewer.get("/api/activity", params={"export": "true", "archived": "true"}).json()
    assert [e["id"] for e in body["activity"]] == [sent[1]["id"]]
    assert body["activity"][0]["archived"] is True
    assert body["filters"]["archived"] is True
    body = world.viewer.get(
        "/api/activity", params={"export": "true", "search": "nothing-matches"}
    ).json()
    assert body["activity"] == []
    assert world.viewer.get("/api/activity", params={"export": "false"}).json()["total"] == 2


def test_export_with_a_bad_parameter_is_422(world):
    response = world.viewer.get("/api/activity", params={"export": "true", "start": "nope"})
    assert_error(response, 422, "invalid_request", "start")
    response = world.viewer.get("/api/activity", params={"export": "perhaps"})
    assert_error(response, 422, "invalid_request", "export")


def test_export_needs_a_session(world):
    response = world.client.get(
        "/api/activity",
        params={"export": "true"},
        headers={"Authorization": f"Bearer {world.secret}"},
    )
    assert_error(response, 401, "browser_session_required")


def test_wrong_methods_are_405(world):
    for method, url in [
        ("PUT", "/api/activity"),
        ("DELETE", "/api/activity"),
        ("GET", "/api/activity/mark-seen"),
        ("GET", "/api/activity/archive"),
    ]:
        response = world.viewer.client.request(
            method, url, headers={"X-CSRF-Token": world.viewer.csrf}
        )
        assert_error(response, 405, "method_not_allowed", case=(method, url))


@pytest.mark.parametrize("query", ["", "?search=deploy"], ids=["pages", "searches"])
def test_feed_reads_run_on_a_small_pool_of_threads(app, db, clock, monkeypatch, query) -> None:
    """However many pages are asked for at once, at most ``FEED_READ_THREADS`` are read
    at a time in a process (many threads taking the GIL from each other served fewer
    pages, and later); the rest wait their turn and are all answered. Searches, which
    can take seconds, stay on the default pool: they must not hold up every page."""
    user = make_user(db, clock)
    browser = Browser(app, user.email)
    cookies = dict(browser.client.cookies.items())
    running, peak, lock = [0], [0], threading.Lock()
    original = activity_service.list_activity

    def slow_page(*args: Any, **kwargs: Any) -> Any:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            time.sleep(0.05)
            return original(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(activity_service, "list_activity", slow_page)

    async def main() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", cookies=cookies
        ) as c:
            answers = await asyncio.gather(*(c.get("/api/activity" + query) for _ in range(12)))
        return [a.status_code for a in answers]

    assert asyncio.run(main()) == [200] * 12
    if query:
        assert peak[0] > activity_route.FEED_READ_THREADS
    else:
        assert peak[0] == activity_route.FEED_READ_THREADS


def test_the_session_touch_holds_no_reader_thread(app, db, clock, monkeypatch) -> None:
    """The once-a-minute refresh of ``last_seen_at`` is a write, which on SQLite may wait
    for the write lock: it runs after the page, without one of the readers' threads
    (four busy touches would otherwise stall every page of the process)."""
    user = make_user(db, clock)
    browser = Browser(app, user.email)
    held: list[int] = []
    original = SessionLookup.touch

    def touch(self: SessionLookup, session: Any) -> None:
        held.append(app.state.feed_reads.borrowed_tokens)
        original(self, session)

    monkeypatch.setattr(SessionLookup, "touch", touch)
    assert browser.get("/api/activity").status_code == 200
    assert held == []  # signed in just now: nothing to refresh
    clock.advance(seconds=120)
    assert browser.get("/api/activity").status_code == 200
    assert held == [0]


KELVIN = "\N{KELVIN SIGN}"
CAPITAL_SHARP_S = "\N{LATIN CAPITAL LETTER SHARP S}"
TITLE_DZ, SMALL_DZ = "\N{LATIN CAPITAL LETTER D WITH SMALL LETTER Z WITH CARON}", "\u01c6"


def test_short_searches_fold_as_long_ones_and_ilike_do(world):
    """Review: below three characters SQLite spells out {c, c.lower(), c.upper()} only,
    but ILIKE (and the trigram path) match every letter that lower-cases to the same one:
    dotted capital I is i, the Kelvin sign is k, capital sharp s is sharp s, a titlecase
    digraph is its small one (51 such letters). Shortening a search must not lose hits."""
    turkish = f"{DOTTED_I}stanbul-edge"
    sharp = f"stra{CAPITAL_SHARP_S}e-run"
    kelvin = f"{KELVIN}elvin-scale"
    digraph = f"{TITLE_DZ}ungla-set"
    found = _named_models(world, (turkish, sharp, kelvin, digraph))

    # The long path (both databases) finds each one ...
    assert turkish in found("ist")
    assert sharp in found("\N{LATIN SMALL LETTER SHARP S}e-")
    assert kelvin in found("kel")
    assert digraph in found(f"{SMALL_DZ}un")
    # ... and so must the same search cut below three characters.
    assert turkish in found("is"), "is"
    assert turkish in found(f"{DOTTED_I}s"), "dotted I + s"
    assert sharp in found("\N{LATIN SMALL LETTER SHARP S}"), "sharp s"
    assert kelvin in found("ke"), "ke"
    assert digraph in found(f"{SMALL_DZ}u"), "dz u"
