"""SQLite's durability settings on every connection the app opens (issue 6, "Crash").

The crash test (tests/e2e/test_crash.py) kills the server process, which loses nothing
that the operating system has been handed; ``synchronous=FULL`` is what makes a commit
survive a power cut too, so it is checked here, on the app's pool and on the unpooled
engine of migrations and the CLI. (FULL is also the default of most SQLite builds; the
pragma guards the builds whose WAL default is NORMAL, and this test any change to it.)
"""

from __future__ import annotations

import pytest

from activityfeed.store import migrate
from activityfeed.store.db import BUSY_TIMEOUT_MS, Database, make_unpooled_engine

SYNCHRONOUS_FULL = 2
#: SQLite's default: a commit that leaves more than 1000 pages in the WAL checkpoints it,
#: so the WAL is reused instead of growing without bound.
WAL_AUTOCHECKPOINT_PAGES = 1000


@pytest.mark.parametrize("pooled", [True, False], ids=["app", "unpooled"])
def test_sqlite_connections_sync_every_commit(tmp_path, pooled):
    url = f"sqlite:///{tmp_path / 'durable.db'}"
    migrate.upgrade(url)
    engine = Database(url).engine if pooled else make_unpooled_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == SYNCHRONOUS_FULL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == BUSY_TIMEOUT_MS
            assert (
                conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one()
                == WAL_AUTOCHECKPOINT_PAGES
            )
    finally:
        engine.dispose()
