"""Settings, built once from ``ACTIVITYFEED_*`` variables and CLI flags (never at import)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

DEFAULT_SQLITE_FILE = "activityfeed.db"


def default_database_url(folder: Path | None = None) -> str:
    """A SQLite file in the working folder: the zero-set-up default."""
    path = (folder or Path.cwd()) / DEFAULT_SQLITE_FILE
    return f"sqlite:///{path}"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable, with the defaults an operator gets out of the box."""

    database_url: str = field(default_factory=default_database_url)
    #: Undo of a settings change is offered this long after it (PRODUCT.md: one hour).
    undo_window_seconds: int = 3600
    #: A session dies after this long without a request ...
    session_idle_seconds: int = 12 * 3600
    #: ... and after this long whatever happens.
    session_absolute_seconds: int = 30 * 24 * 3600
    #: Mark the session cookie Secure; also turned on per request behind HTTPS.
    cookie_secure: bool = False
    #: Login failures allowed within ``login_window_seconds`` before 429.
    login_max_failures_per_account: int = 10
    login_max_failures_per_address: int = 50
    login_window_seconds: int = 300
    #: Largest request body accepted, in bytes (a batch of 1000 events fits easily).
    max_body_bytes: int = 8 * 1024 * 1024
    #: Largest ``metadata`` object of one event, serialised, in bytes.
    max_metadata_bytes: int = 16 * 1024
    #: Extra origins (scheme://host[:port]) allowed to send state-changing requests.
    trusted_origins: tuple[str, ...] = ()
    #: Largest file accepted by an upload (dataset image, model weights), in bytes.
    max_upload_bytes: int = 50 * 1024 * 1024
    #: The live stream sends a keep-alive comment this often (seconds).
    stream_heartbeat_seconds: float = 15.0
    #: SQLite only: how often each process with open streams tails the tables for new
    #: events (seconds): the longest a live event waits before its fan-out starts. A
    #: tail is two primary-key range reads, so 20 a second cost a worker about 1% of
    #: a core; a process without streams tails once a second.
    stream_poll_seconds: float = 0.05
    #: Messages waiting for one slow stream client before it gets ``reset`` instead.
    stream_queue_size: int = 1000
    #: How long state changes are kept for reconnecting tabs (seconds).
    stream_retention_seconds: int = 3600
    #: Open live streams one user may hold in one server process; the next is refused
    #: with 429 ``too_many_streams`` (each tab holds one).
    stream_max_per_user: int = 20
    #: How often each process re-checks that its open streams' sessions are live and
    #: their users still members (seconds); deliveries are checked every time anyway.
    stream_access_check_seconds: float = 2.0
    #: Folder for uploads and the default SQLite file.
    data_dir: Path = field(default_factory=Path.cwd)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read ``ACTIVITYFEED_*`` variables; keyword overrides (CLI flags) win over them."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        if url := env.get("ACTIVITYFEED_DATABASE_URL"):
            values["database_url"] = url
        int_vars = {
            "undo_window_seconds": "ACTIVITYFEED_UNDO_WINDOW_SECONDS",
            "session_idle_seconds": "ACTIVITYFEED_SESSION_IDLE_SECONDS",
            "session_absolute_seconds": "ACTIVITYFEED_SESSION_ABSOLUTE_SECONDS",
            "max_body_bytes": "ACTIVITYFEED_MAX_BODY_BYTES",
            "max_upload_bytes": "ACTIVITYFEED_MAX_UPLOAD_BYTES",
        }
        int_vars["stream_queue_size"] = "ACTIVITYFEED_STREAM_QUEUE_SIZE"
        int_vars["stream_retention_seconds"] = "ACTIVITYFEED_STREAM_RETENTION_SECONDS"
        int_vars["stream_max_per_user"] = "ACTIVITYFEED_STREAM_MAX_PER_USER"
        float_vars = {
            "stream_heartbeat_seconds": "ACTIVITYFEED_STREAM_HEARTBEAT_SECONDS",
            "stream_poll_seconds": "ACTIVITYFEED_STREAM_POLL_SECONDS",
            "stream_access_check_seconds": "ACTIVITYFEED_STREAM_ACCESS_CHECK_SECONDS",
        }
        for name, var in float_vars.items():
            if (raw := env.get(var)) is not None:
                try:
                    seconds = float(raw)
                except ValueError:
                    seconds = -1.0
                if not seconds > 0:
                    raise ValueError(f"{var} must be a number of seconds above 0, not {raw!r}")
                values[name] = seconds
        for name, var in int_vars.items():
            if (raw := env.get(var)) is not None:
                try:
                    values[name] = int(raw)
                except ValueError:
                    raise ValueError(f"{var} must be a whole number, not {raw!r}") from None
        if (raw := env.get("ACTIVITYFEED_COOKIE_SECURE")) is not None:
            values["cookie_secure"] = raw.strip().lower() in {"1", "true", "yes", "on"}
        if raw := env.get("ACTIVITYFEED_TRUSTED_ORIGINS"):
            values["trusted_origins"] = tuple(o.strip() for o in raw.split(",") if o.strip())
        if raw := env.get("ACTIVITYFEED_DATA_DIR"):
            values["data_dir"] = Path(raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]  # keys are checked by the dataclass
        if "database_url" not in values:
            settings = replace(settings, database_url=default_database_url(settings.data_dir))
        return settings
