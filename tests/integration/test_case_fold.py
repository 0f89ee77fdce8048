"""The search's case folding (``domain.query.fold_case``) is PostgreSQL's ``lower()``:
SQLite's trigram index holds text folded by it, so both databases find the same events."""

from __future__ import annotations

import psycopg
from sqlalchemy.engine import make_url

from activityfeed.domain.query import fold_case

#: Whole words, where Python's own lower-casing has context rules PostgreSQL lacks.
WORDS = [
    "\u039f\u0394\u039f\u03a3",  # a Greek word ending in a capital sigma
    "\u03a3\u03a3\u03a3-x",
    "\u0130stanbul",  # dotted capital I
    "Stra\u00dfe",
]


def test_fold_case_is_postgresqls_lower_for_every_character(pg_database: str) -> None:
    """Every character of the first three planes (surrogates aside), one by one and in
    words: a difference would make SQLite and PostgreSQL answer a search differently."""
    chars = [chr(c) for c in range(0x20, 0x30000) if not 0xD800 <= c < 0xE000]
    url = make_url(pg_database)
    with psycopg.connect(
        host=url.host, port=url.port, user=url.username, dbname=url.database
    ) as conn:
        rows = conn.execute(
            "SELECT c, lower(c) FROM unnest(%s::text[]) AS c", (chars + WORDS,)
        ).fetchall()
    differ = [(c, lowered, fold_case(c)) for c, lowered in rows if fold_case(c) != lowered]
    assert differ == [], differ[:20]
