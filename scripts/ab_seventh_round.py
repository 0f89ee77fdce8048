"""The seventh round's two changes, before and after, on one loaded benchmark database.

    PYTHONPATH=src python scripts/ab_seventh_round.py --database-url URL [--reps 200]
    PYTHONPATH=src python scripts/ab_seventh_round.py --folder DIR [--reps 200]

The database is one ``activityfeed bench`` loaded (its world is found again; on a
database without one it is loaded first, as long as the benchmark takes, and the
script stops). Machines differ between sessions by more
than a round's gain, so each comparison runs both variants in the same process,
alternating:

- ``mark_all_seen`` / ``archive_all``: the sixth round's sequence of statements
  (``before``: the locks, the marks with the head, the watermark, the moot exceptions,
  the outbox row, then the unseen count or before it the Inbox's size, each on its own)
  against ``states.move_all`` (``after``), one repetition each in turn, the viewer reset
  untimed before every repetition as the benchmark does.
- ``first_page`` / ``year_page``: ``list_activity`` with its ``total`` adding whole days
  from ``event_day_counts`` (``before``) or from ``event_day_totals`` (``after``), in
  alternating blocks of 20 (the statements are built once per variant, then reused).

Prints p50 and p99 in milliseconds per variant. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from activityfeed.cli import bench
from activityfeed.domain.stream import StateAction
from activityfeed.services import activity
from activityfeed.services.bench_history import ensure_world
from activityfeed.store import events as event_store
from activityfeed.store import migrate, schema
from activityfeed.store import states as state_store
from activityfeed.store import stream as stream_store
from activityfeed.store.db import Database


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _report(name: str, runs: dict[str, list[float]]) -> None:
    for variant, samples in runs.items():
        print(
            f"{name:16} {variant:6} n={len(samples):4} p50 {statistics.median(samples):7.2f} ms"
            f"  p99 {_pct(samples, 0.99):7.2f} ms"
        )


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def old_mark_all(tx: Any, uid: str, ws: str) -> int:
    """The sixth round's "mark all seen": five statements after the locks."""
    marks, (head_seq, head_ord) = state_store.lock_marks_and_head(tx, user_id=uid, workspace_id=ws)
    marks = replace(marks, seen_seq=head_seq, seen_ord=head_ord)
    state_store.upsert_marks(tx, user_id=uid, workspace_id=ws, marks=marks)
    state_store.clear_seen_exceptions(tx, user_id=uid, workspace_id=ws, upto_seq=head_seq)
    stream_store.insert_change(tx, workspace_id=ws, user_id=uid, action=StateAction.SEEN,
                               event_ids=[], is_all=True, upto_seq=head_seq)  # fmt: skip
    return state_store.count_unseen(tx, user_id=uid, workspace_id=ws, marks=marks,
                                    head_ord=head_ord)  # fmt: skip


def old_archive_all(tx: Any, uid: str, ws: str) -> int:
    """The sixth round's "archive all"."""
    marks, (head_seq, head_ord) = state_store.lock_marks_and_head(tx, user_id=uid, workspace_id=ws)
    moved = state_store.count_inbox(tx, user_id=uid, workspace_id=ws, marks=marks,
                                    head_ord=head_ord)  # fmt: skip
    marks = replace(marks, archived_seq=head_seq, archived_ord=head_ord)
    state_store.upsert_marks(tx, user_id=uid, workspace_id=ws, marks=marks)
    state_store.clear_archived_exceptions(tx, user_id=uid, workspace_id=ws)
    stream_store.insert_change(tx, workspace_id=ws, user_id=uid, action=StateAction.ARCHIVED,
                               event_ids=[], is_all=True, upto_seq=head_seq)  # fmt: skip
    return moved


def compare_writes(ctx: bench.Ctx, reps: int) -> None:
    uid, ws = ctx.world.user_id, ctx.world.team_id
    m = bench._membership(ctx, ws)

    def new_mark_all(tx: Any, *_: Any) -> int:
        return activity.mark_seen(tx, viewer_id=uid, membership=m, event_ids=None, mark_all=True)

    def new_archive_all(tx: Any, *_: Any) -> int:
        return activity.archive_events(
            tx, viewer_id=uid, membership=m, event_ids=None, archive_all=True, archive=True
        )

    pairs = {
        "mark_all_seen": (old_mark_all, new_mark_all, {"archived": False}),
        "archive_all": (old_archive_all, new_archive_all, {"seen": False}),
    }
    for name, (old, new, reset) in pairs.items():
        runs: dict[str, list[float]] = {"before": [], "after": []}
        answers: dict[str, set[int]] = {"before": set(), "after": set()}
        for i in range(2 * reps + 4):
            variant, fn = ("before", old) if i % 2 == 0 else ("after", new)
            bench._reset_marks(ctx, ws, **reset)
            out: list[int] = []

            def go(fn: Callable[..., int] = fn, out: list[int] = out) -> None:
                with ctx.db.write() as tx:
                    out.append(fn(tx, uid, ws))

            took = _timed(go)
            if i >= 4:  # the first two of each are warm-up
                runs[variant].append(took)
                answers[variant].add(out[0])
        assert answers["before"] == answers["after"], answers
        _report(name, runs)
    bench._reset_marks(ctx, ws)


def compare_totals(ctx: bench.Ctx, reps: int) -> None:
    w = ctx.world
    m = bench._membership(ctx, w.team_id)
    queries = {
        "first_page": bench._query(ctx),
        "year_page": bench._query(ctx, start=bench._iso(ctx.now - timedelta(days=366))),
    }

    def use(table: Any) -> None:
        event_store.event_day_totals = table
        event_store._total_statement.cache_clear()
        state_store._total_with_unseen.cache_clear()

    for name, q in queries.items():
        runs: dict[str, list[float]] = {"before": [], "after": []}
        totals: dict[str, set[int]] = {"before": set(), "after": set()}
        for block in range(2 * max(1, reps // 20)):
            variant = "before" if block % 2 == 0 else "after"
            use(schema.event_day_counts if variant == "before" else schema.event_day_totals)
            for i in range(22):
                got: list[int] = []

                def go(got: list[int] = got, q: Any = q) -> None:
                    with ctx.db.read() as tx:
                        page = activity.list_activity(
                            tx,
                            viewer_id=w.user_id,
                            membership=m,
                            q=q,
                            now=ctx.now,
                            undo_window=ctx.undo_window,
                        )
                        got.append(page.total)

                took = _timed(go)
                if i >= 2:
                    runs[variant].append(took)
                    totals[variant].add(got[0])
        use(schema.event_day_totals)
        assert totals["before"] == totals["after"], totals
        _report(name, runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--database-url")
    ap.add_argument("--folder", type=Path)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--events", type=int, default=1_000_000, help="the loaded world's N")
    ap.add_argument("--others-factor", type=int, default=4)
    args = ap.parse_args()
    url = args.database_url or f"sqlite:///{args.folder / 'bench.db'}"
    migrate.upgrade(url)
    db = Database(url)
    world = ensure_world(db, events=args.events, others_factor=args.others_factor,
                         now=datetime.now(UTC))  # fmt: skip
    if not world.reused:
        raise SystemExit("the world was loaded just now: run activityfeed bench first")
    ctx = bench.Ctx(db=db, world=world, now=datetime.now(UTC), undo_window=timedelta(hours=1),
                    reps=args.reps, budget_s=600.0)  # fmt: skip
    print(f"{db.dialect}, {args.reps} repetitions a variant")
    compare_writes(ctx, args.reps)
    compare_totals(ctx, args.reps)
    db.dispose()


if __name__ == "__main__":
    main()
