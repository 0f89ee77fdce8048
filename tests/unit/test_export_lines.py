"""The export spells its lines directly (no dict, no encoder call, times sliced from
the store's text): each fast form must equal the plain form it replaced, byte for byte,
for every kind of value a row can hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy.dialects import sqlite

from activityfeed.domain import chain
from activityfeed.services import export as export_service
from activityfeed.services import integrity
from activityfeed.services.events import rfc3339
from activityfeed.store import exports as export_store
from activityfeed.store.schema import events

MOMENTS = [
    datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=UTC),
    datetime(2026, 11, 26, 9, 15, 2, 123450, tzinfo=UTC),
    datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5))),
    datetime(1999, 2, 28, 0, 0, 0, 100000, tzinfo=timezone(timedelta(hours=9, minutes=30))),
]


def _sqlite_text(moment: datetime) -> str:
    """What ``schema.UTCDateTime`` stores on SQLite (the column type's own processing)."""
    dialect = sqlite.dialect()
    column_type = events.c.created_at.type
    processor = column_type.dialect_impl(dialect).bind_processor(dialect)
    assert processor is not None
    text = processor(moment)
    assert isinstance(text, str)
    return text


@pytest.mark.parametrize("moment", MOMENTS, ids=str)
def test_the_stored_time_text_slices_into_the_exported_time(moment: datetime) -> None:
    """SQLite's stored text (``TIME_TEXT_FORMAT``) sliced gives exactly ``rfc3339``
    (microseconds only when there are some) and the chain's always-microseconds form."""
    text = _sqlite_text(moment)

    assert datetime.strptime(text, export_store.TIME_TEXT_FORMAT).replace(tzinfo=UTC) == moment
    assert export_store.parse_time_text(text) == moment
    assert export_service.stored_time_rfc3339(text) == rfc3339(moment)
    row = _chain_row(recorded_at=text)
    assert json.loads(integrity.chain_line("w_1", "u_me", row))["recordedAt"] == (
        moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    )


AWKWARD = 'Zürich \u2013 東京 😀 "quoted" \\ line\nbreak \u2028 \x01 </script>'


def _export_row(**changes: Any) -> list[Any]:
    row: dict[str, Any] = {
        "seq": 41,
        "id": "01m8abc",
        "workspace_id": "w_01",
        "resource_type": "training",
        "action": "completed",
        "resource_id": "run-7",
        "resource_name": "yolo-run-7",
        "description": "Completed training yolo-run-7",
        "actor_id": "u_01",
        "actor_name": "Ada",
        "actor_email": "ada@example.com",
        "source_kind": "api_key",
        "source_key_prefix": "afk_3fQx9a",
        "created_at": "2026-11-26 09:15:02.123456",
        "metadata": '{"epochs":30,"note":"\\u00e9"}',
        "is_seen": 1,
        "is_archived": 0,
    }
    row |= changes
    return list(row.values())


EXPORT_ROWS = {
    "plain": _export_row(),
    "no actor": _export_row(actor_id=None, actor_name=None, actor_email=None),
    "actor without name or e-mail": _export_row(actor_name=None, actor_email=None),
    "empty actor id": _export_row(actor_id="", actor_name="x"),
    "no key prefix": _export_row(source_kind="ui", source_key_prefix=None),
    "empty key prefix": _export_row(source_key_prefix=""),
    "whole second": _export_row(created_at="2026-11-26 09:15:02.000000"),
    "tenth of a second": _export_row(created_at="2026-11-26 09:15:02.100000"),
    "awkward text": _export_row(
        resource_name=AWKWARD, description=AWKWARD, resource_id=AWKWARD, actor_name=AWKWARD
    ),
    "null metadata": _export_row(metadata="null"),
    "missing metadata": _export_row(metadata=None),
    "jsonb spelling": _export_row(metadata='{"a": [1, 2.5, null], "b": {"c": "ü"}}'),
    "booleans": _export_row(is_seen=False, is_archived=True),
}


@pytest.mark.parametrize("row", EXPORT_ROWS.values(), ids=EXPORT_ROWS.keys())
def test_an_event_line_is_the_plain_encoding_byte_for_byte(row: list[Any]) -> None:
    line = export_service.event_line(row)

    assert line == export_service.reference_event_line(row)
    assert line.endswith("}\n")
    assert "\n" not in line[:-1]


def test_the_plain_event_line_is_the_feeds_event_json() -> None:
    """The reference form itself: the fields and order of ``event_json``."""
    record = json.loads(export_service.reference_event_line(EXPORT_ROWS["plain"]))

    assert list(record) == [
        "id", "workspaceId", "resourceType", "resourceId", "resourceName", "action",
        "description", "actor", "source", "createdAt", "metadata", "seen", "archived",
    ]  # fmt: skip
    assert record["createdAt"] == "2026-11-26T09:15:02.123456Z"
    assert record["metadata"] == {"epochs": 30, "note": "é"}
    assert (record["seen"], record["archived"]) == (True, False)


def test_repeated_values_stay_right_when_their_cache_is_full() -> None:
    """The per-export cache of encoded actors, sources and words is bounded; once it is
    emptied the lines are still right."""
    fragments = export_service._Fragments()
    n = export_service._Fragments.LIMIT + 10
    for i in range(n):
        row = _export_row(actor_id=f"u_{i}", resource_type=f"t{i}", source_key_prefix=f"p{i}")
        assert export_service.event_line(row, fragments) == export_service.reference_event_line(row)
    assert len(fragments._actors) <= export_service._Fragments.LIMIT


def _chain_row(**changes: Any) -> list[Any]:
    values: dict[str, Any] = {
        "seq": 90211,
        "id": "01m8abc",
        "workspace_id": "w_01",
        "ws_ord": 41,
        "resource_type": "training",
        "action": "completed",
        "resource_id": "run-7",
        "resource_name": "yolo-run-7",
        "description": "Completed training yolo-run-7",
        "actor_id": "u_01",
        "actor_name": "Ada",
        "actor_email": "ada@example.com",
        "source_kind": "api_key",
        "source_key_prefix": "afk_3fQx9a",
        "created_at": "2026-11-26 09:15:01.000000",
        "recorded_at": "2026-11-26 09:15:02.123456",
        "metadata": '{"epochs":30}',
        "private_to": None,
        "idempotency_key": "run-7-done",
        "payload_hash": "9f2c" * 16,
    }
    values |= changes
    assert list(values) == list(chain.FIELDS)
    return list(values.values())


CHAIN_ROWS = {
    "plain": _chain_row(),
    "no key, no hash": _chain_row(idempotency_key=None, payload_hash=None),
    "my private event": _chain_row(private_to="u_me", resource_type="settings"),
    "another user's private event": _chain_row(private_to="u_other", resource_type="api_key"),
    "whole second": _chain_row(recorded_at="2026-11-26 09:15:02.000000"),
    "no actor": _chain_row(actor_id=None, actor_name=None, actor_email=None),
    "actor without a name": _chain_row(actor_name=None),
    "actor without an e-mail": _chain_row(actor_email=None),
    "name without an actor": _chain_row(actor_id=None, actor_email=None),
    "empty actor id": _chain_row(actor_id=""),
    "empty key prefix": _chain_row(source_key_prefix=""),
    "awkward text": _chain_row(id=AWKWARD, idempotency_key=AWKWARD, actor_name=AWKWARD),
    "null metadata": _chain_row(metadata="null", private_to="u_other"),
}


@pytest.mark.parametrize("version", sorted(chain.VERSIONS))
@pytest.mark.parametrize("row", CHAIN_ROWS.values(), ids=CHAIN_ROWS.keys())
def test_a_chain_line_is_the_plain_encoding_byte_for_byte(row: list[Any], version: int) -> None:
    values = export_store.chain_values(row)
    plain = integrity.reference_chain_record("w_01", "u_me", values, version)

    line = integrity.chain_line("w_01", "u_me", row, version)

    assert line == integrity._line(plain)
    assert json.loads(line) == plain


@pytest.mark.parametrize("row", CHAIN_ROWS.values(), ids=CHAIN_ROWS.keys())
def test_only_a_version_1_line_gives_seq(row: list[Any]) -> None:
    """``seq`` counts every workspace's events: a line gives it only where a version-1
    checkpoint's leaf needs it; a hidden event's leaf is hashed in the line's version."""
    values = export_store.chain_values(row)
    one = json.loads(integrity.chain_line("w_01", "u_me", row, 1))
    two = json.loads(integrity.chain_line("w_01", "u_me", row))

    assert "seq" not in two
    if "leaf" in two:
        assert two["leaf"] == chain.leaf(values, 2).hex()
        assert one["leaf"] == chain.leaf(values, 1).hex()
    else:
        assert one.pop("seq") == 90211
        assert one == two


def test_chain_values_are_the_stored_values() -> None:
    """Times parse back to aware UTC datetimes and metadata to its object, as the column
    types give them to ``chain.leaf``."""
    values = export_store.chain_values(_chain_row(metadata='{"b":[1,2.5],"a":null}'))

    assert values[chain.FIELDS.index("created_at")] == datetime(2026, 11, 26, 9, 15, 1, tzinfo=UTC)
    assert values[chain.FIELDS.index("recorded_at")] == datetime(
        2026, 11, 26, 9, 15, 2, 123456, tzinfo=UTC
    )
    assert values[chain.FIELDS.index("metadata")] == {"b": [1, 2.5], "a": None}
