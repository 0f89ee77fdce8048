"""A batch of ingested events costs a constant number of statements, and search still
finds every event of it (SQLite feeds its trigram index once per batch, not per row)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from activityfeed.store.db import Database
from tests.factories import Browser, ingest, make_key, make_user


@contextmanager
def ingest_statements(db: Database) -> Iterator[list[str]]:
    """The statements run on the connection that inserted the events (the live stream's
    poller runs its own statements on other connections meanwhile)."""
    by_conn: dict[int, list[str]] = {}
    writer: list[int] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        by_conn.setdefault(id(conn), []).append(statement)
        # The writer allocates ``seq`` values: SQLite inserts with an executemany,
        # PostgreSQL takes them from the sequence (its rows go by COPY, unseen here).
        if statement.startswith("INSERT INTO events (") or "sequence('events'" in statement:
            writer.append(id(conn))

    out: list[str] = []
    event.listen(db.engine, "before_cursor_execute", before)
    try:
        yield out
    finally:
        event.remove(db.engine, "before_cursor_execute", before)
    assert len(writer) == 1, writer
    out.extend(by_conn[writer[0]])


def _batch(start: int, n: int, **extra: Any) -> dict[str, Any]:
    return {
        "events": [
            {
                "resourceType": "training",
                "action": "completed",
                "resourceId": f"run-{i}",
                "resourceName": f"batch-run-{i:05d}-zq",
                "description": f"Finished with marker qx{i:05d}w.",
                **{k: f"{v}-{i}" for k, v in extra.items()},
            }
            for i in range(start, start + n)
        ]
    }


def test_a_batch_costs_the_same_statements_at_any_size(app, db: Database, clock, client) -> None:
    user = make_user(db, clock)
    secret = make_key(db, clock, user)
    ingest(client, secret, _batch(0, 1))  # warm up: the key's first use, caches

    runs: list[list[str]] = []
    for n, start in ((2, 10), (1000, 100)):
        with ingest_statements(db) as statements:
            response = ingest(client, secret, _batch(start, n, idempotencyKey="k"))
        assert response.status_code == 201, response.text
        runs.append(statements)
        inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT")]
        # SQLite: one executemany of the events, one insert into the search index, one
        # into the day counts and the batch's hash-chain checkpoint (store/chain.py).
        # PostgreSQL: one COPY (not a cursor statement, so not listed; its triggers keep
        # the day counts) and the checkpoint.
        assert len(inserts) == (4 if db.dialect == "sqlite" else 1), statements
        assert sum("INTO event_checkpoints" in s for s in inserts) == 1, statements
    assert len(runs[0]) == len(runs[1]), runs


def test_search_finds_every_event_of_a_batch(app, db: Database, clock, client) -> None:
    user = make_user(db, clock)
    secret = make_key(db, clock, user)
    first = ingest(client, secret, _batch(0, 1000))
    assert first.status_code == 201, first.text
    second = ingest(client, secret, _batch(1000, 5))
    assert second.status_code == 201, second.text
    ids = {e["resourceName"]: e["id"] for e in first.json()["events"] + second.json()["events"]}
    browser = Browser(app, user.email)
    for i in (0, 1, 500, 999, 1000, 1004):
        by_name = browser.activity(search=f"RUN-{i:05d}-Z")["events"]
        assert [e["id"] for e in by_name] == [ids[f"batch-run-{i:05d}-zq"]]
        by_word = browser.activity(search=f"qx{i:05d}W")["events"]
        assert [e["id"] for e in by_word] == [ids[f"batch-run-{i:05d}-zq"]]
    everything = browser.activity(search="batch-run-", pageSize=100)
    assert everything["total"] == 1005
