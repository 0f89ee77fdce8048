"""``activityfeed serve``."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import typer
import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from activityfeed.cli.common import DatabaseUrl, console, settings_for
from activityfeed.cli.worker import Worker
from activityfeed.store import maintenance, migrate

logger = logging.getLogger("uvicorn.error")

#: How long uvicorn's supervisor waits for a worker to answer its health check before it
#: kills the worker (SIGKILL) and starts another. Uvicorn's default, 5 s, is shorter than
#: a worker's start-up on a busy machine (the ping is answered only once the app's
#: modules are imported), so under load the supervisor killed workers in a loop, and
#: busy ones mid-request (clients saw "connection reset").
WORKER_HEALTHCHECK_SECONDS = 60

#: glibc's malloc settings for the workers, each as its environment variable (read when
#: a process starts, so set before the workers are spawned; an operator's own value wins)
#: with the ``mallopt`` parameter that sets it in this process (``--workers 1`` serves
#: here).
#:
#: - ``MALLOC_ARENA_MAX=2``: glibc gives threads their own arenas (up to 8 per core), and
#:   a worker's thread pool spreads its allocations over all of them: under a steady soak
#:   the workers' memory kept growing (6 MiB/min after 8 minutes, 113 -> 209 MB per
#:   worker); with 2 arenas it levels off (+1.9% between the second and last quarter, 154
#:   MB per worker), and throughput did not suffer (docs/reliability.md, "Soak").
#: - ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` at 128 KiB, glibc's own
#:   starting values, made fixed: by default, freeing a block that came from ``mmap``
#:   (an ingestion batch's body, a page of SQLite's cache) raises the threshold to that
#:   block's size, up to 32 MiB, so later blocks that large come from the heap, where
#:   freed memory below a live block is never given back. A worker's resident size after
#:   the benchmark's HTTP and live-stream parts: 155.7 MB with the dynamic thresholds,
#:   136.5 MB with fixed ones (docs/performance.md, "Tenth round").
MALLOC_SETTINGS: dict[str, tuple[str, int]] = {
    "MALLOC_ARENA_MAX": ("2", -8),  # M_ARENA_MAX
    "MALLOC_MMAP_THRESHOLD_": ("131072", -3),  # M_MMAP_THRESHOLD
    "MALLOC_TRIM_THRESHOLD_": ("131072", -1),  # M_TRIM_THRESHOLD
}


def tune_malloc() -> None:
    """Apply ``MALLOC_SETTINGS`` to the worker processes about to be spawned (their
    environment) and, through ``mallopt``, to this process. A value already in the
    environment wins; one that is no number is left to glibc, which ignores it. Does
    nothing where the C library is not glibc."""
    mallopt: Callable[[int, int], int] | None
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        mallopt = None
    for name, (default, param) in MALLOC_SETTINGS.items():
        os.environ.setdefault(name, default)
        if mallopt is None:
            continue
        with contextlib.suppress(ValueError):
            mallopt(param, int(os.environ[name]))


#: The app factory each worker imports (workers are spawned, not forked).
APP = "activityfeed.web.app:app_from_env"


def run_server(database_url: str, host: str, port: int, workers: int) -> None:
    """Upgrade the schema, then serve with uvicorn (each worker builds its own app)."""
    migrate.upgrade(database_url)
    for warning in maintenance.housekeeping_warnings(database_url):
        console.print(f"[yellow]Warning: {warning}[/yellow]")
    # Workers are separate processes: they read their settings from the environment.
    os.environ["ACTIVITYFEED_DATABASE_URL"] = database_url
    tune_malloc()
    options: dict[str, Any] = {
        "factory": True,
        "host": host,
        "port": port,
        "workers": workers,
        "proxy_headers": True,
        "log_level": "warning",
        # Live streams never end by themselves: on shutdown, give them this long, then
        # close them (the browsers reconnect elsewhere and resume by Last-Event-ID).
        "timeout_graceful_shutdown": 5,
        "timeout_worker_healthcheck": WORKER_HEALTHCHECK_SECONDS,
    }
    if workers == 1 or not hasattr(socket, "SO_REUSEPORT"):
        # One worker serves in this process. Without SO_REUSEPORT (not Linux or a BSD)
        # the workers share uvicorn's one socket, unevenly (see BalancedWorkers).
        uvicorn.run(APP, **options)
        return
    config = uvicorn.Config(APP, **options)
    listeners = bind_listeners(host, port, workers)
    try:
        BalancedWorkers(config, listeners).run()
    except KeyboardInterrupt:
        pass
    finally:
        for listener in listeners:
            listener.close()


def bind_listeners(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on one address, joined by SO_REUSEPORT, so that the
    kernel hands each new connection to one of them (by a hash of its addresses). Port 0
    means the first free port, shared by all. Exits with a clear message when the port is
    taken, including by another ``serve``: the probe binds without SO_REUSEPORT, which
    no socket in another group can share."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            console.print(f"[red]Cannot listen on {host}:{port}: {exc.strerror}.[/red]")
            raise typer.Exit(1) from exc
        port = probe.getsockname()[1]
    return [reuseport_listener(host, port) for _ in range(count)]


def reuseport_listener(host: str, port: int) -> socket.socket:
    """One listening socket of the SO_REUSEPORT group on ``host:port``."""
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind((host, port))
    # Listening now, not in the worker: connections that arrive while a worker starts
    # (or restarts) wait in its socket's queue instead of being refused.
    listener.listen(LISTEN_BACKLOG)
    listener.set_inheritable(True)
    return listener


LISTEN_BACKLOG = 2048  # uvicorn's default


class BalancedWorkers(Multiprocess):
    """Uvicorn's supervisor (health checks, restarts, signals, graceful stops), but each
    worker accepts from a listening socket of its own rather than from one they all share.

    With one shared socket, whichever worker's event loop wakes first accepts every
    pending connection in one go; keep-alive clients that connect together (a proxy's
    pool, a load generator) then all land on one worker while the other idles, which
    halved ``GET /api/activity``'s requests per second (docs/performance.md, "Sixth
    round"). The kernel spreads connections over SO_REUSEPORT sockets instead. A socket
    belongs to its slot, not to a process: the parent keeps it open, so connections that
    queue on it while its worker restarts are served by the replacement."""

    def __init__(self, config: uvicorn.Config, listeners: list[socket.socket]) -> None:
        super().__init__(config, sockets=[])
        self.listeners = listeners

    def _spawn(self, slot: int) -> Process:
        process = Worker(self.config, [self.listeners[slot]])
        process.start()
        return process

    def init_processes(self) -> None:
        self.processes = [self._spawn(slot) for slot in range(self.processes_num)]

    def keep_subprocess_alive(self) -> None:
        # Multiprocess.keep_subprocess_alive, with the replacement on the dead one's slot.
        if self.should_exit.is_set():
            return
        for slot, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # hung, or already dead
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                # It failed before serving (app, database URL): every restart would too.
                logger.error(f"Child process [{process.pid}] failed to start, stopping.")
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            logger.info(f"Child process [{process.pid}] died")
            self.processes[slot] = self._spawn(slot)

    def restart_all(self) -> None:
        """SIGHUP: replace each worker, its replacement accepting on the same socket
        before the old one is retired (Multiprocess.restart_all, slot by slot)."""
        for slot, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._spawn(slot)
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new.kill()
                new.join()
                if not self.should_exit.is_set():
                    logger.error(
                        f"New child process [{new.pid}] was not ready in time; "
                        f"keeping worker [{old.pid}] and aborting the restart."
                    )
                return
            old.terminate()
            old.join()
            self.processes[slot] = new

    def handle_ttin(self) -> None:
        """SIGTTIN: one more worker, on a socket of its own."""
        host, port = self.listeners[0].getsockname()[:2]
        self.listeners.append(reuseport_listener(host, port))
        self.processes_num += 1
        self.processes.append(self._spawn(len(self.processes)))

    def handle_ttou(self) -> None:
        """SIGTTOU: one worker fewer. Connections still queued on its socket (not yet
        accepted) are reset when the socket closes; clients retry them."""
        if self.processes_num <= 1:
            return
        self.processes_num -= 1
        process = self.processes.pop()
        process.terminate()
        process.join()
        self.listeners.pop().close()


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
