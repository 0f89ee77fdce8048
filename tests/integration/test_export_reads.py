"""The export's reads give the stored values as text (times, metadata) and the export
formats them without the column types: on SQLite and PostgreSQL, what it writes must be
what the column types and the feed's ``event_json`` give for the same rows."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from activityfeed.domain import chain
from activityfeed.domain.events import Action, Actor, EventDraft, ResourceType, Source, SourceKind
from activityfeed.domain.state import Watermarks
from activityfeed.domain.workspaces import Role
from activityfeed.services import export as export_service
from activityfeed.services import integrity
from activityfeed.services.events import event_json, record_events, rfc3339
from activityfeed.store import chain as chain_store
from activityfeed.store import exports as export_store
from activityfeed.store.db import Database
from activityfeed.store.events import to_event
from activityfeed.store.schema import events
from tests.factories import make_team, make_user

METADATA: tuple[dict[str, Any], ...] = (
    {"epochs": 30, "loss": 0.1, "big": 1e20, "tiny": 1e-7, "neg_zero": -0.0},
    {"nested": {"b": [1, 2.5, {"c": None}], "a": True}, "text": 'é ✓ \u2028 "q" 東京 😀'},
    {"huge": 10**30, "one": 1.0, "list": []},
    {},
)


def _draft(workspace_id: str, i: int, me: Actor, other: Actor, clock) -> EventDraft:
    private = i % 7 == 3
    return EventDraft(
        workspace_id=workspace_id,
        resource_type=ResourceType.API_KEY if private else ResourceType.TRAINING,
        action=Action.CREATED if private else Action.COMPLETED,
        resource_id=f"run-{i}",
        resource_name=f'run \u2013 {i} "x" \\ \'',
        actor=None if i % 5 == 1 else (other if i % 2 else me),
        source=Source(SourceKind.API_KEY, "afk_abc123") if i % 3 == 0 else Source(SourceKind.UI),
        metadata={"n": i, **METADATA[i % len(METADATA)]},
        # Reported late with a whole-second time, or recorded now (with microseconds).
        occurred_at=(clock() - timedelta(hours=1)).replace(microsecond=0) if i % 4 == 0 else None,
        idempotency_key=f"key-{i}" if i % 3 == 0 else None,
        payload_hash=("ab" * 32) if i % 3 == 0 else None,
    )


def _history(db: Database, clock) -> tuple[str, str, str]:
    """(viewer id, other member's id, team id): a team with both members' events, some of
    them the other member's private ones; times with and without microseconds."""
    me_user = make_user(db, clock)
    other_user = make_user(db, clock)
    team = make_team(db, clock, other_user, [(me_user, Role.MEMBER)], name="Reads")
    me = Actor(id=me_user.id, name=me_user.name, email=me_user.email)
    other = Actor(id=other_user.id, name=other_user.name, email=other_user.email)
    i = 0
    for size in (1, 5, 3, 12):
        clock.advance(seconds=1, microseconds=123457 * size)
        with db.write() as tx:
            record_events(
                tx, [_draft(team.id, i + k, me, other, clock) for k in range(size)], now=clock()
            )
        i += size
    clock.advance(seconds=1)
    return me_user.id, other_user.id, team.id


def test_export_rows_format_as_the_column_types_and_the_feed_do(db, clock) -> None:
    """Every events.jsonl line of a real history is the plain encoding, and reads back as
    ``event_json`` of the event loaded through the column types (times included)."""
    me, _, team = _history(db, clock)
    marks = Watermarks(seen_seq=0, archived_seq=0)
    lines = 0
    whole_seconds = with_micros = 0
    with db.read() as tx:
        for rows in export_store.iter_visible_by_arrival(
            tx, viewer_id=me, workspace_id=team, marks=marks, chunk=4
        ):
            for row in rows:
                stored = to_event(
                    tx.conn.execute(select(events).where(events.c.seq == row[0])).one()
                )
                line = export_service.event_line(row)
                assert line == export_service.reference_event_line(row)
                assert export_service.stored_time_rfc3339(row[13]) == rfc3339(stored.created_at)
                expected = event_json(stored, seen=False, archived=False)
                assert json.loads(line) == expected
                whole_seconds += stored.created_at.microsecond == 0
                with_micros += stored.created_at.microsecond != 0
                lines += 1
    # Private events are numbers 3, 10 and 17; mine (10) is read, the other member's not.
    assert lines == 21 - 2
    assert whole_seconds
    assert with_micros


def test_chain_rows_are_the_stored_values_and_lines_the_plain_records(db, clock) -> None:
    """``iter_chain_rows`` with ``chain_values`` gives exactly what ``iter_stored`` gives
    (so hidden events hash to their leaves), and every chain line is the plain record."""
    me, other, team = _history(db, clock)
    with db.read() as tx:
        stored = list(chain_store.iter_stored(tx, team))
        rows = [row for chunk in export_store.iter_chain_rows(tx, team, chunk=4) for row in chunk]
    assert len(rows) == len(stored) == 21
    leaves = 0
    for row, values in zip(rows, stored, strict=True):
        assert export_store.chain_values(row) == values
        for viewer in (me, other):
            for version in chain.VERSIONS:
                line = integrity.chain_line(team, viewer, row, version)
                plain = integrity.reference_chain_record(team, viewer, values, version)
                assert json.loads(line) == plain
                leaves += "leaf" in json.loads(line)
    # The member sees two hidden events, the owner one; each checked in both versions.
    assert leaves == (2 + 1) * len(chain.VERSIONS)
