"""What every command shares: settings from flags and environment, and error printing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import typer
from rich.console import Console

from activityfeed.config import Settings
from activityfeed.errors import AppError

console = Console()
err_console = Console(stderr=True)

DatabaseUrl = typer.Option(
    None,
    "--database-url",
    envvar="ACTIVITYFEED_DATABASE_URL",
    help="SQLAlchemy URL; default: a SQLite file in the working folder.",
    show_envvar=True,
)


def settings_for(database_url: str | None) -> Settings:
    return Settings.from_env(database_url=database_url)


def now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Print an ``AppError`` as a sentence and exit 1, instead of a traceback."""
    try:
        yield
    except AppError as exc:
        err_console.print(f"[red]error[/red] ({exc.code}): {exc.message}")
        raise typer.Exit(1) from None
