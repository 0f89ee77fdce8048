"""The events insert converts values itself (no SQLAlchemy bind processing per row): its
conversions must write exactly what the column types would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import sqlite

from activityfeed.store import events as store
from activityfeed.store.schema import events


def test_sqlite_times_are_the_column_types_text() -> None:
    dialect = sqlite.dialect()
    column_type = events.c.created_at.type
    processor = column_type.dialect_impl(dialect).bind_processor(dialect)
    assert processor is not None
    moments = [
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=UTC),
        datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5))),
    ]
    for moment in moments:
        assert store.sqlite_time(moment) == processor(moment)
    with pytest.raises(ValueError, match="naive"):
        store.sqlite_time(datetime(2026, 1, 2))
