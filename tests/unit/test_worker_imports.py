"""What a worker process loads, and what it must not: on SQLite never the PostgreSQL
driver (about 9 MB of its memory) — not at start-up, not for a read, not for the live
stream's fan-out — and never the command line it was started from (12 MB). Each run is
a fresh interpreter, whose modules are its own."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from activityfeed.cli.serve import Worker
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


# What multiprocessing's spawn does in each new worker before it runs the worker: the
# parent's main script run again under the name ``__mp_main__``.
_AS_SPAWN_PREPARES = """
import runpy, sys

runpy.run_path(sys.argv[1], run_name="__mp_main__")
print(sorted({"typer", "rich", "alembic", "activityfeed.cli.main"} & set(sys.modules)))
"""


def test_a_spawned_worker_does_not_import_the_command_line() -> None:
    """``activityfeed serve`` runs as the console script; each worker it spawns runs that
    script again, and must not load the command line with it (12 MB a worker)."""
    script = Path(sys.executable).with_name("activityfeed")
    assert script.exists(), "the console script is installed with the package"
    loaded = run_python(_AS_SPAWN_PREPARES, str(script), env=dict(os.environ)).stdout
    assert loaded.strip() == "[]"


_IMPORTING_THE_WORKER = """
import sys

import activityfeed.cli.worker

print(sorted({"typer", "rich", "alembic", "activityfeed.cli.serve"} & set(sys.modules)))
"""


def test_the_worker_process_is_defined_apart_from_the_command_line() -> None:
    """A spawned worker unpickles its process object, importing the module that defines
    its class: that module must not bring the command line in (Click comes with uvicorn
    itself, so it is not among the modules checked)."""
    assert Worker.__module__ == "activityfeed.cli.worker"
    loaded = run_python(_IMPORTING_THE_WORKER, env=dict(os.environ)).stdout
    assert loaded.strip() == "[]"
