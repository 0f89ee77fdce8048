"""The activity query's parameters: what a date bound means, and its export echo."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from activityfeed.domain.query import parse_activity_query

NOW = datetime(2026, 3, 15, 12, tzinfo=UTC)

BOUNDS = [
    {"start": "2026-03-10", "end": "2026-03-10"},
    {"end": "2026-03-10"},
    {"end": "0001-01-01"},
    {"end": "9999-12-30"},
    {"end": "2026-03-10T00:00:00Z"},
    {"end": "2026-03-10T23:59:59.999999Z"},
    {"end": "2026-03-10T12:00:00.5+05:30"},
    {"start": "2026-03-10T06:00:00-02:00", "end": "2026-03-10T08:00:00"},
    {"end": "9999-12-31T23:59:59.999998Z"},
]


@pytest.mark.parametrize("params", BOUNDS)
def test_filters_written_back_parse_to_the_same_range(params: dict[str, str]) -> None:
    """An export's ``filters``, sent again, select the same events: the same bounds."""
    query = parse_activity_query({k: [v] for k, v in params.items()}, now=NOW)
    filters = query.filters()
    again = parse_activity_query(
        {k: [str(v)] for k, v in filters.items() if k in ("start", "end")}, now=NOW
    )
    assert (again.start, again.end) == (query.start, query.end), filters
    assert again.filters() == filters


def test_the_end_is_echoed_as_the_last_instant_it_includes() -> None:
    query = parse_activity_query({"start": ["2026-03-10"], "end": ["2026-03-10"]}, now=NOW)
    assert query.filters()["end"] == "2026-03-10T23:59:59.999999Z"
    query = parse_activity_query({"end": ["2026-03-10T12:00:00+01:00"]}, now=NOW)
    assert query.filters()["end"] == "2026-03-10T11:00:00Z"
