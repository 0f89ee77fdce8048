"""The stream broker under a client that stops reading: the others do not wait."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import anyio.to_thread

from activityfeed.config import Settings
from activityfeed.domain.events import Action, EventDraft, ResourceType, Source, SourceKind
from activityfeed.services.events import record_event
from activityfeed.store.db import Database
from activityfeed.web.sse import Broker
from tests.factories import make_user, personal_workspace

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
        with db.write() as tx:
            event = record_event(
                tx,
                EventDraft(
                    workspace_id=ws.id,
                    resource_type=ResourceType.TRAINING,
                    action=Action.COMPLETED,
                    resource_id=f"run-{n}",
                    resource_name=f"run-{n}",
                    actor=None,
                    source=Source(kind=SourceKind.SYSTEM),
                ),
                now=clock(),
            )
        return event.id

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
