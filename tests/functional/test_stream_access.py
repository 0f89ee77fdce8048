"""Who may hold a live stream, and for how long (issue 6: isolation and limits).

A stream is opened by a session for its active workspace. It must carry only what that
user may see in that workspace, end once the session ends or the user stops being a
member, and one user may hold only ``stream_max_per_user`` of them in a process. The
app runs in a real uvicorn server (an endless body needs one), as in test_stream.py.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import httpx
from fastapi.testclient import TestClient

from activityfeed.config import Settings
from activityfeed.store.db import Database
from activityfeed.web import create_app
from tests.factories import Browser, event_body, ingest, make_team
from tests.functional.feed_helpers import World, assert_error, make_world
from tests.sse_client import SSEMessage, SSEStream, cookies, open_stream, serve_app


@contextmanager
def live(
    settings: Settings, db: Database, clock: Any, **overrides: Any
) -> Iterator[tuple[World, str]]:
    """A world (team, owner, member, producer key) and the base URL of a real server."""
    settings = replace(
        settings, stream_heartbeat_seconds=0.5, stream_poll_seconds=0.05, **overrides
    )
    app = create_app(settings, db=db, clock=clock)
    client = TestClient(app, base_url="http://testserver")
    world = make_world(app, client, db, clock)
    with serve_app(app) as base:
        yield world, base


def until_end(stream: SSEStream, timeout: float) -> list[SSEMessage]:
    """The messages left on the stream; fails unless the server ends it in time."""
    got: list[SSEMessage] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            message = stream.messages.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"the stream was still open after {timeout} s") from None
        if message is None:
            return got
        got.append(message)


def remove_member(world: World) -> None:
    """The owner removes the member through the API."""
    owner = world.browser(world.owner)
    response = owner.delete(f"/api/workspaces/{world.team.slug}/members/{world.member.email}")
    assert response.status_code == 200, response.text


def test_logout_ends_that_sessions_streams_only(
    settings: Settings, db: Database, clock: Any
) -> None:
    """Logout ends the session's open stream within the access check; the same user's
    stream of another session goes on and still gets events."""
    with live(settings, db, clock, stream_access_check_seconds=0.1) as (world, base):
        other_tab = world.browser(world.member)
        old_cookies = cookies(world.viewer)
        with open_stream(base, world.viewer) as ended, open_stream(base, other_tab) as going_on:
            ended.next_of("unseen")
            going_on.next_of("unseen")
            assert world.viewer.post("/api/auth/logout").status_code == 200
            assert until_end(ended, timeout=5) == []
            sent = ingest(world.client, world.secret, event_body(1)).json()["event"]
            assert going_on.next_of("activity").data["event"]["id"] == sent["id"]
        with httpx.Client(base_url=base, cookies=old_cookies) as http:
            assert_error(http.get("/api/activity/stream"), 401, "not_authenticated")


def test_idle_session_ends_its_stream(settings: Settings, db: Database, clock: Any) -> None:
    """A session that idles out (no request for ``session_idle_seconds``) ends its stream."""
    with (
        live(settings, db, clock, stream_access_check_seconds=0.1) as (world, base),
        open_stream(base, world.viewer) as stream,
    ):
        stream.next_of("unseen")
        clock.advance(seconds=settings.session_idle_seconds + 1)
        until_end(stream, timeout=5)


def test_removed_member_gets_no_event_recorded_after_removal(
    settings: Settings, db: Database, clock: Any
) -> None:
    """Delivery checks membership in the snapshot it reads from: with the periodic check
    out of the way (an hour), the first event after the removal ends the stream
    instead of reaching it."""
    with live(settings, db, clock, stream_access_check_seconds=3600) as (world, base):
        with open_stream(base, world.viewer) as stream:
            stream.next_of("unseen")
            before = ingest(world.client, world.secret, event_body(1)).json()["event"]
            assert stream.next_of("activity").data["event"]["id"] == before["id"]
            remove_member(world)
            after = ingest(world.client, world.secret, event_body(2)).json()["event"]
            rest = until_end(stream, timeout=5)
            assert after["id"] not in str([m.data for m in rest])
            assert [m.event for m in rest] == []
        # The removal moved the session to the personal workspace: a reconnect streams
        # that one, and the team is gone from the counts it starts with.
        with open_stream(base, world.viewer) as again:
            assert world.team.slug not in again.next_of("unseen").data["workspaces"]


def test_removed_member_stream_closes_without_any_event(
    settings: Settings, db: Database, clock: Any
) -> None:
    """Without any traffic in the workspace, the periodic check ends the stream."""
    with live(settings, db, clock, stream_access_check_seconds=0.1) as (world, base):
        owner = world.browser(world.owner)
        with open_stream(base, world.viewer) as removed, open_stream(base, owner) as stays:
            removed.next_of("unseen")
            stays.next_of("unseen")
            remove_member(world)
            assert until_end(removed, timeout=5) == []
            # The owner's stream of the same workspace is untouched.
            sent = ingest(world.client, world.secret, event_body(3)).json()["event"]
            assert stays.next_of("activity").data["event"]["id"] == sent["id"]


def test_streams_per_user_are_limited(settings: Settings, db: Database, clock: Any) -> None:
    """The third stream of a user (limit 2) is 429 too_many_streams with Retry-After;
    another user is not affected; closing one frees its place."""
    with live(settings, db, clock, stream_max_per_user=2) as (world, base):
        first = open_stream(base, world.viewer)
        second = open_stream(base, world.browser(world.member))
        with httpx.Client(base_url=base, cookies=cookies(world.viewer)) as http:
            refused = http.get("/api/activity/stream")
        body = assert_error(refused, 429, "too_many_streams")
        assert "2" in body["message"]
        assert int(refused.headers["retry-after"]) >= 1
        with open_stream(base, world.browser(world.owner)) as others:
            others.next_of("unseen")
        first.close()

        def reopened() -> SSEStream | None:
            stream = SSEStream(base, cookies(world.viewer))
            if stream.response.status_code == 200:
                return stream
            # The server notices the closed stream at its next write (a heartbeat).
            stream.response.read()
            assert_error(stream.response, 429, "too_many_streams")
            stream.close()
            return None

        third = poll(reopened, timeout=5)
        third.next_of("unseen")
        third.close()
        second.close()


def poll(attempt: Callable[[], SSEStream | None], timeout: float) -> SSEStream:
    deadline = time.monotonic() + timeout
    while True:
        if (got := attempt()) is not None:
            return got
        if time.monotonic() > deadline:
            raise AssertionError("the stream's place was not freed in time")
        time.sleep(0.1)


def test_streams_never_carry_another_workspaces_events(
    settings: Settings, db: Database, clock: Any
) -> None:
    """Two users, two team workspaces: X is in A; Y is in A and owns B. Events in both,
    with private api_key events of each user in A and of Y in B. Every stream, live and
    replayed, carries exactly the events its session's list shows for its workspace,
    and its counts name only the user's own workspaces."""
    with live(settings, db, clock) as (world, base):
        x, y = world.owner, world.member
        team_b = make_team(db, clock, y, [], name="Team B")
        x_on_a = world.browser(x)
        y_on_a = world.browser(y)
        y_on_b = Browser(world.app, y.email)
        y_on_b.switch(team_b.slug)
        sessions = {"x@A": x_on_a, "y@A": y_on_a, "y@B": y_on_b}
        # What each list held before (the producer key's own api_key event, the owner's).
        before = {name: _ids(b) for name, b in sessions.items()}
        streams = {name: open_stream(base, b) for name, b in sessions.items()}
        try:
            starts = {name: s.next_of("unseen").id for name, s in streams.items()}
            # Private events: each user's new keys (api_key events, private to the
            # creator), in A for both and in B for Y; then public events in both.
            keys = {}
            for name, browser in sessions.items():
                made = browser.post("/api/api-keys", json={"name": f"key {name}"})
                assert made.status_code == 201, made.text
                keys[name] = made.json()["secret"]
            for n in range(3):
                for name in ("x@A", "y@B"):
                    sent = ingest(world.client, keys[name], event_body(n, resourceName=name))
                    assert sent.status_code == 201, sent.text
            expected = {name: _ids(b) - before[name] for name, b in sessions.items()}
            slugs = {name: set(_slugs(b)) for name, b in sessions.items()}
            assert team_b.slug not in slugs["x@A"]
            # Each list itself is right: 3 public events and the user's own key(s).
            assert len(expected["x@A"]) == 3 + 1
            assert len(expected["y@A"]) == 3 + 1
            assert len(expected["y@B"]) == 3 + 1
            assert not expected["x@A"] & expected["y@B"]
            for name, stream in streams.items():
                messages = _until_ids(stream, expected[name])
                _check(name, messages, expected[name], slugs[name])
        finally:
            for s in streams.values():
                s.close()
        # The same from the positions taken before any event: the replay path.
        for name, browser in sessions.items():
            with open_stream(base, browser, last_event_id=starts[name]) as replay:
                _check(name, replay.drain(quiet=1.0), expected[name], slugs[name])


def _ids(browser: Browser) -> set[str]:
    return {e["id"] for e in browser.activity(limit=100)["events"]}


def _slugs(browser: Browser) -> list[str]:
    response = browser.get("/api/workspaces")
    assert response.status_code == 200, response.text
    return [w["slug"] for w in response.json()["workspaces"]]


def _until_ids(stream: SSEStream, wanted: set[str], timeout: float = 10.0) -> list[SSEMessage]:
    got: list[SSEMessage] = []
    deadline = time.monotonic() + timeout
    while not wanted <= {m.data["event"]["id"] for m in got if m.event == "activity"}:
        got.append(stream.next(max(0.01, deadline - time.monotonic())))
    got.extend(stream.drain(quiet=0.5))
    return got


def _check(name: str, messages: list[SSEMessage], expected: set[str], slugs: set[str]) -> None:
    activity = [m.data["event"]["id"] for m in messages if m.event == "activity"]
    assert sorted(activity) == sorted(expected), name
    for m in messages:
        if "workspaces" in m.data:
            assert set(m.data["workspaces"]) <= slugs, (name, m.data)
