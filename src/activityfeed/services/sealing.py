"""The installation's sealer of client positions (``domain.sealing``)."""

from __future__ import annotations

from activityfeed.domain.sealing import KEY_BYTES, Sealer
from activityfeed.store import secrets as secret_store
from activityfeed.store.db import Tx

#: The ``server_secrets`` row of the key.
POSITIONS_KEY = "positions"


def stored_sealer(tx: Tx) -> Sealer | None:
    """The sealer with this installation's key, or None if there is no key yet (any
    transaction). Every process gets the same key: a cursor or stream position sealed by
    one worker opens in another, and after a restart."""
    key = secret_store.stored_secret(tx, POSITIONS_KEY)
    return None if key is None else Sealer(key)


def load_sealer(tx: Tx) -> Sealer:
    """The sealer with this installation's key, making the key if there is none yet (so
    it needs a write transaction). See ``stored_sealer``."""
    return Sealer(secret_store.secret(tx, POSITIONS_KEY, size=KEY_BYTES))
