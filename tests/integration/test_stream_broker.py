"""The stream broker under a client that stops reading: the others do not wait."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import anyio.to_thread
import pytest
from sqlalchemy import text

from activityfeed.config import Settings
from activityfeed.store.db import Database
from activityfeed.web import sse
from activityfeed.web.sse import Broker
from tests.factories import make_user, personal_workspace, record_system_event

EVENTS = 25


async def _next(frames: AsyncIterator[str]) -> str:
    return await asyncio.wait_for(anext(frames), timeout=10)


def test_a_client_that_never_reads_does_not_block_another(
    db: Database, settings: Settings, clock: Any
) -> None:
    """With a queue of 4, a stuck client gets a reset, then is dropped, while a reading
    client gets every event; nothing the stuck one does holds up delivery."""
    settings = replace(
        settings, stream_queue_size=4, stream_poll_seconds=0.02, stream_heartbeat_seconds=30
    )
    user = make_user(db, clock)
    ws = personal_workspace(db, user)

    def record(n: int) -> str:
        return record_system_event(db, ws.id, n, now=clock())

    async def main() -> None:
        broker = Broker(settings, db, clock)
        broker.start()
        try:
            stuck = await broker.prepare(user_id=user.id, workspace_id=ws.id, last_event_id=None)
            reader = await broker.prepare(user_id=user.id, workspace_id=ws.id, last_event_id=None)
            stuck_frames = broker.frames(stuck)
            reader_frames = broker.frames(reader)
            assert (await _next(stuck_frames)).startswith("retry:")
            assert (await _next(reader_frames)).startswith("retry:")
            assert broker.client_count == 2
            # A stream without an id starts "now" at its first dispatch, which sends the
            # counts; wait for it, so that every event below is after "now" for both.
            assert (await _next(reader_frames)).startswith("event: unseen")
            while not stuck.is_caught_up:
                await asyncio.sleep(0.01)
            wanted = []
            got: list[str] = []
            for n in range(EVENTS):
                wanted.append(await anyio.to_thread.run_sync(record, n))
                # The reader takes each event as it comes; the stuck client reads nothing.
                while not any(wanted[-1] in frame for frame in got):
                    got.append(await _next(reader_frames))
                assert stuck.queue.qsize() <= 4
            activity = [f for f in got if f.startswith("event: activity")]
            assert [next(w for w in wanted if w in f) for f in activity] == wanted
            # The stuck client overflowed twice: a reset, then dropped after it.
            assert stuck.is_dropped
            assert broker.client_count == 1
            assert (await _next(stuck_frames)).startswith("event: reset")
            rest = [frame async for frame in stuck_frames]
            assert rest == []
        finally:
            await broker.aclose()

    asyncio.run(main())


class InjectedFault(RuntimeError):
    """A failure the test injects between a commit and its delivery."""


def _recorder(db: Database, clock: Any, workspace_id: str) -> Any:
    def record(n: int) -> str:
        return record_system_event(db, workspace_id, n, now=clock())

    return record


async def _activity_ids(frames: AsyncIterator[str], count: int) -> list[str]:
    ids: list[str] = []
    while len(ids) < count:
        frame = await _next(frames)
        if frame.startswith("event: activity"):
            data = frame.split("data: ", 1)[1]
            ids.append(json.loads(data)["event"]["id"])
    return ids


def _break_once(target: Any, name: str, monkeypatch: Any, armed: list[bool]) -> list[int]:
    original = getattr(target, name)
    fired: list[int] = []

    def broken(*args: Any, **kw: Any) -> Any:
        if armed[0]:
            armed[0] = False
            fired.append(1)
            raise InjectedFault(name)
        return original(*args, **kw)

    monkeypatch.setattr(target, name, broken)
    return fired


def test_a_failed_read_after_commit_delays_delivery_but_loses_nothing(
    db: Database, settings: Settings, clock: Any, monkeypatch: Any
) -> None:
    """The events are committed; the broker's read of them fails once. It reads again
    from each client's position: every event arrives once, in order."""
    settings = replace(settings, stream_poll_seconds=0.02, stream_heartbeat_seconds=30)
    user = make_user(db, clock)
    ws = personal_workspace(db, user)
    record = _recorder(db, clock, ws.id)
    armed = [False]
    fired = _break_once(sse.stream_service, "catch_up", monkeypatch, armed)

    async def main() -> None:
        broker = Broker(settings, db, clock)
        broker.start()
        try:
            client = await broker.prepare(user_id=user.id, workspace_id=ws.id, last_event_id=None)
            frames = broker.frames(client)
            assert (await _next(frames)).startswith("retry:")
            assert (await _next(frames)).startswith("event: unseen")
            armed[0] = True
            first = [await anyio.to_thread.run_sync(record, n) for n in range(3)]
            assert await _activity_ids(frames, 3) == first
            assert fired == [1]
            later = await anyio.to_thread.run_sync(record, 3)
            assert await _activity_ids(frames, 1) == [later]
        finally:
            await broker.aclose()

    asyncio.run(main())


def test_a_lost_wake_up_after_commit_delays_delivery_but_loses_nothing(
    db: Database, settings: Settings, clock: Any, monkeypatch: Any
) -> None:
    """The wake-up source fails after the commit: on SQLite one poll of the tables
    raises; on PostgreSQL the listening connection is killed by the server, so the
    notification of a commit is never received. The next poll, or the listener's
    reconnection, reads from each client's position: the event arrives once."""
    settings = replace(settings, stream_poll_seconds=0.02, stream_heartbeat_seconds=30)
    user = make_user(db, clock)
    ws = personal_workspace(db, user)
    record = _recorder(db, clock, ws.id)
    armed = [False]
    fired: list[int] = []
    original_tail = sse.notify.select_tail

    def tail_lost_after_commit(*args: Any, **kw: Any) -> Any:
        # The poll that first sees the committed event fails (not merely the next poll
        # to start: one already under way when the test arms could carry the event).
        tail = original_tail(*args, **kw)
        if armed[0] and tail.wakes:
            armed[0] = False
            fired.append(1)
            raise InjectedFault("select_tail")
        return tail

    monkeypatch.setattr(sse.notify, "select_tail", tail_lost_after_commit)

    def kill_listener() -> int:
        with db.engine.connect() as conn:
            killed = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query LIKE 'LISTEN %'"
                )
            ).scalar_one()
            conn.commit()
        return int(killed)

    async def main() -> None:
        broker = Broker(settings, db, clock)
        broker.start()
        try:
            client = await broker.prepare(user_id=user.id, workspace_id=ws.id, last_event_id=None)
            frames = broker.frames(client)
            assert (await _next(frames)).startswith("retry:")
            assert (await _next(frames)).startswith("event: unseen")
            if db.dialect == "postgresql":
                assert await anyio.to_thread.run_sync(kill_listener) == 1
            else:
                armed[0] = True
            lost = await anyio.to_thread.run_sync(record, 0)
            assert await _activity_ids(frames, 1) == [lost]
            if db.dialect != "postgresql":
                assert fired == [1]
            later = await anyio.to_thread.run_sync(record, 1)
            assert await _activity_ids(frames, 1) == [later]
        finally:
            await broker.aclose()

    asyncio.run(main())


def test_a_new_connection_counts_in_the_snapshot_of_its_catch_up(
    db: Database, settings: Settings, clock: Any
) -> None:
    """A reconnecting tab is caught up from the database, so its counts must come from the
    same read, not from the counts the broker cached for the user's other stream: events
    committed but not yet announced (no wake-up: SQLite's poll is an hour away here)
    are in the catch-up and must be in its ``unseenCount`` too."""
    if db.dialect != "sqlite":
        pytest.skip("PostgreSQL announces each commit at once (NOTIFY): no gap to hold open")
    settings = replace(settings, stream_poll_seconds=3600, stream_heartbeat_seconds=30)
    user = make_user(db, clock)
    ws = personal_workspace(db, user)
    record = _recorder(db, clock, ws.id)

    async def main() -> None:
        broker = Broker(settings, db, clock)
        broker.start()
        try:
            first = await broker.prepare(user_id=user.id, workspace_id=ws.id, last_event_id=None)
            first_frames = broker.frames(first)
            assert (await _next(first_frames)).startswith("retry:")
            hello = await _next(first_frames)
            assert hello.startswith("event: unseen")
            position = next(line[4:] for line in hello.splitlines() if line.startswith("id: "))
            ids = [await anyio.to_thread.run_sync(record, n) for n in range(3)]
            # The first stream stays open: the broker keeps the user's cached counts.
            second = await broker.prepare(
                user_id=user.id, workspace_id=ws.id, last_event_id=position
            )
            second_frames = broker.frames(second)
            assert (await _next(second_frames)).startswith("retry:")
            frames = [await _next(second_frames) for _ in ids]
            assert [next(i for i in ids if i in f) for f in frames] == ids
            counts = [json.loads(f.split("data: ", 1)[1])["unseenCount"] for f in frames]
            assert counts[-1] == 3, counts
        finally:
            await broker.aclose()

    asyncio.run(main())


def test_an_idle_process_tails_slowly_and_a_stream_restores_the_pace(
    db: Database, settings: Settings, clock: Any, monkeypatch: Any
) -> None:
    """SQLite: without streams a process tails once per ``IDLE_POLL_SECONDS``, not 20 times
    a second; the first stream ends that wait and the tail keeps ``stream_poll_seconds``."""
    if db.dialect != "sqlite":
        pytest.skip("PostgreSQL wakes by NOTIFY; only SQLite tails the tables")
    settings = replace(settings, stream_poll_seconds=0.02, stream_heartbeat_seconds=30)
    monkeypatch.setattr(sse, "IDLE_POLL_SECONDS", 0.5)
    user = make_user(db, clock)
    ws = personal_workspace(db, user)
    record = _recorder(db, clock, ws.id)

    async def main() -> None:
        broker = Broker(settings, db, clock)
        tails: list[int] = []
        original = broker._tail

        def counting(event_seq: int, change_seq: int) -> Any:
            tails.append(event_seq)
            return original(event_seq, change_seq)

        monkeypatch.setattr(broker, "_tail", counting)
        broker.start()
        try:
            await asyncio.sleep(1.2)
            # At 0.02 s that would be about 60 tails.
            assert len(tails) <= 3
            client = await broker.prepare(user_id=user.id, workspace_id=ws.id, last_event_id=None)
            frames = broker.frames(client)
            assert (await _next(frames)).startswith("retry:")
            assert (await _next(frames)).startswith("event: unseen")
            before = len(tails)
            await asyncio.sleep(1.0)
            assert len(tails) - before >= 8
            wanted = await anyio.to_thread.run_sync(record, 1)
            assert await _activity_ids(frames, 1) == [wanted]
        finally:
            await broker.aclose()

    asyncio.run(main())
