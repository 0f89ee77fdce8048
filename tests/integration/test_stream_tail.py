"""SQLite's stream tail reads only the rows that arrived since the last poll.

Every process with open streams polls it twenty times a second
(``stream_poll_seconds``), so a plan that walks an index of every event makes each
poll, and each request served beside it, slower as history grows.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from activityfeed.services.bench_history import ensure_world
from activityfeed.store import notify
from activityfeed.store.db import Database


def test_tail_wakes_exactly_the_workspaces_with_news(db: Database) -> None:
    """The wake-ups name each workspace with new events once; an idle poll names none."""
    world = ensure_world(db, events=200, others_factor=1, now=datetime.now(UTC))
    with db.read() as tx:
        event_seq, change_seq = notify.select_tail_start(tx)
        tail = notify.select_tail(tx, after_event_seq=event_seq, after_change_seq=change_seq)
    assert tail.wakes == frozenset()
    assert (tail.event_seq, tail.change_seq) == (event_seq, change_seq)
    with db.read() as tx:
        tail = notify.select_tail(tx, after_event_seq=0, after_change_seq=0)
    assert notify.Wake(world.team_id) in tail.wakes
    assert tail.event_seq == event_seq


@pytest.fixture
def sqlite_db(sqlite_template: Path, tmp_path: Path) -> Iterator[Database]:
    """SQLite only: PostgreSQL wakes streams by NOTIFY and never tails the tables."""
    path = tmp_path / "tail.db"
    shutil.copy(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    yield database
    database.dispose()


def test_tail_plan_reads_the_primary_key_range(sqlite_db: Database) -> None:
    db = sqlite_db
    ensure_world(db, events=300, others_factor=1, now=datetime.now(UTC))
    with db.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
    seen: list[tuple[str, Any]] = []

    def record(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> None:
        seen.append((statement, params))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        with db.read() as tx:
            notify.select_tail(tx, after_event_seq=10, after_change_seq=0)
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    selects = [(s, p) for s, p in seen if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 2
    with db.engine.connect() as conn:
        for statement, params in selects:
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).fetchall()
            plan = " ".join(str(row[-1]) for row in rows)
            assert "USING INTEGER PRIMARY KEY" in plan, plan
            assert "COVERING INDEX" not in plan, plan
