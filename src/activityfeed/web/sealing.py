"""One process's sealer of client positions, loaded on first use."""

from __future__ import annotations

import threading

from activityfeed.domain.sealing import Sealer
from activityfeed.services import sealing
from activityfeed.store.db import Database


class LazySealer:
    """The app's ``Sealer``: its key is read by the first request that needs it, in a
    read transaction of its own (a write one only if the key must be made: the migration
    made it, but the table may have been emptied since), then kept for the life of the
    process.

    Not at start-up: an app is built before its database may be reachable (or migrated),
    and most apps built by the tests never need it. Call ``get`` off the event loop.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._sealer: Sealer | None = None
        self._lock = threading.Lock()

    def get(self) -> Sealer:
        sealer = self._sealer
        if sealer is None:
            with self._lock:
                if self._sealer is None:
                    with self._db.read() as tx:
                        self._sealer = sealing.stored_sealer(tx)
                if self._sealer is None:
                    with self._db.write() as tx:
                        self._sealer = sealing.load_sealer(tx)
                sealer = self._sealer
        return sealer
