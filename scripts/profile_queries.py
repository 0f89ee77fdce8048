"""Profile the feed's read queries at scale, on SQLite or PostgreSQL.

    PYTHONPATH=src python scripts/profile_queries.py --database-url URL \
        [--events 200000] [--others 4] [--runs 50] [--explain]

Builds (or reuses, when the user already exists) a database in which one user, in a
team workspace shared with a mate, has ``--events`` events over 365 days, and 200
other workspaces hold ``--others`` times as many. Rows go in with direct Core
inserts in big transactions (``ws_ord`` dense, ``seq`` explicit; SQLite's FTS trigger
runs as in production, PostgreSQL's trigram index is built after the load). One in a
hundred events is the mate's private ``api_key`` event, which the user must not see;
created times are spread at random over 365 days (arrival order is not time order).

Then times each read operation through the services (the same calls the API makes)
``--runs`` times and prints min/p50/p99 in ms; with ``--explain`` also prints the plan
of every statement of one run (EXPLAIN QUERY PLAN / EXPLAIN ANALYZE).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, func, insert, select, text

from activityfeed.domain.events import Action, ResourceType, describe
from activityfeed.domain.ids import new_id
from activityfeed.domain.query import Cursor, parse_activity_query
from activityfeed.domain.workspaces import Role
from activityfeed.services import accounts, activity, workspaces
from activityfeed.store import migrate
from activityfeed.store.db import Database
from activityfeed.store.schema import events, users
from activityfeed.store.schema import workspaces as workspaces_table

EMAIL = "profile@example.com"
MATE = "profile-mate@example.com"
PASSWORD = "profile-password"  # noqa: S105  (throwaway data)
PER_TX = 50_000
OTHER_WORKSPACES = 200
NOW = datetime(2026, 11, 1, tzinfo=UTC)
KINDS = [
    (ResourceType.TRAINING, Action.COMPLETED),
    (ResourceType.TRAINING, Action.FAILED),
    (ResourceType.DATASET, Action.UPLOADED),
    (ResourceType.MODEL, Action.UPDATED),
    (ResourceType.PROJECT, Action.CREATED),
    (ResourceType.DEPLOYMENT, Action.STARTED),
    (ResourceType.MODEL, Action.SHARED),
]
WORDS = ["falcon", "orca", "lynx", "heron", "badger", "otter", "raven", "walrus", "ibis", "yak"]


def _rows(ws: str, first_ord: int, n: int, rng: random.Random, mate_id: str | None) -> list[Any]:
    out = []
    for k in range(n):
        o = first_ord + k
        at = NOW - timedelta(seconds=rng.randrange(365 * 86400))
        if mate_id and o % 100 == 0:
            rtype, action, private = ResourceType.API_KEY, Action.CREATED, mate_id
        else:
            rtype, action = KINDS[o % len(KINDS)]
            private = None
        name = f"{WORDS[o % 10]}-{rtype.value}-{o}"
        out.append(
            {
                "id": new_id(now_ms=int(at.timestamp() * 1000)),
                "workspace_id": ws,
                "ws_ord": o,
                "resource_type": rtype.value,
                "action": action.value,
                "resource_id": f"r{o % 5000}",
                "resource_name": name,
                "description": describe(rtype, action, name),
                "actor_id": None,
                "actor_name": None,
                "actor_email": None,
                "source_kind": "api_key",
                "source_key_prefix": "afk_prof1234",
                "created_at": at,
                "recorded_at": at,
                "metadata": {"step": o},
                "private_to": private,
                "idempotency_key": None,
                "payload_hash": None,
            }
        )
    return out


def build(db: Database, n: int, others: int) -> None:
    rng = random.Random(5)  # noqa: S311  (reproducible test data)
    with db.write() as tx:
        me = accounts.create_user(tx, email=EMAIL, name="Prof User", password=PASSWORD, now=NOW)
        mate = accounts.create_user(tx, email=MATE, name="Prof Mate", password=PASSWORD, now=NOW)
        team = workspaces.create_workspace(tx, user_id=mate.id, name="Prof Team", now=NOW)
        workspaces.add_member(
            tx, user_id=mate.id, slug=team.slug, email=me.email, role=Role.MEMBER, now=NOW
        )
        other_ids = [
            workspaces.create_workspace(tx, user_id=mate.id, name=f"Other {i}", now=NOW).id
            for i in range(OTHER_WORKSPACES)
        ]
    if db.dialect == "postgresql":
        with db.write() as tx:
            tx.conn.execute(text("DROP INDEX IF EXISTS ix_events_search_trgm"))
    # Interleave: the measured workspace's rows are spread over the whole seq range.
    plan: list[tuple[str, int]] = []
    per_other = max(1, n * others // OTHER_WORKSPACES)
    chunk = 5_000
    ords = dict.fromkeys([team.id, *other_ids], 1)
    todo = {team.id: n, **dict.fromkeys(other_ids, per_other)}
    while any(todo.values()):
        for w in list(todo):
            if todo[w] <= 0:
                continue
            k = min(chunk if w == team.id else max(1, chunk // 40), todo[w])
            plan.append((w, k))
            todo[w] -= k
    seq = 0
    with db.read() as tx:
        seq = int(tx.conn.execute(select(func.coalesce(func.max(events.c.seq), 0))).scalar_one())
    started = time.monotonic()
    done = 0
    total = sum(k for _, k in plan)
    i = 0
    while i < len(plan):
        with db.write() as tx:
            in_tx = 0
            while i < len(plan) and in_tx < PER_TX:
                w, k = plan[i]
                rows = _rows(w, ords[w], k, rng, mate.id if w == team.id else None)
                for r in rows:
                    seq += 1
                    r["seq"] = seq
                ords[w] += k
                tx.conn.execute(insert(events), rows)
                in_tx += k
                done += k
                i += 1
        rate = done / (time.monotonic() - started)
        print(f"  {done:,}/{total:,} ({rate:,.0f}/s)", flush=True)
    if db.dialect == "postgresql":
        with db.write() as tx:
            tx.conn.execute(
                text(
                    "CREATE INDEX ix_events_search_trgm ON events USING gin "
                    "((resource_name || ' ' || resource_type || ' ' || description) "
                    "gin_trgm_ops)"
                )
            )
            tx.conn.execute(text("ANALYZE"))
    else:
        with db.write() as tx:
            tx.conn.execute(text("ANALYZE"))
    print(f"built in {time.monotonic() - started:,.0f} s", flush=True)


def _timed(fn: Callable[[], object], runs: int) -> tuple[float, float, float, object]:
    got = fn()  # warm
    laps = []
    for _ in range(runs):
        t = time.perf_counter()
        got = fn()
        laps.append((time.perf_counter() - t) * 1000)
    laps.sort()
    p99 = laps[min(len(laps) - 1, int(len(laps) * 0.99))]
    return laps[0], statistics.median(laps), p99, got


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--others", type=int, default=4)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--explain", action="store_true")
    ap.add_argument("--only", default="")
    ap.add_argument("--archive", action="store_true", help="archive all first")
    ap.add_argument("--no-migrate", action="store_true", help="(to time older code)")
    args = ap.parse_args()
    if not args.no_migrate:
        migrate.upgrade(args.database_url)
    db = Database(args.database_url)
    with db.read() as tx:
        exists = tx.conn.execute(select(users.c.id).where(users.c.email == EMAIL)).first()
    if not exists:
        build(db, args.events, args.others)
    with db.read() as tx:
        me_id = tx.conn.execute(select(users.c.id).where(users.c.email == EMAIL)).scalar_one()
        team_id = tx.conn.execute(
            select(workspaces_table.c.id).where(workspaces_table.c.name == "Prof Team")
        ).scalar_one()
        m = workspaces.access_workspace(tx, user_id=me_id, workspace_id=team_id)
        count = tx.conn.execute(
            select(func.count()).select_from(events).where(events.c.workspace_id == team_id)
        ).scalar_one()
        all_count = tx.conn.execute(select(func.count()).select_from(events)).scalar_one()
    print(f"{db.dialect}: {count:,} events in the measured workspace, {all_count:,} in all")
    if args.archive:
        with db.write() as tx:
            activity.archive_events(
                tx, viewer_id=me_id, membership=m, event_ids=None, archive_all=True, archive=True
            )

    def page(params: dict[str, list[str]], cursor: Cursor | None = None) -> Callable[[], object]:
        q = replace(parse_activity_query(params, now=NOW), cursor=cursor)

        def run() -> object:
            with db.read() as tx:
                p = activity.list_activity(
                    tx,
                    viewer_id=me_id,
                    membership=m,
                    q=q,
                    now=NOW,
                    undo_window=timedelta(minutes=10),
                )
                return (p.total, p.unseen_count, len(p.events), p.next_cursor)

        return run

    # The cursor of the row before page 500 (default range, limit 20).
    cur = None
    q = parse_activity_query({"page": ["499"]}, now=NOW)
    with db.read() as tx:
        p = activity.list_activity(
            tx, viewer_id=me_id, membership=m, q=q, now=NOW, undo_window=timedelta(minutes=10)
        )
        cur = p.next_cursor

    def unseen() -> object:
        with db.read() as tx:
            return workspaces.unseen_count(tx, user_id=me_id, workspace_id=team_id)

    def mark_all() -> object:
        with db.write() as tx:
            return activity.mark_seen(
                tx, viewer_id=me_id, membership=m, event_ids=None, mark_all=True
            )

    ops: dict[str, Callable[[], object]] = {
        "first page": page({}),
        "page 500": page({"page": ["500"]}),
        "page 500 by cursor": page({}, cursor=cur),
        "search name fragment": page({"search": ["orca-train"]}),
        "search rare fragment": page({"search": ["-model-4242"]}),
        "search word": page({"search": ["uploaded"]}),
        "search rare word": page({"search": ["shared"]}),
        "type filter": page({"resourceType": ["dataset"]}),
        "action filter": page({"action": ["failed"]}),
        "7-day range": page({"start": [(NOW - timedelta(days=7)).isoformat()]}),
        "archived list": page({"archived": ["true"]}),
        "all time": page({"start": ["2000-01-01"]}),
        "unseen count": unseen,
        "mark all seen": mark_all,
    }
    for name, fn in ops.items():
        if args.only and args.only not in name:
            continue
        lo, p50, p99, got = _timed(fn, args.runs)
        print(f"{name:24s} min {lo:8.2f}  p50 {p50:8.2f}  p99 {p99:8.2f} ms   -> {got}")
        if args.explain:
            _explain(db, fn)


def _explain(db: Database, fn: Callable[[], object]) -> None:
    seen: list[tuple[str, Any]] = []

    def rec(_conn: Any, _cursor: Any, statement: str, params: Any, *_rest: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "EXPLAIN" not in statement:
            seen.append((statement, params))

    event.listen(db.engine, "before_cursor_execute", rec)
    try:
        fn()
    finally:
        event.remove(db.engine, "before_cursor_execute", rec)
    with db.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        for stmt, params in seen:
            cur = raw.cursor()
            prefix = "EXPLAIN QUERY PLAN " if db.dialect == "sqlite" else "EXPLAIN ANALYZE "
            cur.execute(prefix + stmt, params)
            print("   ", " ".join(stmt.split())[:300])
            for r in cur.fetchall():
                print("      ", r[-1] if db.dialect == "sqlite" else r[0])
        conn.rollback()


if __name__ == "__main__":
    main()
