"""The database server's own housekeeping, as far as the feed's speed depends on it."""

from __future__ import annotations

from collections.abc import Mapping

from activityfeed.store.db import make_unpooled_engine, normalise_url

#: Without autovacuum (or a scheduled ANALYZE) PostgreSQL keeps no statistics for a
#: growing table and takes it for empty: a feed page's ``total`` with a viewer's
#: exceptions went from 3 ms to 400 ms after 19,000 events (docs/reliability.md).
AUTOVACUUM_OFF = (
    "PostgreSQL's autovacuum is off, so the planner's statistics go stale as the feed "
    "grows and pages slow down. Turn it on (the default), or run VACUUM ANALYZE on a "
    "schedule (docs/operations.md, 'Durability')."
)
TRACK_COUNTS_OFF = (
    "PostgreSQL's track_counts is off, so autovacuum cannot tell when a table needs "
    "fresh statistics. Turn it on (the default)."
)


def settings_warnings(settings: Mapping[str, str]) -> list[str]:
    """Sentences for the operator about server settings (``pg_settings`` name -> value)
    that make the feed slower over time; empty when all is well."""
    found = []
    if settings.get("autovacuum") == "off":
        found.append(AUTOVACUUM_OFF)
    if settings.get("track_counts") == "off":
        found.append(TRACK_COUNTS_OFF)
    return found


def housekeeping_warnings(url: str) -> list[str]:
    """``settings_warnings`` for the server at ``url``; empty for SQLite, which collects
    no statistics the feed's plans depend on."""
    if not normalise_url(url).startswith("postgresql"):
        return []
    engine = make_unpooled_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT name, setting FROM pg_settings WHERE name IN ('autovacuum', 'track_counts')"
            ).all()
    finally:
        engine.dispose()
    return settings_warnings({str(name): str(value) for name, value in rows})
