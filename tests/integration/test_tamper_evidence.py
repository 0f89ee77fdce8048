"""Tamper evidence: any edit, deletion, reorder, insertion or truncation of stored events,
done with raw SQL behind the application's back, makes ``verify`` fail at (or just
before) the first tampered position, on SQLite and PostgreSQL; clean histories (bulk
loaded, concurrently recorded, with awkward metadata) verify with no false alarm.
Each history is either all of canonical version 2 (what is written now) or "mixed":
version-1 checkpoints, as the code before version 2 wrote them, then version-2 ones.

Each tampering runs in a transaction that is rolled back after ``verify`` has looked at
it, so Hypothesis can try many on the same history. ``ACTIVITYFEED_LONG_TAMPER=1`` runs
the clean-history check with 1,000,000 events instead of 100,000.
"""

# The tamperings build raw SQL from fixed lists of column names, on purpose.
# ruff: noqa: S608

from __future__ import annotations

import dataclasses
import json
import os
import threading
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from typer.testing import CliRunner

from activityfeed.cli.main import app as cli
from activityfeed.domain import chain
from activityfeed.domain.chain import BreakKind
from activityfeed.domain.events import Action, Actor, EventDraft, ResourceType, Source, SourceKind
from activityfeed.domain.ids import new_id
from activityfeed.domain.workspaces import Role
from activityfeed.services import export as export_service
from activityfeed.services import integrity
from activityfeed.services.accounts import normalise_email
from activityfeed.services.events import record_events
from activityfeed.store import bulk
from activityfeed.store import chain as chain_store
from activityfeed.store.db import Database, Tx
from tests.factories import make_team, make_user

#: Batch sizes of the history: single events and batches, so checkpoints cover 1..12.
BATCHES = (1, 3, 7, 1, 12, 5, 1, 10)
N = sum(BATCHES)
METADATA_SAMPLES: tuple[dict[str, Any], ...] = (
    {"epochs": 30, "loss": 0.1, "big": 1e20, "tiny": 1e-7, "neg_zero": -0.0},
    {"nested": {"b": [1, 2.5, {"c": None}], "a": True}, "text": 'é ✓ \u2028 "q"'},
    {"huge": 10**30, "float_huge": 1.5e300, "one": 1.0, "list": []},
    {},
)


@dataclass(frozen=True)
class History:
    workspace_id: str
    slug: str
    other_id: str
    #: (seq, ws_ord) of every event, by position.
    rows: list[tuple[int, int]]
    #: ws_ord of the last event of each checkpoint.
    boundaries: list[int]
    #: The last position covered by version-1 checkpoints (0: none).
    v1_until: int = 0


def _draft(workspace_id: str, i: int, owner: Actor) -> EventDraft:
    private = i % 9 == 4
    by_key = i % 3 == 0
    return EventDraft(
        workspace_id=workspace_id,
        resource_type=ResourceType.API_KEY if private else ResourceType.TRAINING,
        action=Action.CREATED if private else Action.COMPLETED,
        resource_id=f"run-{i}",
        resource_name=f"run number {i}",
        actor=None if i % 5 == 1 else owner,
        source=Source(SourceKind.API_KEY, "afk_abc123") if by_key else Source(SourceKind.UI),
        description=None if i % 2 else f"Described {i}",
        metadata={"n": i, **METADATA_SAMPLES[i % len(METADATA_SAMPLES)]},
        idempotency_key=f"key-{i}" if by_key else None,
        payload_hash=("ab" * 32) if by_key else None,
    )


#: In a mixed history, the batches recorded before version 2.
V1_BATCHES = 4


def rewrite_as_version_1(db: Database, workspace_id: str) -> int:
    """Rewrite every checkpoint of the workspace as the code before version 2 wrote it
    (leaves of canonical version 1, which hash ``seq``); the last position covered."""
    with db.write() as tx:
        stored = chain_store.iter_stored(tx, workspace_id)
        previous = chain.genesis(workspace_id)
        checkpoints = list(chain_store.iter_checkpoints(tx, workspace_id))
        for cp in checkpoints:
            assert cp.version == 2
            leaves = [chain.leaf(next(stored), 1) for _ in range(cp.first_ord, cp.last_ord + 1)]
            previous = chain.fold(previous, cp.first_ord, cp.last_ord, leaves)
            run(
                tx,
                "UPDATE event_checkpoints SET version = 1, digest = :d "
                "WHERE workspace_id = :w AND last_ord = :l",
                d=previous.hex(),
                w=workspace_id,
                l=cp.last_ord,
            )
    return checkpoints[-1].last_ord


@pytest.fixture(params=["v2", "mixed"])
def history(db: Database, clock, request: pytest.FixtureRequest) -> History:
    owner = make_user(db, clock)
    # A member, whose export holds the owner's private events as hashes only.
    member = make_user(db, clock, email="member@example.com")
    team = make_team(db, clock, owner, [(member, Role.MEMBER)], name="Chained")
    other = make_team(db, clock, owner, name="Elsewhere")
    actor = Actor(id=owner.id, name=owner.name, email=owner.email)
    i = 0
    v1_until = 0
    for b, size in enumerate(BATCHES):
        if request.param == "mixed" and b == V1_BATCHES:
            v1_until = rewrite_as_version_1(db, team.id)
        with db.write() as tx:
            drafts = [_draft(team.id, i + k, actor) for k in range(size)]
            record_events(tx, drafts, now=clock())
            # Its own idempotency keys: a row moved here by ``edit_field`` must not
            # collide with one of them (a unique index would refuse the move).
            elsewhere = _draft(other.id, i, actor)
            if elsewhere.idempotency_key is not None:
                elsewhere = dataclasses.replace(elsewhere, idempotency_key=f"other-{i}")
            record_events(tx, [elsewhere], now=clock())
        i += size
        clock.advance(seconds=1)
    with db.read() as tx:
        rows = [
            (int(r[0]), int(r[1]))
            for r in tx.conn.execute(
                text("SELECT seq, ws_ord FROM events WHERE workspace_id = :w ORDER BY ws_ord"),
                {"w": team.id},
            )
        ]
    bounds, total = [], 0
    for size in BATCHES:
        total += size
        bounds.append(total)
    assert [o for _, o in rows] == list(range(1, N + 1))
    with db.read() as tx:
        versions = [(cp.last_ord, cp.version) for cp in chain_store.iter_checkpoints(tx, team.id)]
    assert versions == [(b, 1 if b <= v1_until else 2) for b in bounds]
    return History(team.id, team.slug, other.id, rows, bounds, v1_until)


@contextmanager
def tampered(db: Database) -> Iterator[Tx]:
    """A write transaction for raw-SQL tampering that is always rolled back."""
    with db.engine.connect() as conn:
        if db.dialect == "sqlite":
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        trans = conn.begin()
        try:
            yield Tx(conn=conn, is_write=True)
        finally:
            trans.rollback()


def verify(tx: Tx, history: History, anchor: chain.Head | None = None) -> chain.Report:
    ((slug, report),) = integrity.verify_workspaces(tx, slug=history.slug, anchor=anchor)
    assert slug == history.slug
    return report


def run(tx: Tx, sql: str, **params: Any) -> None:
    tx.conn.execute(text(sql), params)


# ---- tamperings: each changes the stored events and returns the first position it
# touched (a break must be reported at or before it, or one after it for a reorder
# whose first row still looks in place) ------------------------------------------------

Draw = Callable[[st.SearchStrategy[Any]], Any]
NULLABLE = (
    "actor_id",
    "actor_name",
    "actor_email",
    "source_key_prefix",
    "private_to",
    "idempotency_key",
    "payload_hash",
)
TEXT = (
    "id",
    "resource_type",
    "action",
    "resource_id",
    "resource_name",
    "description",
    "source_kind",
)
FIELD_EDITS = (
    *TEXT,
    *NULLABLE,
    "created_at",
    "recorded_at",
    "metadata",
    "metadata_value",
    "seq",
    "ws_ord",
    "workspace_id",
    "null_to_empty",
)


def _pick(history: History, draw: Draw) -> tuple[int, int]:
    return history.rows[draw(st.integers(0, N - 1))]


def edit_field(tx: Tx, history: History, draw: Draw) -> int:
    seq, ord_ = _pick(history, draw)
    column = draw(st.sampled_from(FIELD_EDITS))
    where = " WHERE seq = :s"
    if column in TEXT:
        run(tx, f"UPDATE events SET {column} = {column} || 'x'" + where, s=seq)
    elif column in NULLABLE:
        run(
            tx,
            f"UPDATE events SET {column} = CASE WHEN {column} IS NULL THEN 'x' "
            f"ELSE NULL END" + where,
            s=seq,
        )
    elif column == "null_to_empty":
        # NULL and '' are different stored values (the export's public record shows both
        # as ""): the canonical form tells them apart.
        name = draw(st.sampled_from(NULLABLE))
        run(
            tx,
            f"UPDATE events SET {name} = CASE WHEN {name} IS NULL THEN '' ELSE NULL END" + where,
            s=seq,
        )
    elif column in ("created_at", "recorded_at"):
        # One microsecond later.
        if tx.dialect == "postgresql":
            run(
                tx,
                f"UPDATE events SET {column} = {column} + interval '1 microsecond'" + where,
                s=seq,
            )
        else:
            run(
                tx,
                f"UPDATE events SET {column} = substr({column}, 1, 25) || "
                f"CASE substr({column}, 26, 1) WHEN '0' THEN '1' ELSE '0' END" + where,
                s=seq,
            )
    elif column == "metadata":
        if tx.dialect == "postgresql":
            run(
                tx,
                "UPDATE events SET metadata = metadata || '{\"extra\": 1}'::jsonb" + where,
                s=seq,
            )
        else:
            run(tx, "UPDATE events SET metadata = json_set(metadata, '$.extra', 1)" + where, s=seq)
    elif column == "metadata_value":
        if tx.dialect == "postgresql":
            run(
                tx,
                "UPDATE events SET metadata = jsonb_set(metadata, '{n}', "
                "to_jsonb((metadata->>'n')::int + 1))" + where,
                s=seq,
            )
        else:
            run(
                tx,
                "UPDATE events SET metadata = json_set(metadata, '$.n', "
                "json_extract(metadata, '$.n') + 1)" + where,
                s=seq,
            )
    elif column == "seq":
        # Version 2 does not hash seq; the order check catches a seq that leaves its
        # place (test_a_seq_edit_that_keeps_the_order_shows_only_under_version_1): so
        # the last event's goes below its predecessor's and any other's above its
        # successor's.
        run(
            tx, f"UPDATE events SET seq = {'-seq' if ord_ == N else 'seq + 1000000'}" + where, s=seq
        )
    elif column == "ws_ord":
        run(tx, "UPDATE events SET ws_ord = ws_ord + 1000000" + where, s=seq)
    elif column == "workspace_id":
        # The other workspace has its own ws_ord 1..n: a moved row takes a free position
        # there (the unique (workspace_id, ws_ord) index would refuse a collision).
        run(
            tx,
            "UPDATE events SET workspace_id = :w, ws_ord = ws_ord + 1000000" + where,
            s=seq,
            w=history.other_id,
        )
    return ord_


def delete_event(tx: Tx, history: History, draw: Draw) -> int:
    seq, ord_ = _pick(history, draw)
    run(tx, "DELETE FROM events WHERE seq = :s", s=seq)
    return ord_


def _two(history: History, draw: Draw) -> tuple[tuple[int, int], tuple[int, int]]:
    a = draw(st.integers(0, N - 2))
    b = draw(st.integers(a + 1, N - 1))
    return history.rows[a], history.rows[b]


def swap_positions(tx: Tx, history: History, draw: Draw) -> int:
    (seq_a, ord_a), (seq_b, ord_b) = _two(history, draw)
    run(tx, "UPDATE events SET ws_ord = -1 WHERE seq = :s", s=seq_a)
    run(tx, "UPDATE events SET ws_ord = :o WHERE seq = :s", s=seq_b, o=ord_a)
    run(tx, "UPDATE events SET ws_ord = :o WHERE seq = :s", s=seq_a, o=ord_b)
    return ord_a


def swap_seqs(tx: Tx, history: History, draw: Draw) -> int:
    (seq_a, ord_a), (seq_b, _) = _two(history, draw)
    run(tx, "UPDATE events SET seq = -1 WHERE seq = :s", s=seq_a)
    run(tx, "UPDATE events SET seq = :a WHERE seq = :b", a=seq_a, b=seq_b)
    run(tx, "UPDATE events SET seq = :b WHERE seq = -1", b=seq_b)
    return ord_a


def swap_contents(tx: Tx, history: History, draw: Draw) -> int:
    (seq_a, ord_a), (seq_b, _) = _two(history, draw)
    columns = ("resource_id", "resource_name", "description")
    picked = draw(st.lists(st.sampled_from(columns), min_size=1, unique=True))
    for column in picked:
        values = {
            s: tx.conn.execute(
                text(f"SELECT {column} FROM events WHERE seq = :s"), {"s": s}
            ).scalar_one()
            for s in (seq_a, seq_b)
        }
        run(tx, f"UPDATE events SET {column} = :v WHERE seq = :s", v=values[seq_b], s=seq_a)
        run(tx, f"UPDATE events SET {column} = :v WHERE seq = :s", v=values[seq_a], s=seq_b)
    return ord_a


_COPY = ", ".join(chain.FIELDS[4:])
# A copy cannot reuse the idempotency key (a unique index).
_COPIED = _COPY.replace("idempotency_key", "NULL")


def _copy_at(tx: Tx, history: History, source_seq: int, ws_ord: int) -> None:
    top = tx.conn.execute(text("SELECT max(seq) FROM events")).scalar_one()
    run(
        tx,
        f"INSERT INTO events (seq, id, workspace_id, ws_ord, {_COPY}) "
        f"SELECT :seq, :id, workspace_id, :o, {_COPIED} FROM events WHERE seq = :src",
        seq=int(top) + 1,
        id=new_id(),
        o=ws_ord,
        src=source_seq,
    )


def insert_after_head(tx: Tx, history: History, draw: Draw) -> int:
    seq, _ = _pick(history, draw)
    _copy_at(tx, history, seq, N + 1)
    return N + 1


def insert_in_middle(tx: Tx, history: History, draw: Draw) -> int:
    seq, ord_ = _pick(history, draw)
    # Make room (in two steps: the unique index is checked row by row).
    run(
        tx,
        "UPDATE events SET ws_ord = ws_ord + 1000000 WHERE workspace_id = :w AND ws_ord >= :o",
        w=history.workspace_id,
        o=ord_,
    )
    run(
        tx,
        "UPDATE events SET ws_ord = ws_ord - 999999 WHERE workspace_id = :w AND ws_ord >= :o",
        w=history.workspace_id,
        o=ord_,
    )
    _copy_at(tx, history, seq, ord_)
    return ord_


def insert_before_start(tx: Tx, history: History, draw: Draw) -> int:
    seq, _ = _pick(history, draw)
    _copy_at(tx, history, seq, draw(st.integers(-3, 0)))
    return 1


def truncate_tail(tx: Tx, history: History, draw: Draw) -> int:
    keep = draw(st.integers(0, N - 1))
    run(
        tx,
        "DELETE FROM events WHERE workspace_id = :w AND ws_ord > :k",
        w=history.workspace_id,
        k=keep,
    )
    return keep + 1


def truncate_head(tx: Tx, history: History, draw: Draw) -> int:
    cut = draw(st.integers(1, N))
    run(
        tx,
        "DELETE FROM events WHERE workspace_id = :w AND ws_ord <= :k",
        w=history.workspace_id,
        k=cut,
    )
    return 1


def truncate_head_and_checkpoints(tx: Tx, history: History, draw: Draw) -> int:
    # Not all of them: a workspace emptied of events and checkpoints alike is a
    # consistent (empty) chain, which only a kept head tells apart.
    cut = draw(st.sampled_from(history.boundaries[:-1]))
    run(
        tx,
        "DELETE FROM events WHERE workspace_id = :w AND ws_ord <= :k",
        w=history.workspace_id,
        k=cut,
    )
    run(
        tx,
        "DELETE FROM event_checkpoints WHERE workspace_id = :w AND last_ord <= :k",
        w=history.workspace_id,
        k=cut,
    )
    return 1


def edit_checkpoint(tx: Tx, history: History, draw: Draw) -> int:
    last = draw(st.sampled_from(history.boundaries))
    first = tx.conn.execute(
        text("SELECT first_ord FROM event_checkpoints WHERE workspace_id = :w AND last_ord = :l"),
        {"w": history.workspace_id, "l": last},
    ).scalar_one()
    if draw(st.booleans()):
        run(
            tx,
            "DELETE FROM event_checkpoints WHERE workspace_id = :w AND last_ord = :l",
            w=history.workspace_id,
            l=last,
        )
    else:
        run(
            tx,
            "UPDATE event_checkpoints SET digest = :d WHERE workspace_id = :w AND last_ord = :l",
            d="0" * 64,
            w=history.workspace_id,
            l=last,
        )
    return int(first)


TAMPERINGS: dict[str, tuple[Callable[[Tx, History, Draw], int], set[BreakKind]]] = {
    "edit_field": (
        edit_field,
        {BreakKind.CONTENT_MISMATCH, BreakKind.MISSING_EVENT, BreakKind.OUT_OF_ORDER},
    ),
    "delete_event": (delete_event, {BreakKind.MISSING_EVENT}),
    "swap_positions": (swap_positions, {BreakKind.OUT_OF_ORDER, BreakKind.CONTENT_MISMATCH}),
    "swap_seqs": (swap_seqs, {BreakKind.OUT_OF_ORDER, BreakKind.CONTENT_MISMATCH}),
    "swap_contents": (swap_contents, {BreakKind.CONTENT_MISMATCH}),
    "insert_after_head": (insert_after_head, {BreakKind.UNCHAINED_EVENT}),
    "insert_in_middle": (insert_in_middle, {BreakKind.CONTENT_MISMATCH, BreakKind.OUT_OF_ORDER}),
    "insert_before_start": (insert_before_start, {BreakKind.UNEXPECTED_EVENT}),
    "truncate_tail": (truncate_tail, {BreakKind.MISSING_EVENT}),
    "truncate_head": (truncate_head, {BreakKind.MISSING_EVENT}),
    "truncate_head_and_checkpoints": (
        truncate_head_and_checkpoints,
        {BreakKind.MISSING_CHECKPOINT},
    ),
    "edit_checkpoint": (
        edit_checkpoint,
        {BreakKind.MISSING_CHECKPOINT, BreakKind.CONTENT_MISMATCH, BreakKind.UNCHAINED_EVENT},
    ),
}


def test_a_clean_history_verifies_and_prints_its_head(db, history, database_url) -> None:
    """No false alarm on batches and single events with awkward metadata (JSONB turns
    1e20 into an integer and -0.0 into 0, and the canonical form agrees)."""
    with db.read() as tx:
        report = verify(tx, history)
    assert report.ok, report
    assert report.events == N
    assert report.head.ws_ord == N

    result = CliRunner().invoke(
        cli, ["verify", "--workspace", history.slug, "--database-url", database_url]
    )
    assert result.exit_code == 0, result.output
    assert f"ok      {history.slug}  {N} events  head {report.head}" in result.output
    everything = CliRunner().invoke(cli, ["verify", "--database-url", database_url])
    assert everything.exit_code == 0, everything.output
    # The team, the other one, and the two people's personal workspaces.
    assert everything.output.count("ok ") == 4


@pytest.mark.parametrize("name", sorted(TAMPERINGS))
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_tampering_is_detected_at_its_position(db, history, name, data) -> None:
    tamper, kinds = TAMPERINGS[name]
    with tampered(db) as tx:
        first = tamper(tx, history, data.draw)
        report = verify(tx, history)
    assert report.broken is not None, name
    assert report.broken.kind in kinds, report.broken
    # At the tampered position, or at the start of the checkpoint that covers it (one
    # later for a reorder whose first row still hashes in place and is caught by order).
    assert report.broken.ws_ord <= first + 1, (report.broken, first)


def test_cutting_events_and_their_checkpoints_needs_a_kept_head(db, history) -> None:
    """The limit: deleting the newest events *and* their checkpoints leaves a shorter,
    consistent chain. A head kept elsewhere catches it."""
    with db.read() as tx:
        kept = verify(tx, history).head
    cut = history.boundaries[-3]
    with tampered(db) as tx:
        run(
            tx,
            "DELETE FROM events WHERE workspace_id = :w AND ws_ord > :k",
            w=history.workspace_id,
            k=cut,
        )
        run(
            tx,
            "DELETE FROM event_checkpoints WHERE workspace_id = :w AND last_ord > :k",
            w=history.workspace_id,
            k=cut,
        )
        assert verify(tx, history).ok
        report = verify(tx, history, anchor=kept)
    assert report.broken is not None
    assert report.broken.kind is BreakKind.ANCHOR_MISMATCH
    assert report.broken.ws_ord == N


def test_the_command_names_the_first_break_and_fails(db, history, database_url) -> None:
    seq, ord_ = history.rows[17]
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM events WHERE seq = :s"), {"s": seq})
    result = CliRunner().invoke(
        cli, ["verify", "--workspace", history.slug, "--database-url", database_url]
    )
    assert result.exit_code == 1, result.output
    assert f"BROKEN  {history.slug}  at position {ord_}: missing_event" in result.output


def test_events_recorded_by_concurrent_writers_verify(db, clock, history) -> None:
    """Writers of one workspace are serialised by its lock; the chain adds no lost link."""
    owner = Actor(id="u_x", name="X", email="x@example.com")
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for round_ in range(6):
                with db.write() as tx:
                    size = 1 + (k + round_) % 4
                    drafts = [
                        _draft(history.workspace_id, 1000 * (k + 1) + 10 * round_ + j, owner)
                        for j in range(size)
                    ]
                    record_events(tx, drafts, now=clock())
        except BaseException as exc:  # Reported by the main thread.
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with db.read() as tx:
        report = verify(tx, history)
    assert report.ok, report
    assert report.events == N + sum(1 + (k + r) % 4 for k in range(4) for r in range(6))


def _bulk_rows(workspace_id: str, start: int, n: int, clock) -> list[dict[str, Any]]:
    at = clock() - timedelta(days=1)
    return [
        {
            "id": new_id(),
            "workspace_id": workspace_id,
            "resource_type": "training",
            "action": "completed",
            "resource_id": f"run-{i}",
            "resource_name": f"bulk run {i}",
            "description": f"Completed training bulk run {i}",
            "actor_id": None,
            "actor_name": None,
            "actor_email": None,
            "source_kind": "api_key",
            "source_key_prefix": "afk_bulk00",
            "created_at": at + timedelta(seconds=i),
            "recorded_at": at + timedelta(seconds=i),
            "metadata": {"i": i, "loss": i / 7, "big": float(i) * 1e18},
            "private_to": None,
            "idempotency_key": None,
            "payload_hash": None,
        }
        for i in range(start, start + n)
    ]


@pytest.mark.slow
def test_a_bulk_loaded_history_verifies_with_no_false_alarm(db, clock, tmp_path: Path) -> None:
    """100,000 events loaded as the benchmark loads them (1,000,000 with
    ``ACTIVITYFEED_LONG_TAMPER=1``), then one edited: detected at its position (an early
    one, so the second check stops soon)."""
    total = 1_000_000 if os.environ.get("ACTIVITYFEED_LONG_TAMPER") == "1" else 100_000
    owner = make_user(db, clock)
    team = make_team(db, clock, owner, name="Bulk chained")
    batch = 10_000
    for start in range(0, total, batch):
        with db.write() as tx:
            bulk.append_events(tx, team.id, _bulk_rows(team.id, start, batch, clock))
    with db.read() as tx:
        ((_, report),) = integrity.verify_workspaces(tx, slug=team.slug)
    assert report.ok, report
    assert report.events == total
    with tampered(db) as tx:
        run(
            tx,
            "UPDATE events SET description = description || '.' "
            "WHERE workspace_id = :w AND ws_ord = :o",
            w=team.id,
            o=12_345,
        )
        ((_, broken),) = integrity.verify_workspaces(tx, slug=team.slug)
    assert broken.broken is not None
    assert broken.broken.kind is BreakKind.CONTENT_MISMATCH
    assert broken.broken.ws_ord == (12_345 - 1) // batch * batch + 1


def _export(db: Database, clock, path: Path) -> None:
    with db.read() as tx:
        user = export_service.find_user(tx, normalise_email("member@example.com"))
        path.write_bytes(b"".join(export_service.export_archive(tx, user_id=user.id, now=clock())))


def _rewrite(source: Path, target: Path, name: str, edit: Callable[[list[str]], list[str]]) -> None:
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for member in zin.namelist():
            data = zin.read(member)
            if member == name:
                # Split on "\n" only: a line may hold U+2028, which splitlines() splits on.
                lines = [line + "\n" for line in data.decode().split("\n")[:-1]]
                data = "".join(edit(lines)).encode()
            zout.writestr(member, data)


def _team_lines(lines: list[str], history: History) -> list[int]:
    return [
        i for i, line in enumerate(lines) if json.loads(line)["workspaceId"] == history.workspace_id
    ]


def test_an_export_verifies_offline_and_shows_edits(db, clock, history, tmp_path: Path) -> None:
    """The export of a member (who sees the owner's private events only as hashes)
    verifies with no database; an edited, dropped or reordered line in it does not."""
    original = tmp_path / "member.zip"
    _export(db, clock, original)
    result = CliRunner().invoke(cli, ["verify", "--export", str(original)])
    assert result.exit_code == 0, result.output
    assert f"ok      {history.slug}  {N} events" in result.output
    with db.read() as tx:
        head = verify(tx, history).head
    assert f"head {head}" in result.output
    anchored = CliRunner().invoke(
        cli,
        [
            "verify",
            "--export",
            str(original),
            "--workspace",
            history.slug,
            "--expect-head",
            str(head),
        ],
    )
    assert anchored.exit_code == 0, anchored.output

    def edit(lines: list[str]) -> list[str]:
        i = _team_lines(lines, history)[5]
        record = json.loads(lines[i])
        record["metadata"]["n"] = -1
        lines[i] = json.dumps(record) + "\n"
        return lines

    def drop(lines: list[str]) -> list[str]:
        del lines[_team_lines(lines, history)[7]]
        return lines

    def swap(lines: list[str]) -> list[str]:
        i, j = _team_lines(lines, history)[2:4]
        lines[i], lines[j] = lines[j], lines[i]
        return lines

    for name, change in (
        ("events.jsonl", edit),
        ("events.jsonl", drop),
        ("events.jsonl", swap),
        ("chain.jsonl", drop),
    ):
        changed = tmp_path / "changed.zip"
        _rewrite(original, changed, name, change)
        reports = dict(integrity.verify_export(changed))
        assert reports[history.slug].broken is not None, (name, change)
        result = CliRunner().invoke(cli, ["verify", "--export", str(changed)])
        assert result.exit_code == 1, result.output
        assert f"BROKEN  {history.slug}  at position" in result.output


def _covering(history: History, position: int) -> int:
    """The first position of the checkpoint that covers ``position``."""
    return max([0, *(b for b in history.boundaries if b < position)]) + 1


def test_an_edited_field_is_a_content_mismatch_in_either_version(db, history) -> None:
    """An edit of the newest event (under a version-2 checkpoint) and, in a mixed
    history, of the first (under a version-1 one) breaks its own checkpoint."""
    positions = [N] + ([1] if history.v1_until else [])
    for position in positions:
        seq, _ = history.rows[position - 1]
        with tampered(db) as tx:
            run(tx, "UPDATE events SET resource_name = resource_name || '!' WHERE seq = :s", s=seq)
            report = verify(tx, history)
        assert report.broken is not None
        assert report.broken.kind is BreakKind.CONTENT_MISMATCH, report.broken
        assert report.broken.ws_ord == _covering(history, position)


def test_a_seq_edit_that_keeps_the_order_shows_only_under_version_1(db, history) -> None:
    """Version 2 does not hash ``seq`` (every workspace's counter, which an export must
    not give): an edit of it that keeps the workspace's order is seen only where a
    version-1 checkpoint covers the event. One that changes the order is ``out_of_order``
    in either version (the tampering ``edit_field``)."""
    seq, _ = history.rows[0]
    with tampered(db) as tx:
        run(tx, "UPDATE events SET seq = -seq WHERE seq = :s", s=seq)
        report = verify(tx, history)
    if history.v1_until:
        assert report.broken is not None
        assert (report.broken.ws_ord, report.broken.kind) == (1, BreakKind.CONTENT_MISMATCH)
    else:
        assert report.ok, report


def test_an_export_gives_seq_only_under_version_1_checkpoints(
    db, clock, history, tmp_path: Path
) -> None:
    """A line of chain.jsonl carries the global ``seq`` only where a version-1 leaf
    needs it; dropping it there, or editing a version-2 event in events.jsonl, breaks the
    export's check at the covering checkpoint."""
    original = tmp_path / "member.zip"
    _export(db, clock, original)
    with zipfile.ZipFile(original) as zf:
        lines = [json.loads(line) for line in zf.read("chain.jsonl").decode().split("\n")[:-1]]
    visible = [c for c in lines if c["workspaceId"] == history.workspace_id and "id" in c]
    assert visible
    for record in visible:
        assert ("seq" in record) == (record["wsOrd"] <= history.v1_until), record
    versions = {
        c["checkpoint"]["lastOrd"]: c["checkpoint"]["version"]
        for c in lines
        if c["workspaceId"] == history.workspace_id and "checkpoint" in c
    }
    assert versions == {b: 1 if b <= history.v1_until else 2 for b in history.boundaries}
    assert dict(integrity.verify_export(original))[history.slug].ok

    newest = next(c["id"] for c in reversed(visible))
    newest_ord = next(c["wsOrd"] for c in reversed(visible))

    def edit_newest(lines: list[str]) -> list[str]:
        for i, line in enumerate(lines):
            record = json.loads(line)
            if record["id"] == newest:
                record["resourceName"] += "!"
                lines[i] = json.dumps(record) + "\n"
        return lines

    def drop_seq(lines: list[str]) -> list[str]:
        for i, line in enumerate(lines):
            record = json.loads(line)
            if record.pop("seq", None) is not None:
                lines[i] = json.dumps(record) + "\n"
                break
        return lines

    changes = [("events.jsonl", edit_newest, _covering(history, newest_ord))]
    if history.v1_until:
        first = visible[0]["wsOrd"]
        changes.append(("chain.jsonl", drop_seq, _covering(history, first)))
    for name, change, position in changes:
        changed = tmp_path / "changed.zip"
        _rewrite(original, changed, name, change)
        broken = dict(integrity.verify_export(changed))[history.slug].broken
        assert broken is not None, name
        assert (broken.ws_ord, broken.kind) == (position, BreakKind.CONTENT_MISMATCH)


def test_review_a_flipped_checkpoint_version_is_a_content_mismatch(db, history) -> None:
    """Review: the version is not folded into the digest, but every leaf starts with it,
    so flipping a checkpoint's stored version 1<->2 still breaks at that checkpoint."""
    with db.read() as tx:
        cps = list(chain_store.iter_checkpoints(tx, history.workspace_id))
    for cp in cps:
        with tampered(db) as tx:
            run(
                tx,
                "UPDATE event_checkpoints SET version = :v WHERE workspace_id = :w "
                "AND last_ord = :l",
                v=3 - cp.version,
                w=history.workspace_id,
                l=cp.last_ord,
            )
            report = verify(tx, history)
        assert report.broken is not None
        assert report.broken.kind == BreakKind.CONTENT_MISMATCH
        assert report.broken.ws_ord == cp.first_ord
