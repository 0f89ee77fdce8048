"""``activityfeed serve``."""

from __future__ import annotations

import ctypes
import os

import typer
import uvicorn

from activityfeed.cli.common import DatabaseUrl, console, settings_for
from activityfeed.store import migrate

#: How long uvicorn's supervisor waits for a worker to answer its health check before it
#: kills the worker (SIGKILL) and starts another. Uvicorn's default, 5 s, is shorter than
#: a worker's start-up on a busy machine (the ping is answered only once the app's
#: modules are imported), so under load the supervisor killed workers in a loop, and
#: busy ones mid-request (clients saw "connection reset").
WORKER_HEALTHCHECK_SECONDS = 60

#: glibc's malloc gives threads their own arenas (up to 8 per core), and a worker's thread
#: pool spreads its allocations over all of them: under a steady soak the workers' memory
#: kept growing (6 MiB/min after 8 minutes, 113 -> 209 MB per worker); with 2 arenas it
#: levels off (+1.9% between the second and last quarter, 154 MB per worker), and
#: throughput did not suffer (docs/reliability.md, "Soak"). glibc reads the variable when
#: a process starts, so it is set before the workers are spawned; an operator's own
#: value wins.
MALLOC_ARENA_MAX = "2"
_M_ARENA_MAX = -8  # glibc's mallopt parameter number for the same limit


def limit_malloc_arenas() -> None:
    """Cap glibc's malloc arenas for the worker processes about to be spawned and, through
    ``mallopt``, for this process (``--workers 1`` serves in it). Does nothing where the
    C library is not glibc."""
    os.environ.setdefault("MALLOC_ARENA_MAX", MALLOC_ARENA_MAX)
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_ARENA_MAX, int(os.environ["MALLOC_ARENA_MAX"]))
    except (OSError, AttributeError, ValueError):
        pass


def run_server(database_url: str, host: str, port: int, workers: int) -> None:
    """Upgrade the schema, then serve with uvicorn (each worker builds its own app)."""
    migrate.upgrade(database_url)
    # Workers are separate processes: they read their settings from the environment.
    os.environ["ACTIVITYFEED_DATABASE_URL"] = database_url
    limit_malloc_arenas()
    uvicorn.run(
        "activityfeed.web.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,
        log_level="warning",
        # Live streams never end by themselves: on shutdown, give them this long, then
        # close them (the browsers reconnect elsewhere and resume by Last-Event-ID).
        timeout_graceful_shutdown=5,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
    )


def serve(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    workers: int = typer.Option(1, "--workers", min=1, max=64),
    database_url: str | None = DatabaseUrl,
) -> None:
    """Serve the web app and API (upgrades the schema first)."""
    settings = settings_for(database_url)
    console.print(f"Serving on http://{host}:{port} ({workers} worker(s))")
    run_server(settings.database_url, host, port, workers)
