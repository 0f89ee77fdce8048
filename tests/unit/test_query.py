"""The activity query's parameters: what a date bound means, and its export echo."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from activityfeed.domain.query import case_variants, fold_case, parse_activity_query
from activityfeed.domain.sealing import KEY_BYTES, Sealer
from activityfeed.errors import InvalidRequest

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


def test_the_search_limit_counts_what_is_searched_for() -> None:
    """Blanks around a search are trimmed before its length is checked."""
    padded = " " * 150 + "x" * 200 + " " * 150
    assert parse_activity_query({"search": [padded]}, now=NOW).search == "x" * 200
    with pytest.raises(InvalidRequest) as caught:
        parse_activity_query({"search": ["x" * 201]}, now=NOW)
    assert caught.value.field == "search"


def test_an_export_ignores_its_paging_parameters() -> None:
    """``export=true`` is every match: ``page``, ``limit`` and ``cursor`` are ignored,
    whatever they hold (without the flag each is checked)."""
    paging = {"page": ["0"], "limit": ["abc"], "cursor": ["garbage"]}
    query = parse_activity_query({"export": ["true"], **paging}, now=NOW)
    assert (query.is_export, query.page, query.cursor) == (True, 1, None)
    for name, value in paging.items():
        with pytest.raises(InvalidRequest) as caught:
            parse_activity_query(
                {name: value}, now=NOW, open_cursor=Sealer(bytes(KEY_BYTES)).open_cursor
            )
        assert caught.value.field == name


def test_case_variants_are_the_letters_that_fold_alike() -> None:
    """What a short SQLite search spells out for a character: every character folded as
    it is, and no other (dotless i, long s and the micro sign stand alone)."""
    assert case_variants("i") == ("I", "i", "\N{LATIN CAPITAL LETTER I WITH DOT ABOVE}")
    assert "\N{KELVIN SIGN}" in case_variants("K")
    assert case_variants("\N{LATIN SMALL LETTER SHARP S}") == (
        "\N{LATIN SMALL LETTER SHARP S}",
        "\N{LATIN CAPITAL LETTER SHARP S}",
    )
    for alone in ("\N{LATIN SMALL LETTER DOTLESS I}", "\N{LATIN SMALL LETTER LONG S}", "1", "-"):
        assert case_variants(alone) == (alone,)
    for char in ("a", "Z", "\u10d0", "\u1c90", "\N{GREEK CAPITAL LETTER SIGMA}"):
        variants = case_variants(char)
        assert char in variants
        assert {fold_case(v) for v in variants} == {fold_case(char)}
