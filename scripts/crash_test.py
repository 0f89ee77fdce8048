"""Kill the server with SIGKILL while producers ingest; prove nothing acknowledged is lost
or stored twice (issue 6, "Crash").

    PYTHONPATH=src python scripts/crash_test.py [--database-url URL] [--kills 30]
        [--clients 50] [--workspaces 5] [--max-acks 500] [--jitter 1.0]
        [--workers 1] [--seed N] [--json]

It prepares a user, ``--workspaces`` team workspaces and one ``events:write`` key for each
(through the services, in this process), then starts the real server
(``activityfeed serve`` in a subprocess, its own process group) and runs ``--clients``
producers against it. Each producer sends one event or a small batch per request, every
item with its own ``idempotencyKey``, and retries the identical request after any
connection error or 5xx until the server acknowledges it (200 or 201). ``--kills`` times,
at a random moment while commits are flowing (after a random 1..``--max-acks``
acknowledgements in this life of the server, then a random 0..``--jitter`` seconds),
the whole process group gets SIGKILL and a new server is started on the same
port. After the last kill one more server is started, every producer finishes the
request it has in flight, the server is stopped, and the database is checked directly:

- every acknowledged item is stored exactly once, under its key, with the id the server
  answered (a retry that was answered 200 returned the original, never a second event);
- nothing is stored that was not acknowledged, and no key has two rows;
- each workspace's ``ws_ord`` is dense (1..n) and its per-day counts add up to n;
- on SQLite, ``PRAGMA integrity_check`` says ``ok``, ``PRAGMA foreign_key_check`` finds
  nothing, and every event is in the search index.

A failed attempt is retried as soon as the server answers ``/healthz`` again (with a few
milliseconds of jitter): the producers wait for the restart as a backing-off client would,
without spending on futile connects the CPU the restart needs. Without
``--database-url`` the database is a temporary SQLite file; a PostgreSQL URL must name a
database this script may write to (it only adds a user, workspaces and events, and
checks only its own workspaces). ``tests/e2e/test_crash.py`` runs ``run()`` on both
databases.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from activityfeed.cli.bench import free_port, serve_command
from activityfeed.domain.accounts import Scope
from activityfeed.domain.events import SourceKind
from activityfeed.services import accounts, apikeys, workspaces
from activityfeed.store import migrate
from activityfeed.store.db import Database

TYPES = ("training", "dataset", "model", "deployment", "export", "project")
ACTIONS = ("created", "updated", "started", "completed", "failed")
#: A 5xx is a bug here (the server that answers is healthy): retry a few, then report it.
MAX_5XX_PER_REQUEST = 20


@dataclass(frozen=True)
class Producer:
    """One workspace's API key."""

    workspace_id: str
    secret: str


@dataclass
class Acked:
    """What the server acknowledged for one item: its key, the id it answered, the
    resource id sent (to catch a reply that carries someone else's event)."""

    workspace_id: str
    key: str
    event_id: str
    resource_id: str


@dataclass
class Report:
    """The run's figures; ``problems`` is empty when every check held."""

    backend: str
    kills: int
    clients: int
    workers: int
    requests: int = 0
    acknowledged_events: int = 0
    #: Requests that needed more than one attempt (their first attempt met a kill).
    retried_requests: int = 0
    #: Acknowledgements answered 200: the first attempt had committed, its answer was lost.
    replayed_requests: int = 0
    failed_attempts: int = 0
    server_errors: int = 0
    in_flight_at_kill: list[int] = field(default_factory=list)
    uptimes_s: list[float] = field(default_factory=list)
    restart_s: list[float] = field(default_factory=list)
    stored_events: int = 0
    lost: int = 0
    duplicates: int = 0
    wrong_answers: int = 0
    unacknowledged_stored: int = 0
    max_wal_bytes: int | None = None
    final_wal_bytes: int | None = None
    integrity_check: str | None = None
    server_tracebacks: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        inflight = self.in_flight_at_kill
        out["in_flight_at_kill"] = {
            "min": min(inflight, default=0),
            "mean": round(sum(inflight) / len(inflight), 1) if inflight else 0,
            "max": max(inflight, default=0),
        }
        for name in ("uptimes_s", "restart_s"):
            values = out.pop(name)
            out[name.replace("_s", "_mean_s")] = (
                round(sum(values) / len(values), 2) if values else 0
            )
        return out


# --- set-up -------------------------------------------------------------------------


def prepare(database_url: str, n_workspaces: int) -> list[Producer]:
    """Migrate, then make a user, team workspaces and one key for each."""
    migrate.upgrade(database_url)
    db = Database(database_url)
    now = datetime.now(UTC)
    tag = uuid.uuid4().hex[:8]
    try:
        with db.write() as tx:
            user = accounts.create_user(
                tx,
                email=f"crash-{tag}@example.com",
                name="Crash test",
                password="crash test password",  # noqa: S106 - a throwaway test account
                now=now,
            )
            spaces = [
                workspaces.create_workspace(tx, user_id=user.id, name=f"Crash {tag} {i}", now=now)
                for i in range(n_workspaces)
            ]
        producers = []
        for ws in spaces:
            with db.write() as tx:
                membership = workspaces.access_workspace(tx, user_id=user.id, workspace_id=ws.id)
                created = apikeys.create_api_key(
                    tx,
                    user=user,
                    membership=membership,
                    name="crash test",
                    scopes=[Scope.EVENTS_WRITE],
                    source=SourceKind.CLI,
                    now=now,
                )
            producers.append(Producer(ws.id, created.secret))
        return producers
    finally:
        db.dispose()


# --- the server ---------------------------------------------------------------------


def start_server(
    database_url: str, port: int, *, workers: int, workdir: Path, log: Any
) -> subprocess.Popen[bytes]:
    """``activityfeed serve`` in its own process group (so one SIGKILL takes every worker)."""
    cmd = serve_command(database_url, port=port, workers=workers)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "ACTIVITYFEED_DATA_DIR": str(workdir),
    }
    return subprocess.Popen(  # noqa: S603 - our own CLI
        cmd,
        env=env,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
    )


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the server's whole process group and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


async def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=1) as http:
        while True:
            try:
                if (await http.get(base + "/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode} while starting")
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            await asyncio.sleep(0.02)


# --- the producers ------------------------------------------------------------------


@dataclass
class Shared:
    base: str
    up: asyncio.Event
    stop: asyncio.Event
    report: Report
    acked: list[Acked] = field(default_factory=list)
    in_flight: int = 0


def request_body(rng: random.Random, run: str, client: int, n: int) -> dict[str, Any]:
    """One event (three times in four) or a batch of 2-5, each item with its own key."""
    size = 1 if rng.random() < 0.75 else rng.randint(2, 5)
    items = []
    for j in range(size):
        rid = f"{run}-c{client}-r{n}-i{j}"
        items.append(
            {
                "resourceType": rng.choice(TYPES),
                "action": rng.choice(ACTIONS),
                "resourceId": rid,
                "resourceName": f"crash {rid}",
                "metadata": {"client": client, "request": n, "item": j},
                "idempotencyKey": f"key-{rid}",
            }
        )
    return items[0] if size == 1 else {"events": items}


async def producer(shared: Shared, index: int, target: Producer, run: str, seed: int) -> None:
    """Send requests until told to stop; retry each one, unchanged, until acknowledged."""
    rng = random.Random(seed)  # noqa: S311 - test traffic, not a secret
    report = shared.report
    headers = {"Authorization": f"Bearer {target.secret}"}
    async with httpx.AsyncClient(base_url=shared.base, headers=headers, timeout=60) as http:
        n = 0
        while not shared.stop.is_set():
            body = request_body(rng, run, index, n)
            n += 1
            report.requests += 1
            attempts = errors_here = 0
            while True:
                await shared.up.wait()
                attempts += 1
                shared.in_flight += 1
                try:
                    response = await http.post("/api/events", json=body)
                except httpx.TransportError:
                    response = None
                finally:
                    shared.in_flight -= 1
                if response is not None and response.status_code in (200, 201):
                    break
                report.failed_attempts += 1
                if response is not None:
                    if response.status_code < 500:
                        # A refusal is final: the request would never be acknowledged.
                        report.problems.append(
                            f"client {index}: {response.status_code} {response.text[:300]}"
                        )
                        return
                    report.server_errors += 1
                    errors_here += 1
                    if errors_here > MAX_5XX_PER_REQUEST:
                        report.problems.append(
                            f"client {index}: gave up after {errors_here} answers 5xx: "
                            f"{response.text[:300]}"
                        )
                        return
                await asyncio.sleep(rng.uniform(0, 0.02))
            if attempts > 1:
                report.retried_requests += 1
            if response.status_code == 200:
                report.replayed_requests += 1
            answer = response.json()
            sent = body.get("events", [body])
            got = answer["events"] if "events" in body else [answer["event"]]
            for item, event in zip(sent, got, strict=True):
                shared.acked.append(
                    Acked(
                        target.workspace_id, item["idempotencyKey"], event["id"], item["resourceId"]
                    )
                )
            report.acknowledged_events += len(sent)


async def orchestrate(
    database_url: str,
    producers: list[Producer],
    report: Report,
    *,
    max_acks: int,
    jitter: float,
    workdir: Path,
    seed: int,
) -> list[Acked]:
    rng = random.Random(seed)  # noqa: S311 - kill moments, not a secret
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    shared = Shared(base=base, up=asyncio.Event(), stop=asyncio.Event(), report=report)
    run = uuid.uuid4().hex[:8]
    wal = _wal_path(database_url)
    log_path = workdir / "server.log"
    proc: subprocess.Popen[bytes] | None = None
    with log_path.open("ab") as log:
        clients = [
            asyncio.create_task(
                producer(shared, i, producers[i % len(producers)], run, rng.randrange(2**32))
            )
            for i in range(report.clients)
        ]
        try:
            for _ in range(report.kills):
                started = time.monotonic()
                proc = start_server(
                    database_url, port, workers=report.workers, workdir=workdir, log=log
                )
                await wait_ready(base, proc)
                report.restart_s.append(time.monotonic() - started)
                shared.up.set()
                up_at = time.monotonic()
                # The kill lands at a random moment once commits are flowing: after a random
                # number of acknowledgements in this life of the server, then a random delay.
                target = report.acknowledged_events + rng.randint(1, max_acks)
                while report.acknowledged_events < target and time.monotonic() - up_at < 60:
                    await asyncio.sleep(0.002)
                await asyncio.sleep(rng.uniform(0, jitter))
                shared.up.clear()
                uptime = time.monotonic() - up_at
                report.in_flight_at_kill.append(shared.in_flight)
                kill_group(proc)
                proc = None
                report.uptimes_s.append(uptime)
                if wal is not None and wal.exists():
                    report.max_wal_bytes = max(report.max_wal_bytes or 0, wal.stat().st_size)
                if any(c.done() for c in clients):
                    break
            # The last restart: every producer finishes the request it has in flight.
            proc = start_server(
                database_url, port, workers=report.workers, workdir=workdir, log=log
            )
            await wait_ready(base, proc)
            shared.stop.set()
            shared.up.set()
            await asyncio.wait_for(asyncio.gather(*clients), timeout=120)
            # A clean stop, as an operator's would be (SIGTERM; the server checkpoints).
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                report.problems.append("the server did not stop on SIGTERM")
            proc = None
        finally:
            for c in clients:
                c.cancel()
            if proc is not None:
                kill_group(proc)
    report.server_tracebacks = log_path.read_text(errors="replace").count("Traceback")
    return shared.acked


# --- the checks ---------------------------------------------------------------------


def _wal_path(database_url: str) -> Path | None:
    if not database_url.startswith("sqlite"):
        return None
    return Path(database_url.split("///", 1)[1] + "-wal")


def verify(
    database_url: str, producers: list[Producer], acked: list[Acked], report: Report
) -> None:
    """Compare the database with what was acknowledged; record every discrepancy."""
    by_key = {(a.workspace_id, a.key): a for a in acked}
    if len(by_key) != len(acked):
        report.problems.append("a key was acknowledged twice (the script sent it twice)")
    db = Database(database_url)
    try:
        with db.read() as tx:
            for producer_ in producers:
                ws = producer_.workspace_id
                rows = tx.conn.execute(
                    text(
                        "SELECT id, idempotency_key, resource_id, ws_ord FROM events "
                        "WHERE workspace_id = :ws AND resource_type <> 'api_key'"
                    ),
                    {"ws": ws},
                ).all()
                report.stored_events += len(rows)
                counts = Counter(r.idempotency_key for r in rows)
                report.duplicates += sum(n - 1 for n in counts.values() if n > 1)
                stored = {r.idempotency_key: r for r in rows}
                for (a_ws, key), a in by_key.items():
                    if a_ws != ws:
                        continue
                    row = stored.get(key)
                    if row is None:
                        report.lost += 1
                    elif row.id != a.event_id or row.resource_id != a.resource_id:
                        report.wrong_answers += 1
                report.unacknowledged_stored += sum(1 for k in stored if (ws, k) not in by_key)
                ords = sorted(
                    r.ws_ord
                    for r in tx.conn.execute(
                        text("SELECT ws_ord FROM events WHERE workspace_id = :ws"), {"ws": ws}
                    )
                )
                if ords != list(range(1, len(ords) + 1)):
                    report.problems.append(f"workspace {ws}: ws_ord is not dense 1..{len(ords)}")
                day_total = tx.conn.execute(
                    text(
                        "SELECT coalesce(sum(n), 0) FROM event_day_counts WHERE workspace_id = :ws"
                    ),
                    {"ws": ws},
                ).scalar_one()
                if int(day_total) != len(ords):
                    report.problems.append(
                        f"workspace {ws}: per-day counts say {day_total}, events {len(ords)}"
                    )
                if tx.dialect == "sqlite":
                    indexed = tx.conn.execute(
                        text(
                            "SELECT count(*) FROM events_fts WHERE rowid IN "
                            "(SELECT seq FROM events WHERE workspace_id = :ws)"
                        ),
                        {"ws": ws},
                    ).scalar_one()
                    if int(indexed) != len(ords):
                        report.problems.append(
                            f"workspace {ws}: {indexed} of {len(ords)} events in the search index"
                        )
    finally:
        db.dispose()
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[1]
        # A plain connection: the check must not depend on the app's own settings.
        conn = sqlite3.connect(path)
        try:
            report.integrity_check = "; ".join(
                r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()
            )
            if report.integrity_check != "ok":
                report.problems.append(f"integrity_check: {report.integrity_check}")
            if conn.execute("PRAGMA foreign_key_check").fetchall():
                report.problems.append("foreign_key_check found orphans")
        finally:
            conn.close()
        wal = _wal_path(database_url)
        report.final_wal_bytes = wal.stat().st_size if wal is not None and wal.exists() else 0
    for name in ("lost", "duplicates", "wrong_answers", "unacknowledged_stored"):
        if getattr(report, name):
            report.problems.append(f"{name}: {getattr(report, name)}")
    if report.server_errors:
        report.problems.append(f"{report.server_errors} answers were 5xx")
    if report.acknowledged_events != len(acked) or report.stored_events != len(acked):
        report.problems.append(f"acknowledged {len(acked)} items, stored {report.stored_events}")


def run(
    database_url: str,
    *,
    kills: int = 30,
    clients: int = 50,
    n_workspaces: int = 5,
    max_acks: int = 500,
    jitter: float = 1.0,
    workers: int = 1,
    seed: int | None = None,
    workdir: Path | None = None,
) -> Report:
    """The whole experiment: prepare, kill ``kills`` times, verify. Never raises for a
    failed check: the returned report lists them in ``problems``."""
    seed = random.randrange(2**32) if seed is None else seed  # noqa: S311 - not a secret
    backend = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    report = Report(backend=backend, kills=kills, clients=clients, workers=workers)
    started = time.monotonic()
    producers = prepare(database_url, n_workspaces)
    with tempfile.TemporaryDirectory(prefix="crash-") as tmp:
        folder = workdir or Path(tmp)
        acked = asyncio.run(
            orchestrate(
                database_url,
                producers,
                report,
                max_acks=max_acks,
                jitter=jitter,
                workdir=folder,
                seed=seed,
            )
        )
        verify(database_url, producers, acked, report)
    report.seconds = round(time.monotonic() - started, 1)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="default: a temporary SQLite file")
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--workspaces", type=int, default=5)
    parser.add_argument("--max-acks", type=int, default=500)
    parser.add_argument("--jitter", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crash-db-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'crash.db'}"
        report = run(
            url,
            kills=args.kills,
            clients=args.clients,
            n_workspaces=args.workspaces,
            max_acks=args.max_acks,
            jitter=args.jitter,
            workers=args.workers,
            seed=args.seed,
        )
    summary = report.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for name, value in summary.items():
            print(f"{name:>24}: {value}")
    sys.exit(1 if report.problems else 0)


if __name__ == "__main__":
    main()
