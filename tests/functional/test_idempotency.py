"""Idempotent ingestion, the reference semantics (issue 6, item 2).

A producer that retries ``POST /api/events`` with the same ``idempotencyKey`` and the same
payload gets the original answer back (the original events, with 200 instead of 201 as
PRODUCT.md fixes), however many retries race; the same key with another payload is
``422 idempotency_key_reused``; keys belong to a workspace; and a key is honoured for at
least 24 hours (in fact for as long as its event exists: nothing prunes events).
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from activityfeed.domain.workspaces import Role
from tests.factories import event_body, ingest, make_key, make_team
from tests.functional.feed_helpers import World, assert_error, iso, make_world


@pytest.fixture
def world(app, client, db, clock) -> World:
    return make_world(app, client, db, clock)


def _stored(world: World, key: str) -> list[Any]:
    """The rows of the team workspace that carry ``key``."""
    with world.db.read() as tx:
        return list(
            tx.conn.execute(
                text(
                    "SELECT id, workspace_id FROM events "
                    "WHERE workspace_id = :ws AND idempotency_key = :key"
                ),
                {"ws": world.team.id, "key": key},
            )
        )


def _event_count(world: World) -> int:
    with world.db.read() as tx:
        return int(
            tx.conn.execute(
                text(
                    "SELECT count(*) FROM events "
                    "WHERE workspace_id = :ws AND source_kind = 'api_key'"
                ),
                {"ws": world.team.id},
            ).scalar_one()
        )


def _race(app: Any, secret: str, bodies: list[Any]) -> list[Any]:
    """Send ``bodies`` at once, one thread and client each, released by one barrier."""
    barrier = threading.Barrier(len(bodies))
    results: list[Any] = [None] * len(bodies)

    def send(i: int) -> None:
        with TestClient(app, base_url="http://testserver") as client:
            barrier.wait()
            results[i] = ingest(client, secret, bodies[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# ---- the same key and payload: the original answer ---------------------------------------


def test_twenty_racing_retries_store_one_batch_and_get_one_answer(app, world):
    """20 identical batches at once: one is recorded (201), the 19 others wait for it and
    answer 200 with exactly its body; the workspace holds the batch once."""
    batch = {
        "events": [
            event_body(
                i,
                idempotencyKey=f"race-{i}",
                # Several keys, out of order: PostgreSQL's jsonb reorders them when stored.
                metadata={"zeta": i, "alpha": [1, 2.5, "x"], "mid": {"b": 1, "a": None}},
            )
            for i in range(3)
        ]
    }
    results = _race(app, world.secret, [batch] * 20)
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] * 19 + [201], [r.text for r in results if r.status_code >= 300]
    bodies = [r.json() for r in results]
    assert all(b == bodies[0] for b in bodies)
    assert [e["resourceId"] for e in bodies[0]["events"]] == ["run-0", "run-1", "run-2"]
    for i, event in enumerate(bodies[0]["events"]):
        assert [row.id for row in _stored(world, f"race-{i}")] == [event["id"]]
    assert _event_count(world) == 3
    assert world.viewer.activity()["total"] == 3


def test_racing_retries_with_different_payloads_store_one(app, world):
    """Racing requests that share a key but not a payload: exactly one is recorded, every
    other one is 422 ``idempotency_key_reused`` or a replay of the winner's own payload."""
    bodies = [event_body(i % 4, idempotencyKey="contested") for i in range(20)]
    results = _race(app, world.secret, bodies)
    winners = [i for i, r in enumerate(results) if r.status_code == 201]
    assert len(winners) == 1, [r.text for r in results]
    winner = results[winners[0]].json()["event"]
    for body, r in zip(bodies, results, strict=True):
        if r.status_code == 201:
            continue
        if body["resourceId"] == winner["resourceId"]:
            assert r.status_code == 200, r.text
            assert r.json() == {"event": winner}
        else:
            assert_error(r, 422, "idempotency_key_reused", "idempotencyKey")
    assert [row.id for row in _stored(world, "contested")] == [winner["id"]]
    assert _event_count(world) == 1


# ---- the same key with another payload ---------------------------------------------------


def test_any_changed_field_is_another_payload(world, clock):
    """Every field of the payload counts; the refusal stores nothing and leaves the key
    answering with the original."""
    original = event_body(
        1,
        idempotencyKey="k",
        description="d",
        metadata={"a": 1},
        occurredAt=iso(clock.current - timedelta(hours=1)),
    )
    first = ingest(world.client, world.secret, original)
    assert first.status_code == 201, first.text
    changes = {
        "resourceType": "model",
        "action": "failed",
        "resourceId": "run-2",
        "resourceName": "other",
        "description": "other",
        "metadata": {"a": 2},
        "occurredAt": iso(clock.current - timedelta(hours=2)),
    }
    for name, value in changes.items():
        response = ingest(world.client, world.secret, {**original, name: value})
        assert_error(response, 422, "idempotency_key_reused", "idempotencyKey", case=name)
    for name in ("description", "metadata", "occurredAt"):
        response = ingest(
            world.client, world.secret, {k: v for k, v in original.items() if k != name}
        )
        assert_error(response, 422, "idempotency_key_reused", "idempotencyKey", case=name)
    again = ingest(world.client, world.secret, original)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert _event_count(world) == 1


def test_the_payload_hash_never_covers_a_redacted_secret(app, world, db, clock):
    """The stored hash is over the metadata as stored: it cannot confirm a guessed
    secret offline. A retry that differs only in a redacted value is the same payload
    (it would store the same event) and gets the original back."""
    body = event_body(1, idempotencyKey="with-secret", metadata={"password": "hunter2"})
    first = ingest(world.client, world.secret, body)
    assert first.status_code == 201, first.text
    assert first.json()["event"]["metadata"] == {"password": "[redacted]"}
    other_secret = {**body, "metadata": {"password": "correct horse battery staple"}}
    again = ingest(world.client, world.secret, other_secret)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    redacted = ingest(world.client, world.secret, {**body, "metadata": {"password": "x"}})
    assert redacted.json() == first.json()
    # The same event with no secret in another workspace stores the very same hash.
    other_team = make_team(db, clock, world.owner, [], name="Elsewhere")
    plain = {**body, "metadata": {"password": "[redacted]"}}
    assert (
        ingest(world.client, make_key(db, clock, world.owner, other_team), plain).status_code == 201
    )
    with db.read() as tx:
        hashes = tx.conn.execute(
            text("SELECT DISTINCT payload_hash FROM events WHERE idempotency_key = 'with-secret'")
        ).all()
    assert len(hashes) == 1


# ---- keys belong to a workspace -----------------------------------------------------------


def test_the_same_key_in_two_workspaces_is_two_independent_batches(app, world, db, clock):
    """One key in two workspaces: two batches, each replayed on its own; a different
    payload under the key in the second workspace is no reuse."""
    other_team = make_team(db, clock, world.owner, [(world.member, Role.MEMBER)], name="Other")
    other_secret = make_key(db, clock, world.owner, other_team)
    batch = {"events": [event_body(1, idempotencyKey="shared"), event_body(2, idempotencyKey="s2")]}
    different = {"events": [event_body(7, idempotencyKey="shared", action="failed")]}
    first = ingest(world.client, world.secret, batch)
    second = ingest(world.client, other_secret, different)
    assert first.status_code == second.status_code == 201, (first.text, second.text)
    first_ids = {e["id"] for e in first.json()["events"]}
    assert second.json()["events"][0]["id"] not in first_ids
    assert second.json()["events"][0]["workspaceId"] == other_team.id
    # Each workspace replays its own original.
    assert ingest(world.client, world.secret, batch).json() == first.json()
    assert ingest(world.client, other_secret, different).json() == second.json()
    # Another key of the same workspace sees the same keys (they belong to the workspace).
    rotated = make_key(db, clock, world.owner, world.team)
    replay = ingest(world.client, rotated, batch)
    assert replay.status_code == 200, replay.text
    assert replay.json() == first.json()
    assert len(_stored(world, "shared")) == 1
    assert world.viewer.activity()["total"] == 2


# ---- kept at least 24 hours ---------------------------------------------------------------


def test_a_key_is_honoured_at_23h59m_and_long_after(world, clock):
    """Nothing prunes idempotency keys: they live on the event row, which is kept."""
    body = event_body(1, idempotencyKey="day-old", metadata={"n": 1})
    sent_at = clock.current
    first = ingest(world.client, world.secret, body)
    assert first.status_code == 201, first.text
    for delta in (
        timedelta(hours=23, minutes=59),
        timedelta(hours=24, seconds=1),
        timedelta(days=400),
    ):
        clock.current = sent_at + delta
        again = ingest(world.client, world.secret, body)
        assert again.status_code == 200, (delta, again.text)
        assert again.json() == first.json(), delta
        reused = ingest(world.client, world.secret, {**body, "action": "failed"})
        assert_error(reused, 422, "idempotency_key_reused", "idempotencyKey", case=delta)
    assert _event_count(world) == 1


def test_a_replay_is_answered_after_its_occurred_at_left_the_window(world, clock):
    """An event accepted near the 365-day limit is still replayed a day later: a retry
    gets the original, not a refusal of the (already stored) event."""
    oldest = clock.current - timedelta(days=365) + timedelta(minutes=30)
    body = event_body(1, idempotencyKey="backfill", occurredAt=iso(oldest))
    single = ingest(world.client, world.secret, body)
    assert single.status_code == 201, single.text
    batch = {"events": [event_body(2, idempotencyKey="backfill-2", occurredAt=iso(oldest))]}
    first_batch = ingest(world.client, world.secret, batch)
    assert first_batch.status_code == 201, first_batch.text
    clock.advance(hours=23, minutes=59)
    again = ingest(world.client, world.secret, body)
    assert again.status_code == 200, again.text
    assert again.json() == single.json()
    assert ingest(world.client, world.secret, batch).json() == first_batch.json()
    # A new event that old is still refused, and so is the old key with another payload.
    fresh = event_body(3, idempotencyKey="new", occurredAt=iso(oldest))
    assert_error(ingest(world.client, world.secret, fresh), 422, "invalid_request", "occurredAt")
    reused = {**body, "action": "failed"}
    assert_error(
        ingest(world.client, world.secret, reused), 422, "idempotency_key_reused", "idempotencyKey"
    )
    assert _event_count(world) == 2
