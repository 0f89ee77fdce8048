"""Operators hear about server settings that slow the feed down as it grows."""

from __future__ import annotations

from activityfeed.store.maintenance import (
    AUTOVACUUM_OFF,
    TRACK_COUNTS_OFF,
    housekeeping_warnings,
    settings_warnings,
)


def test_defaults_raise_nothing():
    assert settings_warnings({"autovacuum": "on", "track_counts": "on"}) == []


def test_autovacuum_or_track_counts_off_is_named():
    assert settings_warnings({"autovacuum": "off", "track_counts": "on"}) == [AUTOVACUUM_OFF]
    assert settings_warnings({"autovacuum": "on", "track_counts": "off"}) == [TRACK_COUNTS_OFF]


def test_sqlite_has_no_such_settings(tmp_path):
    assert housekeeping_warnings(f"sqlite:///{tmp_path / 'a.db'}") == []
