"""Bulk loading of event history (the benchmark's loader) and the bare-driver floor.

``append_events`` writes many rows of one workspace in one statement and keeps the
invariants ``store.events.insert_events`` keeps: ``seq`` increasing in arrival order,
``ws_ord`` dense per workspace in ``seq`` order, the search index and day counts
(``index_batch`` on SQLite; PostgreSQL's indexes and trigger), and the hash chain (one
checkpoint per call, ``store.chain``).
It skips what only matters for live traffic (no NOTIFY, no per-event ``Event`` objects).

``driver_insert`` does the same storage work with the bare DBAPI driver: the floor that
ingestion through the service is compared with. It writes no hash-chain checkpoint (see
its docstring); ``checkpoint_driver_rows`` writes it afterwards, outside the floor's
time, so that ``activityfeed verify`` finds the workspace whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import func, insert, select, text

from activityfeed.domain import chain
from activityfeed.store import accounts as account_store
from activityfeed.store import chain as chain_store
from activityfeed.store import events as event_store
from activityfeed.store.db import Database, Tx
from activityfeed.store.schema import events

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


def driver_insert(tx: Tx, workspace_id: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """The benchmark's floor: append ``rows`` (``ROW_COLUMNS`` tuples, times as the driver
    takes them, metadata as JSON text) to the workspace with the bare DBAPI cursor.

    The same storage work as ``store.events.insert_events``, in the same table with its
    indexes and triggers, and none of our Python: the next ``seq`` values and the head
    ``ws_ord``, then ``COPY`` on PostgreSQL, or on SQLite one ``executemany`` plus the two
    per-batch index statements. Nothing else may write the workspace meanwhile (the
    benchmark runs its floor alone).

    No hash-chain checkpoint: a checkpoint costs a leaf hash per event (its canonical
    JSON and a SHA-256, in Python), which is our work, and the service's side of the
    benchmark's ratio carries it; a checkpoint without them would be one ``verify``
    refutes. The benchmark writes the checkpoint afterwards, outside the floor's time
    (``checkpoint_driver_rows``); until then ``verify`` reports these rows as chained by
    nothing (``unchained_event``).
    """
    if not rows:
        return
    raw: Any = tx.conn.connection.driver_connection
    n = len(rows)
    cols = ", ".join(("seq", "ws_ord", *ROW_COLUMNS))
    cur = raw.cursor()
    try:
        if tx.dialect == "postgresql":
            cur.execute(
                "SELECT nextval(pg_get_serial_sequence('events', 'seq')) "
                "FROM generate_series(1, %s)",
                (n,),
            )
            seqs = sorted(int(r[0]) for r in cur.fetchall())
            head = _driver_head(cur, tx.dialect, workspace_id)
            with cur.copy(f"COPY events ({cols}) FROM STDIN") as cp:
                for i, (seq, row) in enumerate(zip(seqs, rows, strict=True), start=1):
                    cp.write_row((seq, head + i, *row))
            return
        cur.execute("SELECT coalesce(max(seq), 0) FROM events")
        top = int(cur.fetchone()[0])
        head = _driver_head(cur, tx.dialect, workspace_id)
        full = [(top + i, head + i, *row) for i, row in enumerate(rows, start=1)]
        marks = ", ".join("?" for _ in event_store.INSERT_COLUMNS)
        cur.executemany(f"INSERT INTO events ({cols}) VALUES ({marks})", full)  # noqa: S608
        bounds = {"lo": top + 1, "hi": top + n}
        cur.execute(event_store.FTS_BATCH_SQL, bounds)
        cur.execute(event_store.DAY_COUNTS_BATCH_SQL, bounds)
    finally:
        cur.close()


def checkpoint_driver_rows(tx: Tx, workspace_id: str, after_ord: int) -> int:
    """The checkpoint of what ``driver_insert`` appended past position ``after_ord`` (the
    newest position a checkpoint covered before it), hashed from the rows as stored and
    chained from the newest checkpoint, as ``insert_events`` would have written it: the
    workspace then passes ``verify`` again. Returns how many rows it covers. Takes the
    workspace's write lock, as every writer of its chain does; raises ``ValueError`` if
    the rows past ``after_ord`` are not positions ``after_ord + 1 …`` one after another
    (a checkpoint over them would vouch for a broken history)."""
    account_store.lock_workspace(tx, workspace_id, exclusive=True)
    head = chain_store.select_head(tx, workspace_id)
    rows = list(chain_store.iter_stored(tx, workspace_id, after_ord=after_ord))
    at = chain.FIELDS.index("ws_ord")
    if [int(r[at]) for r in rows] != list(range(after_ord + 1, after_ord + len(rows) + 1)):
        raise ValueError(f"the rows past position {after_ord} are not one after another")
    chain_store.append_checkpoint(tx, workspace_id, replace(head, ws_ord=after_ord), rows)
    return len(rows)


#: The floor's head read, in each driver's parameter style. By ``ws_ord``, as
#: ``store.events.HEAD`` reads it: one entry of ``ux_events_ord`` (by ``seq``, PostgreSQL
#: can walk the primary key back through other workspaces' events).
DRIVER_HEAD_SQL = {
    "postgresql": "SELECT coalesce(max(ws_ord), 0) FROM events WHERE workspace_id = %s",
    "sqlite": "SELECT coalesce(max(ws_ord), 0) FROM events WHERE workspace_id = ?",
}


def _driver_head(cur: Any, dialect: str, workspace_id: str) -> int:
    cur.execute(DRIVER_HEAD_SQL[dialect], (workspace_id,))
    return int(cur.fetchone()[0])


def settle(db: Database) -> None:
    """After a bulk load on PostgreSQL: ``VACUUM ANALYZE``, what autovacuum would do on
    a live database in its own time. Without statistics the planner guesses, and without
    the visibility map no index-only scan can skip the heap, so a benchmark measured
    right after loading would measure the loader's leftovers. SQLite: nothing (its
    plans here do not use statistics, and none are collected in production either)."""
    if db.dialect != "postgresql":
        return
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
