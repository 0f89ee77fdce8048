"""The per-process live stream broker: one source of wake-ups, many SSE clients.

Map of the moving parts (see ARCHITECTURE.md, "Live fan-out"):

* a **source** task: on PostgreSQL one LISTEN connection (``store.notify.listen``); on
  SQLite one poller that tails the tables every ``stream_poll_seconds``. It only says
  *where* something changed (a workspace, or a user in a workspace);
* a **dispatcher** task that, per wake-up, reads "what is above each concerned client's
  position" for all of them in one read transaction in a worker thread (never on the
  event loop), encodes the messages there, and puts them on each client's bounded
  queue without ever waiting;
* per client, the response's async generator, which drains its queue, sends the
  heartbeat, and unregisters the client when the connection ends.

A client that cannot keep up (its queue would overflow) has its queue replaced by one
``reset``; if it has not even taken that reset when the next overflow comes, it is
dropped (its stream ends after the reset). Nothing a client does can block the
dispatcher or another client. Replay after a reconnect is the same read as live
delivery, done by the same single dispatcher, so nothing is sent twice or lost.

Access is re-checked, not assumed: every dispatch checks, in the snapshot it reads
from, that each concerned stream's session is live and its user still a member of the
workspace, and an **access checker** task does the same for every open stream every
``stream_access_check_seconds``. A stream that fails the check ends (nothing more is
sent on it). A user holds at most ``stream_max_per_user`` streams per process; the next
is refused with 429 ``too_many_streams`` before the response starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

import anyio.to_thread
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from activityfeed.config import Settings
from activityfeed.domain.stream import (
    HEARTBEAT_FRAME,
    Message,
    MessageType,
    StreamPosition,
    retry_frame,
)
from activityfeed.errors import TooManyRequests
from activityfeed.services import stream as stream_service
from activityfeed.services import workspaces as workspace_service
from activityfeed.store import notify
from activityfeed.store import stream as stream_store
from activityfeed.store.db import Database
from activityfeed.web.schemas import event_public
from activityfeed.web.sealing import LazySealer

log = logging.getLogger(__name__)

#: How often each process prunes old state changes (with some jitter), in seconds.
PRUNE_EVERY_SECONDS = 300.0

#: SQLite: how often a process with no open stream tails the tables (seconds, or
#: ``stream_poll_seconds`` if longer). It keeps its position near the head, so the tail
#: read stays short, while an idle server does not poll many times a second.
IDLE_POLL_SECONDS = 1.0

#: A queued SSE text and whether it is a ``reset``; None ends the stream.
Frame = tuple[str, bool]

#: What a refused stream is told to wait before it tries again (seconds).
TOO_MANY_STREAMS_RETRY_AFTER = 5


class Start(Enum):
    """Where a new connection starts: from its position, from now, or with a reset."""

    RESUME = "resume"
    NOW = "now"
    RESET = "reset"


@dataclass(eq=False)
class Client:
    """One open stream. Its fields are touched only on the event loop."""

    user_id: str
    workspace_id: str
    slugs: dict[str, str]
    start: Start
    position: StreamPosition | None
    queue: asyncio.Queue[Frame | None]
    #: The session the stream was opened with (None: opened in-process, no session).
    session_hash: str | None = None
    is_caught_up: bool = False
    last_counts: dict[str, int] | None = None
    has_unread_reset: bool = False
    is_dropped: bool = False

    @property
    def grant(self) -> stream_service.StreamGrant:
        return stream_service.StreamGrant(self.session_hash, self.user_id, self.workspace_id)


@dataclass
class _User:
    """What the broker keeps per connected user: their workspaces and unseen counts."""

    slugs: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    #: The user's streams in this process: prepared (counted against the limit) or open.
    streams: set[Client] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _Job:
    client: Client
    grant: stream_service.StreamGrant
    user_id: str
    workspace_id: str
    start: Start
    position: StreamPosition | None
    is_fetch: bool
    slugs: dict[str, str]
    last_counts: dict[str, int] | None


@dataclass(frozen=True, slots=True)
class _Result:
    frames: list[Frame]
    position: StreamPosition | None
    counts: dict[str, int]
    #: The stream's session ended or its user left the workspace: end it, send nothing.
    is_revoked: bool = False


class Broker:
    """Fans new events and state changes out to this process's stream clients."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        clock: Callable[[], datetime],
        sealers: LazySealer | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock
        #: Seals every position sent (the SSE ids) and opens the ones clients resume from.
        self.sealers = sealers or LazySealer(db)
        self._clients: set[Client] = set()
        self._users: dict[str, _User] = {}
        self._dirty_events: set[str] = set()
        self._dirty_changes: set[tuple[str, str]] = set()
        self._dirty_all = False
        self._wake_event: asyncio.Event | None = None
        self._streaming: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # ---- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the source, dispatcher and pruner on the running loop (idempotent).

        The app's lifespan calls it; a stream request calls it too, so an app driven
        without its lifespan (a bare ``create_app`` under a test client) still streams.
        """
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._tasks and not any(t.done() for t in self._tasks):
            return
        self._forget_tasks()
        self._loop = loop
        self._wake_event = asyncio.Event()
        self._streaming = asyncio.Event()
        source = self._listen() if self.db.dialect == "postgresql" else self._poll()
        self._tasks = [
            loop.create_task(self._guard("dispatcher", self._dispatch_forever())),
            loop.create_task(self._guard("source", source)),
            loop.create_task(self._guard("pruner", self._prune_forever())),
            loop.create_task(self._guard("access checker", self._check_access_forever())),
        ]

    def _forget_tasks(self) -> None:
        for task in self._tasks:
            if task.done():
                continue
            loop = task.get_loop()
            if loop.is_closed():
                continue
            # Tasks of another (finished or foreign) loop are cancelled on their own loop.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)
        self._tasks = []

    async def aclose(self) -> None:
        """Stop the background tasks (the app's lifespan calls it at shutdown)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for client in list(self._clients):
            self._end(client)

    async def _guard(self, name: str, work: Any) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("stream %s stopped", name)

    # ---- wake-ups -----------------------------------------------------------------------

    def wake(self, wake: notify.Wake) -> None:
        """Note that something changed where ``wake`` says; the dispatcher reads it."""
        if wake.user_id is None:
            self._dirty_events.add(wake.workspace_id)
        else:
            self._dirty_changes.add((wake.workspace_id, wake.user_id))
        self._poke()

    def _catch_up_everyone(self) -> None:
        # After the source (re)connects, wake-ups may have been missed: re-read from
        # every client's position (exact, since delivery is by position).
        self._dirty_all = True
        self._poke()

    def _poke(self) -> None:
        if self._wake_event is not None:
            self._wake_event.set()

    async def _listen(self) -> None:
        await notify.listen(self.db.url, self.wake, self._catch_up_everyone)

    async def _poll(self) -> None:
        event_seq, change_seq = await anyio.to_thread.run_sync(self._tail_start)
        self._catch_up_everyone()
        while True:
            await self._pause()
            try:
                tail = await anyio.to_thread.run_sync(self._tail, event_seq, change_seq)
            except Exception:
                log.exception("stream poll failed; retrying")
                continue
            event_seq, change_seq = tail.event_seq, tail.change_seq
            for wake in tail.wakes:
                self.wake(wake)

    async def _pause(self) -> None:
        """Wait until the next tail: ``stream_poll_seconds`` while this process streams
        (the delay of a live event is at most this plus the fan-out), else up to
        ``IDLE_POLL_SECONDS``, cut short when a client arrives (its catch-up reads the
        database itself; the tail then keeps the usual pace)."""
        poll = self.settings.stream_poll_seconds
        streaming = self._streaming
        if self._clients or streaming is None:
            await asyncio.sleep(poll)
            return
        streaming.clear()
        try:
            async with asyncio.timeout(max(poll, IDLE_POLL_SECONDS)):
                await streaming.wait()
        except TimeoutError:
            return
        await asyncio.sleep(poll)

    def _tail_start(self) -> tuple[int, int]:
        with self.db.read() as tx:
            return notify.select_tail_start(tx)

    def _tail(self, event_seq: int, change_seq: int) -> notify.Tail:
        with self.db.read() as tx:
            return notify.select_tail(tx, after_event_seq=event_seq, after_change_seq=change_seq)

    async def _prune_forever(self) -> None:
        while True:
            # Jitter: several processes need not prune at the same moment.
            await asyncio.sleep(PRUNE_EVERY_SECONDS * random.uniform(0.5, 1.5))  # noqa: S311  (timing jitter, not a secret)
            try:
                await anyio.to_thread.run_sync(self.prune)
            except Exception:
                log.exception("pruning stream changes failed")

    def prune(self) -> int:
        """Delete state changes older than the retention (see ``prune_changes``)."""
        before = datetime.now(UTC) - timedelta(seconds=self.settings.stream_retention_seconds)
        with self.db.write() as tx:
            return stream_store.prune_changes(tx, before=before)

    async def _check_access_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.stream_access_check_seconds)
            try:
                await self.check_access()
            except Exception:
                log.exception("checking the streams' access failed; retrying")

    async def check_access(self) -> int:
        """End every open stream whose session is over or whose user has left its
        workspace (between wake-ups; dispatches check on their own). How many ended."""
        grants = {c.grant for c in self._clients}
        if not grants:
            return 0
        access = await anyio.to_thread.run_sync(self._access, grants)
        ended = [c for c in self._clients if c.grant in access.revoked]
        for client in ended:
            self._end(client)
        return len(ended)

    def _access(self, grants: set[stream_service.StreamGrant]) -> stream_service.Access:
        with self.db.read() as tx:
            return stream_service.check_access(tx, grants, now=self.clock(), settings=self.settings)

    # ---- clients ------------------------------------------------------------------------

    async def prepare(
        self,
        *,
        user_id: str,
        workspace_id: str,
        last_event_id: str | None,
        session_hash: str | None = None,
    ) -> Client:
        """A client for a stream of ``workspace_id``, counted against the user's limit
        until ``release`` (``frames`` and ``response`` release it when they end).

        Raises ``NotFound`` when the user is no longer a member of the workspace and
        ``TooManyRequests`` (``too_many_streams``) when the user holds
        ``stream_max_per_user`` streams in this process already. With ``session_hash``
        the stream ends once that session does.
        """
        slugs, position = await anyio.to_thread.run_sync(
            self._open, user_id, workspace_id, last_event_id
        )
        # No await between the count and the reservation: concurrent connects of one
        # user cannot all slip under the limit.
        user = self._users.setdefault(user_id, _User())
        limit = self.settings.stream_max_per_user
        if len(user.streams) >= limit:
            if not user.streams:
                del self._users[user_id]
            raise TooManyRequests(
                f"You have {limit} live streams open already, the most one person may; "
                "close a tab that shows the activity feed and try again.",
                code="too_many_streams",
                retry_after=TOO_MANY_STREAMS_RETRY_AFTER,
            )
        if position is not None:
            start = Start.RESUME
        else:
            start = Start.NOW if last_event_id is None else Start.RESET
        client = Client(
            user_id=user_id,
            workspace_id=workspace_id,
            slugs=slugs,
            start=start,
            position=position,
            queue=asyncio.Queue(maxsize=max(2, self.settings.stream_queue_size)),
            session_hash=session_hash,
        )
        user.streams.add(client)
        return client

    def response(self, client: Client, headers: dict[str, str]) -> StreamingResponse:
        """The SSE response of a prepared client; it releases the client however it ends
        (also when the connection is gone before the body starts)."""
        return _EventStream(self, client, headers)

    def _open(
        self, user_id: str, workspace_id: str, last_event_id: str | None
    ) -> tuple[dict[str, str], StreamPosition | None]:
        """In a worker thread: the user's workspaces (``NotFound`` unless a member of
        ``workspace_id``), and the position ``last_event_id`` names in this stream."""
        with self.db.read() as tx:
            slugs = stream_service.stream_workspaces(tx, user_id=user_id, workspace_id=workspace_id)
        position = self.sealers.open_position(
            last_event_id, workspace_id=workspace_id, user_id=user_id
        )
        return slugs, position

    def register(self, client: Client) -> None:
        """Add the client; the dispatcher first sends it what it missed (or ``reset``)."""
        self.start()
        if client.is_dropped:
            return
        user = self._users.setdefault(client.user_id, _User())
        user.slugs = dict(client.slugs)
        user.streams.add(client)
        self._clients.add(client)
        if self._streaming is not None:
            self._streaming.set()
        self._poke()

    def unregister(self, client: Client) -> None:
        """Stop serving the client and release its place in the user's limit (idempotent)."""
        self._clients.discard(client)
        user = self._users.get(client.user_id)
        if user is not None:
            user.streams.discard(client)
            if not user.streams:
                del self._users[client.user_id]

    release = unregister

    def _end(self, client: Client) -> None:
        self.unregister(client)
        client.is_dropped = True
        self._drain(client)
        client.queue.put_nowait(None)

    @property
    def client_count(self) -> int:
        return len(self._clients)

    async def frames(self, client: Client) -> AsyncIterator[str]:
        """The SSE text of one connection: ``retry``, then messages and heartbeats."""
        self.register(client)
        try:
            if client.is_dropped:
                return
            yield retry_frame()
            heartbeat = self.settings.stream_heartbeat_seconds
            while True:
                try:
                    async with asyncio.timeout(heartbeat):
                        item = await client.queue.get()
                except TimeoutError:
                    yield HEARTBEAT_FRAME
                    continue
                if item is None:
                    return
                text, is_reset = item
                if is_reset:
                    client.has_unread_reset = False
                yield text
        finally:
            self.unregister(client)

    # ---- dispatch -----------------------------------------------------------------------

    async def _dispatch_forever(self) -> None:
        assert self._wake_event is not None
        wake_event = self._wake_event
        while True:
            await wake_event.wait()
            wake_event.clear()
            try:
                await self._dispatch_once()
            except Exception:
                log.exception("stream dispatch failed; retrying from each client's position")
                self._dirty_all = True
                await asyncio.sleep(1.0)
                wake_event.set()

    async def _dispatch_once(self) -> None:
        events_ws, self._dirty_events = self._dirty_events, set()
        changes, self._dirty_changes = self._dirty_changes, set()
        everything, self._dirty_all = self._dirty_all, False
        jobs: list[_Job] = []
        recount: dict[str, set[str]] = {}
        for client in self._clients:
            user = self._users[client.user_id]
            is_fetch = (
                everything
                or not client.is_caught_up
                or client.workspace_id in events_ws
                or (client.workspace_id, client.user_id) in changes
            )
            # A new connection's counts are read in the snapshot of its catch-up, never
            # taken from the cache: the cache may predate events that the catch-up
            # already sees (committed, but not yet announced by a wake-up), and a
            # ``reset`` followed by a stale count would show the wrong badge.
            stale = {
                ws
                for ws in user.slugs
                if everything
                or not client.is_caught_up
                or ws not in user.counts
                or ws in events_ws
                or (ws, client.user_id) in changes
            }
            if not is_fetch and not stale:
                continue
            recount.setdefault(client.user_id, set()).update(stale)
            jobs.append(
                _Job(
                    client=client,
                    grant=client.grant,
                    user_id=client.user_id,
                    workspace_id=client.workspace_id,
                    start=client.start,
                    position=client.position,
                    is_fetch=is_fetch,
                    slugs=user.slugs,
                    last_counts=client.last_counts,
                )
            )
        if not jobs:
            return
        known = {u: dict(self._users[u].counts) for u in recount}
        results, counts = await anyio.to_thread.run_sync(self._build, jobs, recount, known)
        for user_id, user_counts in counts.items():
            if (known_user := self._users.get(user_id)) is not None:
                known_user.counts.update(user_counts)
        for job, result in zip(jobs, results, strict=True):
            client = job.client
            if client not in self._clients:
                continue
            if result.is_revoked:
                self._end(client)
                continue
            client.position = result.position
            client.start = Start.RESUME
            client.is_caught_up = True
            client.last_counts = result.counts
            self._deliver(client, result.frames)

    def _build(
        self, jobs: list[_Job], recount: dict[str, set[str]], known: dict[str, dict[str, int]]
    ) -> tuple[list[_Result], dict[str, dict[str, int]]]:
        """In a worker thread: read, in one snapshot, what every job needs, and encode it."""
        now = self.clock()
        window = timedelta(seconds=self.settings.undo_window_seconds)
        sealer = self.sealers.get()
        deliveries: dict[tuple[str, str, StreamPosition | None], stream_service.Delivery] = {}
        with self.db.read() as tx:
            # First, in the same snapshot as the reads below: an event committed after a
            # member was removed (or a session ended) is never sent on that stream.
            access = stream_service.check_access(
                tx, {job.grant for job in jobs}, now=now, settings=self.settings
            )
            jobs_allowed = [job for job in jobs if job.grant not in access.revoked]
            recount = {
                user_id: {ws for ws in wss if (ws, user_id) in access.members}
                for user_id, wss in recount.items()
            }
            fresh = {
                user_id: workspace_service.unseen_counts(
                    tx, user_id=user_id, workspace_ids=sorted(wss)
                )
                for user_id, wss in recount.items()
            }
            for job in jobs_allowed:
                position = job.position if job.start is Start.RESUME else None
                key = (job.user_id, job.workspace_id, position)
                if job.is_fetch and key not in deliveries:
                    deliveries[key] = stream_service.catch_up(
                        tx,
                        user_id=job.user_id,
                        workspace_id=job.workspace_id,
                        position=position,
                        now=now,
                        undo_window=window,
                    )
        results: list[_Result] = []
        # Many clients share a delivery (the tabs of one user, or one user's many
        # streams): each distinct message is encoded once and the text shared.
        encoded: dict[tuple[Any, ...], list[Frame]] = {}
        for job in jobs:
            if job.grant in access.revoked:
                results.append(_Result([], job.position, {}, is_revoked=True))
                continue
            by_id = {**known.get(job.user_id, {}), **fresh.get(job.user_id, {})}
            # A workspace the user has left drops out of the switcher's counts.
            counts = {
                slug: by_id[ws]
                for ws, slug in job.slugs.items()
                if ws in by_id and (ws, job.user_id) in access.members
            }
            unseen = by_id.get(job.workspace_id, 0)
            counts_key = tuple(sorted(counts.items()))
            frames: list[Frame] = []
            position = job.position

            def seal(at: StreamPosition, job: _Job = job) -> str:
                return sealer.seal_position(at, workspace_id=job.workspace_id, user_id=job.user_id)

            if job.is_fetch:
                position_key = job.position if job.start is Start.RESUME else None
                delivery_key = (job.user_id, job.workspace_id, position_key)
                delivery = deliveries[delivery_key]
                position = delivery.position
                if delivery.is_reset or job.start is Start.RESET:
                    frames.append(_reset(seal(delivery.position)))
                else:
                    text_key: tuple[Any, ...] = ("items", delivery_key, unseen, counts_key)
                    if text_key not in encoded:
                        encoded[text_key] = _encode(
                            delivery, unseen=unseen, counts=counts, seal=seal
                        )
                    frames.extend(encoded[text_key])
            carried = any(not is_reset for _, is_reset in frames)
            if not carried and counts != job.last_counts and position is not None:
                # The sealed id is the viewer's own: shared only by the same stream.
                text_key = ("unseen", job.user_id, job.workspace_id, position, unseen, counts_key)
                if text_key not in encoded:
                    message = Message(
                        MessageType.UNSEEN,
                        {"unseenCount": unseen, "workspaces": counts},
                        seal(position),
                    )
                    encoded[text_key] = [(message.encode(), False)]
                frames.extend(encoded[text_key])
            results.append(_Result(frames=frames, position=position, counts=counts))
        return results, fresh

    def _deliver(self, client: Client, frames: list[Frame]) -> None:
        """Queue ``frames`` for the client without ever waiting for it."""
        if not frames or client.is_dropped:
            return
        queue = client.queue
        if len(frames) <= queue.maxsize - queue.qsize():
            for frame in frames:
                queue.put_nowait(frame)
            return
        assert client.position is not None
        # On the event loop, so no I/O: frames were built (``_build``), the key is loaded.
        sealed = self.sealers.loaded().seal_position(
            client.position, workspace_id=client.workspace_id, user_id=client.user_id
        )
        reset = _reset(sealed)
        if client.has_unread_reset:
            # It has not even taken the last reset: it is stuck, stop working for it.
            log.info("dropping a stream client that stopped reading")
            self.unregister(client)
            client.is_dropped = True
            self._drain(client)
            queue.put_nowait(reset)
            queue.put_nowait(None)
            return
        self._drain(client)
        queue.put_nowait(reset)
        client.has_unread_reset = True

    @staticmethod
    def _drain(client: Client) -> None:
        while not client.queue.empty():
            client.queue.get_nowait()


def _reset(position: str) -> Frame:
    return Message(MessageType.RESET, {}, position).encode(), True


def _encode(
    delivery: stream_service.Delivery,
    *,
    unseen: int,
    counts: dict[str, int],
    seal: Callable[[StreamPosition], str],
) -> list[Frame]:
    frames: list[Frame] = []
    for item in delivery.items:
        data: dict[str, Any]
        if isinstance(item, stream_service.ActivityItem):
            kind = MessageType.ACTIVITY
            data = {"event": event_public(item.view)}
        else:
            kind = MessageType.STATE
            data = {
                "action": item.change.action.value,
                "eventIds": item.change.event_ids,
                "all": item.change.is_all,
            }
        data["unseenCount"] = unseen
        data["workspaces"] = counts
        frames.append((Message(kind, data, seal(item.position)).encode(), False))
    return frames


class _EventStream(StreamingResponse):
    """A client's SSE response that always releases the client when it ends.

    The body generator's own ``finally`` does not run when the connection is gone
    before the first chunk (a never-started generator has nothing to finalise), so
    the place the client holds in its user's limit is given back here.
    """

    def __init__(self, broker: Broker, client: Client, headers: dict[str, str]) -> None:
        super().__init__(broker.frames(client), media_type="text/event-stream", headers=headers)
        self._broker = broker
        self._client = client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._broker.release(self._client)
