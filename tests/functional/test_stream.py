"""``GET /api/activity/stream`` through a real server: what arrives, for whom, and resume.

The app runs in uvicorn in a thread (an endless SSE body needs a real server); set-up
and ingestion go through the same app in-process, so on SQLite the stream sees them by
tailing the tables and on PostgreSQL through NOTIFY, as another process would.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from activityfeed.config import Settings
from activityfeed.domain.stream import REPLAY_LIMIT
from activityfeed.services.sealing import load_sealer
from activityfeed.store.db import Database
from activityfeed.store.schema import events
from activityfeed.web import create_app
from tests.factories import (
    event_body,
    ingest,
    make_key,
    make_user,
    personal_workspace,
    record_system_event,
)
from tests.functional.feed_helpers import World, assert_error, make_world
from tests.sse_client import open_stream, serve_app


@pytest.fixture
def stream_settings(settings: Settings) -> Settings:
    return replace(settings, stream_heartbeat_seconds=0.5, stream_poll_seconds=0.05)


@pytest.fixture
def live(stream_settings: Settings, db: Database, clock: Any) -> Iterator[tuple[World, str]]:
    """A world (team, owner, member, producer key) and the base URL of a real server."""
    app = create_app(stream_settings, db=db, clock=clock)
    # No lifespan here: only the real server runs the app's broker.
    client = TestClient(app, base_url="http://testserver")
    world = make_world(app, client, db, clock)
    with serve_app(app) as base:
        yield world, base


def send(world: World, n: int, **overrides: Any) -> dict[str, Any]:
    response = ingest(world.client, world.secret, event_body(n, **overrides))
    assert response.status_code == 201, response.text
    return dict(response.json()["event"])


def test_stream_needs_a_browser_session(live: tuple[World, str]) -> None:
    """No session → 401 not_authenticated; an API key instead → browser_session_required."""
    world, _ = live
    anonymous = TestClient(world.app)
    assert_error(anonymous.get("/api/activity/stream"), 401, "not_authenticated")
    with_key = anonymous.get(
        "/api/activity/stream", headers={"Authorization": f"Bearer {world.secret}"}
    )
    assert_error(with_key, 401, "browser_session_required")


def test_first_bytes_headers_and_heartbeat(live: tuple[World, str]) -> None:
    """retry first; event-stream, no caching, no proxy buffering; keep-alive comments."""
    world, base = live
    with open_stream(base, world.viewer) as stream:
        headers = stream.response.headers
        assert headers["content-type"].startswith("text/event-stream")
        assert headers["x-accel-buffering"] == "no"
        assert "no-cache" in headers["cache-control"]
        first = stream.next()
        assert stream.first_line == "retry: 2000"
        # A fresh connection (no id) starts now: its first message gives counts and an id.
        assert first.event == "unseen"
        assert first.data == {"unseenCount": 0, "workspaces": first.data["workspaces"]}
        assert first.id
        stream.drain(quiet=1.2)
        assert "keep-alive" in stream.comments


def test_an_ingested_event_arrives_with_counts(live: tuple[World, str]) -> None:
    world, base = live
    with open_stream(base, world.viewer) as stream:
        stream.next_of("unseen")
        sent = send(world, 1)
        message = stream.next_of("activity")
        assert message.data["event"]["id"] == sent["id"]
        assert message.data["event"]["seen"] is False
        assert message.data["event"]["archived"] is False
        assert message.data["event"]["description"] == sent["description"]
        assert message.data["unseenCount"] == 1
        assert message.data["workspaces"][world.team.slug] == 1
        # The page's list and the stream agree on the wire form.
        listed = world.viewer.activity()["events"][0]
        assert message.data["event"] == listed


def test_private_events_of_others_never_arrive(live: tuple[World, str]) -> None:
    """An API key created by the owner in the team is private to the owner."""
    world, base = live
    owner = world.browser(world.owner)
    with open_stream(base, world.viewer) as member, open_stream(base, owner) as own:
        member.next_of("unseen")
        own.next_of("unseen")
        created = owner.post("/api/api-keys", json={"name": "ci"})
        assert created.status_code == 201, created.text
        private = own.next_of("activity")
        assert private.data["event"]["resourceType"] == "api_key"
        sentinel = send(world, 2)
        got = [m for m in member.drain(quiet=1.0) if m.event == "activity"]
        assert [m.data["event"]["id"] for m in got] == [sentinel["id"]]


def test_state_changes_follow_the_same_user_only(live: tuple[World, str]) -> None:
    """Mark seen / archive / restore in one tab shows on the user's other tabs (another
    session too), never on another member's stream."""
    world, base = live
    other_tab = world.browser(world.member)
    owner = world.browser(world.owner)
    first, second = send(world, 1), send(world, 2)
    with (
        open_stream(base, world.viewer) as tab_a,
        open_stream(base, other_tab) as tab_b,
        open_stream(base, owner) as owner_tab,
    ):
        for s in (tab_a, tab_b, owner_tab):
            s.next_of("unseen")
        seen = world.viewer.post("/api/activity/mark-seen", json={"eventIds": [first["id"]]})
        assert seen.json() == {"success": True, "unseenCount": 1}
        for s in (tab_a, tab_b):
            m = s.next_of("state")
            assert m.data == {
                "action": "seen",
                "eventIds": [first["id"]],
                "all": False,
                "unseenCount": 1,
                "workspaces": m.data["workspaces"],
            }
            assert m.data["workspaces"][world.team.slug] == 1
        archived = other_tab.post(
            "/api/activity/archive", json={"eventIds": [second["id"]], "archive": True}
        )
        assert archived.json()["updated"] == 1
        for s in (tab_a, tab_b):
            m = s.next_of("state")
            assert (m.data["action"], m.data["eventIds"], m.data["all"]) == (
                "archived",
                [second["id"]],
                False,
            )
            assert m.data["unseenCount"] == 0
        world.viewer.post("/api/activity/archive", json={"all": True, "archive": False})
        world.viewer.post("/api/activity/mark-seen", json={"all": True})
        world.viewer.post("/api/activity/archive", json={"all": True, "archive": True})
        for s in (tab_a, tab_b):
            actions = [(m.data["action"], m.data["all"]) for m in s.drain() if m.event == "state"]
            assert actions == [("restored", True), ("seen", True), ("archived", True)]
        sentinel = send(world, 3)
        owner_messages = owner_tab.drain(quiet=1.0)
        assert [m.event for m in owner_messages if m.event != "unseen"] == ["activity"]
        assert owner_messages[-1].data["event"]["id"] == sentinel["id"]


def test_events_of_other_workspaces_only_move_counts(
    live: tuple[World, str], db: Database, clock: Any
) -> None:
    """An event in a workspace the user is not in never arrives; one in another of the
    user's workspaces arrives only as an ``unseen`` count for the switcher."""
    world, base = live
    stranger = make_user(db, clock)
    stranger_key = make_key(db, clock, stranger)
    member_key = make_key(db, clock, world.member)
    personal = personal_workspace(db, world.member)
    with open_stream(base, world.viewer) as stream:
        start = stream.next_of("unseen")
        assert start.data["workspaces"] == {personal.slug: 1, world.team.slug: 0}
        foreign = ingest(world.client, stranger_key, event_body(9))
        assert foreign.status_code == 201
        mine = ingest(world.client, member_key, event_body(8))
        assert mine.status_code == 201
        counts = stream.next_of("unseen")
        assert counts.data == {
            "unseenCount": 0,
            "workspaces": {personal.slug: 2, world.team.slug: 0},
        }
        sentinel = send(world, 7)
        rest = stream.drain(quiet=1.0)
        assert [m.data["event"]["id"] for m in rest if m.event == "activity"] == [sentinel["id"]]
        assert all(m.event in ("activity", "unseen") for m in rest)


@pytest.mark.parametrize("how", ["header", "query"])
def test_reconnect_with_last_event_id_gets_exactly_what_was_missed(
    live: tuple[World, str], how: str
) -> None:
    world, base = live
    with open_stream(base, world.viewer) as stream:
        stream.next_of("unseen")
        before = send(world, 1)
        message = stream.next_of("activity")
        assert message.data["event"]["id"] == before["id"]
        position = message.id
    missed = [send(world, n) for n in range(2, 6)]
    world.viewer.post("/api/activity/mark-seen", json={"eventIds": [missed[0]["id"]]})
    kw = {"last_event_id": position} if how == "header" else {"query_id": position}
    with open_stream(base, world.viewer, **kw) as stream:
        replay = stream.drain(quiet=1.0)
        activity = [m.data["event"]["id"] for m in replay if m.event == "activity"]
        assert activity == [e["id"] for e in missed]
        states = [m.data for m in replay if m.event == "state"]
        assert [(s["action"], s["eventIds"]) for s in states] == [("seen", [missed[0]["id"]])]
        assert all(m.event in ("activity", "state", "unseen") for m in replay)
        after = send(world, 6)
        live_now = [m for m in stream.drain(quiet=1.0) if m.event == "activity"]
        assert [m.data["event"]["id"] for m in live_now] == [after["id"]]
        last = live_now[-1].id
    # Resuming from the newest id replays nothing at all.
    with open_stream(base, world.viewer, last_event_id=last) as stream:
        assert [m.event for m in stream.drain(quiet=1.0)] == ["unseen"]


def test_header_wins_over_query(live: tuple[World, str]) -> None:
    world, base = live
    with open_stream(base, world.viewer) as stream:
        position = stream.next_of("unseen").id
    send(world, 1)
    with open_stream(base, world.viewer, last_event_id=position, query_id="garbage") as stream:
        assert stream.next().event == "activity"


@pytest.mark.parametrize("bad", ["garbage", "1.2", "99999999.0.00000000", ""])
def test_unknown_position_starts_now_with_reset(live: tuple[World, str], bad: str) -> None:
    world, base = live
    send(world, 1)
    with open_stream(base, world.viewer, query_id=bad) as stream:
        first = stream.next()
        if bad == "":
            # An empty id is no id: start now, quietly.
            assert first.event == "unseen"
            return
        assert (first.event, first.data) == ("reset", {})
        assert stream.next().event == "unseen"
        new = send(world, 2)
        assert stream.next_of("activity").data["event"]["id"] == new["id"]


def test_position_of_another_workspace_resets(live: tuple[World, str]) -> None:
    """The active workspace changed between two connections: the tab must reload."""
    world, base = live
    with open_stream(base, world.viewer) as stream:
        position = stream.next_of("unseen").id
    world.viewer.switch(personal_workspace(world.db, world.member).slug)
    with open_stream(base, world.viewer, last_event_id=position) as stream:
        assert stream.next().event == "reset"


def test_a_position_of_another_viewer_or_edited_resets(live: tuple[World, str]) -> None:
    """Positions are sealed for one viewer's stream of one workspace: a teammate's id
    (same workspace), or one edited by a single character, is unknown — a reset, never
    a replay from wherever it would point."""
    world, base = live
    with open_stream(base, world.viewer) as stream:
        position = stream.next_of("unseen").id
    send(world, 1)
    owner = world.browser(world.owner)
    # A character in the middle (the last one has spare bits a lenient decoder ignores).
    edited = position[:20] + ("A" if position[20] != "A" else "B") + position[21:]
    for browser, raw in ((owner, position), (world.viewer, edited)):
        with open_stream(base, browser, last_event_id=raw) as stream:
            assert stream.next().event == "reset"
    # The untouched id still resumes for its own viewer.
    with open_stream(base, world.viewer, last_event_id=position) as stream:
        assert stream.next().event == "activity"


def test_positions_do_not_count_other_workspaces(
    live: tuple[World, str], db: Database, clock: Any
) -> None:
    """The counters behind a position (``events.seq``, ``stream_changes.seq``) are every
    workspace's: ids and cursors are sealed, so the 37 events recorded elsewhere between
    two of the team's show nowhere — not as digits, not as a gap."""
    world, base = live
    stranger = make_user(db, clock)
    elsewhere = personal_workspace(db, stranger)
    first = send(world, 1)
    for n in range(37):
        record_system_event(db, elsewhere.id, n, now=clock())
    second = send(world, 2)
    with db.read() as tx:
        seqs = dict(
            tx.conn.execute(
                select(events.c.id, events.c.seq).where(
                    events.c.id.in_([first["id"], second["id"]])
                )
            ).all()
        )
    assert seqs[second["id"]] - seqs[first["id"]] == 38  # what a clear position would show
    page = world.viewer.activity(limit=1)
    with open_stream(base, world.viewer) as stream:
        stream_id = stream.next_of("unseen").id
    for token in (page["nextCursor"], stream_id):
        assert len(token) == 43
        raw = base64.urlsafe_b64decode(token + "=")
        for seq in seqs.values():
            assert str(seq).encode() not in raw or len(str(seq)) < 3
            assert seq.to_bytes(8, "big") not in raw
            assert seq.to_bytes(8, "little") not in raw
    # What the tokens hold, opened with the installation's key: the team's own positions.
    with db.write() as tx:
        sealer = load_sealer(tx)
    assert sealer.open_cursor(page["nextCursor"]).seq == seqs[second["id"]]
    opened = sealer.open_position(stream_id, workspace_id=world.team.id, user_id=world.member.id)
    assert opened is not None
    assert opened.event_seq == seqs[second["id"]]


def test_an_edited_cursor_is_422(live: tuple[World, str]) -> None:
    world, _ = live
    world.send([event_body(n) for n in range(3)])
    cursor = world.viewer.activity(limit=1)["nextCursor"]
    assert len(world.viewer.activity(limit=1, cursor=cursor)["events"]) == 1
    middle = cursor[:20] + ("A" if cursor[20] != "A" else "B") + cursor[21:]
    respelled = (
        cursor[:-1]
        + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(cursor[-1]) ^ 1
        ]
    )
    for edited in (middle, respelled, cursor[1:] + cursor[0]):
        response = world.viewer.get("/api/activity", params={"cursor": edited})
        assert_error(response, 422, "invalid_request", "cursor")


def test_too_much_missed_is_a_reset(live: tuple[World, str]) -> None:
    world, base = live
    with open_stream(base, world.viewer) as stream:
        position = stream.next_of("unseen").id
    world.send([event_body(n) for n in range(REPLAY_LIMIT + 1)])
    with open_stream(base, world.viewer, last_event_id=position) as stream:
        first = stream.next()
        assert first.event == "reset"
        assert stream.next().data["unseenCount"] == REPLAY_LIMIT + 1
        # The reset's id is "now": resuming from it replays nothing.
        again = first.id
    with open_stream(base, world.viewer, last_event_id=again) as stream:
        assert [m.event for m in stream.drain(quiet=1.0)] == ["unseen"]


def test_a_change_in_another_workspace_only_moves_counts(
    live: tuple[World, str], db: Database, clock: Any
) -> None:
    """Mark all seen with ``owner`` (another workspace of the user): this workspace's
    tabs get an ``unseen`` with the new counts, no ``state``."""
    world, base = live
    member_key = make_key(db, clock, world.member)
    personal = personal_workspace(db, world.member)
    assert ingest(world.client, member_key, event_body(1)).status_code == 201
    with open_stream(base, world.viewer) as stream:
        assert stream.next_of("unseen").data["workspaces"][personal.slug] == 2
        done = world.viewer.post(
            "/api/activity/mark-seen", params={"owner": personal.slug}, json={"all": True}
        )
        assert done.status_code == 200, done.text
        message = stream.next()
        assert (message.event, message.data["workspaces"][personal.slug]) == ("unseen", 0)
        assert [m.event for m in stream.drain()] == []
