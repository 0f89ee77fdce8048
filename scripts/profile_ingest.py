"""Measure (and profile) ingestion: service, HTTP route, and the bare-driver floor.

    PYTHONPATH=src python scripts/profile_ingest.py [--events 50000] [--batch 1000]
        [--database-url URL] [--mode service,http,floor] [--profile service|http]
        [--server URL]

Each mode loads ``--events`` events, in batches of ``--batch``, into a fresh workspace
of a freshly migrated database (a temporary SQLite file unless ``--database-url`` names
a PostgreSQL database, whose tables are emptied first):

- ``service``: ``services.ingest.ingest_events`` in one write transaction per batch,
  exactly what ``POST /api/events`` runs after parsing the body.
- ``http``: ``POST /api/events`` through Starlette's TestClient (the whole Python side:
  JSON parsing, Pydantic, the service, the response) or, with ``--server``, over real
  HTTP to a running ``activityfeed serve`` (then ``--database-url`` must be its database).
- ``floor``: the same rows with the bare driver in one transaction per batch
  (``store.bulk.driver_insert``, which the benchmark's floor uses too): ``COPY`` on
  PostgreSQL, ``executemany`` plus the two per-batch index statements on SQLite, into
  the same table, so the floor does the same storage work with none of our Python.

Each mode prints its wall-clock rate and its rate per CPU-second (this process plus, on
PostgreSQL, the backends serving the database): on a shared machine the second is the
steadier figure.

``--profile MODE`` runs that mode under cProfile and prints the top functions.
Figures are printed, never asserted: the machine is shared.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from activityfeed.config import Settings
from activityfeed.domain.accounts import Scope
from activityfeed.domain.events import Action as A
from activityfeed.domain.events import ResourceType as R
from activityfeed.domain.events import SourceKind, describe
from activityfeed.domain.ids import new_id
from activityfeed.services import accounts, apikeys, workspaces
from activityfeed.services.ingest import IngestItem, ingest_events
from activityfeed.store import bulk, migrate
from activityfeed.store.db import Database
from activityfeed.store.schema import metadata

TYPES = ["training", "dataset", "model", "deployment", "project"]
ACTIONS = ["created", "updated", "completed", "failed", "deleted"]


def body(n: int, now: datetime) -> dict[str, Any]:
    """One realistic ingestion item (about a quarter carry an idempotency key)."""
    item: dict[str, Any] = {
        "resourceType": TYPES[n % len(TYPES)],
        "action": ACTIONS[(n // 5) % len(ACTIONS)],
        "resourceId": f"res-{n % 5000}",
        "resourceName": f"yolo-run-{n % 5000}-experiment",
        "metadata": {"epoch": n % 100, "accuracy": 0.5 + (n % 50) / 100, "tags": ["a", "b"]},
        "occurredAt": (now - timedelta(seconds=n)).isoformat(),
    }
    if n % 3 == 0:
        item["description"] = f"Run {n} finished with loss {n % 17}.{n % 10}"
    if n % 4 == 0:
        item["idempotencyKey"] = f"k-{n}"
    return item


def fresh_database(url: str | None) -> str:
    if url is None:
        path = Path(tempfile.mkdtemp()) / "ingest.db"
        url = f"sqlite:///{path}"
        migrate.upgrade(url)
        return url
    migrate.upgrade(url)
    engine = create_engine(Database(url).url)
    names = ", ".join(t.name for t in metadata.sorted_tables)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for t in reversed(metadata.sorted_tables):
                conn.execute(t.delete())
    engine.dispose()
    return url


def make_key(db: Database, now: datetime) -> tuple[str, Any]:
    with db.write() as tx:
        user = accounts.create_user(
            tx,
            email=f"ingest-{new_id()}@example.com",
            name="Ingest",
            password="ingest-profile-pass",  # noqa: S106  (throwaway account)
            now=now,
        )
        ws = workspaces.create_workspace(tx, user_id=user.id, name="Ingest", now=now)
        membership = workspaces.access_workspace(tx, user_id=user.id, workspace_id=ws.id)
        created = apikeys.create_api_key(
            tx,
            user=user,
            membership=membership,
            name="profile",
            scopes=[Scope.EVENTS_WRITE],
            source=SourceKind.CLI,
            now=now,
        )
    with db.read() as tx:
        key = apikeys.authenticate_api_key(tx, created.secret, scope=Scope.EVENTS_WRITE)
    return created.secret, key


def batches(total: int, size: int, now: datetime) -> list[list[dict[str, Any]]]:
    return [[body(n, now) for n in range(s, min(total, s + size))] for s in range(0, total, size)]


def run_service(url: str, total: int, size: int) -> float:
    db = Database(url)
    now = datetime.now(UTC)
    _, key = make_key(db, now)
    work = batches(total, size, now)
    items = [
        [
            IngestItem(
                resource_type=b["resourceType"],
                action=b["action"],
                resource_id=b["resourceId"],
                resource_name=b["resourceName"],
                description=b.get("description"),
                metadata=b["metadata"],
                occurred_at=datetime.fromisoformat(b["occurredAt"]),
                idempotency_key=b.get("idempotencyKey"),
            )
            for b in batch
        ]
        for batch in work
    ]
    with _Clock(db) as clock:
        for batch_items in items:
            with db.write() as tx:
                ingest_events(
                    tx,
                    key=key,
                    items=batch_items,
                    is_batch=True,
                    now=now,
                    max_metadata_bytes=16384,
                )
    db.dispose()
    return clock.rate(total)


def run_http(url: str, total: int, size: int, server: str | None) -> float:
    db = Database(url)
    now = datetime.now(UTC)
    secret, _ = make_key(db, now)
    payloads = [json.dumps({"events": b}).encode() for b in batches(total, size, now)]
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    if server:
        db.dispose()
        start = time.perf_counter()
        for p in payloads:
            req = urllib.request.Request(server + "/api/events", data=p, headers=headers)  # noqa: S310
            with urllib.request.urlopen(req) as resp:  # noqa: S310  (our own server)
                assert resp.status == 201, resp.status
                resp.read()
        return total / (time.perf_counter() - start)
    from fastapi.testclient import TestClient

    from activityfeed.web import create_app

    app = create_app(Settings(database_url=url, data_dir=Path(tempfile.mkdtemp())), db=db)
    with TestClient(app) as client, _Clock(db) as clock:
        for p in payloads:
            r = client.post("/api/events", content=p, headers=headers)
            assert r.status_code == 201, r.text
    db.dispose()
    return clock.rate(total)


def floor_rows(
    total: int, size: int, ws_id: str, now: datetime, *, is_pg: bool
) -> list[list[tuple[Any, ...]]]:
    """The rows ingestion stores, as ``bulk.driver_insert`` takes them (no seq/ws_ord)."""
    out = []
    for batch in batches(total, size, now):
        rows = []
        for b in batch:
            at = datetime.fromisoformat(b["occurredAt"]).astimezone(UTC)
            rows.append(
                (
                    new_id(),
                    ws_id,
                    b["resourceType"],
                    b["action"],
                    b["resourceId"],
                    b["resourceName"],
                    b.get("description")
                    or describe(R(b["resourceType"]), A(b["action"]), b["resourceName"]),
                    None,
                    None,
                    None,
                    "api_key",
                    "afk_1234",
                    at if is_pg else at.replace(tzinfo=None).isoformat(" ", "microseconds"),
                    now if is_pg else now.replace(tzinfo=None).isoformat(" ", "microseconds"),
                    json.dumps(b["metadata"], separators=(",", ":")),
                    None,
                    b.get("idempotencyKey"),
                    None,
                )
            )
        out.append(rows)
    return out


def run_floor(url: str, total: int, size: int) -> float:
    db = Database(url)
    now = datetime.now(UTC)
    _, key = make_key(db, now)
    work = floor_rows(total, size, key.workspace_id, now, is_pg=db.dialect == "postgresql")
    with _Clock(db) as clock:
        for rows in work:
            with db.write() as tx:
                bulk.driver_insert(tx, key.workspace_id, rows)
    db.dispose()
    return clock.rate(total)


class _Clock:
    """Wall time, and CPU time of this process plus (PostgreSQL) of the database's
    backends serving this database: on a shared machine, CPU time is the steadier figure
    (it leaves out the time spent waiting for other processes and for fsync)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _backend_cpu(self) -> float:
        if self.db.dialect != "postgresql":
            return 0.0
        with self.db.read() as tx:
            pids = tx.conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            ).scalars()
            total = 0.0
            tick = os.sysconf("SC_CLK_TCK")
            for pid in pids:
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                total += (int(fields[11]) + int(fields[12])) / tick
            return total

    def __enter__(self) -> _Clock:
        self.wall0, self.cpu0, self.db0 = time.perf_counter(), time.process_time(), 0.0
        self.db0 = self._backend_cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0
        self.db_cpu = self._backend_cpu() - self.db0

    def rate(self, total: int) -> float:
        cpu = self.cpu + self.db_cpu
        print(
            f"  wall {self.wall:.2f} s, cpu {self.cpu:.2f} s + database {self.db_cpu:.2f} s "
            f"= {total / cpu:,.0f} events per CPU-second",
            flush=True,
        )
        return total / self.wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--database-url")
    ap.add_argument("--mode", default="service,http,floor")
    ap.add_argument("--profile", choices=["service", "http", "floor"])
    ap.add_argument("--server", help="base URL of a running server for the http mode")
    ap.add_argument("--top", type=int, default=35)
    args = ap.parse_args()

    runners: dict[str, Callable[[str], float]] = {
        "service": lambda u: run_service(u, args.events, args.batch),
        "http": lambda u: run_http(u, args.events, args.batch, args.server),
        "floor": lambda u: run_floor(u, args.events, args.batch),
    }
    results: dict[str, float] = {}
    for mode in args.mode.split(","):
        url = args.database_url if args.server else fresh_database(args.database_url)
        if args.profile == mode:
            prof = cProfile.Profile()
            results[mode] = prof.runcall(runners[mode], url)
            pstats.Stats(prof).sort_stats(os.environ.get("PROFILE_SORT", "tottime")).print_stats(args.top)
        else:
            results[mode] = runners[mode](url)
        print(f"{mode:8} {results[mode]:>10,.0f} events/s", flush=True)
    if "floor" in results:
        for mode in ("service", "http"):
            if mode in results:
                print(f"{mode} / floor = {results[mode] / results['floor']:.0%}")


if __name__ == "__main__":
    main()
