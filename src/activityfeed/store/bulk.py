"""Bulk loading of event history (the benchmark's loader) and the bare-driver floor.

``append_events`` writes many rows of one workspace in one statement and keeps the
invariants ``store.events.insert_events`` keeps: ``seq`` increasing in arrival order,
``ws_ord`` dense per workspace in ``seq`` order, the search index and day counts
(``index_batch`` on SQLite; PostgreSQL's indexes and trigger), and the hash chain (one
checkpoint per call, ``store.chain``).
It skips what only matters for live traffic (no NOTIFY, no per-event ``Event`` objects).

The scratch table functions give the benchmark a copy of ``events`` (same columns and
indexes) to insert into with the bare DBAPI driver: the floor that ingestion through the
service is compared with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select, text

from activityfeed.domain import chain
from activityfeed.store import accounts as account_store
from activityfeed.store import chain as chain_store
from activityfeed.store import events as event_store
from activityfeed.store.db import Tx
from activityfeed.store.schema import events

SCRATCH = "bench_floor_events"
LOAD_CACHE_KB = 256 * 1024

#: Columns a bulk row carries (``seq`` and ``ws_ord`` are assigned here).
ROW_COLUMNS = tuple(c for c in event_store.INSERT_COLUMNS if c not in ("seq", "ws_ord"))


def _next_seqs(tx: Tx, n: int) -> list[int]:
    if tx.dialect == "postgresql":
        rows = tx.conn.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence('events', 'seq')) "
                "FROM generate_series(1, :n)"
            ),
            {"n": n},
        )
        return sorted(int(r[0]) for r in rows)
    # SQLite: one writer at a time (BEGIN IMMEDIATE), so max+1.. are ours until commit.
    top = int(tx.conn.execute(select(func.coalesce(func.max(events.c.seq), 0))).scalar_one())
    return list(range(top + 1, top + 1 + n))


def append_events(tx: Tx, workspace_id: str, rows: Sequence[dict[str, Any]]) -> int:
    """Append ``rows`` (dicts with ``ROW_COLUMNS``) to the workspace, in order.

    Takes the workspace's write lock like ingestion does, numbers the rows after the
    current head and inserts them with one executemany. Returns the new head ``ws_ord``.
    """
    account_store.lock_workspace(tx, workspace_id, exclusive=True)
    if tx.dialect == "sqlite":
        # The indexes of a long history do not fit SQLite's default 2 MB page cache;
        # a bigger one for this connection keeps their upper levels in memory.
        tx.conn.exec_driver_sql(f"PRAGMA cache_size = -{LOAD_CACHE_KB}")
    head = chain_store.select_head(tx, workspace_id)
    head_ord = head.ws_ord
    if not rows:
        return head_ord
    seqs = _next_seqs(tx, len(rows))
    out = []
    for i, (row, seq) in enumerate(zip(rows, seqs, strict=True), start=1):
        if row["workspace_id"] != workspace_id:
            raise ValueError("append_events takes the rows of one workspace")
        out.append({**row, "seq": seq, "ws_ord": head_ord + i})
    tx.conn.execute(insert(events), out)
    if tx.dialect == "sqlite":
        # What PostgreSQL's triggers do: the search index and the per-day counts.
        event_store.index_batch(tx, seqs[0], seqs[-1])
    # The batch's tamper-evidence checkpoint, as insert_events writes it.
    chain_store.append_checkpoint(tx, workspace_id, head, [chain.values_of(r) for r in out])
    return head_ord + len(rows)


def select_seq_at(tx: Tx, workspace_id: str, ws_ord: int) -> int | None:
    """The ``seq`` of the workspace's ``ws_ord``-th event (for resetting watermarks)."""
    value = tx.conn.execute(
        select(events.c.seq).where(events.c.workspace_id == workspace_id, events.c.ws_ord == ws_ord)
    ).scalar_one_or_none()
    return None if value is None else int(value)


def create_scratch(tx: Tx) -> str:
    """A fresh empty copy of ``events`` with the same indexes (and, on SQLite, a search
    table that ``driver_insert`` feeds per batch); returns its name. Drop it with
    ``drop_scratch``."""
    drop_scratch(tx)
    if tx.dialect == "postgresql":
        tx.conn.exec_driver_sql(f"CREATE TABLE {SCRATCH} (LIKE events INCLUDING ALL)")
        return SCRATCH
    ddl = tx.conn.exec_driver_sql(
        "SELECT type, sql FROM sqlite_master WHERE tbl_name = 'events' AND sql IS NOT NULL "
        "AND type IN ('table', 'index')"
    ).all()
    for kind, sql in sorted(ddl, key=lambda r: r[0] != "table"):
        sql = sql.replace('"events"', SCRATCH).replace("TABLE events", f"TABLE {SCRATCH}")
        sql = sql.replace("ON events", f"ON {SCRATCH}")
        if kind == "index":
            # Index names are global in SQLite: give the copies their own.
            head, _, rest = sql.partition(" ON ")
            name = head.split()[-1].strip('"')
            sql = f"{head.replace(name, 'bench_' + name)} ON {rest}"
        tx.conn.exec_driver_sql(sql)
    tx.conn.exec_driver_sql(
        f"CREATE VIRTUAL TABLE {SCRATCH}_fts USING fts5("
        "body, content='', tokenize='trigram case_sensitive 0')"
    )
    return SCRATCH


def drop_scratch(tx: Tx) -> None:
    if tx.dialect == "sqlite":
        tx.conn.exec_driver_sql(f"DROP TABLE IF EXISTS {SCRATCH}_fts")
    tx.conn.exec_driver_sql(f"DROP TABLE IF EXISTS {SCRATCH}")


def driver_insert(tx: Tx, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert plain tuples (``seq``, ``ws_ord``, then ``ROW_COLUMNS``; times as the
    driver takes them, metadata as JSON text) into the scratch table with the bare DBAPI
    cursor: ``executemany`` on SQLite, ``COPY`` on PostgreSQL."""
    names = ("seq", "ws_ord", *ROW_COLUMNS)
    raw = tx.conn.connection.driver_connection
    assert raw is not None
    cur = raw.cursor()
    try:
        if tx.dialect == "postgresql":
            with cur.copy(f"COPY {SCRATCH} ({', '.join(names)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" for _ in names)
            sql = f"INSERT INTO {SCRATCH} ({', '.join(names)}) VALUES ({marks})"  # noqa: S608
            cur.executemany(sql, rows)
            # The search index, fed per batch as ingestion does (store.events.index_batch).
            cur.execute(
                f"INSERT INTO {SCRATCH}_fts(rowid, body) SELECT seq, "  # noqa: S608
                "resource_name || ' ' || resource_type || ' ' || description "
                f"FROM {SCRATCH} WHERE seq BETWEEN ? AND ?",
                (rows[0][0], rows[-1][0]),
            )
    finally:
        cur.close()
