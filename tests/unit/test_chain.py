"""The canonical form covers every stored column, is stable across the two databases'
JSON round trips, and tells apart values that look alike."""

from __future__ import annotations

import dataclasses
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
        {"ws_ord": 4},
        {"payload_hash": "x"},
    ],
)
@pytest.mark.parametrize("version", sorted(chain.VERSIONS))
def test_values_that_look_alike_hash_apart(changes: dict[str, object], version: int) -> None:
    assert chain.leaf(_row(**changes), version) != chain.leaf(_row(), version)


def test_version_1_hashes_seq_and_version_2_does_not() -> None:
    """``seq`` is every workspace's counter: version 2 leaves it out, so an export need
    not give it."""
    assert chain.leaf(_row(seq=8), 1) != chain.leaf(_row(), 1)
    assert chain.leaf(_row(seq=8), 2) == chain.leaf(_row(), 2) == chain.leaf(_row(seq=None), 2)
    assert chain.VERSION == 2


def test_version_2_is_version_1_without_seq() -> None:
    """The same array, with the version number in front and ``seq`` taken out; and new
    checkpoints are of version 2."""
    one = json.loads(chain.canonical(_row(), 1))
    two = json.loads(chain.canonical(_row(), 2))
    assert one[:2] == [1, 7]
    assert two == [2, *one[2:]]
    assert chain.canonical(_row()) == chain.canonical(_row(), 2)
    assert chain.leaf(_row(), 1) != chain.leaf(_row(), 2)


def test_an_unknown_version_has_no_canonical_form() -> None:
    with pytest.raises(ValueError, match="version 3"):
        chain.canonical(_row(), 3)


def test_each_checkpoint_hashes_its_leaves_in_its_own_version() -> None:
    """A history of version-1 checkpoints followed by version-2 ones verifies; a leaf
    hashed in the other checkpoint's version does not; an unknown version is named."""
    rows = [_row(seq=10 + n, ws_ord=n, id=f"e{n}") for n in (1, 2, 3)]
    leaves = [chain.Leaf(ws_ord=n, seq=10 + n, values=rows[n - 1]) for n in (1, 2, 3)]
    first = chain.fold(chain.genesis("w1"), 1, 2, [chain.leaf(r, 1) for r in rows[:2]])
    second = chain.fold(first, 3, 3, [chain.leaf(rows[2], 2)])
    mixed = [chain.Checkpoint(1, 2, first.hex(), 1), chain.Checkpoint(3, 3, second.hex(), 2)]

    report = chain.check("w1", mixed, leaves)

    assert report.ok, report
    assert report.head == chain.Head(3, second.hex())
    swapped = [dataclasses.replace(mixed[0], version=2), mixed[1]]
    broken = chain.check("w1", swapped, leaves).broken
    assert broken == chain.Break(
        1,
        chain.BreakKind.CONTENT_MISMATCH,
        "the events at positions 1..2 do not match their checkpoint",
    )
    unknown = [mixed[0], dataclasses.replace(mixed[1], version=3)]
    broken = chain.check("w1", unknown, leaves).broken
    assert broken is not None
    assert (broken.ws_ord, broken.kind) == (3, chain.BreakKind.UNKNOWN_VERSION)


def test_a_checkpoint_chains_from_its_workspace() -> None:
    leaves = [chain.leaf(_row())]
    assert chain.fold(chain.genesis("w1"), 1, 1, leaves) != chain.fold(
        chain.genesis("w2"), 1, 1, leaves
    )
    assert chain.Head.parse(f"3:{'A' * 64}") == chain.Head(3, "a" * 64)
    with pytest.raises(ValueError, match="<ws_ord>:<64 hex digits>"):
        chain.Head.parse("3:abc")


def test_events_past_the_newest_checkpoint_are_named_by_their_positions() -> None:
    """A path that writes no checkpoint (the benchmark's floor) leaves a range of
    unchained events: the break names all of it, and whether any checkpoint came before."""
    rows = [_row(seq=10 + n, ws_ord=n, id=f"e{n}") for n in (1, 2, 3, 4)]
    leaves = [chain.Leaf(ws_ord=n, seq=10 + n, values=rows[n - 1]) for n in (1, 2, 3, 4)]
    first = chain.fold(chain.genesis("w1"), 1, 1, [chain.leaf(rows[0])])
    checkpoints = [chain.Checkpoint(1, 1, first.hex())]

    assert chain.check("w1", checkpoints, leaves).broken == chain.Break(
        2,
        chain.BreakKind.UNCHAINED_EVENT,
        "3 events at positions 2..4, after the newest checkpoint (it ends at 1)",
    )
    assert chain.check("w1", checkpoints, leaves[:2]).broken == chain.Break(
        2,
        chain.BreakKind.UNCHAINED_EVENT,
        "1 event at position 2, after the newest checkpoint (it ends at 1)",
    )
    assert chain.check("w1", [], leaves).broken == chain.Break(
        1,
        chain.BreakKind.UNCHAINED_EVENT,
        "4 events at positions 1..4, and the workspace has no checkpoint",
    )
