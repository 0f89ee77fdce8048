"""The benchmark reads wrk's report (its Lua ``done`` hook prints one JSON line)."""

from __future__ import annotations

from activityfeed.cli.bench import WRK_SCRIPT, parse_wrk


def test_parse_wrk_report_in_the_json_units() -> None:
    stdout = (
        "Running 8s test @ http://127.0.0.1:8000/api/activity\n"
        "  1 threads and 16 connections\n"
        'WRK {"requests": 2000, "duration_us": 8000000, "errors": 3, "min_us": 1500, '
        '"p50_us": 6000, "p95_us": 20000, "p99_us": 41500}\n'
    )
    assert parse_wrk(stdout) == {
        "reps": 2000,
        "min_ms": 1.5,
        "p50_ms": 6.0,
        "p95_ms": 20.0,
        "p99_ms": 41.5,
        "requests_per_s": 250.0,
        "errors": 3,
    }


def test_script_counts_every_kind_of_error() -> None:
    """Non-2xx answers (``status``) and timeouts are errors, not fast samples."""
    for kind in ("connect", "read", "write", "status", "timeout"):
        assert f"e.{kind}" in WRK_SCRIPT
