"""Benchmark the personal-data export: throughput, ZIP size and peak memory.

    PYTHONPATH=src python scripts/bench_export.py [--events 1000000] [--database-url URL]

Builds (or reuses) a database in which one user can see ``--events`` events: most in a
team workspace they share with another member (whose private ``api_key`` events they
must not see), the rest in their personal workspace, with an "archive all" and a "mark
all seen" part-way through and a few thousand per-event exceptions. Events are inserted
through ``store.events.insert_events`` in large transactions, so ``ws_ord`` stays dense
and SQLite's FTS trigger runs as in production.

The export then runs in a fresh child process (so ``ru_maxrss`` is the export's own
peak, not the build's): once timed, writing the ZIP to a file, and once under
``tracemalloc`` for the peak of Python allocations. The ZIP is read back to check the
events count. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from activityfeed.domain.events import (
    Action,
    Actor,
    EventDraft,
    ResourceType,
    Source,
    SourceKind,
    describe,
)
from activityfeed.domain.ids import new_id
from activityfeed.domain.query import parse_activity_query
from activityfeed.domain.workspaces import Role
from activityfeed.services import accounts, activity, workspaces
from activityfeed.services import export as export_service
from activityfeed.store import accounts as account_store
from activityfeed.store import events as event_store
from activityfeed.store import migrate
from activityfeed.store.db import Database

EMAIL = "bench-export@example.com"
MATE = "bench-mate@example.com"
BATCH = 10_000
PER_TX = 100_000
TEAM_SHARE = 0.8
# A throwaway account in a throwaway database; nobody signs in with it.
PASSWORD = "bench-password"  # noqa: S105  (bench data, not a credential)
OTHERS_PRIVATE_EVERY = 100  # one in a hundred team events is the mate's private key event


def _rss_mib() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _drafts(
    workspace_id: str, start: int, n: int, *, me: Actor, mate: Actor, team: bool
) -> list[EventDraft]:
    kinds = [
        (ResourceType.TRAINING, Action.COMPLETED),
        (ResourceType.DATASET, Action.UPLOADED),
        (ResourceType.MODEL, Action.UPDATED),
        (ResourceType.PROJECT, Action.CREATED),
        (ResourceType.DEPLOYMENT, Action.STARTED),
    ]
    out = []
    for i in range(start, start + n):
        if team and i % OTHERS_PRIVATE_EVERY == 0:
            rtype, action, actor = ResourceType.API_KEY, Action.CREATED, mate
        else:
            rtype, action = kinds[i % len(kinds)]
            actor = me if i % 3 else mate
        out.append(
            EventDraft(
                workspace_id=workspace_id,
                resource_type=rtype,
                action=action,
                resource_id=f"{rtype.value}-{i % 5000}",
                resource_name=f"{rtype.value}-run-{i}",
                actor=actor,
                source=Source(kind=SourceKind.API_KEY, api_key_prefix="afk_bench123")
                if i % 2
                else Source(kind=SourceKind.UI),
                metadata={"step": i, "accuracy": round((i % 1000) / 1000, 3), "tags": ["bench"]},
            )
        )
    return out


def _insert(
    db: Database,
    workspace_id: str,
    start: int,
    stop: int,
    *,
    me: Actor,
    mate: Actor,
    team: bool,
    t0: datetime,
) -> None:
    """Insert events number ``start`` to ``stop`` of a workspace, 30 s apart from ``t0``."""
    done = start
    began = time.monotonic()
    while done < stop:
        with db.write() as tx:
            in_tx = 0
            while in_tx < PER_TX and done < stop:
                n = min(BATCH, stop - done)
                new = []
                for k, d in enumerate(_drafts(workspace_id, done, n, me=me, mate=mate, team=team)):
                    at = t0 + timedelta(seconds=30 * (done + k))
                    new.append(
                        event_store.NewEvent(
                            draft=d,
                            id=new_id(now_ms=int(at.timestamp() * 1000)),
                            created_at=at,
                            recorded_at=at,
                            description=describe(d.resource_type, d.action, d.resource_name),
                        )
                    )
                event_store.insert_events(tx, workspace_id, new)
                done += n
                in_tx += n
        rate = (done - start) / max(time.monotonic() - began, 1e-9)
        print(f"  {workspace_id}: {done:,}/{stop:,} events ({rate:,.0f}/s)", flush=True)


def build(db: Database, events: int) -> None:
    now = datetime.now(UTC)
    with db.write() as tx:
        me = accounts.create_user(tx, email=EMAIL, name="Bench User", password=PASSWORD, now=now)
        mate = accounts.create_user(tx, email=MATE, name="Bench Mate", password=PASSWORD, now=now)
        team = workspaces.create_workspace(tx, user_id=mate.id, name="Bench Team", now=now)
        workspaces.add_member(
            tx, user_id=mate.id, slug=team.slug, email=me.email, role=Role.MEMBER, now=now
        )
        personal = account_store.select_personal_workspace(tx, me.id)
    assert personal is not None
    me_a = Actor(id=me.id, name=me.name, email=me.email)
    mate_a = Actor(id=mate.id, name=mate.name, email=mate.email)
    # The team holds private events of the mate that the user must not see.
    team_visible = int(events * TEAM_SHARE)
    team_total = team_visible
    # Rows 0, 100, 200, … are the mate's: add rows until exactly team_visible are the user's.
    while team_total - -(-team_total // OTHERS_PRIVATE_EVERY) < team_visible:
        team_total += 1
    personal_total = events - team_visible
    t0 = now - timedelta(seconds=30 * (team_total + 10))
    started = time.monotonic()

    who = {"me": me_a, "mate": mate_a}
    _insert(db, team.id, 0, team_total // 4, **who, team=True, t0=t0)
    with db.write() as tx:
        m = workspaces.access_workspace(tx, user_id=me.id, workspace_id=team.id)
        activity.archive_events(
            tx, viewer_id=me.id, membership=m, event_ids=None, archive_all=True, archive=True
        )
    _insert(db, team.id, team_total // 4, team_total // 2, **who, team=True, t0=t0)
    with db.write() as tx:
        m = workspaces.access_workspace(tx, user_id=me.id, workspace_id=team.id)
        activity.mark_seen(tx, viewer_id=me.id, membership=m, event_ids=None, mark_all=True)
    _insert(db, team.id, team_total // 2, team_total, **who, team=True, t0=t0)
    _insert(db, personal.id, 0, personal_total, me=me_a, mate=me_a, team=False, t0=t0)

    # A few thousand individual clicks: exceptions to the watermarks.
    with db.read() as tx:
        picks = [
            r.event.id
            for r in event_store.select_page(
                tx,
                viewer_id=me.id,
                workspace_id=team.id,
                marks=activity.watermarks(tx, viewer_id=me.id, workspace_id=team.id),
                q=parse_activity_query({"start": ["2000-01-01"]}, now=now),
                limit=3000,
            )
        ]
    with db.write() as tx:
        m = workspaces.access_workspace(tx, user_id=me.id, workspace_id=team.id)
        for start in range(0, len(picks), 1000):
            part = picks[start : start + 1000]
            activity.archive_events(
                tx, viewer_id=me.id, membership=m, event_ids=part, archive_all=False, archive=True
            )
            activity.mark_seen(tx, viewer_id=me.id, membership=m, event_ids=part, mark_all=False)
    print(f"built in {time.monotonic() - started:,.0f} s", flush=True)


def run_export(url: str, output: Path, *, trace: bool) -> dict[str, float]:
    """One export of the bench user to ``output``, measured."""
    db = Database(url)
    with db.read() as tx:
        user = export_service.find_user(tx, EMAIL)
        expected = export_service.count_events(tx, user.id)
    rss_before = _rss_mib()
    if trace:
        tracemalloc.start()
    started = time.monotonic()
    cpu_started = time.process_time()
    first_byte = None
    with db.read() as tx, output.open("wb") as out:
        for chunk in export_service.export_archive(tx, user_id=user.id, now=datetime.now(UTC)):
            if first_byte is None and chunk:
                first_byte = time.monotonic() - started
            out.write(chunk)
    elapsed = time.monotonic() - started
    cpu = time.process_time() - cpu_started
    peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace else 0.0
    if trace:
        tracemalloc.stop()
    db.dispose()
    return {
        "events": expected,
        "seconds": elapsed,
        "first_byte_s": first_byte or 0.0,
        "events_per_s": expected / elapsed,
        "cpu_s": cpu,
        "events_per_cpu_s": expected / cpu,
        "zip_bytes": output.stat().st_size,
        "rss_before_mib": rss_before,
        "rss_peak_mib": _rss_mib(),
        "tracemalloc_peak_mib": peak,
    }


def check_zip(output: Path) -> tuple[int, int]:
    """Events lines and uncompressed size of events.jsonl, read back as a stream."""
    lines = 0
    with zipfile.ZipFile(output) as zf, zf.open("events.jsonl") as f:
        for _ in f:
            lines += 1
        size = zf.getinfo("events.jsonl").file_size
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["parts"]["events.jsonl"] == lines, (manifest, lines)
    return lines, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=None, help="Default: a SQLite file in --dir.")
    parser.add_argument("--dir", type=Path, default=Path("bench-export"))
    parser.add_argument("--no-trace", action="store_true", help="Skip the (slow) tracemalloc run.")
    parser.add_argument("--child", choices=["timed", "traced"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    url = args.database_url or f"sqlite:///{args.dir / f'export-{args.events}.db'}"
    output = args.dir / "export.zip"

    if args.child:
        result = run_export(url, output, trace=args.child == "traced")
        print(json.dumps(result))
        return

    migrate.upgrade(url)
    db = Database(url)
    with db.read() as tx:
        found = account_store.select_user_by_email(tx, EMAIL)
        have = export_service.count_events(tx, found[0].id) if found else 0
    if found is None:
        print(f"building {args.events:,} events for {EMAIL} in {db.dialect} …", flush=True)
        build(db, args.events)
    else:
        print(f"reusing the database: {have:,} events for {EMAIL}", flush=True)
    db.dispose()

    results = {}
    for mode in ("timed",) if args.no_trace else ("timed", "traced"):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        child = subprocess.run(  # noqa: S603  (our own interpreter and script)
            [sys.executable, __file__, "--child", mode, "--dir", str(args.dir),
             "--events", str(args.events), "--database-url", url],
            check=True, capture_output=True, text=True, env=env,
        )  # fmt: skip
        results[mode] = json.loads(child.stdout.strip().splitlines()[-1])
    lines, raw = check_zip(output)
    timed, traced = results["timed"], results.get("traced")
    print(f"database:            {db.dialect} ({url.split('@')[-1]})")
    print(f"events exported:     {timed['events']:,} (read back: {lines:,})")
    print(f"time:                {timed['seconds']:,.1f} s (first byte after "
          f"{timed['first_byte_s'] * 1000:,.0f} ms)")  # fmt: skip
    print(f"throughput:          {timed['events_per_s']:,.0f} events/s "
          f"({timed['events_per_cpu_s']:,.0f} per CPU second, "
          f"{timed['cpu_s']:,.1f} CPU s)")  # fmt: skip
    print(f"ZIP size:            {timed['zip_bytes'] / 2**20:,.1f} MiB "
          f"(events.jsonl {raw / 2**20:,.1f} MiB uncompressed)")  # fmt: skip
    print(f"peak RSS (ru_maxrss): {timed['rss_peak_mib']:,.1f} MiB "
          f"(before the export: {timed['rss_before_mib']:,.1f} MiB)")  # fmt: skip
    if traced:
        print(f"tracemalloc peak:    {traced['tracemalloc_peak_mib']:,.2f} MiB "
              f"(traced run: {traced['seconds']:,.1f} s)")  # fmt: skip
    print(f"load average:        {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs")  # fmt: skip


if __name__ == "__main__":
    main()
