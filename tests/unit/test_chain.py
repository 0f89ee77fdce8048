"""The canonical form covers every stored column, is stable across the two databases'
JSON round trips, and tells apart values that look alike."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from activityfeed.domain import chain
from activityfeed.store.schema import events

AT = datetime(2026, 11, 26, 9, 15, 2, 123456, tzinfo=UTC)


def _row(**changes: object) -> tuple[object, ...]:
    values: dict[str, object] = dict.fromkeys(chain.FIELDS)
    values |= {
        "seq": 7,
        "id": "e1",
        "workspace_id": "w1",
        "ws_ord": 3,
        "resource_type": "training",
        "action": "completed",
        "resource_id": "r",
        "resource_name": "run",
        "description": "Completed",
        "source_kind": "ui",
        "created_at": AT,
        "recorded_at": AT,
        "metadata": {"b": 1, "a": [1.5, None]},
    }
    values |= changes
    return chain.values_of(values)


def test_every_stored_column_is_in_the_canonical_form() -> None:
    """A new column of ``events`` must join the form (in a new version) or be excluded
    here on purpose: otherwise it could be edited unnoticed."""
    assert set(chain.FIELDS) == {c.name for c in events.c}


def test_a_json_round_trip_through_either_database_keeps_the_leaf() -> None:
    metadata = {"z": 1e20, "neg": -0.0, "one": 1.0, "f": 0.1, "huge": 1.5e300, "n": {"y": 2}}
    # What JSONB gives back: integral numbers as ints, keys reordered.
    jsonb = {"f": 0.1, "n": {"y": 2}, "z": 10**20, "one": 1, "neg": 0, "huge": 15 * 10**299}
    sqlite = json.loads(json.dumps(metadata))
    assert chain.leaf(_row(metadata=metadata)) == chain.leaf(_row(metadata=jsonb))
    assert chain.leaf(_row(metadata=metadata)) == chain.leaf(_row(metadata=sqlite))


def test_one_instant_in_any_offset_is_one_form() -> None:
    paris = AT.astimezone(timezone(timedelta(hours=1)))
    assert chain.canonical(_row(created_at=paris)) == chain.canonical(_row())
    with pytest.raises(ValueError, match="timezone-aware"):
        chain.canonical(_row(created_at=AT.replace(tzinfo=None)))


@pytest.mark.parametrize(
    "changes",
    [
        {"actor_name": ""},
        {"metadata": {"b": "1", "a": [1.5, None]}},
        {"metadata": {"b": 1, "a": [None, 1.5]}},
        {"created_at": AT + timedelta(microseconds=1)},
        {"seq": 8},
        {"ws_ord": 4},
        {"payload_hash": "x"},
    ],
)
def test_values_that_look_alike_hash_apart(changes: dict[str, object]) -> None:
    assert chain.leaf(_row(**changes)) != chain.leaf(_row())


def test_a_checkpoint_chains_from_its_workspace() -> None:
    leaves = [chain.leaf(_row())]
    assert chain.fold(chain.genesis("w1"), 1, 1, leaves) != chain.fold(
        chain.genesis("w2"), 1, 1, leaves
    )
    assert chain.Head.parse(f"3:{'A' * 64}") == chain.Head(3, "a" * 64)
    with pytest.raises(ValueError, match="<ws_ord>:<64 hex digits>"):
        chain.Head.parse("3:abc")
