"""A bounded soak test on loopback: correctness under steady load, not peak throughput.

Starts ``activityfeed serve --workers N`` in a subprocess on a fresh database, opens
``--streams`` Server-Sent Event streams (spread over ``--users`` members of one team
workspace, each with the team active), and runs ``--clients`` clients that mix listing,
search, mark-seen, archive/restore and ingestion (through an API key) with a short pause
between requests, for ``--duration`` seconds. Then it checks:

- no request failed (any status >= 400 or a transport error is an error);
- every stream received every ingested event exactly once (none lost, none doubled),
  and never a ``reset``;
- the server's memory (RSS of the server process and its workers, sampled each second)
  is flat after warm-up: the mean of the last quarter is within ``--rss-growth`` of the
  mean of the second quarter.

It prints p50/p95/p99 per operation as Markdown (and writes ``--json``/``--markdown``).
Exit status 1 when a check fails. ``tests/e2e/test_soak.py`` runs it in CI.

    python scripts/soak.py --duration 600 --database-url postgresql+psycopg://...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from activityfeed.cli.bench import server
from activityfeed.domain.accounts import Scope
from activityfeed.domain.events import SourceKind
from activityfeed.domain.workspaces import Role
from activityfeed.services import accounts, apikeys, workspaces
from activityfeed.store import migrate
from activityfeed.store.db import Database

PASSWORD = "soak-password-123"  # noqa: S105 - throwaway accounts in a throwaway database
#: Operation mix: weights of what a client does next.
MIX = {
    "list": 30,
    "search": 12,
    "list_archive": 6,
    "mark_seen": 16,
    "mark_all_seen": 2,
    "archive": 8,
    "restore": 6,
    "ingest": 20,
}


#: uvicorn closes a keep-alive connection idle for 5 s, and httpx keeps one 5 s too: a
#: request sent on it just as the server closes it fails with ReadError. Retire idle
#: connections well before the server does (an artefact of the client, not the server).
LIMITS = httpx.Limits(keepalive_expiry=2.0)


@dataclass
class Report:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    ingested: list[str] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)
    rss_by_process: list[dict[int, int]] = field(default_factory=list)


@dataclass
class Stream:
    user: int
    received: Counter[str] = field(default_factory=Counter)
    resets: int = 0
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    ended: str | None = None


def prepare(database_url: str, users: int) -> tuple[list[str], str, str]:
    """Users (all members of one team), the team's slug and an API key's secret."""
    migrate.upgrade(database_url)
    db = Database(database_url)
    now = datetime.now(UTC)
    emails = [f"soak{i}@example.com" for i in range(users)]
    with db.write() as tx:
        made = [
            accounts.create_user(tx, email=e, name=f"Soak {i}", password=PASSWORD, now=now)
            for i, e in enumerate(emails)
        ]
        team = workspaces.create_workspace(tx, user_id=made[0].id, name="Soak team", now=now)
        for user in made[1:]:
            workspaces.add_member(
                tx, user_id=made[0].id, slug=team.slug, email=user.email, role=Role.MEMBER,
                now=now,
            )  # fmt: skip
        membership = workspaces.access_workspace(tx, user_id=made[0].id, workspace_id=team.id)
        key = apikeys.create_api_key(
            tx, user=made[0], membership=membership, name="soak", scopes=[Scope.EVENTS_WRITE],
            source=SourceKind.CLI, now=now,
        )  # fmt: skip
    db.dispose()
    return emails, team.slug, key.secret


async def sign_in(base: str, email: str, slug: str) -> httpx.AsyncClient:
    """A browser: the session cookie, and the CSRF token on every request."""
    client = httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(30.0), limits=LIMITS)
    response = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    response.raise_for_status()
    client.headers["X-CSRF-Token"] = response.json()["csrfToken"]
    (await client.post(f"/api/workspaces/{slug}/switch")).raise_for_status()
    return client


async def read_stream(base: str, cookies: httpx.Cookies, stream: Stream) -> None:
    """Read one ``text/event-stream`` until cancelled, counting ``activity`` events."""
    async with (
        # A stream is quiet for up to a heartbeat (15 s): no read timeout.
        httpx.AsyncClient(
            base_url=base, cookies=cookies, timeout=httpx.Timeout(30.0, read=None)
        ) as client,
        client.stream("GET", "/api/activity/stream") as response,
    ):
        if response.status_code != 200:
            stream.ended = f"status {response.status_code}"
            stream.connected.set()
            return
        event, data = "message", []
        async for line in response.aiter_lines():
            if line == "":
                if event == "unseen":
                    # Every connection starts with one: the stream is live from here.
                    stream.connected.set()
                elif event == "activity":
                    stream.received[json.loads("\n".join(data))["event"]["id"]] += 1
                elif event == "reset":
                    stream.resets += 1
                event, data = "message", []
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
    stream.ended = stream.ended or "closed by the server"


def rss_by_process(pid: int) -> dict[int, int]:
    """Resident memory (KiB) of ``pid`` and of each of its descendants (uvicorn's
    multiprocessing helper and workers), by process id."""
    out: dict[int, int] = {}
    todo = [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out[current] = int(line.split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


async def sample_rss(pid: int, report: Report, stop: asyncio.Event) -> None:
    start = time.monotonic()
    while not stop.is_set():
        by_process = rss_by_process(pid)
        report.rss.append((time.monotonic() - start, sum(by_process.values())))
        report.rss_by_process.append(by_process)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


def per_minute(samples: list[tuple[float, int]]) -> list[float]:
    """Mean RSS (MiB) of each whole or partial minute of the run: the curve that shows
    whether memory levels off."""
    minutes: dict[int, list[int]] = defaultdict(list)
    for t, kib in samples:
        minutes[int(t // 60)].append(kib)
    return [round(statistics.mean(v) / 1024, 1) for _, v in sorted(minutes.items())]


async def client_loop(
    n: int,
    browser: httpx.AsyncClient,
    producer: httpx.AsyncClient,
    report: Report,
    stop: asyncio.Event,
    pause: float,
) -> None:
    rng = random.Random(n)  # noqa: S311 - a reproducible load, not a secret
    ops, weights = list(MIX), list(MIX.values())
    seen_ids: list[str] = []
    while not stop.is_set():
        op = rng.choices(ops, weights)[0]
        started = time.perf_counter()
        try:
            if op == "ingest":
                batch = [
                    {
                        "resourceType": rng.choice(["training", "dataset", "model", "export"]),
                        "action": "completed",
                        "resourceId": f"r-{n}-{rng.randrange(10**6)}",
                        "resourceName": f"soak run {n} {rng.choice(['alpha', 'beta', 'gamma'])}",
                    }
                    for _ in range(rng.randint(1, 5))
                ]
                response = await producer.post("/api/events", json={"events": batch})
                if response.status_code == 201:
                    report.ingested += [e["id"] for e in response.json()["events"]]
            elif op in ("list", "search", "list_archive"):
                params: dict[str, Any] = {"limit": 20}
                if op == "search":
                    params["search"] = rng.choice(["alpha", "soak run", "model", "beta"])
                if op == "list_archive":
                    params["archived"] = "true"
                response = await browser.get("/api/activity", params=params)
                if response.status_code == 200:
                    seen_ids = [e["id"] for e in response.json()["events"]]
            elif op == "mark_seen":
                ids = rng.sample(seen_ids, min(len(seen_ids), 5))
                response = await browser.post("/api/activity/mark-seen", json={"eventIds": ids})
            elif op == "mark_all_seen":
                response = await browser.post("/api/activity/mark-seen", json={"all": True})
            else:
                ids = rng.sample(seen_ids, min(len(seen_ids), 3))
                response = await browser.post(
                    "/api/activity/archive", json={"eventIds": ids, "archive": op == "archive"}
                )
            if response.status_code >= 400:
                report.errors.append(f"{op}: {response.status_code} {response.text[:200]}")
        except httpx.HTTPError as exc:
            report.errors.append(f"{op}: {exc.__class__.__name__}: {exc}")
        report.latencies[op].append(time.perf_counter() - started)
        await asyncio.sleep(pause * rng.uniform(0.5, 1.5))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def soak(
    args: argparse.Namespace, base: str, pid: int, setup: tuple[Any, ...]
) -> dict[str, Any]:
    emails, slug, secret = setup
    report = Report()
    stop = asyncio.Event()
    browsers = [await sign_in(base, email, slug) for email in emails]
    streams = [Stream(user=i % len(browsers)) for i in range(args.streams)]
    readers = [asyncio.create_task(read_stream(base, browsers[s.user].cookies, s)) for s in streams]
    await asyncio.wait_for(asyncio.gather(*(s.connected.wait() for s in streams)), 60)
    producer = httpx.AsyncClient(
        base_url=base,
        headers={"Authorization": f"Bearer {secret}"},
        timeout=httpx.Timeout(30.0),
        limits=LIMITS,
    )
    sampler = asyncio.create_task(sample_rss(pid, report, stop))
    started = time.monotonic()
    clients = [
        asyncio.create_task(
            client_loop(i, browsers[i % len(browsers)], producer, report, stop, args.pause)
        )
        for i in range(args.clients)
    ]
    await asyncio.sleep(args.duration)
    stop.set()
    await asyncio.gather(*clients, sampler)
    elapsed = time.monotonic() - started
    # Let the streams catch up with the last events.
    expected = set(report.ingested)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(
        not expected <= set(s.received) for s in streams if s.ended is None
    ):
        await asyncio.sleep(0.25)
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    for client in [*browsers, producer]:
        await client.aclose()
    return summarise(args, report, streams, elapsed)


def summarise(
    args: argparse.Namespace, report: Report, streams: list[Stream], elapsed: float
) -> dict[str, Any]:
    expected = Counter(report.ingested)
    problems = [f"{len(report.errors)} failed requests"] if report.errors else []
    lost = doubled = unexpected = 0
    for s in streams:
        lost += sum(1 for i in expected if s.received[i] == 0)
        doubled += sum(1 for i in expected if s.received[i] > 1)
        unexpected += sum(1 for i in s.received if i not in expected)
    ended = sum(1 for s in streams if s.ended)
    resets = sum(s.resets for s in streams)
    if lost or doubled or unexpected or ended or resets:
        problems.append(
            f"streams: {lost} lost, {doubled} doubled, {unexpected} unexpected deliveries, "
            f"{ended} streams ended early, {resets} resets"
        )
    rss = [kib for _, kib in report.rss]
    quarter = max(1, len(rss) // 4)
    second = statistics.mean(rss[quarter : 2 * quarter] or rss)
    last = statistics.mean(rss[-quarter:])
    growth = last / second - 1
    if growth > args.rss_growth:
        problems.append(
            f"server RSS grew {growth:+.1%} after warm-up (bound {args.rss_growth:.0%})"
        )
    ops = {
        op: {
            "count": len(v),
            "p50_ms": round(percentile(v, 0.50) * 1000, 1),
            "p95_ms": round(percentile(v, 0.95) * 1000, 1),
            "p99_ms": round(percentile(v, 0.99) * 1000, 1),
        }
        for op, v in sorted(report.latencies.items())
    }
    return {
        "database": args.database_url.split(":", 1)[0] if args.database_url else "sqlite",
        "workers": args.workers,
        "duration_s": round(elapsed, 1),
        "clients": args.clients,
        "streams": len(streams),
        "requests": sum(len(v) for v in report.latencies.values()),
        "requests_per_s": round(sum(len(v) for v in report.latencies.values()) / elapsed, 1),
        "events_ingested": len(expected),
        "deliveries": sum(sum(s.received.values()) for s in streams),
        "lost": lost,
        "doubled": doubled,
        "errors": len(report.errors),
        "first_errors": report.errors[:5],
        "rss_mib": {
            "start": round(rss[0] / 1024, 1),
            "second_quarter_mean": round(second / 1024, 1),
            "last_quarter_mean": round(last / 1024, 1),
            "max": round(max(rss) / 1024, 1),
            "growth": round(growth, 4),
            "per_minute": per_minute(report.rss),
            # First and last sample of each process (the supervisor, the helper, workers).
            "by_process": {
                str(pid): [
                    round(report.rss_by_process[0].get(pid, 0) / 1024, 1),
                    round(kib / 1024, 1),
                ]
                for pid, kib in (report.rss_by_process[-1] if report.rss_by_process else {}).items()
            },
        },
        "operations": ops,
        "problems": problems,
    }


def markdown(result: dict[str, Any]) -> str:
    rss = result["rss_mib"]
    lines = [
        f"Soak on {result['database']}, `serve --workers {result['workers']}`: "
        f"{result['duration_s']} s, {result['clients']} clients, {result['streams']} SSE streams; "
        f"{result['requests']} requests ({result['requests_per_s']}/s), "
        f"{result['events_ingested']} events ingested, {result['deliveries']} stream deliveries "
        f"({result['lost']} lost, {result['doubled']} doubled), {result['errors']} errors. "
        f"Server RSS {rss['start']} MiB at start, {rss['second_quarter_mean']} → "
        f"{rss['last_quarter_mean']} MiB (2nd → last quarter mean, {rss['growth']:+.1%}), "
        f"max {rss['max']} MiB. Per minute: {', '.join(map(str, rss['per_minute']))} MiB.",
        "",
        "| Operation | Requests | p50 ms | p95 ms | p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for op, s in result["operations"].items():
        lines.append(f"| {op} | {s['count']} | {s['p50_ms']} | {s['p95_ms']} | {s['p99_ms']} |")
    if result["problems"]:
        lines += ["", "**Failed:** " + "; ".join(result["problems"])]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of load")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--users", type=int, default=40, help="stream and browser users")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--pause", type=float, default=0.2, help="mean seconds a client waits between requests"
    )
    # The caches (SQLite's page cache per pooled connection, the allocator) grow with the
    # database during a short run; a leak keeps growing in a long one (--duration 600).
    parser.add_argument("--rss-growth", type=float, default=0.15)
    parser.add_argument("--database-url", default=None, help="default: a new SQLite file")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run one soak; the summary (``problems`` is empty when every check passed)."""
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        url = args.database_url or f"sqlite:///{tmp}/soak.db"
        setup = prepare(url, args.users)
        with server(url, workers=args.workers) as (base, proc):
            result = asyncio.run(soak(args, base, proc.pid, setup))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if args.markdown:
        args.markdown.write_text(markdown(result))
    return result


def main(argv: list[str] | None = None) -> int:
    result = run(parse_args(argv))
    sys.stdout.write(markdown(result))
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
