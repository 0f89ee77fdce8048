"""SIGKILL the real server 30 times while 50 producers ingest (issue 6, "Crash").

``scripts/crash_test.py`` does the work: ``activityfeed serve`` in a subprocess, 50
producers that retry every request unchanged (same ``idempotencyKey`` per item) until it
is acknowledged, 30 kills at random moments while commits are flowing, a restart after
each, then a check of the database against every acknowledgement. Here the server lives
briefly between kills (a random 1-20 acknowledgements, then up to 0.1 s), so the run
costs little more than 31 server start-ups per database. ``ACTIVITYFEED_CRASH_LONG=1``
lets each server live for up to 500 acknowledgements plus up to a second.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from scripts import crash_test

LONG = os.environ.get("ACTIVITYFEED_CRASH_LONG") == "1"


@pytest.mark.slow
def test_sigkill_loses_nothing_and_stores_nothing_twice(database_url: str, tmp_path: Path):
    """Every acknowledged event is stored exactly once with the id it was answered with,
    nothing unacknowledged is stored, ``ws_ord`` stays dense, the per-day counts and (on
    SQLite) the search index agree with the events, and ``PRAGMA integrity_check`` is
    ``ok``."""
    report = crash_test.run(
        database_url,
        kills=30,
        clients=50,
        max_acks=500 if LONG else 20,
        jitter=1.0 if LONG else 0.1,
        workdir=tmp_path,
    )
    print(json.dumps(report.summary()))
    assert report.problems == []
    assert len(report.uptimes_s) == 30
    assert report.acknowledged_events == report.stored_events > 0
    # Every kill met requests in flight, so retries happened and were deduplicated.
    assert report.retried_requests > 0
    assert report.lost == report.duplicates == report.wrong_answers == 0
    if database_url.startswith("sqlite"):
        assert report.integrity_check == "ok"
