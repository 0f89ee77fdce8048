"""The installation's keys (``server_secrets``): made by the migration that needs them,
or by their first user when the table was emptied since."""

from __future__ import annotations

import secrets as random
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from activityfeed.store.db import Tx
from activityfeed.store.schema import server_secrets


def stored_secret(tx: Tx, name: str) -> bytes | None:
    """The secret called ``name``, or None when there is none yet."""
    stored = tx.conn.execute(
        select(server_secrets.c.secret).where(server_secrets.c.name == name)
    ).scalar_one_or_none()
    return None if stored is None else bytes(stored)


def secret(tx: Tx, name: str, *, size: int) -> bytes:
    """The secret called ``name``: the same bytes for every caller (every worker, every
    restart); ``size`` random bytes stored by the first caller if there are none yet.

    Needs a write transaction. Two first callers at once store one secret: the second
    insert does nothing (PostgreSQL waits for the first to commit) and both read it.
    """
    insert = pg_insert if tx.dialect == "postgresql" else sqlite_insert
    tx.conn.execute(
        insert(server_secrets)
        .values(name=name, secret=random.token_bytes(size), created_at=datetime.now(UTC))
        .on_conflict_do_nothing(index_elements=["name"])
    )
    stored = stored_secret(tx, name)
    assert stored is not None  # inserted above, or by a transaction it waited for
    return stored
