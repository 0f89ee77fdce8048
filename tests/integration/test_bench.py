"""``activityfeed bench`` runs end to end on a small history, on both databases, and its
loader keeps the events table's invariants. Never asserts wall-clock times."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from activityfeed.cli.bench import OPERATIONS, SKIPPABLE, _open_streams, server
from activityfeed.cli.main import app
from activityfeed.domain import chain
from activityfeed.domain.ids import new_id
from activityfeed.domain.query import ActivityQuery
from activityfeed.services import activity, integrity, workspaces
from activityfeed.services.bench_history import OTHER_WORKSPACES, ensure_world
from activityfeed.services.events import record_events
from activityfeed.store import bulk
from activityfeed.store import events as event_store
from activityfeed.store.db import Database
from activityfeed.store.schema import events
from tests.factories import make_team, make_user
from tests.integration.test_state_races import drafts

runner = CliRunner()


def test_bench_reports_every_operation(database_url: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    md = tmp_path / "bench.md"
    started = datetime.now(UTC)
    result = runner.invoke(
        app,
        [
            "bench",
            "--events", "2000",
            "--others-factor", "1",
            "--streams", "20",
            "--reps", "10",
            "--budget", "1",
            "--ingest-batches", "2",
            "--http-seconds", "1",
            "--database-url", database_url,
            "--json", str(out),
            "--markdown", str(md),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    ops = report["operations"]
    assert set(ops) == set(OPERATIONS)
    for name, s in ops.items():
        assert s["reps"] >= 2, name
        assert 0 <= s["min_ms"] <= s["p50_ms"] <= s["p95_ms"] <= s["p99_ms"], name
    for name in (
        "ingest_service",
        "ingest_floor",
        "ingest_http",
        "ingest_http_parallel",
        "export",
        "mark_1000_seen",
    ):
        assert ops[name]["per_s"] > 0, name
    assert ops["ingest_service"]["floor_ratio"] > 0
    assert ops["inbox_first_page"]["total"] > 0
    assert ops["search_name"]["total"] > 0
    assert ops["search_word"]["total"] > 0
    assert ops["sse_fanout"]["missed"] == 0
    assert ops["sse_fanout"]["reps"] == 20 * 3
    assert ops["sse_fanout"]["client"] == "lean"
    assert ops["http_activity"]["errors"] == 0
    assert ops["http_activity"]["requests_per_s"] > 0
    shares = ops["http_activity"]["worker_cpu_share"]
    # The two workers do nearly all of the server's work (the supervisor idles).
    assert len(shares) == 2
    assert 0.5 <= sum(shares) <= 1.01, shares
    assert shares[0] >= shares[1], shares
    assert ops["ingest_http_parallel"]["clients"] == 4
    assert ops["export"]["events"] >= 2000
    if database_url.startswith("postgresql"):
        # The new load was settled (VACUUM ANALYZE) before anything was measured.
        db = Database(database_url)
        with db.read() as tx:
            vacuumed, analysed = tx.conn.exec_driver_sql(
                "SELECT last_vacuum, last_analyze FROM pg_stat_user_tables WHERE relname = 'events'"
            ).one()
        db.dispose()
        assert vacuumed is not None
        assert vacuumed >= started
        assert analysed is not None
        assert analysed >= started
    else:
        # Every time as the schema writes it on SQLite, the floor's rows too: fixed
        # width (text order is time order), microseconds written on a whole second.
        db = Database(database_url)
        with db.read() as tx:
            short = tx.conn.exec_driver_sql(
                "SELECT count(*) FROM events WHERE length(created_at) != 26 "
                "OR length(recorded_at) != 26"
            ).scalar_one()
        db.dispose()
        assert short == 0
    assert ops["export"]["peak_memory_growth_mb"] >= 0
    # The floor's rows, written without our Python, got their checkpoint afterwards: the
    # benchmarked database verifies whole, its ingestion workspace included.
    db = Database(database_url)
    with db.read() as tx:
        reports = integrity.verify_workspaces(tx)
    db.dispose()
    assert reports
    assert [slug for slug, r in reports if not r.ok] == []
    meta = report["meta"]
    assert meta["events"] == 2000
    assert meta["other_workspaces"] == OTHER_WORKSPACES
    assert meta["machine"]["cpus"] >= 1
    assert meta["machine"]["python_10m_additions_s"] > 0
    assert meta["server_memory"]["worker_rss_mb_max"] > 0
    text = md.read_text()
    assert all(f"| {name} |" in text for name in OPERATIONS)
    # The table says how fast the machine was and how large the workers ended.
    assert f"10,000,000 Python additions in {meta['machine']['python_10m_additions_s']} s" in text
    assert f"{meta['server_memory']['worker_rss_mb_max']} MB" in text


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_reused_history_is_settled_before_it_is_measured(database_url: str) -> None:
    """PostgreSQL: a run on a history already loaded settles it too (VACUUM ANALYZE),
    as autovacuum would have since the run before, whose writes left dead rows."""
    skip_all = [arg for part in SKIPPABLE for arg in ("--skip", part)]
    args = ["bench", "--events", "300", "--others-factor", "1", "--database-url", database_url]
    first = runner.invoke(app, [*args, *skip_all])
    assert first.exit_code == 0, first.output
    started = datetime.now(UTC)
    again = runner.invoke(app, [*args, *skip_all])
    assert again.exit_code == 0, again.output
    assert "Reused the history" in again.output
    assert "VACUUM ANALYZE in" in again.output
    db = Database(database_url)
    with db.read() as tx:
        vacuumed = tx.conn.exec_driver_sql(
            "SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = 'event_states'"
        ).scalar_one()
    db.dispose()
    assert vacuumed is not None
    assert vacuumed >= started


def test_loader_keeps_the_invariants_and_is_reused(database_url: str) -> None:
    db = Database(database_url)
    now = datetime.now(UTC)
    try:
        world = ensure_world(db, events=1500, others_factor=1, now=now)
        assert not world.reused
        assert len(world.other_ids) == OTHER_WORKSPACES
        with db.read() as tx:
            for wid in (world.team_id, world.other_ids[0]):
                rows = tx.conn.execute(
                    select(events.c.seq, events.c.ws_ord)
                    .where(events.c.workspace_id == wid)
                    .order_by(events.c.seq)
                ).all()
                # Dense 1..n in seq order.
                assert [r.ws_ord for r in rows] == list(range(1, len(rows) + 1))
            assert (
                tx.conn.execute(
                    select(func.count()).where(events.c.workspace_id == world.team_id)
                ).scalar_one()
                == 1500
            )
            membership = workspaces.access_workspace(
                tx, user_id=world.user_id, workspace_id=world.team_id
            )
            # Searchable (the FTS table / trigram index is fed) and visible to the user.
            page = activity.list_activity(
                tx,
                viewer_id=world.user_id,
                membership=membership,
                q=ActivityQuery(search="wildlife"),
                now=now,
                undo_window=timedelta(hours=1),
            )
            assert page.total > 0
            assert all("wildlife" in v.event.resource_name for v in page.events)
        again = ensure_world(db, events=1500, others_factor=1, now=now)
        assert again.reused
        assert again.team_id == world.team_id
    finally:
        db.dispose()


def _floor_rows(workspace_id: str, n: int, at: datetime, *, is_pg: bool) -> list[tuple[Any, ...]]:
    """``n`` rows as the benchmark hands them to ``bulk.driver_insert``."""
    stamp = at if is_pg else at.replace(tzinfo=None).isoformat(" ", "microseconds")
    out = []
    for i in range(n):
        row = dict.fromkeys(bulk.ROW_COLUMNS) | {
            "id": new_id(),
            "workspace_id": workspace_id,
            "resource_type": "training",
            "action": "completed",
            "resource_id": f"floor-{i}",
            "resource_name": f"floor {i}",
            "description": "Completed training floor",
            "source_kind": "api_key",
            "source_key_prefix": "afk_1234",
            "created_at": stamp,
            "recorded_at": stamp,
            "metadata": json.dumps({"i": i}),
        }
        out.append(tuple(row[c] for c in bulk.ROW_COLUMNS))
    return out


def test_the_floor_numbers_after_the_head_and_verify_names_its_rows(db: Database, clock) -> None:
    """``driver_insert`` appends after the workspace's head as ingestion does, and writes
    no checkpoint (on purpose, see its docstring): verify names exactly its positions,
    as unchained while they are the newest, as uncovered once a chained batch follows."""
    user = make_user(db, clock)
    team = make_team(db, clock, user, name="Floor")
    with db.write() as tx:
        record_events(tx, drafts(team, 2), now=clock())
    with db.read() as tx:
        _, head = event_store.select_head(tx, team.id)
    with db.write() as tx:
        rows = _floor_rows(team.id, 3, clock(), is_pg=db.dialect == "postgresql")
        bulk.driver_insert(tx, team.id, rows)

    def verified() -> chain.Report:
        with db.read() as tx:
            ((_, report),) = integrity.verify_workspaces(tx, slug=team.slug)
        return report

    floor = f"{head + 1}..{head + 3}"
    report = verified()
    assert report.broken == chain.Break(
        head + 1,
        chain.BreakKind.UNCHAINED_EVENT,
        f"3 events at positions {floor}, after the newest checkpoint (it ends at {head})",
    )
    assert report.head.ws_ord == head
    with db.write() as tx:
        record_events(tx, drafts(team, 1), now=clock())
    report = verified()
    assert report.broken == chain.Break(
        head + 1, chain.BreakKind.MISSING_CHECKPOINT, f"no checkpoint covers: positions {floor}"
    )
    with db.read() as tx:
        stored = tx.conn.execute(
            select(events.c.seq, events.c.ws_ord, events.c.resource_id)
            .where(events.c.workspace_id == team.id)
            .order_by(events.c.seq)
        ).all()
    # Dense, in seq order, the floor's rows right after the head it read.
    assert [r.ws_ord for r in stored] == list(range(1, head + 5))
    assert [r.resource_id for r in stored[head : head + 3]] == ["floor-0", "floor-1", "floor-2"]


def test_the_floors_checkpoint_covers_its_rows_and_refuses_a_gap(db: Database, clock) -> None:
    """``checkpoint_driver_rows`` chains the floor's rows from the newest checkpoint, as
    ingestion would have (verify passes, and a batch recorded after chains on); it will
    not vouch for rows whose positions do not follow one another."""
    user = make_user(db, clock)
    team = make_team(db, clock, user, name="Floor")
    is_pg = db.dialect == "postgresql"
    with db.write() as tx:
        record_events(tx, drafts(team, 2), now=clock())
    with db.read() as tx:
        _, head = event_store.select_head(tx, team.id)
    with db.write() as tx:
        bulk.driver_insert(tx, team.id, _floor_rows(team.id, 3, clock(), is_pg=is_pg))
    with db.write() as tx:
        assert bulk.checkpoint_driver_rows(tx, team.id, head) == 3
    with db.write() as tx:
        record_events(tx, drafts(team, 1), now=clock())
    with db.read() as tx:
        ((_, report),) = integrity.verify_workspaces(tx, slug=team.slug)
    assert report.ok, report.broken
    assert report.head.ws_ord == head + 4
    # A gap among the rows past the position given: no checkpoint, nothing written.
    with db.write() as tx:
        bulk.driver_insert(tx, team.id, _floor_rows(team.id, 3, clock(), is_pg=is_pg))
        tx.conn.execute(
            events.delete().where(events.c.workspace_id == team.id, events.c.ws_ord == head + 6)
        )
    with pytest.raises(ValueError, match="not one after another"), db.write() as tx:
        bulk.checkpoint_driver_rows(tx, team.id, head + 4)


@pytest.mark.parametrize("client", ["lean", "httpx"])
def test_the_live_streams_are_read_by_either_client(
    database_url: str, client: str, tmp_path: Path
) -> None:
    """``--stream-client``: every stream gets every probe with either reader, and the
    report says which read them and what this process's collector did meanwhile."""
    skip = [arg for part in ("reads", "writes", "export", "http") for arg in ("--skip", part)]
    result = runner.invoke(
        app,
        [
            "bench",
            "--events", "300",
            "--others-factor", "1",
            "--streams", "12",
            "--reps", "30",
            "--ingest-batches", "1",
            "--stream-client", client,
            "--database-url", database_url,
            "--json", str(tmp_path / "bench.json"),
            *skip,
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    sse = json.loads((tmp_path / "bench.json").read_text())["operations"]["sse_fanout"]
    assert sse["client"] == client
    assert sse["missed"] == 0
    assert sse["reps"] == 12 * 3
    assert sse["client_gc"] >= 0
    assert sse["client_gc_total_ms"] >= sse["client_gc_max_ms"] >= 0


def test_an_unknown_stream_client_is_refused() -> None:
    result = runner.invoke(app, ["bench", "--stream-client", "curl"])
    assert result.exit_code == 2
    assert "--stream-client: lean or httpx" in result.output


@pytest.mark.parametrize("client", ["lean", "httpx"])
def test_a_refused_stream_stops_the_measurement(database_url: str, client: str) -> None:
    """Streams the server refuses (here: no session) end the benchmark with the reason,
    at once, instead of leaving it waiting for their first message."""
    with server(database_url, workers=1) as (base, _):
        started = time.monotonic()
        with pytest.raises(RuntimeError) as refused:
            asyncio.run(_open_streams(base, {}, 3, client))
    assert "401" in str(refused.value)
    assert time.monotonic() - started < 30
