"""``activityfeed bench``: the performance benchmark of issue 5 (see docs/performance.md).

It loads (or reuses) a long history, then times the operations people feel: ingestion
in-process and over HTTP against the bare driver's floor, the Inbox's first and deep
pages, search, filters, counts, the "all" operations, the live stream's fan-out, the
personal-data export and ``GET /api/activity`` under load on a real ``serve --workers 2``.
Service-level operations run in this process; HTTP ones against a server subprocess
(the CLI does not import the web layer).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import platform
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httptools
import httpx
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from activityfeed.cli.common import console, err_console
from activityfeed.config import Settings
from activityfeed.domain.accounts import Membership, Scope
from activityfeed.domain.events import Action, Actor, ResourceType, SourceKind, describe
from activityfeed.domain.ids import new_id
from activityfeed.domain.query import parse_activity_query
from activityfeed.domain.state import Watermarks
from activityfeed.services import accounts, activity, apikeys, export, workspaces
from activityfeed.services.bench_history import (
    USER_EMAIL,
    USER_PASSWORD,
    BenchWorld,
    ensure_world,
)
from activityfeed.services.ingest import IngestItem, ingest_events
from activityfeed.services.simulation import Cast, history, to_ingestion
from activityfeed.store import accounts as account_store
from activityfeed.store import bulk, migrate
from activityfeed.store import events as event_store
from activityfeed.store import states as state_store
from activityfeed.store.db import Database

#: Every operation the benchmark reports, in report order (the JSON has each key).
OPERATIONS = (
    "ingest_service",
    "ingest_floor",
    "ingest_http",
    "ingest_http_parallel",
    "inbox_first_page",
    "page_500",
    "cursor_500",
    "search_name",
    "search_word",
    "filter_type",
    "filter_action",
    "range_7d",
    "unseen_count",
    "workspace_list",
    "mark_all_seen",
    "mark_all_seen_10k",
    "archive_all",
    "archive_all_10k",
    "restore_one",
    "mark_1000_seen",
    "sse_fanout",
    "export",
    "http_activity",
)
SKIPPABLE = ("ingest", "reads", "writes", "sse", "export", "http")
BATCH = 1000
NAME_FRAGMENT = "ldlif"  # of "wildlife-survey", "yolo11n-wildlife"
DESCRIPTION_WORD = "trash"  # "Moved dataset x to trash"


@dataclass
class Result:
    """Timings of one operation (milliseconds) and what it moved."""

    name: str
    samples_ms: list[float] = field(default_factory=list)
    #: Events (or requests) per sample, for a throughput figure.
    items_per_sample: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        s = sorted(self.samples_ms)
        out: dict[str, Any] = {"reps": len(s)}
        if s:
            out |= {
                "min_ms": round(s[0], 3),
                "p50_ms": round(_pct(s, 50), 3),
                "p95_ms": round(_pct(s, 95), 3),
                "p99_ms": round(_pct(s, 99), 3),
            }
            if self.items_per_sample:
                total = self.items_per_sample * len(s)
                out["per_s"] = round(total / (sum(s) / 1000), 1)
        return out | self.extra


def _pct(sorted_ms: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    rank = max(1, -(-len(sorted_ms) * p // 100))
    return sorted_ms[int(rank) - 1]


def _timed(
    name: str,
    fn: Callable[[], Any],
    *,
    reps: int,
    budget_s: float,
    setup: Callable[[], Any] | None = None,
    items: int = 0,
) -> Result:
    """Run ``fn`` ``reps`` times (fewer if ``budget_s`` runs out, but at least 5)."""
    result = Result(name, items_per_sample=items)
    started = time.perf_counter()
    for i in range(reps):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        result.samples_ms.append((time.perf_counter() - t0) * 1000)
        if i >= 4 and time.perf_counter() - started > budget_s:
            break
    return result


# --- the machine ------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    except (OSError, StopIteration):
        mem_kb = 0
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "os": platform.platform(),
        "python_10m_additions_s": python_speed(),
    }


def python_speed(additions: int = 10_000_000, parts: int = 5) -> float:
    """Seconds a pure-Python loop of ``additions`` additions takes on this machine (the
    best of three runs of a ``parts``-th of it, scaled): the yardstick that tells runs on
    different machines apart. Machines sold under one CPU name have run this benchmark
    up to three times slower or faster than each other (docs/performance.md, "Where each
    target stands")."""
    n = additions // parts
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(n):
            total += i
        best = min(best, time.perf_counter() - started)
    return round(best * parts, 2)


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu_s(pids: list[int]) -> float:
    """CPU time (user + system) the processes have used so far, in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


# --- the in-process operations -----------------------------------------------------


@dataclass
class Ctx:
    db: Database
    world: BenchWorld
    now: datetime
    undo_window: timedelta
    reps: int
    budget_s: float
    results: dict[str, Result] = field(default_factory=dict)

    def add(self, result: Result) -> None:
        self.results[result.name] = result


def _membership(ctx: Ctx, workspace_id: str) -> Membership:
    with ctx.db.read() as tx:
        return workspaces.access_workspace(tx, user_id=ctx.world.user_id, workspace_id=workspace_id)


def _reset_marks(ctx: Ctx, workspace_id: str, *, seen: bool = True, archived: bool = True) -> None:
    """Put the viewer back to "half the history seen, nothing archived, no exceptions"."""
    with ctx.db.write() as tx:
        marks = state_store.select_marks(tx, user_id=ctx.world.user_id, workspace_id=workspace_id)
        if seen:
            _, head_ord = event_store.select_head(tx, workspace_id)
            half = max(1, head_ord // 2)
            seq = bulk.select_seq_at(tx, workspace_id, half) or 0
            marks = replace(marks, seen_seq=seq, seen_ord=half if seq else 0)
            state_store.clear_seen_exceptions(
                tx, user_id=ctx.world.user_id, workspace_id=workspace_id, upto_seq=2**62
            )
        if archived:
            marks = replace(marks, archived_seq=0, archived_ord=0)
            state_store.clear_archived_exceptions(
                tx, user_id=ctx.world.user_id, workspace_id=workspace_id
            )
        state_store.upsert_marks(
            tx,
            user_id=ctx.world.user_id,
            workspace_id=workspace_id,
            marks=Watermarks(
                marks.seen_seq, marks.seen_ord, marks.archived_seq, marks.archived_ord
            ),
        )


def _query(ctx: Ctx, **params: str) -> Any:
    return parse_activity_query({k: [v] for k, v in params.items()}, now=ctx.now)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def run_reads(ctx: Ctx) -> None:
    w = ctx.world
    team = _membership(ctx, w.team_id)
    year = _iso(ctx.now - timedelta(days=366))

    def page(q: Any) -> Callable[[], activity.ActivityPage]:
        def go() -> activity.ActivityPage:
            with ctx.db.read() as tx:
                return activity.list_activity(
                    tx,
                    viewer_id=w.user_id,
                    membership=team,
                    q=q,
                    now=ctx.now,
                    undo_window=ctx.undo_window,
                )

        return go

    first = page(_query(ctx))()
    ctx.add(_timed("inbox_first_page", page(_query(ctx)), reps=ctx.reps, budget_s=ctx.budget_s))
    ctx.results["inbox_first_page"].extra |= {
        "total": first.total,
        "unseen_count": first.unseen_count,
    }
    deep = _query(ctx, page="500", start=year)
    ctx.add(_timed("page_500", page(deep), reps=ctx.reps, budget_s=ctx.budget_s))
    before = page(_query(ctx, page="499", start=year))()
    cursor = before.next_cursor
    ctx.add(
        _timed(
            "cursor_500",
            page(replace(_query(ctx, start=year), cursor=cursor)),
            reps=ctx.reps,
            budget_s=ctx.budget_s,
        )
    )
    ctx.results["cursor_500"].extra["rows"] = len(
        page(replace(deep, page=1, cursor=cursor))().events
    )
    for name, q in (
        ("search_name", _query(ctx, search=NAME_FRAGMENT, start=year)),
        ("search_word", _query(ctx, search=DESCRIPTION_WORD, start=year)),
        ("filter_type", _query(ctx, resourceType="model")),
        ("filter_action", _query(ctx, action="failed")),
        ("range_7d", _query(ctx, start=_iso(ctx.now - timedelta(days=7)))),
    ):
        ctx.add(_timed(name, page(q), reps=ctx.reps, budget_s=ctx.budget_s))
        ctx.results[name].extra["total"] = page(q)().total

    def unseen() -> int:
        with ctx.db.read() as tx:
            return workspaces.unseen_count(tx, user_id=w.user_id, workspace_id=w.team_id)

    ctx.add(_timed("unseen_count", unseen, reps=ctx.reps * 5, budget_s=ctx.budget_s))
    with ctx.db.write() as tx:
        signed = accounts.sign_in(
            tx,
            email=USER_EMAIL,
            password=USER_PASSWORD,
            address="127.0.0.1",
            now=ctx.now,
            settings=Settings(database_url=ctx.db.url),
        )

    def listing() -> Any:
        with ctx.db.read() as tx:
            return workspaces.list_workspaces(tx, signed.session)

    ctx.add(_timed("workspace_list", listing, reps=ctx.reps, budget_s=ctx.budget_s))
    ctx.results["workspace_list"].extra["workspaces"] = len(listing())


def _ids(ctx: Ctx, membership: Membership, n: int) -> list[str]:
    """The ids of the newest ``n`` events of the workspace's Inbox (whole year)."""
    out: list[str] = []
    q = _query(ctx, start=_iso(ctx.now - timedelta(days=366)), limit="100")
    with ctx.db.read() as tx:
        while len(out) < n:
            got = activity.list_activity(
                tx,
                viewer_id=ctx.world.user_id,
                membership=membership,
                q=q,
                now=ctx.now,
                undo_window=ctx.undo_window,
            )
            out += [v.event.id for v in got.events]
            if not got.next_cursor:
                break
            q = replace(q, cursor=got.next_cursor)
    return out[:n]


def run_writes(ctx: Ctx) -> None:
    w = ctx.world
    uid = w.user_id
    for suffix, wid in (("", w.team_id), ("_10k", w.small_id)):
        m = _membership(ctx, wid)

        def mark_all(m: Membership = m) -> None:
            with ctx.db.write() as tx:
                activity.mark_seen(tx, viewer_id=uid, membership=m, event_ids=None, mark_all=True)

        def archive_all(m: Membership = m) -> None:
            with ctx.db.write() as tx:
                activity.archive_events(
                    tx, viewer_id=uid, membership=m, event_ids=None, archive_all=True, archive=True
                )

        ctx.add(
            _timed(
                "mark_all_seen" + suffix,
                mark_all,
                reps=ctx.reps,
                budget_s=ctx.budget_s,
                setup=partial(_reset_marks, ctx, wid, archived=False),
            )
        )
        ctx.add(
            _timed(
                "archive_all" + suffix,
                archive_all,
                reps=ctx.reps,
                budget_s=ctx.budget_s,
                setup=partial(_reset_marks, ctx, wid, seen=False),
            )
        )
    team = _membership(ctx, w.team_id)
    _reset_marks(ctx, w.team_id)
    ids = _ids(ctx, team, BATCH + ctx.reps)
    thousand, singles = ids[:BATCH], iter(ids[BATCH:] or ids)
    with ctx.db.write() as tx:
        activity.archive_events(
            tx, viewer_id=uid, membership=team, event_ids=None, archive_all=True, archive=True
        )

    def restore_one() -> None:
        one = next(singles, thousand[0])
        with ctx.db.write() as tx:
            activity.archive_events(
                tx,
                viewer_id=uid,
                membership=team,
                event_ids=[one],
                archive_all=False,
                archive=False,
            )

    ctx.add(_timed("restore_one", restore_one, reps=ctx.reps, budget_s=ctx.budget_s))
    _reset_marks(ctx, w.team_id)
    # Mark the 1000 as unseen first: the watermark sits at half the history, the newest
    # 1000 are above it, so each rep really marks 1000 events.

    def mark_ids() -> None:
        with ctx.db.write() as tx:
            activity.mark_seen(
                tx, viewer_id=uid, membership=team, event_ids=thousand, mark_all=False
            )

    ctx.add(
        _timed(
            "mark_1000_seen",
            mark_ids,
            reps=max(5, ctx.reps // 5),
            budget_s=ctx.budget_s,
            setup=lambda: _reset_marks(ctx, w.team_id, archived=False),
            items=len(thousand),
        )
    )
    _reset_marks(ctx, w.team_id)


def run_export(ctx: Ctx) -> None:
    w = ctx.world
    with ctx.db.read() as tx:
        count = export.count_events(tx, w.user_id)

    def once() -> int:
        size = 0
        with ctx.db.read() as tx:
            for chunk in export.export_archive(tx, user_id=w.user_id, now=ctx.now):
                size += len(chunk)
        return size

    gc.collect()
    tracemalloc.start()
    size = once()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # A long history takes minutes per export: then once is enough.
    reps = 3 if count <= 200_000 else 1
    result = _timed("export", once, reps=reps, budget_s=ctx.budget_s, items=count)
    result.extra |= {
        "events": count,
        "zip_bytes": size,
        "peak_memory_growth_mb": round(peak / 1024 / 1024, 1),
    }
    ctx.add(result)


def _ingest_batches(ctx: Ctx, batches: int) -> list[list[dict[str, Any]]]:
    cast = Cast(
        workspace_id=ctx.world.ingest_id,
        people=[Actor(id="bench", name="Bench", email="")],
    )
    drafts = history(
        cast, start=ctx.now - timedelta(days=300), end=ctx.now, count=batches * BATCH, seed=99
    )
    bodies = [to_ingestion(d, keep_time=True) for d in drafts]
    return [bodies[i : i + BATCH] for i in range(0, len(bodies), BATCH) if bodies[i : i + BATCH]]


def _item(body: dict[str, Any]) -> IngestItem:
    return IngestItem(
        resource_type=body["resourceType"],
        action=body["action"],
        resource_id=body["resourceId"],
        resource_name=body["resourceName"],
        description=body.get("description"),
        metadata=body.get("metadata", {}),
        occurred_at=datetime.fromisoformat(body["occurredAt"]) if "occurredAt" in body else None,
    )


def run_ingest(ctx: Ctx, batches: int) -> str:
    """In-process ingestion and the driver floor; returns an API key for the HTTP part."""
    w = ctx.world
    membership = _membership(ctx, w.ingest_id)
    with ctx.db.write() as tx:
        me = account_store.select_user(tx, w.user_id)
        assert me is not None
        created = apikeys.create_api_key(
            tx,
            user=me,
            membership=membership,
            name="bench",
            scopes=[Scope.EVENTS_WRITE],
            source=SourceKind.CLI,
            now=ctx.now,
        )
    plan = _ingest_batches(ctx, batches)
    items = [[_item(b) for b in batch] for batch in plan]
    todo = iter(items)
    settings = Settings(database_url=ctx.db.url)

    def service() -> None:
        batch = next(todo)
        now = datetime.now(UTC)
        with ctx.db.write() as tx:
            ingest_events(
                tx,
                key=created.key,
                items=batch,
                is_batch=True,
                now=now,
                max_metadata_bytes=settings.max_metadata_bytes,
            )
            apikeys.use_api_key(tx, created.key, now=now)

    ctx.add(_timed("ingest_service", service, reps=len(items), budget_s=1e9, items=BATCH))
    # The floor: the same rows, as plain tuples, through the bare driver into the same
    # table (its indexes, search index and day counts); one transaction per batch, like
    # ingestion. Descriptions are generated as ingestion does; ids one by one.
    is_pg = ctx.db.dialect == "postgresql"

    def tuples(batch: list[IngestItem]) -> list[tuple[Any, ...]]:
        now = datetime.now(UTC)
        recorded = now if is_pg else event_store.sqlite_time(now)
        rows = []
        for item in batch:
            at = item.occurred_at or now
            kind, action = ResourceType(item.resource_type), Action(item.action)
            rows.append(
                (
                    new_id(),
                    w.ingest_id,
                    item.resource_type,
                    item.action,
                    item.resource_id,
                    item.resource_name,
                    item.description or describe(kind, action, item.resource_name),
                    None,
                    None,
                    None,
                    "api_key",
                    created.key.prefix,
                    at if is_pg else event_store.sqlite_time(at),
                    recorded,
                    json.dumps(item.metadata, separators=(",", ":")),
                    None,
                    item.idempotency_key,
                    None,
                )
            )
        return rows

    floor_todo = iter(items)

    def floor() -> None:
        rows = tuples(next(floor_todo))
        with ctx.db.write() as tx:
            bulk.driver_insert(tx, w.ingest_id, rows)

    with ctx.db.read() as tx:
        chained = event_store.select_head(tx, w.ingest_id)[1]
    try:
        ctx.add(_timed("ingest_floor", floor, reps=len(items), budget_s=1e9, items=BATCH))
    finally:
        # The floor's rows get their checkpoint now, untimed (the floor leaves our Python
        # out), also when it stopped part way: a benchmarked database passes
        # ``activityfeed verify``.
        with ctx.db.write() as tx:
            bulk.checkpoint_driver_rows(tx, w.ingest_id, chained)
    svc = ctx.results["ingest_service"].summary().get("per_s", 0.0)
    flo = ctx.results["ingest_floor"].summary().get("per_s", 0.0)
    ctx.results["ingest_service"].extra["floor_ratio"] = round(svc / flo, 3) if flo else None
    return created.secret


# --- the server and the HTTP operations ---------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_command(database_url: str, *, port: int, workers: int) -> list[str]:
    """The command line of ``activityfeed serve`` with this interpreter (and so this
    virtualenv and ``sys.path``, which the caller passes on as ``PYTHONPATH``)."""
    return [
        sys.executable,
        "-c",
        "from activityfeed.cli.main import main; main()",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--database-url",
        database_url,
    ]


@contextmanager
def server(
    database_url: str, *, workers: int, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``activityfeed serve --workers N`` in a subprocess (with extra ``env``), until the
    block ends."""
    port = free_port()
    cmd = serve_command(database_url, port=port, workers=workers)
    env = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)  # noqa: S603 - our own CLI
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        # Every worker up (each answers on its own): a few more probes.
        time.sleep(1.0)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _session(base: str, slug: str) -> dict[str, str]:
    """A signed-in session (cookies) switched to the workspace ``slug``."""
    with httpx.Client(base_url=base, timeout=30) as c:
        r = c.post("/api/auth/login", json={"email": USER_EMAIL, "password": USER_PASSWORD})
        r.raise_for_status()
        csrf = r.json()["csrfToken"]
        c.post(f"/api/workspaces/{slug}/switch", headers={"X-CSRF-Token": csrf}).raise_for_status()
        return dict(c.cookies.items())


def run_http_ingest(ctx: Ctx, base: str, secret: str, batches: int, *, clients: int) -> None:
    """``POST /api/events`` with batches of 1000: one producer at a time
    (``ingest_http``: each batch's latency, events/s from their mean), then ``clients``
    producers at once (``ingest_http_parallel``: events/s over the wall time, what the
    server takes in while one worker parses a batch and the other writes). Bodies are
    encoded beforehand: a producer's own JSON encoding is not the server's time."""
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    bodies = [json.dumps({"events": b}).encode() for b in _ingest_batches(ctx, batches)]
    with httpx.Client(base_url=base, timeout=120) as c:
        todo = iter(bodies)

        def send() -> None:
            c.post("/api/events", content=next(todo), headers=headers).raise_for_status()

        ctx.add(_timed("ingest_http", send, reps=len(bodies), budget_s=1e9, items=BATCH))

    result = Result("ingest_http_parallel")
    producers = [httpx.Client(base_url=base, timeout=120) for _ in range(clients)]
    idle: queue.SimpleQueue[httpx.Client] = queue.SimpleQueue()
    for producer in producers:
        idle.put(producer)

    def post(body: bytes) -> None:
        producer = idle.get()
        try:
            t0 = time.perf_counter()
            producer.post("/api/events", content=body, headers=headers).raise_for_status()
            result.samples_ms.append((time.perf_counter() - t0) * 1000)
        finally:
            idle.put(producer)

    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(clients) as pool:
            for done in [pool.submit(post, body) for body in bodies]:
                done.result()
    finally:
        for producer in producers:
            producer.close()
    wall = time.perf_counter() - started
    result.extra |= {"per_s": round(len(bodies) * BATCH / wall, 1), "clients": clients}
    ctx.add(result)


async def _activity_load(
    base: str, cookies: dict[str, str], *, clients: int, seconds: float
) -> tuple[list[float], float, int]:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, cookies=cookies, limits=limits, timeout=30) as c:
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                r = await c.get("/api/activity")
                if r.status_code != 200:
                    errors += 1
                latencies.append((time.perf_counter() - t0) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return latencies, elapsed, errors


#: wrk's report, as one line of JSON (latencies in microseconds).
WRK_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK {"requests": %d, "duration_us": %d, "errors": %d, "min_us": %d, '
    .. '"p50_us": %d, "p95_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency.min, latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def parse_wrk(stdout: str) -> dict[str, Any]:
    """The figures of a wrk run with ``WRK_SCRIPT``, in the JSON report's units."""
    line = next(x for x in stdout.splitlines() if x.startswith("WRK "))
    raw = json.loads(line[4:])
    return {
        "reps": raw["requests"],
        "min_ms": round(raw["min_us"] / 1000, 3),
        "p50_ms": round(raw["p50_us"] / 1000, 3),
        "p95_ms": round(raw["p95_us"] / 1000, 3),
        "p99_ms": round(raw["p99_us"] / 1000, 3),
        "requests_per_s": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
        "errors": raw["errors"],
    }


def _wrk_load(
    wrk: str, base: str, cookies: dict[str, str], *, clients: int, seconds: float
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    try:
        cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
        out = subprocess.run(  # noqa: S603 - a fixed argument list, no shell
            [
                wrk, "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "30s",
                "-s", script.name, "-H", f"Cookie: {cookie}", base + "/api/activity",
            ],
            capture_output=True, text=True, check=True, timeout=seconds + 60,
        )  # fmt: skip
    finally:
        os.unlink(script.name)
    return parse_wrk(out.stdout)


def run_http_activity(
    ctx: Ctx,
    base: str,
    *,
    clients: int,
    seconds: float,
    load_client: str = "auto",
    server_pid: int | None = None,
) -> None:
    """``GET /api/activity`` from ``clients`` connections for ``seconds``.

    The load comes from wrk when it is installed (``load_client`` auto or wrk): one C
    thread costs far less of the shared cores than the Python client, which otherwise
    competes with the server it measures. Without it, httpx (asyncio) does the same.
    With ``server_pid``, also the server's CPU time per request (``cpu_ms_per_request``:
    what a request costs whatever else the shared machine runs).
    """
    cookies = _session(base, ctx.world.team_slug)
    wrk = shutil.which("wrk") if load_client != "httpx" else None
    if load_client == "wrk" and wrk is None:
        raise typer.BadParameter("--load-client wrk: no wrk on PATH (apt-get install wrk)")
    result = Result("http_activity")
    pids = [server_pid, *_descendants(server_pid)] if server_pid is not None else []
    cpu_before = {pid: _cpu_s([pid]) for pid in pids}
    if wrk is not None:
        result.extra |= _wrk_load(wrk, base, cookies, clients=clients, seconds=seconds)
        result.extra |= {"concurrency": clients, "client": "wrk"}
    else:
        latencies, elapsed, errors = asyncio.run(
            _activity_load(base, cookies, clients=clients, seconds=seconds)
        )
        result.samples_ms = latencies
        result.extra |= {
            "requests_per_s": round(len(latencies) / elapsed, 1),
            "concurrency": clients,
            "errors": errors,
            "client": "httpx",
        }
    if pids:
        served = result.extra.get("reps") or len(result.samples_ms)
        used = sorted((_cpu_s([pid]) - cpu_before[pid] for pid in pids), reverse=True)
        cpu_ms = sum(used) * 1000
        result.extra["cpu_ms_per_request"] = round(cpu_ms / max(1, served), 2)
        # The two busiest processes' shares of the server's CPU: uvicorn's workers share
        # one listening socket and a worker may accept every connection of a burst (wrk
        # opens its 16 at once), leaving the other idle: [1.0, 0.0] halves requests/s.
        result.extra["worker_cpu_share"] = [round(u / max(sum(used), 1e-9), 2) for u in used[:2]]
    ctx.add(result)


class _LeanStream(asyncio.Protocol):
    """One live stream read with as little of this process's time as possible: the
    response parsed by httptools (uvicorn's own C parser), each arrival timed when its
    bytes reach the event loop, before anything else is done with them.

    The benchmark's one process reads all 1,000 streams: through httpx (its ``aiter_lines``
    on anyio) every arrival cost the reader about 100 µs of Python, so the last of a
    thousand arrivals waited on the reader rather than on the server
    (docs/performance.md, "Twelfth round")."""

    def __init__(self, request: bytes, arrivals: dict[str, float], ready: asyncio.Event) -> None:
        self.arrivals = arrivals
        self.ready = ready
        self.error: str | None = None
        self.transport: asyncio.BaseTransport | None = None
        self._request = request
        self._parser = httptools.HttpResponseParser(self)
        self._buffer = b""
        self._now = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        assert isinstance(transport, asyncio.Transport)
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        self._now = time.perf_counter()
        self._parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.is_set():
            self.error = f"the stream closed before its first message ({exc})"
            self.ready.set()

    # httptools' callbacks
    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status != 200:
            self.error = f"GET /api/activity/stream answered {status}"
            self.ready.set()

    def on_body(self, body: bytes) -> None:
        self._buffer += body
        while (end := self._buffer.find(b"\n\n")) >= 0:
            frame, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
            self._frame(frame)

    def _frame(self, frame: bytes) -> None:
        kind = b""
        for line in frame.split(b"\n"):
            if line.startswith(b"event:"):
                kind = line[6:].strip()
            elif line.startswith(b"data:"):
                if kind == b"activity":
                    rid = json.loads(line[5:])["event"]["resourceId"]
                    self.arrivals.setdefault(rid, self._now)
                else:
                    self.ready.set()


async def _open_streams(
    base: str, cookies: dict[str, str], streams: int, client: str
) -> tuple[list[dict[str, float]], Callable[[], Awaitable[None]]]:
    """Open ``streams`` streams (50 at a time) and wait until each has had its first
    message; each one's arrivals (resource id → ``perf_counter``), and how to close
    them all."""
    arrivals: list[dict[str, float]] = [{} for _ in range(streams)]
    ready = [asyncio.Event() for _ in range(streams)]
    path = "/api/activity/stream"
    if client == "lean":
        url = httpx.URL(base)
        host, port = url.host, url.port or 80
        cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Accept: text/event-stream\r\nCookie: {cookie}\r\n\r\n"
        ).encode()
        loop = asyncio.get_running_loop()
        readers: list[_LeanStream] = []
        for i in range(streams):
            reader = _LeanStream(request, arrivals[i], ready[i])
            # The factory is called before create_connection returns: no late binding.
            await loop.create_connection(lambda: reader, host, port)  # noqa: B023
            readers.append(reader)
            if i % 50 == 49:
                await asyncio.sleep(0.05)

        async def close_lean() -> None:
            for r in readers:
                if r.transport is not None:
                    r.transport.close()

        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), 120)
        if errors := {r.error for r in readers if r.error}:
            await close_lean()
            raise RuntimeError("; ".join(sorted(errors)))
        return arrivals, close_lean
    limits = httpx.Limits(max_connections=streams + 4, max_keepalive_connections=streams + 4)
    timeout = httpx.Timeout(60.0, read=None)
    c = httpx.AsyncClient(base_url=base, cookies=cookies, limits=limits, timeout=timeout)

    refusals: set[str] = set()

    async def read_httpx(i: int) -> None:
        async with c.stream("GET", path, headers={"Accept": "text/event-stream"}) as r:
            if r.status_code != 200:
                refusals.add(f"GET {path} answered {r.status_code}")
                ready[i].set()
                return
            kind = ""
            async for line in r.aiter_lines():
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    if kind == "activity":
                        rid = json.loads(line[5:])["event"]["resourceId"]
                        arrivals[i].setdefault(rid, time.perf_counter())
                    else:
                        ready[i].set()

    tasks = []
    for i in range(streams):
        tasks.append(asyncio.create_task(read_httpx(i)))
        if i % 50 == 49:
            await asyncio.sleep(0.05)

    async def close_httpx() -> None:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await c.aclose()

    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), 120)
    if refusals:
        await close_httpx()
        raise RuntimeError("; ".join(sorted(refusals)))
    return arrivals, close_httpx


async def _sse(
    base: str, cookies: dict[str, str], secret: str, *, streams: int, rounds: int, client: str
) -> tuple[list[float], int, GcPauses]:
    """Open ``streams`` streams, ingest one event per round, and time its arrival on each;
    also this process's collections during the rounds."""
    arrivals, close = await _open_streams(base, cookies, streams, client)
    sent: dict[str, float] = {}
    try:
        async with httpx.AsyncClient(base_url=base, timeout=60) as producer:
            with gc_pauses() as pauses:
                for n in range(rounds):
                    rid = f"sse-{n}-{time.time_ns()}"
                    body = {
                        "resourceType": "training",
                        "action": "started",
                        "resourceId": rid,
                        "resourceName": f"sse probe {n}",
                    }
                    sent[rid] = time.perf_counter()
                    r = await producer.post(
                        "/api/events", json=body, headers={"Authorization": f"Bearer {secret}"}
                    )
                    r.raise_for_status()
                    deadline = time.perf_counter() + 30
                    while time.perf_counter() < deadline and not all(rid in a for a in arrivals):
                        await asyncio.sleep(0.01)
                    await asyncio.sleep(0.2)
    finally:
        await close()
    latencies = [(a[rid] - t0) * 1000 for rid, t0 in sent.items() for a in arrivals if rid in a]
    missed = streams * rounds - len(latencies)
    return latencies, missed, pauses


@dataclass
class GcPauses:
    """The garbage collector's pauses in this process while a ``gc_pauses`` block ran."""

    count: int = 0
    total_ms: float = 0.0
    max_ms: float = 0.0


@contextmanager
def gc_pauses() -> Iterator[GcPauses]:
    """Record every collection of this process inside the block (``gc.callbacks``).

    The live stream's latency is read by this process's own clients: a collection here
    delays every arrival it interrupts, whatever the server did, so the benchmark says
    how much of the tail was its own."""
    pauses = GcPauses()
    started = 0.0

    def callback(phase: str, _info: dict[str, int]) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
            return
        took = (time.perf_counter() - started) * 1000
        pauses.count += 1
        pauses.total_ms += took
        pauses.max_ms = max(pauses.max_ms, took)

    gc.callbacks.append(callback)
    try:
        yield pauses
    finally:
        gc.callbacks.remove(callback)


def run_sse(
    ctx: Ctx, base: str, secret: str, *, streams: int, rounds: int, client: str = "lean"
) -> None:
    """``sse_fanout``: the delay from ``POST /api/events`` to each stream's arrival, read
    by ``client``: ``lean`` (``_LeanStream``) or ``httpx``."""
    cookies = _session(base, ctx.world.ingest_slug)
    latencies, missed, pauses = asyncio.run(
        _sse(base, cookies, secret, streams=streams, rounds=rounds, client=client)
    )
    result = Result("sse_fanout", samples_ms=latencies)
    result.extra |= {
        "streams": streams,
        "events": rounds,
        "missed": missed,
        "client": client,
        "client_gc": pauses.count,
        "client_gc_max_ms": round(pauses.max_ms, 1),
        "client_gc_total_ms": round(pauses.total_ms, 1),
    }
    ctx.add(result)


# --- output --------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:,.2f}" if v < 100 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _notes(summary: dict[str, Any]) -> str:
    skip = {"reps", "min_ms", "p50_ms", "p95_ms", "p99_ms", "per_s"}
    return ", ".join(f"{k}={_fmt(v)}" for k, v in summary.items() if k not in skip)


COLUMNS = ("operation", "reps", "min ms", "p50 ms", "p95 ms", "p99 ms", "per s", "notes")


def rows(report: dict[str, Any]) -> list[list[str]]:
    out = []
    for name, s in report["operations"].items():
        out.append(
            [
                name,
                _fmt(s.get("reps")),
                _fmt(s.get("min_ms")),
                _fmt(s.get("p50_ms")),
                _fmt(s.get("p95_ms")),
                _fmt(s.get("p99_ms")),
                _fmt(s.get("per_s") or s.get("requests_per_s")),
                _notes(s),
            ]
        )
    return out


def markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    m = meta["machine"]
    head = (
        f"**{meta['backend']}**, N = {meta['events']:,} events in the measured workspace "
        f"(+ {meta['events'] * meta['others_factor']:,} in {meta['other_workspaces']} others), "
        f"{meta['date']}, {m['cpus']} CPUs ({m['cpu']}), {m['ram_gb']} GB RAM; "
        f"10,000,000 Python additions in {m['python_10m_additions_s']} s."
    )
    memory = meta.get("server_memory") or {}
    if memory.get("process_rss_mb"):
        workers = sorted(memory["process_rss_mb"], reverse=True)[:2]
        head += (
            " Largest server processes after the run: "
            + ", ".join(f"{mb} MB" for mb in workers)
            + "."
        )
    head += "\n\n"
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(r) + " |" for r in rows(report)]
    return head + "\n".join(lines) + "\n"


def bench(
    events: int = typer.Option(
        1_000_000, "--events", min=100, help="Events in the measured workspace."
    ),
    others_factor: int = typer.Option(
        4, "--others-factor", min=0, help="Other workspaces hold K*N."
    ),
    database_url: str | None = typer.Option(
        None, "--database-url", help="Default: a SQLite file in --folder (or a temp folder)."
    ),
    folder: Path | None = typer.Option(None, "--folder", help="Where the SQLite file lives."),
    json_file: Path | None = typer.Option(None, "--json", help="Write the results as JSON."),
    markdown_file: Path | None = typer.Option(None, "--markdown", help="Write the table."),
    streams: int = typer.Option(1000, "--streams", min=1, help="Open live streams."),
    reps: int = typer.Option(200, "--reps", min=5, help="Repetitions per read operation."),
    budget: float = typer.Option(20.0, "--budget", help="Seconds at most per operation."),
    ingest_batches: int = typer.Option(20, "--ingest-batches", min=1),
    ingest_clients: int = typer.Option(
        4, "--ingest-clients", min=1, help="Producers at once for ingest_http_parallel."
    ),
    http_seconds: float = typer.Option(10.0, "--http-seconds", min=0.5),
    http_clients: int = typer.Option(16, "--http-clients", min=1),
    load_client: str = typer.Option(
        "auto",
        "--load-client",
        help="GET /api/activity load from: auto (wrk if installed), wrk, httpx.",
    ),
    stream_client: str = typer.Option(
        "lean",
        "--stream-client",
        help="The live streams read by: lean (httptools, timed on arrival) or httpx.",
    ),
    skip: list[str] = typer.Option(
        [], "--skip", help=f"Parts to leave out: {', '.join(SKIPPABLE)}."
    ),
) -> None:
    """Load (or reuse) a long history and time every operation of issue 5."""
    if load_client not in ("auto", "wrk", "httpx"):
        err_console.print(f"[red]--load-client: auto, wrk or httpx, not {load_client!r}[/red]")
        raise typer.Exit(2)
    if stream_client not in ("lean", "httpx"):
        err_console.print(f"[red]--stream-client: lean or httpx, not {stream_client!r}[/red]")
        raise typer.Exit(2)
    unknown = set(skip) - set(SKIPPABLE)
    if unknown:
        err_console.print(f"[red]unknown --skip part(s):[/red] {', '.join(sorted(unknown))}")
        raise typer.Exit(2)
    if folder is not None and database_url is None:
        folder.mkdir(parents=True, exist_ok=True)  # a new folder to keep the file in
    url = database_url or "sqlite:///" + str(
        (folder or Path(tempfile.mkdtemp(prefix="af-bench-"))) / "bench.db"
    )
    migrate.upgrade(url)
    db = Database(url)
    now = datetime.now(UTC)
    try:
        with Progress(
            TextColumn("Loading history"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("load", total=None)
            started = time.perf_counter()
            world = ensure_world(
                db,
                events=events,
                others_factor=others_factor,
                now=now,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
            load_s = time.perf_counter() - started
        verb = "Reused" if world.reused else "Loaded"
        console.print(f"{verb} the history in {load_s:.1f} s ({db.dialect}).")
        ctx = Ctx(
            db=db,
            world=world,
            now=datetime.now(UTC),
            undo_window=timedelta(hours=1),
            reps=reps,
            budget_s=budget,
        )
        _reset_marks(ctx, world.team_id)
        _reset_marks(ctx, world.small_id)
        if db.dialect == "postgresql":
            # A reused history too: the runs before left dead rows (their writes, their
            # ingestion) that autovacuum would have cleared on a live database by now,
            # and a server without it (as in CI) would measure them instead. After the
            # marks' reset, whose deletes would otherwise leave dead rows of their own.
            started = time.perf_counter()
            bulk.settle(db)
            console.print(f"VACUUM ANALYZE in {time.perf_counter() - started:.1f} s.")
        secret = None
        steps: list[tuple[str, Callable[[], Any]]] = []
        if "ingest" not in skip or "sse" not in skip:
            steps.append(("ingest", lambda: run_ingest(ctx, ingest_batches)))
        if "reads" not in skip:
            steps.append(("reads", lambda: run_reads(ctx)))
        if "writes" not in skip:
            steps.append(("writes", lambda: run_writes(ctx)))
        if "export" not in skip:
            steps.append(("export", lambda: run_export(ctx)))
        memory: dict[str, Any] = {}
        for name, step in steps:
            console.print(f"[dim]measuring {name}…[/dim]")
            got = step()
            if name == "ingest":
                secret = got
        if {"ingest", "sse", "http"} - set(skip):
            db.dispose()
            # All the benchmark's streams belong to one user: lift the per-user limit.
            limits = {"ACTIVITYFEED_STREAM_MAX_PER_USER": str(max(streams, 20))}
            with server(url, workers=2, env=limits) as (base, proc):
                if "ingest" not in skip:
                    assert secret is not None
                    console.print("[dim]measuring HTTP ingest…[/dim]")
                    run_http_ingest(ctx, base, secret, ingest_batches, clients=ingest_clients)
                if "http" not in skip:
                    console.print("[dim]measuring GET /api/activity under load…[/dim]")
                    run_http_activity(
                        ctx,
                        base,
                        clients=http_clients,
                        seconds=http_seconds,
                        load_client=load_client,
                        server_pid=proc.pid,
                    )
                if "sse" not in skip:
                    assert secret is not None
                    console.print(f"[dim]measuring the live stream ({streams} streams)…[/dim]")
                    run_sse(
                        ctx,
                        base,
                        secret,
                        streams=streams,
                        rounds=max(3, min(20, reps // 10)),
                        client=stream_client,
                    )
                pids = _descendants(proc.pid)
                rss = {pid: _rss_kb(pid) for pid in [proc.pid, *pids]}
                # The workers are the processes that serve (the largest ones); the
                # supervisor and the multiprocessing helper are listed too.
                memory = {
                    "supervisor_rss_mb": round(rss[proc.pid] / 1024, 1),
                    "process_rss_mb": [round(v / 1024, 1) for p, v in rss.items() if p != proc.pid],
                }
                memory["worker_rss_mb_max"] = max(memory["process_rss_mb"], default=0.0)
        if "ingest" in skip:
            ctx.results.pop("ingest_service", None)
            ctx.results.pop("ingest_floor", None)
        report: dict[str, Any] = {
            "meta": {
                "backend": db.dialect,
                "events": events,
                "others_factor": others_factor,
                "other_workspaces": len(world.other_ids),
                "date": now.date().isoformat(),
                "load_seconds": round(load_s, 1),
                "reused": world.reused,
                "machine": machine(),
                "server_memory": memory,
            },
            "operations": {
                name: ctx.results[name].summary() for name in OPERATIONS if name in ctx.results
            },
        }
    finally:
        db.dispose()
    table = Table(title=f"activityfeed bench — {report['meta']['backend']}, N={events:,}")
    for col in COLUMNS:
        table.add_column(
            col,
            justify="left" if col in ("operation", "notes") else "right",
            no_wrap=col == "operation",
        )
    for r in rows(report):
        table.add_row(*r)
    console.print(table)
    if memory:
        console.print(f"Server memory: {memory}")
    if json_file:
        json_file.write_text(json.dumps(report, indent=2) + "\n")
    if markdown_file:
        markdown_file.write_text(markdown(report))
