"""One process's sealer of client positions: loaded on first use, kept in step with the
database's key."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from activityfeed.domain.query import Cursor
from activityfeed.domain.sealing import Sealer
from activityfeed.domain.stream import StreamPosition
from activityfeed.errors import InvalidRequest
from activityfeed.services import sealing
from activityfeed.store.db import Database

#: How long a process trusts the key it read before it reads it again (seconds).
REFRESH_SECONDS = 60.0
#: A token that does not open makes the process read the key again, at most this often.
RETRY_SECONDS = 1.0

T = TypeVar("T")


class LazySealer:
    """The app's sealer. Its key is read by the first request that needs it, in a read
    transaction of its own (a write one only if the key must be made: the migration made
    it, but the table may have been emptied since), and again every ``REFRESH_SECONDS``
    and whenever a token fails to open (at most every ``RETRY_SECONDS``).

    Not at start-up: an app is built before its database may be reachable (or migrated),
    and most apps built by the tests never need it. The re-reads keep the processes of
    one installation on one key: should the row be deleted while they run, the first to
    need it makes a new one, and the others take it up within a minute (at once for a
    token of it they are shown). Everything but ``loaded`` may read the database: call
    it off the event loop.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._sealer: Sealer | None = None
        self._key: bytes | None = None
        self._read_at = 0.0
        self._retried_at = -RETRY_SECONDS
        self._lock = threading.Lock()

    def get(self) -> Sealer:
        """The sealer, read again if it is older than ``REFRESH_SECONDS``."""
        sealer = self._sealer
        if sealer is None or time.monotonic() - self._read_at >= REFRESH_SECONDS:
            sealer = self._read(older_than=REFRESH_SECONDS)
        return sealer

    def loaded(self) -> Sealer:
        """The sealer as last read, without any I/O (for the event loop). Only after a
        ``get``."""
        assert self._sealer is not None, "LazySealer.get() first"
        return self._sealer

    def seal_cursor(self, cursor: Cursor) -> str:
        return self.get().seal_cursor(cursor)

    def seal_position(self, position: StreamPosition, *, workspace_id: str, user_id: str) -> str:
        return self.get().seal_position(position, workspace_id=workspace_id, user_id=user_id)

    def open_cursor(self, text: str) -> Cursor:
        """``Sealer.open_cursor``, tried again with the key read afresh if it fails."""

        def open_(sealer: Sealer) -> Cursor | None:
            try:
                return sealer.open_cursor(text)
            except InvalidRequest:
                return None

        cursor = self._open(open_)
        if cursor is None:
            return self.get().open_cursor(text)  # raises the InvalidRequest
        return cursor

    def open_position(
        self, raw: str | None, *, workspace_id: str, user_id: str
    ) -> StreamPosition | None:
        """``Sealer.open_position``, tried again with the key read afresh if it fails."""
        if raw is None:
            return None
        return self._open(
            lambda s: s.open_position(raw, workspace_id=workspace_id, user_id=user_id)
        )

    def _open(self, open_: Callable[[Sealer], T | None]) -> T | None:
        opened = open_(self.get())
        if opened is not None:
            return opened
        with self._lock:
            now = time.monotonic()
            if now - self._retried_at < RETRY_SECONDS:
                return None  # forged tokens do not get a read of the database each
            self._retried_at = now
        before = self._key
        fresh = self._read(older_than=0.0)
        return open_(fresh) if self._key != before else None

    def _read(self, *, older_than: float) -> Sealer:
        with self._lock:
            if self._sealer is None or time.monotonic() - self._read_at >= older_than:
                with self._db.read() as tx:
                    sealer = sealing.stored_sealer(tx)
                if sealer is None:
                    with self._db.write() as tx:
                        sealer = sealing.load_sealer(tx)
                self._sealer, self._key = sealer, sealer.key
                self._read_at = time.monotonic()
            return self._sealer
