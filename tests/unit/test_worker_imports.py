"""A worker on SQLite never loads the PostgreSQL driver (about 9 MB of its memory): not
at start-up, not for a read, not for the live stream's fan-out. Each run is a fresh
interpreter, whose modules are its own."""

from __future__ import annotations

import os
from pathlib import Path

from tests.fresh_python import run_python

_LOADED = """
import asyncio, sys

from activityfeed.store import migrate
from activityfeed.web.app import app_from_env

migrate.upgrade(sys.argv[1])
app = app_from_env()


async def serve_a_moment():
    async with app.router.lifespan_context(app):  # starts the stream's broker
        await asyncio.sleep(0.5)


asyncio.run(serve_a_moment())
with app.state.db.read() as tx:
    tx.conn.exec_driver_sql("SELECT count(*) FROM events").scalar_one()
print("psycopg" in sys.modules)
"""


def test_a_sqlite_worker_never_imports_psycopg(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'imports.db'}"
    env = {**os.environ, "ACTIVITYFEED_DATABASE_URL": url}
    assert run_python(_LOADED, url, env=env, timeout=120).stdout.split()[-1] == "False"
