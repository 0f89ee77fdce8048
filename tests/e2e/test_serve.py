"""`activityfeed serve` as an operator runs it: a real server process, real HTTP."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import pytest

from activityfeed.cli.bench import free_port
from activityfeed.cli.main import app as cli  # noqa: F401  (the entry point must import)
from activityfeed.cli.serve import MALLOC_SETTINGS

BIN = Path(sys.executable).with_name("activityfeed")


@dataclass
class ServerProcess:
    """A running ``activityfeed serve``: its URL, its process and what it printed."""

    base: str
    proc: subprocess.Popen[bytes]
    log: IO[bytes]

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


@contextmanager
def server_process(
    database_url: str, *, workers: int = 1, env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    """Start ``activityfeed serve`` and wait until it answers; stop it (and every worker
    it forked, even orphaned ones) when the block ends."""
    port = free_port()
    full_env = {**os.environ, "ACTIVITYFEED_DATABASE_URL": database_url, **(env or {})}
    # A file, not a pipe: a long run must never block on a full pipe nobody reads.
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [
                str(BIN),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own process group, so the workers can be stopped with it.
            start_new_session=True,
        )
        running = ServerProcess(base=f"http://127.0.0.1:{port}", proc=proc, log=log)
        try:
            # Generous: two workers importing the app on a loaded CI machine take a while.
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    if httpx.get(running.base + "/healthz", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            else:
                pytest.fail(f"server did not start (exit code {proc.poll()}):\n{running.output()}")
            yield running
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            # Workers left behind by a parent that died first.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


@contextmanager
def server(database_url: str, *, workers: int = 1) -> Iterator[str]:
    with server_process(database_url, workers=workers) as running:
        yield running.base


def test_workers_run_with_the_malloc_settings(database_url):
    """The workers start with ``serve.MALLOC_SETTINGS`` (two arenas, fixed thresholds:
    what keeps their memory flat under a long soak and after bursts), set by ``serve``
    itself."""
    before = {name: os.environ.pop(name, None) for name in MALLOC_SETTINGS}
    try:
        with server_process(database_url, workers=2) as running:
            children = Path(f"/proc/{running.proc.pid}/task/{running.proc.pid}/children")
            pids = children.read_text().split()
            environs = [Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") for pid in pids]
    finally:
        for name, value in before.items():
            if value is not None:
                os.environ[name] = value
    workers = [e for e in environs if any(v.startswith(b"ACTIVITYFEED_DATABASE_URL=") for v in e)]
    assert len(workers) >= 2, environs
    for environ in workers:
        for name, (value, _) in MALLOC_SETTINGS.items():
            assert f"{name}={value}".encode() in environ


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_upgrades_and_answers(database_url, workers):
    """serve creates the schema itself; a user made by the CLI signs in over real HTTP."""
    subprocess.run(
        [
            str(BIN),
            "user",
            "create",
            "--email",
            "op@example.com",
            "--name",
            "Op",
            "--password",
            "s3cret-pass",
            "--database-url",
            database_url,
        ],
        check=True,
        capture_output=True,
    )
    with server(database_url, workers=workers) as base, httpx.Client(base_url=base) as http:
        login = http.post(
            "/api/auth/login", json={"email": "op@example.com", "password": "s3cret-pass"}
        )
        assert login.status_code == 200, login.text
        csrf = login.json()["csrfToken"]
        key = http.post("/api/api-keys", json={"name": "runner"}, headers={"X-CSRF-Token": csrf})
        assert key.status_code == 201, key.text
        secret = key.json()["secret"]
        sent = httpx.post(
            base + "/api/events",
            headers={"Authorization": f"Bearer {secret}"},
            json={
                "resourceType": "model",
                "action": "exported",
                "resourceId": "m1",
                "resourceName": "yolo11n",
            },
        )
        assert sent.status_code == 201, sent.text
        feed = http.get("/api/activity").json()
        assert feed["events"][0]["description"] == "Exported model yolo11n"
        assert http.get("/activity").status_code == 200


def _established_by_process(pids: list[str], port: int) -> dict[str, int]:
    """How many established TCP connections to ``port`` each process holds (from /proc:
    the sockets' inodes in /proc/net/tcp, their owners by the processes' descriptors)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":  # 01: ESTABLISHED
                inodes.add(fields[9])
    held: dict[str, int] = {}
    for pid in pids:
        links = []
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                links.append(os.readlink(fd))
        held[pid] = sum(1 for link in links if link[len("socket:[") : -1] in inodes)
    return held


def test_both_workers_take_connections_that_arrive_together(database_url):
    """Sixteen keep-alive connections opened at once (as a proxy's pool or a load
    generator opens them) are spread over both workers: with one shared listening socket
    the first worker to wake accepted them all and the other idled."""
    import socket

    with server_process(database_url, workers=2) as running:
        port = int(running.base.rsplit(":", 1)[1])
        children = Path(f"/proc/{running.proc.pid}/task/{running.proc.pid}/children")
        workers = [
            pid
            for pid in children.read_text().split()
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(workers) == 2, workers
        # The burst arrives while both workers are paused, as it does while they are
        # busy: the connections queue, and the workers find them when they wake.
        for pid in workers:
            os.kill(int(pid), signal.SIGSTOP)
        try:
            conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
        finally:
            for pid in workers:
                os.kill(int(pid), signal.SIGCONT)
        try:
            for conn in conns:
                conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            for conn in conns:
                conn.settimeout(10)
                assert conn.recv(4096).startswith(b"HTTP/1.1 200")
            held = _established_by_process(workers, port)
        finally:
            for conn in conns:
                conn.close()
    assert sum(held.values()) == 16, held
    assert min(held.values()) >= 1, held


def _workers(running: ServerProcess) -> list[str]:
    """The pids of the server's live worker processes (its spawned children)."""
    pid = running.proc.pid
    return [
        child
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]


def test_a_dead_workers_connections_wait_for_its_replacement(database_url):
    """Each worker's listening socket outlives it (the supervisor holds it): connections
    the kernel hands to a worker that just died queue until its replacement serves them,
    rather than being refused or lost."""
    with server_process(database_url, workers=2) as running:
        first = _workers(running)
        os.kill(int(first[0]), signal.SIGKILL)
        # Sixteen fresh connections: about half hash to the dead worker's socket.
        statuses = []
        for _ in range(16):
            with httpx.Client(base_url=running.base, timeout=60) as http:
                statuses.append(http.get("/healthz").status_code)
        assert statuses == [200] * 16
        # The supervisor replaces the dead worker on its next check (every half second):
        # the sixteen answers may all have come from the live one before it did.
        deadline = time.monotonic() + 30
        while len(now := _workers(running)) != 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(now) == 2, now
        assert first[0] not in now


def test_a_worker_that_dies_while_being_checked_is_replaced_at_once(database_url):
    """The supervisor checks its workers every half second and waits up to a minute for a
    busy one to answer. A worker that dies while a check waits on it is replaced at once:
    the wait ends with the process, not with the minute (meanwhile the dead worker's
    connections queue, and the supervisor answers no signal)."""
    with server_process(database_url, workers=2) as running:
        victim = _workers(running)[0]
        # Stopped, it cannot answer: within a second the supervisor's check waits on it.
        os.kill(int(victim), signal.SIGSTOP)
        time.sleep(2)
        os.kill(int(victim), signal.SIGKILL)
        deadline = time.monotonic() + 20  # a third of the check's own timeout
        while (len(now := _workers(running)) != 2 or victim in now) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(now) == 2, now
        assert victim not in now, now
        assert httpx.get(running.base + "/healthz", timeout=20).status_code == 200


def test_a_second_server_on_a_taken_port_stops_with_a_reason(database_url):
    """SO_REUSEPORT would let a second ``serve`` on the same port silently take half the
    connections; it refuses to start instead."""
    with server_process(database_url, workers=2) as running:
        port = running.base.rsplit(":", 1)[1]
        second = subprocess.run(
            [str(BIN), "serve", "--port", port, "--workers", "2", "--database-url", database_url],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert second.returncode == 1
    assert f"Cannot listen on 127.0.0.1:{port}: Address already in use." in second.stdout


def test_serve_warns_when_the_database_keeps_no_statistics(database_url):
    """On PostgreSQL with autovacuum off (as on the CI machine) serve says so and what to
    do; with it on, and on SQLite, it says nothing."""
    from sqlalchemy import create_engine

    expected = False
    if database_url.startswith("postgresql"):
        engine = create_engine(database_url)
        with engine.connect() as conn:
            expected = conn.exec_driver_sql("SHOW autovacuum").scalar_one() == "off"
        engine.dispose()
    with server_process(database_url) as running:
        said = running.output()
    assert ("Warning: PostgreSQL's autovacuum is off" in said) is expected, said
