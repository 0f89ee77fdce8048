"""The live stream's settings come from ACTIVITYFEED_STREAM_* variables."""

from __future__ import annotations

import pytest

from activityfeed.config import Settings


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.stream_heartbeat_seconds == 15
    assert settings.stream_poll_seconds == 0.05
    assert settings.stream_queue_size == 1000
    assert settings.stream_retention_seconds == 3600
    assert settings.stream_max_per_user == 20
    assert settings.stream_access_check_seconds == 2.0


def test_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "ACTIVITYFEED_STREAM_HEARTBEAT_SECONDS": "2.5",
            "ACTIVITYFEED_STREAM_POLL_SECONDS": "0.1",
            "ACTIVITYFEED_STREAM_QUEUE_SIZE": "50",
            "ACTIVITYFEED_STREAM_RETENTION_SECONDS": "600",
            "ACTIVITYFEED_STREAM_MAX_PER_USER": "3",
            "ACTIVITYFEED_STREAM_ACCESS_CHECK_SECONDS": "0.5",
        }
    )
    assert settings.stream_heartbeat_seconds == 2.5
    assert settings.stream_poll_seconds == 0.1
    assert settings.stream_queue_size == 50
    assert settings.stream_retention_seconds == 600
    assert settings.stream_max_per_user == 3
    assert settings.stream_access_check_seconds == 0.5


@pytest.mark.parametrize("raw", ["0", "-1", "soon", "nan"])
def test_seconds_must_be_positive_numbers(raw: str) -> None:
    with pytest.raises(ValueError, match="ACTIVITYFEED_STREAM_POLL_SECONDS"):
        Settings.from_env({"ACTIVITYFEED_STREAM_POLL_SECONDS": raw})
